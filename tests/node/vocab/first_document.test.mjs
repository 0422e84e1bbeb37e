// A client written from the first design document alone ("Real-Time Messaging Architecture —
// Visual Guide"): `join_user_room`, `send_message` {messageId: temp id, senderId, recipientId,
// content, timestamp} with a callback expecting {success, messageId, status}, `receive_message`
// on the recipient's devices and the sender's other devices, told apart by `message._id` (the
// document's duplicate check). Two users on two devices each.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { device, history, register, rest, within, PATIENCE_MS } from "./support.mjs";

/** `socket.emit(event, payload, callback)` as the document does, the callback as a promise. */
const emitWithCallback = (socket, event, payload) =>
  within(PATIENCE_MS, new Promise((resolve) => socket.emit(event, payload, resolve)), `${event} callback`);

async function user(name, relays) {
  const account = await register(name);
  const devices = [];
  for (const relay of relays) {
    const d = await device(relay, { token: account.token });
    d.socket.emit("join_user_room", account.user.id);
    devices.push(d);
  }
  return { ...account, id: account.user.id, devices };
}

const tempId = () => `temp-${Date.now()}-${Math.random().toString(36).slice(2, 6)}`;

describe("a client of the first design document", () => {
  it("sends, receives on every other device, gets the real id, retries once, reads", async () => {
    // Arrange: two users, two devices each, spread over the relays
    const alice = await user("alice", [0, 1]);
    const bob = await user("bob", [1, 0]);
    const [a1, a2] = alice.devices;
    const messageId = tempId();
    const message = { messageId, senderId: alice.id, recipientId: bob.id, content: "Hello!", timestamp: new Date().toISOString() };

    // Act: send, as the document shows
    const answer = await emitWithCallback(a1.socket, "send_message", message);

    // Assert: the callback has the real id; the three other devices receive the message
    assert.equal(answer.success, true, JSON.stringify(answer));
    assert.match(answer.messageId, /^\d+$/);
    assert.equal(answer.status, "sent");
    for (const d of [a2, ...bob.devices]) {
      const received = await d.next("receive_message", (m) => m.content === "Hello!");
      assert.equal(received.id, answer.messageId);
      assert.equal(received._id, answer.messageId);
      assert.equal(received.senderId, alice.id);
    }

    // Act: the same message again (a retry with the same temporary id)
    const retry = await emitWithCallback(a1.socket, "send_message", message);

    // Assert: the same real id, one message stored; delivered, although the document's client
    // sends no delivery receipt (the relay marks it for bob's devices, which received it)
    assert.equal(retry.success, true, JSON.stringify(retry));
    assert.equal(retry.messageId, answer.messageId);
    const conversationId = answer.conversationId;
    const stored = (await history(bob.token, conversationId)).filter((m) => m.clientMsgId === messageId);
    assert.equal(stored.length, 1);
    await a1.next("message_status", (s) => s.userId === bob.id && s.deliveredUpToSeq >= stored[0].seq);
    const delivered = (await history(alice.token, conversationId)).find((m) => m.clientMsgId === messageId);
    assert.equal(delivered.status, "delivered");

    // Act: bob reads it (the document leaves how to the app: here the REST receipt)
    const read = await rest("POST", `/api/conversations/${conversationId}/read`, bob.token, { upToSeq: stored[0].seq });
    assert.equal(read.status, 200, JSON.stringify(read.body));

    // Assert: the status moved to read, and alice's devices heard it
    await a1.next("message_status", (s) => s.userId === bob.id && s.readUpToSeq >= stored[0].seq);
    const mine = (await history(alice.token, conversationId)).find((m) => m.clientMsgId === messageId);
    assert.equal(mine.status, "read");

    // Act: a second message, now that their conversation exists (relayed before it is stored)
    const again = { ...message, messageId: tempId(), content: "Again!" };
    const answered = await emitWithCallback(a1.socket, "send_message", again);
    assert.equal(answered.success, true, JSON.stringify(answered));

    // Assert: the other devices show it, its `_id` the temporary one, which the document's
    // duplicate check (`prevIds.has(message._id)`) does not mistake for the first message
    for (const d of [a2, ...bob.devices]) {
      const received = await d.next("receive_message", (m) => m.content === "Again!");
      assert.equal(received._id, again.messageId);
      assert.ok(!new Set([answer.messageId]).has(received._id));
    }

    // Never the second document's names on these sockets
    for (const d of [...alice.devices, ...bob.devices]) {
      assert.ok(!d.names().has("newMessage") && !d.names().has("messageError"), [...d.names()].join(","));
    }
  });

  it("tells messages apart by _id from its join_user_room on, even when a message came before it (a slow link)", async () => {
    // Arrange: bob's device connected, its `join_user_room` not sent yet; alice's first message
    // reaches it before that
    const alice = await user("alice", [0]);
    const bob = await register("bob");
    const late = await device(1, { token: bob.token });
    const message = (content) => ({
      messageId: tempId(), senderId: alice.id, recipientId: bob.user.id, content, timestamp: new Date().toISOString(),
    });
    const first = await emitWithCallback(alice.devices[0].socket, "send_message", message("first"));
    assert.equal(first.success, true, JSON.stringify(first));
    await late.next("receive_message", (m) => m.content === "first");

    // Act: its `join_user_room` arrives, then alice's next message
    await emitWithCallback(late.socket, "join_user_room", bob.user.id);
    const second = message("second");
    const answer = await emitWithCallback(alice.devices[0].socket, "send_message", second);
    const received = await late.next("receive_message", (m) => m.content === "second");

    // Assert: the document's duplicate check and time fields hold for it (`_id` is the relayed
    // copy's temporary id, or the real one if the relay stored it first, not knowing the new
    // conversation yet)
    assert.ok([second.messageId, answer.messageId].includes(received._id), JSON.stringify(received));
    assert.ok(Date.parse(received.createdAt) > 0, JSON.stringify(received));
  });

  it("sends a message whose temporary id is a number, by the socket and by REST", async () => {
    // Arrange
    const alice = await user("alice", [0]);
    const bob = await user("bob", [1]);
    const numeric = Date.now();

    // Act
    const answer = await emitWithCallback(alice.devices[0].socket, "send_message", {
      messageId: numeric, senderId: alice.id, recipientId: bob.id, content: "by number", timestamp: new Date().toISOString(),
    });
    const byRest = await rest("POST", "/api/messages", alice.token, {
      messageId: numeric + 1, senderId: alice.id, recipientId: bob.id, content: "by REST", timestamp: new Date().toISOString(),
    });

    // Assert
    assert.equal(answer.success, true, JSON.stringify(answer));
    assert.equal(byRest.status, 201, JSON.stringify(byRest.body));
    const stored = await history(bob.token, answer.conversationId);
    assert.deepEqual(stored.map((m) => m.clientMsgId), [String(numeric), String(numeric + 1)]);
  });

  it("gets success: false for a message that cannot be stored, or a senderId not its own", async () => {
    // Arrange
    const alice = await user("alice", [0]);
    const bob = await user("bob", [1]);
    const a1 = alice.devices[0];
    const send = (fields) =>
      emitWithCallback(a1.socket, "send_message", {
        messageId: tempId(), senderId: alice.id, recipientId: bob.id, content: "Hello!", timestamp: new Date().toISOString(), ...fields,
      });

    // Act
    const noSuchUser = await send({ recipientId: "999999999" });
    const tooLong = await send({ content: "x".repeat(5000) });
    const notMe = await send({ senderId: bob.id });

    // Assert
    for (const [answer, code] of [[noSuchUser, "user_not_found"], [tooLong, "validation_failed"], [notMe, "validation_failed"]]) {
      assert.equal(answer.success, false, JSON.stringify(answer));
      assert.equal(answer.error.code, code, JSON.stringify(answer));
      assert.equal(answer.error.retryable, false);
    }
  });
});
