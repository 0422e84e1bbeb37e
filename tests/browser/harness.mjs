// What the browser suite runs on: the Parley binaries of the cargo build (all-in-one, or the
// split API + relay on PostgreSQL and Redis), the web app (served by the all-in-one, or by a
// static server of the test's own for the split services), and Debian's Chromium driven by
// playwright-core. Every wait is for a state (a selector, a ready line, an HTTP 200) with the
// project's 60 s of patience, never a sleep.

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, extname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { after, before } from "node:test";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { chromium } from "playwright-core";

export const PATIENCE = 60_000;
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const TARGET = process.env.CARGO_TARGET_DIR ? resolve(ROOT, process.env.CARGO_TARGET_DIR) : join(ROOT, "target");
export const BIN_DIR = process.env.PARLEY_BIN_DIR ?? join(TARGET, "debug");
export const SHOTS = process.env.PARLEY_SCREENSHOTS ?? join(TARGET, "browser-screenshots");
export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
export const PG_URL = process.env.PARLEY_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
export const REDIS_URL = process.env.PARLEY_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

/** Variables of a developer's shell that would change what the test configures. */
const CLEARED = [
  "DATABASE_URL", "REDIS_URL", "JWT_SECRET", "API_PORT", "SOCKET_PORT", "API_URL", "API_HOST",
  "SOCKET_HOST", "PARLEY_EPHEMERAL", "PARLEY_DATA_DIR", "CORS_ALLOWED_ORIGINS", "TRUSTED_PROXIES",
];

function binary(name) {
  const path = join(BIN_DIR, name);
  if (!existsSync(path)) {
    throw new Error(`${path} is missing: build the workspace first (cargo build --workspace, or ./scripts/test)`);
  }
  return path;
}

/** The services' working directory (their relative data paths, e.g. attachments, land here). */
const WORKDIR = mkdtempSync(join(tmpdir(), "parley-browser-"));

function env(extra) {
  const out = { ...process.env, RUST_LOG: "warn" };
  for (const name of CLEARED) delete out[name];
  return { ...out, ...extra };
}

/** Every process the suite started, killed if node exits without stopping them (a crash). */
const started = new Set();
process.on("exit", () => {
  for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  rmSync(WORKDIR, { recursive: true, force: true });
});

/** A process of ours, its stderr kept for failure messages, killed by `stop()`. */
class Proc {
  constructor(name, child) {
    this.name = name;
    this.child = child;
    started.add(child);
    child.once("exit", () => started.delete(child));
    this.log = [];
    this.exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
    child.stderr?.on("data", (chunk) => {
      this.log.push(String(chunk));
      if (this.log.length > 200) this.log.shift();
    });
  }

  tail() {
    return this.log.join("").split("\n").slice(-30).join("\n");
  }

  /** SIGTERM, then wait for the exit (SIGKILL after 60 s). */
  async stop() {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), PATIENCE);
    await this.exited;
    clearTimeout(timer);
  }
}

/** `target/debug/parley --ephemeral`: both services and the web app; resolves on its ready line. */
export async function startAllInOne() {
  const child = spawn(binary("parley"), ["--ephemeral"], {
    env: env({}),
    cwd: WORKDIR,
    stdio: ["pipe", "pipe", "pipe"],
  });
  const proc = new Proc("parley", child);
  const lines = createInterface({ input: child.stdout });
  const ready = await withTimeout(
    new Promise((resolve, reject) => {
      lines.once("line", (line) => resolve(JSON.parse(line)));
      child.once("exit", (code) => reject(new Error(`parley exited (${code}) before it was ready:\n${proc.tail()}`)));
    }),
    "parley's ready line",
  );
  lines.on("line", () => {});
  proc.api = ready.addresses.api;
  proc.socket = ready.addresses.socket;
  proc.web = ready.addresses.web;
  return proc;
}

/**
 * The all-in-one and Chromium for a test file's tests: started before them, stopped after.
 * The tests read `suite.parley` and `suite.browser` once the hooks have run.
 */
export function allInOneSuite() {
  const suite = { parley: null, browser: null };
  before(async () => {
    suite.parley = await startAllInOne();
    if (!suite.parley.web) {
      throw new Error("parley was built without its web app (is npm installed? see the cargo build's warning)");
    }
    suite.browser = await launchChromium();
  });
  after(async () => {
    await suite.browser?.close();
    await suite.parley?.stop();
  });
  return suite;
}

/** A loopback port nobody listens on now (a relay is restarted on it, so it is fixed). */
export async function freePort() {
  const server = createNetServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function waitHttp(url, proc) {
  const deadline = Date.now() + PATIENCE;
  for (;;) {
    if (proc.child.exitCode !== null) throw new Error(`${proc.name} exited while starting:\n${proc.tail()}`);
    try {
      const response = await fetch(url);
      if (response.status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${url} did not answer 200 within 60 s:\n${proc.tail()}`);
    await new Promise((r) => setTimeout(r, 100)); // polling interval, not a synchronisation
  }
}

/**
 * The split deployment on the shared PostgreSQL (a fresh database of the test's own) and Redis
 * (a key prefix of its own): the API and one relay, each its binary, on fixed free ports;
 * `env` adds settings of both (`PARLEY__…`); `relayOrigins` the relay's CORS_ALLOWED_ORIGINS when
 * they differ from the API's.
 */
export async function startSplit({ allowedOrigins, relayOrigins = allowedOrigins, env: extra = {} }) {
  const id = randomBytes(4).toString("hex");
  const database = `parley_test_browser_${id}`;
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${database}`);
  await admin.end();
  const databaseUrl = new URL(PG_URL);
  databaseUrl.pathname = `/${database}`;
  const common = {
    JWT_SECRET: randomBytes(32).toString("hex"),
    REDIS_URL,
    PARLEY__REDIS__PREFIX: `parley-browser-${id}`,
    CORS_ALLOWED_ORIGINS: allowedOrigins.join(","),
    ...extra,
  };
  const apiPort = await freePort();
  const api = new Proc(
    "api-server",
    spawn(binary("api-server"), [], {
      env: env({ ...common, DATABASE_URL: String(databaseUrl), API_HOST: "127.0.0.1", API_PORT: String(apiPort) }),
      cwd: WORKDIR,
      stdio: ["ignore", "ignore", "pipe"],
    }),
  );
  const apiUrl = `http://127.0.0.1:${apiPort}`;
  await waitHttp(`${apiUrl}/ready`, api);
  const relayPort = await freePort();
  const relayEnv = env({
    ...common,
    CORS_ALLOWED_ORIGINS: relayOrigins.join(","),
    API_URL: apiUrl,
    SOCKET_HOST: "127.0.0.1",
    SOCKET_PORT: String(relayPort),
  });
  const split = {
    database,
    databaseUrl: String(databaseUrl),
    api,
    apiUrl,
    socketUrl: `http://127.0.0.1:${relayPort}`,
    relay: null,
    async startRelay() {
      this.relay = new Proc("socket-server", spawn(binary("socket-server"), [], { env: relayEnv, cwd: WORKDIR, stdio: ["ignore", "ignore", "pipe"] }));
      await waitHttp(`${this.socketUrl}/health`, this.relay);
    },
    async stop() {
      await this.relay?.stop();
      await api.stop();
      const admin = new pg.Client({ connectionString: PG_URL });
      await admin.connect();
      await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
      await admin.end();
    },
  };
  await split.startRelay();
  return split;
}

/** The web app built by clients/web/build.mjs (its node_modules come from the cargo build). */
export async function buildApp() {
  const outdir = mkdtempSync(join(tmpdir(), "parley-web-"));
  const child = spawn("node", ["build.mjs", outdir], { cwd: join(ROOT, "clients/web"), stdio: ["ignore", "ignore", "pipe"] });
  const proc = new Proc("build.mjs", child);
  const { code } = await proc.exited;
  if (code !== 0) throw new Error(`building clients/web failed (did the cargo build run npm ci there?):\n${proc.tail()}`);
  return outdir;
}

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".map": "application/json" };

/**
 * For a test file's tests: the web app built from its sources on a static server of the suite's
 * own, the split services for it and Chromium, started before them and stopped after. `origins`
 * gives the CORS_ALLOWED_ORIGINS of the API (`api`) and of the relay (`relay`, default the
 * API's) from the site's port (default: the site on 127.0.0.1 only); `env` more settings of
 * both. The tests read `suite.split`, `suite.browser`, `suite.site` (its `port`) and `suite.url`
 * (the app on 127.0.0.1) once the hooks have run.
 */
export function splitAppSuite({ origins = (port) => ({ api: [`http://127.0.0.1:${port}`] }), env = {} } = {}) {
  const suite = { split: null, browser: null, site: null, url: null };
  let dist;
  before(async () => {
    dist = await buildApp();
    // The site's port is only known once it listens; the app reads the services' addresses from
    // its config, filled in below (before any page loads).
    const config = {};
    suite.site = await serveApp(dist, config);
    const { api, relay = api } = origins(suite.site.port);
    suite.split = await startSplit({ allowedOrigins: api, relayOrigins: relay, env });
    Object.assign(config, { apiUrl: suite.split.apiUrl, socketUrl: suite.split.socketUrl });
    suite.url = `http://127.0.0.1:${suite.site.port}/`;
    suite.browser = await launchChromium();
  });
  after(async () => {
    await suite.browser?.close();
    await suite.split?.stop();
    await suite.site?.close();
    if (dist) rmSync(dist, { recursive: true, force: true });
  });
  return suite;
}

/**
 * Alice and Bob registered on their own pages of the app at `url`, Alice in a chat with Bob:
 * `{alice, bob, alicePage, bobPage, conversationId}`.
 */
export async function twoUsers(browser, url) {
  const alice = unique("alice");
  const bob = unique("bob");
  const alicePage = await openPage(browser, url);
  await register(alicePage, alice);
  const bobPage = await openPage(browser, url);
  await register(bobPage, bob);
  await startChat(alicePage, bob);
  const conversationId = await alicePage
    .locator('[data-testid="conversation-item"].active')
    .getAttribute("data-conversation-id");
  return { alice, bob, alicePage, bobPage, conversationId };
}

/** A static server of the built app with its `/app-config.json` naming the split services. */
export async function serveApp(dist, config) {
  const server = createServer((req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    if (path === "/app-config.json") {
      res.writeHead(200, { "content-type": "application/json" });
      return res.end(JSON.stringify(config));
    }
    const file = join(dist, path === "/" ? "index.html" : path);
    if (!file.startsWith(dist) || !existsSync(file)) {
      res.writeHead(404);
      return res.end();
    }
    res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream" });
    res.end(readFileSync(file));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { port: server.address().port, close: () => new Promise((r) => server.close(r)) };
}

/**
 * Chromium with a fake microphone (a beep). Its permission prompt is answered yes by default
 * (`--use-fake-ui-for-media-stream`); with `prompts: false` only a context granted the
 * microphone (`openPage`'s default) gets it, and headless Chromium refuses it to the others,
 * as a user answering no.
 */
export async function launchChromium({ prompts = true } = {}) {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium) or set CHROMIUM`);
  }
  mkdirSync(SHOTS, { recursive: true });
  const media = ["--use-fake-device-for-media-stream", ...(prompts ? ["--use-fake-ui-for-media-stream"] : [])];
  return chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", ...media] });
}

/**
 * A page in a context of its own (its own storage: one user), granted the microphone unless
 * `microphone` is false, with errors kept for the report.
 */
export async function openPage(browser, url, { microphone = true } = {}) {
  const permissions = microphone ? ["microphone"] : [];
  const context = await browser.newContext({ viewport: { width: 1000, height: 640 }, permissions });
  context.setDefaultTimeout(PATIENCE);
  const page = watch(await context.newPage());
  await page.goto(url);
  return page;
}

/**
 * Keep the page's uncaught exceptions (`page.consoleErrors`) and its Socket.IO transports
 * (`page.transports`), for the asserts. (Failed requests while a service is down are expected,
 * and logged by Chromium as console errors: not kept.)
 */
export function watch(page) {
  page.consoleErrors = [];
  page.on("pageerror", (e) => page.consoleErrors.push(String(e)));
  // The Socket.IO transports the page used, in order: "polling" requests, then "websocket".
  page.transports = [];
  page.on("request", (r) => r.url().includes("/socket.io/") && r.url().includes("transport=polling") && page.transports.push("polling"));
  page.on("websocket", (ws) => ws.url().includes("/socket.io/") && page.transports.push("websocket"));
  return page;
}

export async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`) });
}

export const PASSWORD = "correct horse battery";

/** Register a user named `prefix` + random by REST: `{token, user}`. */
export function registerRest(api, prefix) {
  return rest(api, "POST", "/api/auth/register", { body: { username: unique(prefix), password: PASSWORD } });
}

/** Register `username` through the form; resolves once the chat shows. */
export async function register(page, username, password = PASSWORD) {
  await page.getByTestId("login-username").fill(username);
  await page.getByTestId("login-password").fill(password);
  await page.getByTestId("register-button").click();
  await page.getByTestId("me").waitFor();
}

/** Log in through the form; resolves once the chat shows. */
export async function login(page, username, password = PASSWORD) {
  await page.getByTestId("login-username").fill(username);
  await page.getByTestId("login-password").fill(password);
  await page.getByTestId("login-button").click();
  await page.getByTestId("me").waitFor();
}

export async function startChat(page, username) {
  await page.getByTestId("new-chat-input").fill(username);
  await page.getByTestId("new-chat-button").click();
  await page.getByTestId("composer-input").waitFor();
}

export async function send(page, text) {
  await page.getByTestId("composer-input").fill(text);
  await page.getByTestId("send-button").click();
}

/** The message element with `text` on `page`. */
export function message(page, text) {
  return page.getByTestId("message").filter({ hasText: text });
}

/** A 1×1 PNG. */
export const PNG = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==",
  "base64",
);

/** Attach `PNG` on `page` (the conversation open): uploaded, then sent. */
export async function attachPng(page) {
  await page.getByTestId("attach-input").setInputFiles({ name: "dot.png", mimeType: "image/png", buffer: PNG });
}

/** Wait until `page` shows a loaded image in a message (its signed URL answered an image). */
export async function imageLoaded(page) {
  await page.getByTestId("message").getByTestId("message-image").first().waitFor();
  await page.waitForFunction(() => {
    const img = document.querySelector('[data-testid="message-image"]');
    return img && img.complete && img.naturalWidth > 0;
  });
}

/** Start recording a voice note; resolves once the page has recorded `ms` (its own clock) and some bytes. */
export async function recordFor(page, ms) {
  await page.getByTestId("record-button").click();
  await page.locator('[data-testid="record-button"][data-state="recording"]').waitFor();
  await page.waitForFunction((ms) => {
    const b = document.querySelector('[data-testid="record-button"]');
    return Number(b.dataset.elapsedMs) >= ms && Number(b.dataset.bytes) > 0;
  }, ms);
}

/** Stop the recording: resolves once it is uploaded and sent (the recorder idle again). */
export async function stopRecording(page) {
  await page.getByTestId("record-button").click();
  await page.locator('[data-testid="record-button"][data-state="idle"]').waitFor();
}

/** Wait until `page`'s first voice note player has loaded its metadata (its signed URL answered audio). */
export async function audioLoaded(page) {
  await page.getByTestId("message").getByTestId("message-audio").first().waitFor();
  await page.waitForFunction(() => document.querySelector('[data-testid="message-audio"]').readyState >= 1);
}

/** Wait until the message's status (data-status) is `status`. */
export async function waitStatus(page, text, status) {
  await page.waitForSelector(`[data-testid="message"][data-status="${status}"]:has-text(${JSON.stringify(text)})`);
}

/** Wait until the message is stored (any status past `sending`). */
export async function waitStored(page, text) {
  await page.waitForSelector(`[data-testid="message"][data-id]:not([data-id=""]):has-text(${JSON.stringify(text)})`);
}

/** A REST call as a node client (no Origin); a 429 waits its Retry-After and tries again. */
export async function rest(api, method, path, { token, body } = {}) {
  for (;;) {
    const response = await fetch(new URL(path, api), {
      method,
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 429) {
      const wait = Number(response.headers.get("retry-after") ?? "1");
      await new Promise((r) => setTimeout(r, wait * 1000)); // the server's own back-off
      continue;
    }
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }
}

export async function withTimeout(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within 60 s`)), PATIENCE);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export function unique(prefix) {
  return `${prefix}${randomBytes(3).toString("hex")}`;
}
