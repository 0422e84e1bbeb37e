// The full client contract against one Parley (API + relay), whatever its configuration:
// run by the root package's `all_in_one` tests with PARLEY_API and PARLEY_SOCKET set.
// REST and socket.io-client only — what a web app does.
import { describe, it, after } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";

// Waits for what must happen; only a real failure exhausts them, never a busy machine.
const PATIENCE_MS = 60_000;

const API = process.env.PARLEY_API;
const SOCKET = process.env.PARLEY_SOCKET;
if (!API || !SOCKET) throw new Error("PARLEY_API and PARLEY_SOCKET must be set (run through `cargo test --test all_in_one`)");

const sockets = [];
after(() => sockets.forEach((s) => s.disconnect()));

const within = (ms, promise, what) => {
  let timer;
  const expired = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timeout: ${what}`)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
};

async function rest(method, path, token, body) {
  const res = await fetch(`${API}${path}`, {
    method,
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

const unique = () => Math.random().toString(36).slice(2, 10);

async function register(name) {
  const r = await rest("POST", "/api/auth/register", null, { username: `${name}_${unique()}`, password: "correct horse battery" });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body;
}

/** A device: its socket and a queue of the events it received, in order. */
async function device(token, transports) {
  const socket = io(SOCKET, { forceNew: true, reconnection: false, auth: { token }, ...(transports ? { transports } : {}) });
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
  /** The next event named `name` (others are kept for later). */
  const next = async (name) => {
    for (;;) {
      const i = events.findIndex(([e]) => e === name);
      if (i >= 0) return events.splice(i, 1)[0][1];
      await within(PATIENCE_MS, new Promise((r) => waiters.push(r)), name);
    }
  };
  return { socket, next, events };
}

describe("the client contract", () => {
  it("relays, stores once, replaces the temporary id, moves receipts and syncs", async () => {
    // Arrange: two users, two devices each, one direct conversation
    const alice = await register("alice");
    const bob = await register("bob");
    const conv = await rest("POST", "/api/conversations", alice.token, { memberIds: [bob.user.id] });
    assert.equal(conv.status, 201);
    const conversationId = conv.body.id;
    const a1 = await device(alice.token);
    const a2 = await device(alice.token, ["websocket"]);
    const b1 = await device(bob.token, ["polling"]);
    const b2 = await device(bob.token);
    const before = await rest("GET", "/api/sync", bob.token);
    assert.equal(before.status, 200);

    // Act: a1 sends with a temporary id
    const clientMsgId = `tmp-${unique()}`;
    const ack = await within(PATIENCE_MS, a1.socket.emitWithAck("send_message", { clientMsgId, conversationId, kind: "text", content: "hello bob", senderId: alice.user.id }), "ack");

    // Assert: the ack carries the real id and seq
    assert.equal(ack.success, true, JSON.stringify(ack));
    assert.equal(ack.clientMsgId, clientMsgId);
    assert.match(ack.id, /^\d+$/);
    assert.equal(ack.seq, 1);
    // the other three devices see the message, then the real id
    for (const d of [a2, b1, b2]) {
      const received = await d.next("receive_message");
      assert.equal(received.clientMsgId, clientMsgId);
      assert.equal(received.senderId, alice.user.id, "the sender is the token's user");
      assert.equal(received.content, "hello bob");
      const saved = await d.next("message_saved");
      assert.deepEqual([saved.clientMsgId, saved.id, saved.seq], [clientMsgId, ack.id, 1]);
    }
    // a POST of the same clientMsgId is the same message, stored once
    const again = await rest("POST", "/api/messages", alice.token, { clientMsgId, conversationId, content: "hello bob" });
    assert.equal(again.status, 200);
    assert.equal(again.body.id, ack.id);
    const page = await rest("GET", `/api/conversations/${conversationId}/messages`, bob.token);
    assert.deepEqual(page.body.messages.map((m) => m.id), [ack.id]);

    // receipts: bob reads on b1; every device of both users hears it
    const read = await within(PATIENCE_MS, b1.socket.emitWithAck("mark_read", { conversationId, upToSeq: 1 }), "mark_read ack");
    assert.equal(read.success, true, JSON.stringify(read));
    for (const d of [a1, a2, b2]) {
      const status = await d.next("message_status");
      assert.deepEqual([status.userId, status.readUpToSeq, status.deliveredUpToSeq], [bob.user.id, 1, 1]);
    }
    const stored = await rest("GET", `/api/conversations/${conversationId}/messages`, alice.token);
    assert.equal(stored.body.messages[0].status, "read");

    // sync: bob's cursor from before sees the message once, over REST and over the socket
    const synced = await rest("GET", `/api/sync?since=${encodeURIComponent(before.body.nextCursor)}`, bob.token);
    assert.deepEqual(synced.body.messages.map((m) => m.id), [ack.id]);
    const overSocket = await within(PATIENCE_MS, b2.socket.emitWithAck("sync", { since: before.body.nextCursor }), "sync ack");
    assert.equal(overSocket.success, true, JSON.stringify(overSocket));
    assert.deepEqual(overSocket.messages.map((m) => m.id), [ack.id]);
  });

  it("refuses a bad token at connect and a non-member's send", async () => {
    const bad = io(SOCKET, { forceNew: true, reconnection: false, auth: { token: "garbage" } });
    sockets.push(bad);
    const err = await within(PATIENCE_MS, new Promise((resolve) => bad.once("connect_error", resolve)), "connect_error");
    assert.equal(err.data?.code, "invalid_token");

    const alice = await register("alice");
    const bob = await register("bob");
    const mallory = await register("mallory");
    const conv = await rest("POST", "/api/conversations", alice.token, { memberIds: [bob.user.id] });
    const m = await device(mallory.token);
    const ack = await within(PATIENCE_MS, m.socket.emitWithAck("send_message", { clientMsgId: `x-${unique()}`, conversationId: conv.body.id, content: "let me in" }), "ack");
    assert.equal(ack.success, false);
    assert.equal(ack.error.code, "conversation_not_found");
  });
});
