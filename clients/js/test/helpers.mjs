// Test fixtures: a real Parley, a TCP proxy that can break the network, users, waiting on events.
//
// Parley: PARLEY_API / PARLEY_SOCKET when set (the Rust test tests/all_in_one/sdk.rs starts
// one and sets them), else `target/debug/parley --ephemeral` (PARLEY_BIN) started here.

import { spawn } from "node:child_process";
import { once } from "node:events";
import net from "node:net";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { after, before } from "node:test";
import { fileURLToPath } from "node:url";
import { ParleyClient, RestApi } from "../dist/index.js";

/** How long anything may take on a busy machine before a test gives up. */
export const PATIENCE_MS = 60_000;

/**
 * The SDK's own timeouts (sendTimeoutMs, requestTimeoutMs) when a test makes them run out: far
 * longer than any answer of a local Parley takes on a busy machine, far shorter than PATIENCE_MS.
 */
export const SHORT_TIMEOUT_MS = 2_000;

const root = join(dirname(fileURLToPath(import.meta.url)), "../../..");
let shared = null;

/** The Parley under test: `{api, socket}`; started once per test file when not given. */
export async function parley() {
  if (process.env.PARLEY_API && process.env.PARLEY_SOCKET) {
    return { api: process.env.PARLEY_API, socket: process.env.PARLEY_SOCKET };
  }
  shared ??= startParley();
  return shared;
}

async function startParley() {
  const bin = process.env.PARLEY_BIN ?? join(root, "target/debug/parley");
  // Signed URLs of 8 s, whose expiries step by 2 s: a test sees fresher ones within seconds.
  const env = { ...process.env, RUST_LOG: "warn", PARLEY__ATTACHMENTS__SIGNED_URL_TTL_SECS: "8" };
  // What a developer's shell may have set that would change the configuration under test.
  for (const name of ["DATABASE_URL", "REDIS_URL", "JWT_SECRET", "API_PORT", "SOCKET_PORT"]) {
    delete env[name];
  }
  const child = spawn(bin, ["--ephemeral"], { stdio: ["pipe", "pipe", "inherit"], env });
  child.on("error", (error) => {
    throw new Error(`cannot start ${bin} (cargo build first, or set PARLEY_BIN): ${error.message}`);
  });
  const lines = createInterface({ input: child.stdout });
  const [line] = await withPatience(once(lines, "line"), "parley's ready line");
  const ready = JSON.parse(line);
  // An ephemeral Parley exits when its stdin closes: when this process ends.
  child.unref();
  child.stdout.unref?.();
  child.stdin.unref?.();
  return { api: ready.addresses.api, socket: ready.addresses.socket, child };
}

/**
 * For a test file: `ctx.server` (the Parley, set before the tests) and `ctx.track(client)`,
 * which closes the client after the file's tests.
 */
export function useParley() {
  const clients = [];
  const ctx = {
    server: null,
    track(client) {
      clients.push(client);
      return client;
    },
  };
  before(async () => {
    ctx.server = await parley();
  });
  after(() => {
    for (const c of clients) c.close();
    for (const p of proxies) p.close();
  });
  return ctx;
}

let counter = 0;

/** A registered user: `{token, user, username, password}`. */
export async function newUser(api, prefix = "u") {
  const username = `${prefix}${process.pid}_${Date.now().toString(36)}_${counter++}`.slice(0, 32);
  const password = "correct horse battery";
  const auth = await new RestApi(api).register({ username, password });
  return { ...auth, username, password };
}

/** A client for `user` (logged in with its token) with quick reconnects for tests. */
export function clientFor(server, user, options = {}) {
  return new ParleyClient({
    apiUrl: server.api,
    socketUrl: server.socket,
    token: user.token,
    reconnectDelayMs: 100,
    reconnectDelayMaxMs: 1_000,
    ...options,
  });
}

/** REST as `user`. */
export function restAs(server, user) {
  return new RestApi(server.api, user.token);
}

/**
 * Wait until `predicate()` holds (a truthy value, not an empty array), re-checking on every
 * `event` of `client` (and once now); resolves with that value. Fails after PATIENCE_MS.
 */
export function until(client, event, predicate, what) {
  return withPatience(
    new Promise((resolve) => {
      const check = () => {
        const value = predicate();
        if (value && !(Array.isArray(value) && value.length === 0)) {
          off();
          resolve(value);
        }
      };
      const off = client.on(event, check);
      check();
    }),
    what,
  );
}

/** Wait for the connection monitor's status `status`. */
export function untilState(client, status) {
  return until(client, "state", () => client.state.status === status, `state ${status}`);
}

/**
 * Break `client`'s network through `proxy`, run `during()` once it is reconnecting (others'
 * REST sends…), restore the network; resolves with the catch-up's `synced` payload.
 */
export async function whileAway(client, proxy, during) {
  proxy.down();
  await until(client, "state", () => client.state.status === "reconnecting", "reconnecting");
  await during();
  const synced = new Promise((resolve) => client.once("synced", resolve));
  proxy.up();
  return synced;
}

export async function withPatience(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`waited ${PATIENCE_MS} ms for ${what}`)), PATIENCE_MS);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A TCP proxy in front of `target` (`http://host:port`) that can break the network the way
 * networks break: `dropUp()` / `dropDown()` lose the bytes of one direction, `swallow(text)`
 * loses one request, `silence()` the connections open now, `cut()` resets every connection,
 * `down()` refuses new ones until `up()`.
 */
export async function networkProxy(target) {
  const { hostname, port } = new URL(target);
  const sockets = new Set();
  const state = { refuse: false, dropUp: false, dropDown: false };
  /** Requests to lose: `{text, swallowed}`, the first connection sending `text` goes silent. */
  const swallows = [];
  /** The connections open now, each able to go silent. */
  const links = new Set();
  const server = net.createServer((client) => {
    if (state.refuse) {
      client.destroy();
      return;
    }
    const upstream = net.connect(Number(port), hostname);
    sockets.add(client);
    sockets.add(upstream);
    let silent = false;
    const link = { silence: () => (silent = true) };
    links.add(link);
    client.on("data", (data) => {
      const at = swallows.findIndex(({ text }) => data.includes(text));
      if (!silent && at >= 0) {
        silent = true;
        swallows.splice(at, 1)[0].swallowed();
      }
      silent || state.dropUp || upstream.write(data);
    });
    upstream.on("data", (data) => silent || state.dropDown || client.write(data));
    const close = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
      links.delete(link);
    };
    client.on("close", close).on("error", close);
    // A silent connection's client hears nothing more, not even the server closing its side.
    const upstreamClosed = () => (silent ? upstream.destroy() : close());
    upstream.on("close", upstreamClosed).on("error", upstreamClosed);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const proxy = {
    url: `http://127.0.0.1:${server.address().port}`,
    dropUp(on = true) {
      state.dropUp = on;
    },
    dropDown(on = true) {
      state.dropDown = on;
    },
    /**
     * Lose the next request whose bytes hold `text` (e.g. `GET /api/sync`) in flight: its
     * connection goes silent both ways and stays open, as behind a Wi-Fi hand-over. Resolves
     * once it happened (no patience of its own: wait on it with `withPatience`).
     */
    swallow(text) {
      return new Promise((swallowed) => swallows.push({ text, swallowed }));
    },
    /**
     * Every connection open now goes silent both ways and stays open (a half-open link: a NAT
     * that forgot them); new connections work.
     */
    silence() {
      for (const link of links) link.silence();
    },
    cut() {
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    down() {
      state.refuse = true;
      this.cut();
    },
    up() {
      Object.assign(state, { refuse: false, dropUp: false, dropDown: false });
    },
    close() {
      this.down();
      server.close();
      proxies.delete(proxy);
    },
  };
  proxies.add(proxy); // closed after the file's tests even when one fails half-way
  return proxy;
}

const proxies = new Set();
