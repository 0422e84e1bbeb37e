// What both design-document clients share: where Parley is, accounts, devices that record
// what they receive. Run with PARLEY_API and PARLEY_SOCKETS (comma-separated relay URLs; the
// all-in-one has one) by the root package's `all_in_one` tests and by socket-server's `relay`
// tests. Only setup (accounts, reading history to check what was stored) uses REST.
import assert from "node:assert/strict";
import { after } from "node:test";
import { io } from "socket.io-client";

// Waits for what must happen; only a real failure exhausts them, never a busy machine.
export const PATIENCE_MS = 60_000;

export const API = process.env.PARLEY_API;
const SOCKETS = (process.env.PARLEY_SOCKETS ?? process.env.PARLEY_SOCKET ?? "").split(",").filter(Boolean);
if (!API || SOCKETS.length === 0) {
  throw new Error("PARLEY_API and PARLEY_SOCKETS must be set (run through the all_in_one or relay tests)");
}

const sockets = [];
after(() => sockets.forEach((s) => s.disconnect()));

export const within = (ms, promise, what) => {
  let timer;
  const expired = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timeout: ${what}`)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
};

export async function rest(method, path, token, body) {
  const res = await fetch(`${API}${path}`, {
    method,
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

const unique = () => Math.random().toString(36).slice(2, 10);

/** A user: `{token, user: {id, …}}`. */
export async function register(name) {
  const r = await rest("POST", "/api/auth/register", null, { username: `${name}_${unique()}`, password: "correct horse battery" });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body;
}

/**
 * A device on relay `index` (modulo the relays there are), connected with `auth`: its socket,
 * everything it received in order, and `next(name, match)` — the first event `name` whose
 * argument satisfies `match` (it is taken out; others are kept).
 */
export async function device(index, auth) {
  const socket = io(SOCKETS[index % SOCKETS.length], { forceNew: true, reconnection: false, auth });
  sockets.push(socket);
  const events = [];
  const waiters = [];
  socket.onAny((event, arg) => {
    events.push([event, arg]);
    waiters.splice(0).forEach((w) => w());
  });
  await within(PATIENCE_MS, new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("connect_error", reject);
  }), "connect");
  const next = async (name, match = () => true) => {
    for (;;) {
      const i = events.findIndex(([e, arg]) => e === name && match(arg));
      if (i >= 0) return events.splice(i, 1)[0][1];
      await within(PATIENCE_MS, new Promise((r) => waiters.push(r)), name);
    }
  };
  const names = () => new Set(events.map(([e]) => e));
  return { socket, next, events, names };
}

/** A connection refused: the `connect_error`. */
export async function refused(index, auth) {
  const socket = io(SOCKETS[index % SOCKETS.length], { forceNew: true, reconnection: false, auth });
  sockets.push(socket);
  return within(PATIENCE_MS, new Promise((resolve, reject) => {
    socket.once("connect", () => reject(new Error("connected")));
    socket.once("connect_error", resolve);
  }), "connect_error");
}

/** The messages of the direct conversation `conversationId`, as `token`'s user sees them. */
export async function history(token, conversationId) {
  const r = await rest("GET", `/api/conversations/${conversationId}/messages?limit=200`, token);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.messages;
}
