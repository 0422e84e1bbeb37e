// The message lists on their own (no server): ordering, de-duplication, statuses.

import assert from "node:assert/strict";
import { test } from "node:test";
import { MessageStore } from "../dist/store.js";

const ME = "1";
const BOB = "2";
const CAROL = "3";
const CHAT = "10";

function stored(seq, senderId = BOB, extra = {}) {
  return {
    id: String(100 + seq),
    clientMsgId: `c-${senderId}-${seq}`,
    conversationId: CHAT,
    senderId,
    seq,
    kind: "text",
    content: `m${seq}`,
    createdAt: new Date(Date.UTC(2026, 0, 1, 0, 0, seq)).toISOString(),
    status: "sent",
    ...extra,
  };
}

function optimistic(clientMsgId, content = clientMsgId) {
  return {
    clientMsgId,
    conversationId: CHAT,
    senderId: ME,
    id: null,
    seq: null,
    kind: "text",
    content,
    createdAt: new Date().toISOString(),
    status: "sending",
    mine: true,
  };
}

function newStore() {
  const changes = [];
  const store = new MessageStore(ME, (id) => changes.push(id));
  return { store, changes };
}

const view = (store) => store.list(CHAT).map((m) => [m.seq, m.clientMsgId, m.status]);

test("stored messages are ordered by seq whatever the arrival order; unstored ones follow in arrival order", () => {
  const { store } = newStore();
  store.addOptimistic(optimistic("mine-a"));
  store.mergeStored(stored(3));
  store.mergeRelayed({ clientMsgId: "relayed", conversationId: CHAT, senderId: BOB, content: "hi" });
  store.mergeStored(stored(1));
  store.addOptimistic(optimistic("mine-b"));
  store.mergeStored(stored(2));

  assert.deepEqual(
    store.list(CHAT).map((m) => m.seq ?? m.clientMsgId),
    [1, 2, 3, "mine-a", "relayed", "mine-b"],
  );
});

test("one message seen as relayed copy, saved event, stored copy and history is listed once", () => {
  const { store } = newStore();
  const message = stored(1);
  store.mergeRelayed({ ...message, id: undefined, seq: undefined, sentAt: message.createdAt });
  const saved = store.applySaved({
    clientMsgId: message.clientMsgId,
    id: message.id,
    seq: 1,
    conversationId: CHAT,
    createdAt: message.createdAt,
  });
  assert.equal(saved.newlyStored, true);
  assert.equal(saved.isNew, false);
  assert.equal(store.mergeStored(message).newlyStored, false);
  assert.equal(store.mergeStored(message).isNew, false);
  assert.equal(store.mergeRelayed({ ...message, sentAt: message.createdAt }), null);

  assert.deepEqual(view(store), [[1, message.clientMsgId, "sent"]]);
});

test("the same clientMsgId from two senders is two messages", () => {
  const { store } = newStore();
  store.mergeStored(stored(1, BOB, { clientMsgId: "tmp-1" }));
  store.mergeStored(stored(2, CAROL, { clientMsgId: "tmp-1" }));
  assert.equal(store.list(CHAT).length, 2);
});

test("an ack replaces the optimistic copy in place; an error marks it failed, never a stored one", () => {
  const { store } = newStore();
  store.addOptimistic(optimistic("a"));
  store.addOptimistic(optimistic("b"));
  store.applySaved(
    { clientMsgId: "a", id: "500", seq: 7, conversationId: CHAT, createdAt: "2026-01-01T00:00:00Z" },
    ME,
  );
  const error = { code: "rate_limited", message: "slow down", retryable: true };
  store.markFailed(CHAT, "b", error, ME);
  assert.equal(store.markFailed(CHAT, "a", error, ME), null, "a stored message never fails");

  assert.deepEqual(view(store), [
    [7, "a", "sent"],
    [null, "b", "failed"],
  ]);
  assert.deepEqual(store.findMine("b").error, error);
  assert.equal(store.markSending(store.findMine("b")).status, "sending");
  assert.equal(store.findMine("b").error, undefined);
});

test("the user's statuses follow the other members' watermarks and never go back", () => {
  const { store } = newStore();
  store.setMembers(CHAT, [ME, BOB, CAROL]);
  store.mergeStored(stored(1, ME));
  store.mergeStored(stored(2, ME));
  const receipt = (userId, delivered, read) =>
    store.applyReceipt({ conversationId: CHAT, userId, deliveredUpToSeq: delivered, readUpToSeq: read });

  receipt(BOB, 2, 0);
  assert.deepEqual(view(store).map((r) => r[2]), ["sent", "sent"], "carol has not got them");
  receipt(CAROL, 1, 0);
  assert.deepEqual(view(store).map((r) => r[2]), ["delivered", "sent"]);
  receipt(CAROL, 2, 2);
  receipt(BOB, 2, 1);
  assert.deepEqual(view(store).map((r) => r[2]), ["read", "delivered"]);
  receipt(BOB, 0, 0); // an older receipt arriving late
  store.mergeStored(stored(1, ME, { status: "sent" })); // a stale page of history
  assert.deepEqual(view(store).map((r) => r[2]), ["read", "delivered"]);
  receipt(BOB, 2, 2);
  assert.deepEqual(view(store).map((r) => r[2]), ["read", "read"]);
});

test("changes inside a batch are announced once per conversation", () => {
  const { store, changes } = newStore();
  store.batch(() => {
    for (let seq = 1; seq <= 50; seq++) store.mergeStored(stored(seq));
  });
  assert.deepEqual(changes, [CHAT]);
  assert.equal(store.lastSeq(CHAT), 50);
  assert.equal(store.othersBetween(CHAT, 45, Infinity).count, 5);
  assert.deepEqual(store.othersBetween(CHAT, 10, 20), { count: 10, complete: true });
  assert.deepEqual(store.othersBetween(CHAT, 40, 60), { count: 10, complete: false });
});

test("a stored message read again takes the fresher signed URLs, never older ones", () => {
  const { store } = newStore();
  const attachment = (exp) => ({
    id: "up1",
    kind: "image",
    mime: "image/png",
    bytes: 10,
    width: 1,
    height: 1,
    url: `/api/attachments/up1?exp=${exp}&sig=a${exp}`,
    thumbnailUrl: `/api/attachments/up1/thumbnail?exp=${exp}&sig=b${exp}`,
  });
  const message = stored(1, BOB, { kind: "image", attachmentId: "up1", attachment: attachment(1000) });
  store.mergeStored(message);

  const result = store.mergeStored({ ...message, attachment: attachment(2000) }); // history again
  assert.equal(result.newlyStored, false);
  assert.equal(store.list(CHAT)[0].attachment.url, attachment(2000).url);
  assert.equal(store.list(CHAT)[0].attachment.thumbnailUrl, attachment(2000).thumbnailUrl);
  store.mergeStored({ ...message, attachment: attachment(1500) }); // a stale page applied late
  assert.equal(store.list(CHAT)[0].attachment.url, attachment(2000).url, "never older");
  store.applySaved({ clientMsgId: message.clientMsgId, id: message.id, seq: 1, conversationId: CHAT, createdAt: message.createdAt, attachment: attachment(3000) });
  assert.equal(store.list(CHAT)[0].attachment.url, attachment(3000).url, "message_saved's too");
  store.mergeStored({ ...message, attachment: undefined });
  assert.equal(store.list(CHAT)[0].attachment.url, attachment(3000).url, "an answer without one keeps it");
});

test("someone else's relayed copy whose send failed is not delivered; their retry's copy revives it", () => {
  const { store } = newStore();
  store.mergeRelayed({ clientMsgId: "x", conversationId: CHAT, senderId: BOB, content: "\u0007bell" });
  const error = { code: "validation_failed", message: "control character", retryable: false };
  const failed = store.markFailed(CHAT, "x", error);
  assert.equal(failed.status, "failed");
  assert.equal(failed.mine, false);

  const again = store.mergeRelayed({ clientMsgId: "x", conversationId: CHAT, senderId: BOB, content: "\u0007bell" });
  assert.equal(again?.status, "sent", "relayed again: the sender retried");
  assert.equal(store.list(CHAT)[0].error, undefined);
  assert.equal(store.list(CHAT).length, 1);
});
