// Where the API and the relay are. `cargo run` serves `/app-config.json` next to the app: the
// relay's port (the page keeps its own host name, so `localhost` and `127.0.0.1` both work).
// A deployment that serves the app elsewhere writes `apiUrl` / `socketUrl` into that file.

export interface AppConfig {
  apiUrl: string;
  socketUrl: string;
}

interface ConfigFile {
  apiUrl?: string | null;
  socketUrl?: string | null;
  socketPort?: number | null;
}

export async function loadConfig(): Promise<AppConfig> {
  const response = await fetch("/app-config.json", { cache: "no-store" });
  if (!response.ok) throw new Error(`/app-config.json answered ${response.status}`);
  const file = (await response.json()) as ConfigFile;
  const here = window.location;
  const apiUrl = file.apiUrl ?? here.origin;
  const socketUrl =
    file.socketUrl ??
    `${here.protocol}//${here.hostname}:${file.socketPort ?? 5000}`;
  return { apiUrl, socketUrl };
}
