// socket.io-client 4.x devices against two Parley relays linked only by Redis, with the real API.
// Run by socket-server's `relay` test binary, which prepares the scenario and passes it in
// PARLEY_RELAY_SCENARIO: {relays:[url…], api, alice:{token,id}, bob:{token,id},
// mallory:{token,id}, conversation, expiredToken}.
import { describe, it, after } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";

// Waits for what must happen; only a real failure exhausts them, never a busy machine.
const PATIENCE_MS = 60_000;

const S = JSON.parse(process.env.PARLEY_RELAY_SCENARIO ?? "null");
if (!S) throw new Error("PARLEY_RELAY_SCENARIO is not set (run through `cargo test -p socket-server --test relay`)");

const sockets = [];
after(() => sockets.forEach((s) => s.disconnect()));

const within = (ms, promise, what) => {
  let timer;
  const expired = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timeout: ${what}`)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
};

/** A device: the socket and the events it received in order. */
function device(relay, token, transports) {
  const socket = io(S.relays[relay], {
    forceNew: true,
    reconnection: false,
    auth: { token },
    ...(transports ? { transports } : {}),
  });
  sockets.push(socket);
  const events = [];
  const waiters = [];
  socket.onAny((event, arg) => {
    // Presence has its own tests (socket-server/tests/relay/presence.rs); this suite follows messages.
    if (event === "presence" || event === "online_users") return;
    events.push([event, arg]);
    waiters.splice(0).forEach((w) => w());
  });
  const next = async (what) => {
    while (events.length === 0) await within(PATIENCE_MS, new Promise((r) => waiters.push(r)), what);
    return events.shift();
  };
  return { socket, events, next };
}

const connected = (socket) =>
  within(PATIENCE_MS, new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("connect_error", reject);
  }), "connect");

const refused = (socket) =>
  within(PATIENCE_MS, new Promise((resolve, reject) => {
    socket.once("connect", () => reject(new Error("connected with a bad token")));
    socket.once("connect_error", resolve);
  }), "connect_error");

describe("connect", () => {
  for (const [label, auth, code] of [
    ["an expired token", { token: S.expiredToken }, "token_expired"],
    ["a garbage token", { token: "not.a.jwt" }, "invalid_token"],
    ["no token", {}, "missing_token"],
  ]) {
    it(`refuses ${label} with CONNECT_ERROR ${code}`, async () => {
      const socket = io(S.relays[0], { forceNew: true, reconnection: false, auth });
      sockets.push(socket);
      const err = await refused(socket);
      assert.equal(err.data?.code, code);
      assert.ok(err.message.length > 0);
    });
  }
});

describe("send_message with socket.io-client on two relays", () => {
  it("shows the message at once on the three other devices, then saves it everywhere", async () => {
    const a1 = device(0, S.alice.token); // polling, then upgrade
    const a2 = device(1, S.alice.token, ["websocket"]);
    const b1 = device(1, S.bob.token, ["polling"]);
    const b2 = device(0, S.bob.token);
    await Promise.all([a1, a2, b1, b2].map((d) => connected(d.socket)));
    // An answered ping: the relay handled the connect (room joined, channel subscribed).
    for (const d of [a1, a2, b1, b2]) {
      const pong = await d.socket.timeout(PATIENCE_MS).emitWithAck("ping", {});
      assert.ok(pong.serverTime);
    }

    const ack = await a1.socket.timeout(PATIENCE_MS).emitWithAck("send_message", {
      clientMsgId: "node-1",
      conversationId: S.conversation,
      kind: "text",
      content: "from node",
    });

    assert.equal(ack.success, true, JSON.stringify(ack));
    assert.equal(ack.clientMsgId, "node-1");
    assert.match(ack.id, /^\d+$/);
    for (const d of [a2, b1, b2]) {
      const [event, relayed] = await d.next("receive_message");
      assert.equal(event, "receive_message");
      assert.equal(relayed.clientMsgId, "node-1");
      assert.equal(relayed.senderId, S.alice.id);
      assert.equal(relayed.status, "sent");
      const [saved, body] = await d.next("message_saved");
      assert.equal(saved, "message_saved");
      assert.equal(body.id, ack.id);
    }
    const [own, body] = await a1.next("message_saved");
    assert.deepEqual([own, body.id], ["message_saved", ack.id]);
  });

  it("refuses a non-member's message with conversation_not_found", async () => {
    const m = device(0, S.mallory.token);
    await connected(m.socket);
    const ack = await m.socket.timeout(PATIENCE_MS).emitWithAck("send_message", {
      clientMsgId: "evil-1",
      conversationId: S.conversation,
      content: "let me in",
    });
    assert.equal(ack.success, false);
    assert.equal(ack.error.code, "conversation_not_found");
    assert.equal(ack.error.retryable, false);
  });
});

describe("arguments the server cannot read", () => {
  for (const transports of [["websocket"], ["polling"]]) {
    it(`answers half an emoji with invalid_json and keeps the connection (${transports})`, async () => {
      const a = device(0, S.alice.token, transports);
      await connected(a.socket);
      // A string cut in the middle of an emoji: JSON.stringify writes its lone surrogate.
      const half = "typed 😀".slice(0, 7);
      const ack = await a.socket.timeout(PATIENCE_MS).emitWithAck("send_message", {
        clientMsgId: `half-emoji-${transports}`,
        conversationId: S.conversation,
        content: half,
      });
      assert.equal(ack.success, false);
      assert.equal(ack.error.code, "invalid_json");
      assert.equal(ack.error.retryable, false);
      // The connection is still there: the next request is answered on it.
      await a.socket.timeout(PATIENCE_MS).emitWithAck("ping");
      assert.ok(a.socket.connected);
    });
  }
});
