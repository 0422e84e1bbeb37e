// The connection monitor, ping latency, typing, presence, revocation and logout against a real
// Parley.

import assert from "node:assert/strict";
import { test } from "node:test";
import { MemoryStorage, ParleyClient, backoffDelay } from "../dist/index.js";
import {
  clientFor,
  networkProxy,
  newUser,
  restAs,
  until,
  untilState,
  useParley,
} from "./helpers.mjs";

const ctx = useParley();

test("back-off doubles from the first delay up to the longest", () => {
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6, 7, 50].map((n) => backoffDelay(n, 1_000, 30_000)),
    [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000],
  );
});

test("states go connecting → connected, then reconnecting with attempts 1, 2, 3… while the network is down, then connected", async () => {
  const alice = await newUser(ctx.server.api, "alice");
  const proxy = await networkProxy(ctx.server.socket);
  const a = ctx.track(
    clientFor(ctx.server, alice, {
      socketUrl: proxy.url,
      reconnectDelayMs: 50,
      reconnectDelayMaxMs: 200,
      reconnectJitter: 0,
    }),
  );
  const states = [];
  a.on("state", (state) => states.push(state));
  await a.connect();
  assert.deepEqual(states, [{ status: "connecting" }, { status: "connected" }]);

  states.length = 0;
  proxy.down();
  await until(a, "state", () => a.state.status === "reconnecting" && a.state.attempt >= 4, "attempt 4");
  proxy.up();
  await untilState(a, "connected");

  const attempts = states.filter((s) => s.status === "reconnecting");
  assert.deepEqual(
    attempts.slice(0, 4),
    [1, 2, 3, 4].map((attempt) => ({
      status: "reconnecting",
      attempt,
      delayMs: backoffDelay(attempt, 50, 200),
    })),
  );
  assert.deepEqual(states.at(-1), { status: "connected" });
  proxy.close();
});

test("the monitor gives up after the attempt limit, and reconnect() starts again", async () => {
  const alice = await newUser(ctx.server.api, "alice");
  const proxy = await networkProxy(ctx.server.socket);
  const a = ctx.track(clientFor(ctx.server, alice, { socketUrl: proxy.url, reconnectAttempts: 2 }));
  await a.connect();

  proxy.down();
  await untilState(a, "disconnected");
  assert.deepEqual(a.state, { status: "disconnected", reason: "attempts_exhausted" });
  proxy.up();
  a.reconnect();
  assert.equal(a.state.status, "connecting");
  await untilState(a, "connected");
  proxy.close();
});

test("the ping measures latency, and an unanswered ping flags the network slow", async () => {
  const alice = await newUser(ctx.server.api, "alice");
  const proxy = await networkProxy(ctx.server.socket);
  const a = ctx.track(
    clientFor(ctx.server, alice, { socketUrl: proxy.url, pingIntervalMs: 100, slowThresholdMs: 300 }),
  );
  const samples = [];
  a.on("latency", (sample) => samples.push(sample));
  await a.connect();
  await until(a, "latency", () => samples.length >= 2, "two answered pings");
  for (const sample of samples) {
    assert.equal(typeof sample.latencyMs, "number");
    assert.ok(sample.latencyMs >= 0);
  }
  assert.equal(a.latency, samples.at(-1));

  proxy.dropDown(); // pongs are lost
  const slow = await until(a, "latency", () => samples.find((s) => s.slow), "a slow sample");
  assert.ok(slow.latencyMs >= 300, `flagged slow after ${slow.latencyMs} ms`);
  proxy.close();
});

test("typing is relayed, throttled and cleared by the message; presence follows the contact", async () => {
  const alice = await newUser(ctx.server.api, "alice");
  const bob = await newUser(ctx.server.api, "bob");
  const a = ctx.track(clientFor(ctx.server, alice));
  await a.connect();
  const chat = await a.openDirect(bob.user.id);
  const b = ctx.track(clientFor(ctx.server, bob, { typingThrottleMs: 60_000 }));
  const online = until(a, "presence", () => a.presence(bob.user.id)?.online === true, "bob online");
  await b.connect();
  await online;

  const typingEvents = [];
  a.on("typing", (event) => typingEvents.push(event.userIds));
  b.typing(chat.id);
  b.typing(chat.id); // throttled: one event
  await until(a, "typing", () => a.typingUsers(chat.id).includes(bob.user.id), "bob typing");
  b.send({ conversationId: chat.id, content: "done typing" });
  await until(a, "typing", () => a.typingUsers(chat.id).length === 0, "bob stopped");
  assert.deepEqual(typingEvents, [[bob.user.id], []]);

  b.close();
  const offline = await until(
    a,
    "presence",
    () => a.presence(bob.user.id)?.online === false && a.presence(bob.user.id),
    "bob offline",
  );
  assert.ok(offline.lastSeen, "offline with the time last seen");
});

test("a session revoked elsewhere stops the client with sessionRevoked and forgets the token", async () => {
  const alice = await newUser(ctx.server.api, "alice");
  const storage = new MemoryStorage();
  const a = ctx.track(clientFor(ctx.server, alice, { storage }));
  await a.connect();
  assert.ok(storage.getItem("parley.session"));
  const revoked = new Promise((resolve) => a.once("sessionRevoked", resolve));

  await restAs(ctx.server, alice).logout();

  assert.deepEqual(await revoked, { reason: "logout" });
  await untilState(a, "disconnected");
  assert.deepEqual(a.state, { status: "disconnected", reason: "session_revoked" });
  assert.equal(storage.getItem("parley.session"), null);
});

test("a refused token ends connect() unauthorized with an error event, given as an option as when kept in storage", async () => {
  const alice = await newUser(ctx.server.api, "alice");
  await restAs(ctx.server, alice).logout(); // the token is revoked
  const kept = new MemoryStorage();
  kept.setItem("parley.session", JSON.stringify({ token: alice.token, user: alice.user }));
  const server = { apiUrl: ctx.server.api, socketUrl: ctx.server.socket };

  for (const [how, client] of [
    ["as the token option", new ParleyClient({ ...server, token: alice.token })],
    ["as the kept session", new ParleyClient({ ...server, storage: kept })],
  ]) {
    ctx.track(client);
    const errors = [];
    client.on("error", (error) => errors.push(error.code));

    const refused = await client.connect().then(() => null, (error) => error);

    assert.equal(refused?.code, "unauthorized", how);
    assert.deepEqual(client.state, { status: "disconnected", reason: "unauthorized" }, how);
    assert.deepEqual(errors, ["token_revoked"], how);
  }
});

test("with a token option and the API unreachable at first, connect() keeps trying and connects once it answers", async () => {
  const alice = await newUser(ctx.server.api, "alice");
  const api = await networkProxy(ctx.server.api);
  api.down();
  const client = ctx.track(
    clientFor(ctx.server, alice, { apiUrl: api.url, reconnectDelayMs: 100, reconnectDelayMaxMs: 200 }),
  );
  const errors = [];
  client.on("error", (error) => errors.push(error.code));

  const connected = client.connect();
  await untilState(client, "reconnecting");
  api.up();
  await connected;

  assert.equal(client.state.status, "connected");
  assert.equal(client.user?.id, alice.user.id);
  assert.ok(errors.length >= 1 && errors.every((code) => code === "network_error"), errors.join());
  api.close();
});

test("close() ends a connect() still waiting for the API to answer", async () => {
  const alice = await newUser(ctx.server.api, "alice");
  const api = await networkProxy(ctx.server.api);
  api.down();
  const client = ctx.track(clientFor(ctx.server, alice, { apiUrl: api.url }));

  const connecting = client.connect().then(() => null, (error) => error);
  await untilState(client, "reconnecting");
  client.close();

  assert.equal((await connecting)?.code, "closed");
  assert.equal(client.state.status, "idle");
  api.close();
});

test("logout revokes the token, closes the socket, and forgets the session and cursor", async () => {
  const bob = await newUser(ctx.server.api, "bob");
  const storage = new MemoryStorage();
  const a = new ParleyClient({ apiUrl: ctx.server.api, socketUrl: ctx.server.socket, storage });
  const session = await a.register({ username: `c${bob.username}`.slice(0, 32), password: "correct horse battery" });
  assert.equal(a.user.id, session.user.id);
  await a.connect();
  await a.openDirect(bob.user.id);
  a.typing((await a.loadConversations())[0].id); // a pending idle timer
  assert.ok(storage.getItem("parley.session"));
  assert.ok(storage.getItem(`parley.cursor.${session.user.id}`));

  await a.logout();

  assert.equal(a.state.status, "idle");
  assert.equal(a.session, null);
  assert.equal(storage.getItem("parley.session"), null);
  assert.equal(storage.getItem(`parley.cursor.${session.user.id}`), null);
  await assert.rejects(restAs(ctx.server, session).me(), { code: "token_revoked" });
  assert.throws(() => a.send({ conversationId: "1", content: "x" }), { code: "not_connected" });
  // Nothing of the client is left running: this file's process ends once the tests do.
});

test("a relay that never answers the first connection (an origin it refuses) is reported by an error event; attempts go on", async () => {
  const alice = await newUser(ctx.server.api, "alice");
  const a = ctx.track(
    clientFor(ctx.server, alice, {
      reconnectDelayMs: 50,
      reconnectDelayMaxMs: 200,
      // As a browser page on an origin off the relay's CORS_ALLOWED_ORIGINS: 403 to the handshake.
      socketOptions: { extraHeaders: { origin: "http://elsewhere.example" } },
    }),
  );
  const errors = [];
  a.on("error", (error) => errors.push(error));
  let settled = false;
  a.connect().then(
    () => (settled = true),
    () => (settled = true),
  );

  await until(a, "state", () => errors.length > 0, "an error event");
  assert.equal(errors[0].code, "network_error");
  assert.equal(errors[0].retryable, true);
  assert.match(errors[0].message, /cannot reach the relay .*origin/);
  await until(a, "state", () => a.state.status === "reconnecting" && a.state.attempt >= 5, "attempt 5");
  assert.equal(errors.length, 1, "told once");
  assert.equal(settled, false, "connect() still waits: the client keeps trying");
});

test("an outage after a connection is told by the state alone, not as an error", async () => {
  const alice = await newUser(ctx.server.api, "alice");
  const proxy = await networkProxy(ctx.server.socket);
  const a = ctx.track(clientFor(ctx.server, alice, { socketUrl: proxy.url, reconnectDelayMs: 50, reconnectDelayMaxMs: 200 }));
  await a.connect();
  const errors = [];
  a.on("error", (error) => errors.push(error));
  proxy.down();
  await until(a, "state", () => a.state.status === "reconnecting" && a.state.attempt >= 5, "attempt 5");
  assert.deepEqual(errors, []);
  proxy.close();
});
