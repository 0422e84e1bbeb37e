// Parley's reference web app: boots the SDK (`@parley/client`) with the addresses from
// `/app-config.json`, shows the login form until there is a session, then the chat.

import { localStorageAdapter, ParleyClient } from "@parley/client";
import { renderBanner } from "./banner.js";
import { ChatView } from "./chat.js";
import { loadConfig } from "./config.js";
import { h, mount } from "./dom.js";
import { describe, renderLogin } from "./login.js";

const root = document.getElementById("app") as HTMLElement;
/** The API's base URL (attachments' signed URLs are relative to it). */
let apiUrl = window.location.origin;

async function boot(): Promise<void> {
  let config;
  try {
    config = await loadConfig();
  } catch (e) {
    mount(root, h("p", { className: "error", testid: "app-error" }, `Cannot load the app's configuration: ${describe(e)}`));
    return;
  }
  apiUrl = config.apiUrl;
  const client = new ParleyClient({ ...config, storage: localStorageAdapter() });
  (window as unknown as { parley: ParleyClient }).parley = client; // for the console and tests
  if (client.session) showChat(client);
  else showLogin(client);
}

function showLogin(client: ParleyClient, notice?: string): void {
  renderLogin(
    root,
    async (mode, credentials) => {
      if (mode === "register") await client.register(credentials);
      else await client.login(credentials);
      showChat(client);
    },
    notice,
  );
}

function showChat(client: ParleyClient): void {
  const session = client.session;
  if (!session) return showLogin(client);
  const banner = h("div", { className: "banner", testid: "connection-banner", role: "status" });
  const logout = async () => {
    stop();
    await client.logout().catch(() => undefined);
    showLogin(client);
  };
  const view = new ChatView(client, session.user, apiUrl, () => void logout());
  const reconnect = () => client.reconnect();
  const offs = [
    client.on("state", (state) => {
      renderBanner(banner, state, reconnect);
      if (state.status === "connected") view.clearError();
    }),
    client.on("conversations", (list) => view.conversations(list)),
    client.on("messages", ({ conversationId, messages }) => view.messages(conversationId, messages)),
    client.on("typing", ({ conversationId, userIds }) => view.typing(conversationId, userIds)),
    client.on("presence", () => view.presence()),
    client.on("latency", (sample) => view.latency(sample)),
    // While not connected the banner tells the story; failed attempts are not errors to show,
    // but a relay never reached since the page opened is (the network, the relay down, or the
    // relay refusing this page's origin: the browser does not say which).
    client.on("error", (error) => {
      if (client.state.status === "connected" || error.code === "network_error") view.error(error);
    }),
    client.on("sessionRevoked", () => {
      stop();
      showLogin(client, "Your session ended: log in again.");
    }),
  ];
  const onVisible = () => view.visibility();
  document.addEventListener("visibilitychange", onVisible);
  offs.push(() => document.removeEventListener("visibilitychange", onVisible));
  offs.push(() => view.dispose());
  const stop = () => offs.forEach((off) => off());
  mount(root, h("div", { className: "app" }, banner, view.root));
  renderBanner(banner, client.state, reconnect);
  view.conversations(client.conversations);
  client.connect().catch(async (error) => {
    // A kept token the server no longer accepts (logged out elsewhere, another server): log in.
    if (TOKEN_ERRORS.has((error as { code?: string }).code ?? "")) {
      stop();
      await client.logout().catch(() => undefined);
      showLogin(client, "Your session ended: log in again.");
    } else {
      view.error(error);
    }
  });
}

const TOKEN_ERRORS = new Set(["missing_token", "invalid_token", "token_expired", "token_revoked", "unauthorized"]);

void boot();
