// A client written from the second design document alone ("Socket Connection Architecture"):
// connects with userId + token, emits `register-user`, sends `sendMessage` {receiverId, text,
// tempId} (no callback), expects `newMessage` on its own device (replacing the temporary
// message) and on the receiver's, emits `messagesRead`, listens for `messageError`, pings.
// Two users on two devices each.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { device, history, refused, register, within, PATIENCE_MS } from "./support.mjs";

async function user(name, relays) {
  const account = await register(name);
  const id = account.user.id;
  const devices = [];
  for (const relay of relays) {
    const d = await device(relay, { userId: id, token: account.token });
    d.socket.emit("register-user", id);
    devices.push(d);
  }
  return { ...account, id, devices };
}

const tempId = () => `temp-${Date.now()}-${Math.random().toString(36).slice(2, 6)}`;

describe("a client of the second design document", () => {
  it("sends, gets newMessage on its own and every other device, retries once, reads", async () => {
    // Arrange: two users, two devices each, spread over the relays
    const alice = await user("alice", [0, 1]);
    const bob = await user("bob", [1, 0]);
    const [a1, a2] = alice.devices;
    const first = { receiverId: bob.id, text: "Hello!", tempId: tempId() };

    // Act
    a1.socket.emit("sendMessage", first);

    // Assert: the sender's device gets the real message for its temporary one; every other
    // device gets it too
    const confirmed = await a1.next("newMessage", (m) => m.tempId === first.tempId && m.id);
    assert.match(confirmed.id, /^\d+$/);
    assert.equal(confirmed.text, "Hello!");
    assert.equal(confirmed.receiverId, bob.id);
    for (const d of [a2, ...bob.devices]) {
      const received = await d.next("newMessage", (m) => m.tempId === first.tempId && m.id);
      assert.equal(received.id, confirmed.id);
      assert.equal(received.senderId, alice.id);
      assert.equal(received.text, "Hello!");
    }

    // Act: a retry with the same temporary id, then a second message
    a1.socket.emit("sendMessage", first);
    const second = { receiverId: bob.id, text: "Still there?", tempId: tempId() };
    a1.socket.emit("sendMessage", second);

    // Assert: the retry is the same message, stored once; the second follows it
    const again = await a1.next("newMessage", (m) => m.tempId === first.tempId && m.id);
    assert.equal(again.id, confirmed.id);
    const next = await bob.devices[0].next("newMessage", (m) => m.tempId === second.tempId && m.id);
    const stored = await history(bob.token, confirmed.conversationId);
    assert.deepEqual(stored.map((m) => m.clientMsgId), [first.tempId, second.tempId]);
    // Delivered, although the document's client sends no delivery receipt: the relay marks it
    // for bob's devices, which received it
    await a1.next("message_status", (s) => s.userId === bob.id && s.deliveredUpToSeq >= next.seq);

    // Act: bob's device shows alice's messages and says so
    bob.devices[0].socket.emit("messagesRead", { senderId: alice.id, receiverId: bob.id });

    // Assert: the status moves to read
    await a1.next("message_status", (s) => s.userId === bob.id && s.readUpToSeq >= next.seq);
    const mine = await history(alice.token, confirmed.conversationId);
    assert.deepEqual(mine.map((m) => m.status), ["read", "read"]);

    // Never the first document's (Parley's) message names on these sockets
    for (const d of [...alice.devices, ...bob.devices]) {
      for (const name of ["receive_message", "message_saved", "message_failed"]) {
        assert.ok(!d.names().has(name), `${name} reached a second-document socket`);
      }
    }
  });

  it("hears messageError for a message that cannot be stored, and may retry", async () => {
    // Arrange
    const alice = await user("alice", [0]);
    const bob = await user("bob", [1]);
    const a1 = alice.devices[0];
    const failing = [
      [{ receiverId: "999999999", text: "anyone?", tempId: tempId() }, "user_not_found"],
      [{ receiverId: bob.id, text: "x".repeat(5000), tempId: tempId() }, "validation_failed"],
      [{ receiverId: bob.id, image: "data:image/png;base64,AAAA", tempId: tempId() }, "validation_failed"],
    ];

    // Act + Assert
    for (const [message, code] of failing) {
      a1.socket.emit("sendMessage", message);
      const error = await a1.next("messageError", (e) => e.tempId === message.tempId);
      assert.equal(error.error.code, code, JSON.stringify(error));
    }
    const retried = { ...failing[1][0], text: "shorter" };
    a1.socket.emit("sendMessage", retried);
    const saved = await a1.next("newMessage", (m) => m.tempId === retried.tempId && m.id);
    assert.equal(saved.text, "shorter");
  });

  it("answers ping, and refuses a userId that is not the token's", async () => {
    // Arrange
    const alice = await user("alice", [0]);
    const bob = await register("bob");
    const a1 = alice.devices[0];

    // Act: the monitor's ping, with and without a callback
    const started = Date.now();
    a1.socket.emit("ping");
    const pong = await a1.next("pong");
    const answer = await within(PATIENCE_MS, new Promise((r) => a1.socket.emit("ping", r)), "ping callback");

    // Assert
    assert.ok(Date.now() - started < PATIENCE_MS);
    assert.ok(!Number.isNaN(Date.parse(pong.serverTime)));
    assert.ok(!Number.isNaN(Date.parse(answer.serverTime)));
    const error = await refused(0, { userId: bob.user.id, token: alice.token });
    assert.equal(error.data?.code, "validation_failed");
  });
  it("gets its number tempId back as a number, on newMessage and on messageError", async () => {
    // Arrange: `tempId: Date.now()`, compared with === by the document's client
    const alice = await user("alice", [0]);
    const bob = await user("bob", [1]);
    const [a1] = alice.devices;
    const sent = { receiverId: bob.id, text: "numbered", tempId: Date.now() };
    const refusedSend = { receiverId: bob.id, text: "x".repeat(5000), tempId: sent.tempId + 1 };

    // Act
    a1.socket.emit("sendMessage", sent);
    a1.socket.emit("sendMessage", refusedSend);

    // Assert
    const confirmed = await a1.next("newMessage", (m) => m.tempId === sent.tempId && m.id);
    assert.match(confirmed.id, /^\d+$/);
    const error = await a1.next("messageError", (e) => e.tempId === refusedSend.tempId);
    assert.equal(error.error.code, "validation_failed", JSON.stringify(error));
    await bob.devices[0].next("newMessage", (m) => m.text === "numbered" && m.id === confirmed.id);
  });
});
