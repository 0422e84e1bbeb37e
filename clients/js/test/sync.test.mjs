// Ordering, de-duplication and catch-up against a real Parley.

import assert from "node:assert/strict";
import { test } from "node:test";
import { MemoryStorage } from "../dist/index.js";
import {
  clientFor,
  networkProxy,
  newUser,
  restAs,
  SHORT_TIMEOUT_MS,
  until,
  untilState,
  useParley,
  whileAway,
  withPatience,
} from "./helpers.mjs";

const ctx = useParley();

/** `[seq, content]` of the stored messages of a list. */
function stored(list) {
  return list.filter((m) => m.seq !== null).map((m) => [m.seq, m.content]);
}

/** Fails if any snapshot of the list ever held one message twice. */
function watchForDuplicates(client, conversationId) {
  const seen = [];
  client.on("messages", ({ conversationId: id, messages }) => {
    if (id !== conversationId) return;
    const ids = messages.map((m) => `${m.senderId} ${m.clientMsgId}`);
    if (new Set(ids).size !== ids.length) seen.push(ids);
    const real = messages.filter((m) => m.id !== null).map((m) => m.id);
    if (new Set(real).size !== real.length) seen.push(real);
  });
  return () => assert.deepEqual(seen, [], "a list held a message twice");
}

test("messages sent by REST while the client was disconnected appear once, in order, after reconnect", async () => {
  const alice = await newUser(ctx.server.api, "alice");
  const bob = await newUser(ctx.server.api, "bob");
  const proxy = await networkProxy(ctx.server.socket);
  const a = ctx.track(clientFor(ctx.server, alice, { socketUrl: proxy.url }));
  await a.connect();
  const chat = await restAs(ctx.server, bob).createConversation([alice.user.id]);
  const noDuplicates = watchForDuplicates(a, chat.id);
  await restAs(ctx.server, bob).sendMessage({ clientMsgId: "b-1", conversationId: chat.id, content: "one" });
  await until(a, "messages", () => stored(a.messages(chat.id)).length === 1, "the live message");

  await whileAway(a, proxy, async () => {
    for (const [id, content] of [
      ["b-2", "two"],
      ["b-3", "three"],
      ["b-4", "four"],
    ]) {
      await restAs(ctx.server, bob).sendMessage({ clientMsgId: id, conversationId: chat.id, content });
    }
  });

  assert.deepEqual(stored(a.messages(chat.id)), [
    [1, "one"],
    [2, "two"],
    [3, "three"],
    [4, "four"],
  ]);
  assert.equal(a.messages(chat.id).length, 4);
  noDuplicates();
  proxy.close();
});

test("a message seen live, relayed then stored, is listed once; seen again through sync, still once", async () => {
  const alice = await newUser(ctx.server.api, "alice");
  const bob = await newUser(ctx.server.api, "bob");
  const storage = new MemoryStorage();
  const a = ctx.track(clientFor(ctx.server, alice, { storage }));
  const b = ctx.track(clientFor(ctx.server, bob));
  await Promise.all([a.connect(), b.connect()]);
  const chat = await b.openDirect(alice.user.id);
  const cursorKey = `parley.cursor.${alice.user.id}`;
  const cursorBefore = storage.getItem(cursorKey);
  assert.ok(cursorBefore, "the first sync kept a cursor");
  const noDuplicates = watchForDuplicates(a, chat.id);

  const sent = ["first", "second", "third", "fourth", "fifth"].map((content) =>
    b.send({ conversationId: chat.id, content }),
  );
  await until(a, "messages", () => stored(a.messages(chat.id)).length === 5, "five stored messages");
  assert.deepEqual(
    a.messages(chat.id).map((m) => [m.seq, m.clientMsgId]),
    sent.map((m, i) => [i + 1, m.clientMsgId]),
    "in seq order, the order they were sent",
  );

  // Replay the same messages through sync from the older cursor.
  storage.setItem(cursorKey, cursorBefore);
  await a.sync();
  assert.equal(a.messages(chat.id).length, 5);
  assert.notEqual(storage.getItem(cursorKey), cursorBefore, "the cursor moved on");
  noDuplicates();
});

test("history pages merge into the list without duplicates, ordered by seq", async () => {
  const alice = await newUser(ctx.server.api, "alice");
  const bob = await newUser(ctx.server.api, "bob");
  const chat = await restAs(ctx.server, bob).createConversation([alice.user.id]);
  for (let i = 1; i <= 6; i++) {
    await restAs(ctx.server, bob).sendMessage({
      clientMsgId: `h-${i}`,
      conversationId: chat.id,
      content: `m${i}`,
    });
  }
  const a = ctx.track(clientFor(ctx.server, alice));
  await a.connect(); // the first sync already brought all six

  const newest = await a.loadHistory(chat.id, { limit: 3 });
  assert.deepEqual(
    newest.messages.map((m) => m.seq),
    [4, 5, 6],
  );
  assert.equal(newest.hasMore, true);
  await a.loadHistory(chat.id, { beforeSeq: 4, limit: 3 });
  assert.deepEqual(
    a.messages(chat.id).map((m) => m.seq),
    [1, 2, 3, 4, 5, 6],
  );
  const summary = a.conversations.find((c) => c.id === chat.id);
  assert.equal(summary.unreadCount, 6);
  await a.markRead(chat.id);
  assert.equal(a.conversations.find((c) => c.id === chat.id).unreadCount, 0);
});

test("the kept cursor makes a new client catch up on what is new only", async () => {
  const alice = await newUser(ctx.server.api, "alice");
  const bob = await newUser(ctx.server.api, "bob");
  const storage = new MemoryStorage();
  const chat = await restAs(ctx.server, bob).createConversation([alice.user.id]);
  await restAs(ctx.server, bob).sendMessage({ clientMsgId: "k-1", conversationId: chat.id, content: "old" });
  const first = ctx.track(clientFor(ctx.server, alice, { storage }));
  await first.connect();
  // A new device starts from the present: the list has the last message, history is read on demand.
  assert.deepEqual(first.messages(chat.id), []);
  assert.equal(first.conversations.find((c) => c.id === chat.id)?.lastMessage?.content, "old");
  await first.loadHistory(chat.id, {});
  assert.deepEqual(stored(first.messages(chat.id)), [[1, "old"]]);
  first.close();

  await restAs(ctx.server, bob).sendMessage({ clientMsgId: "k-2", conversationId: chat.id, content: "new 1" });
  await restAs(ctx.server, bob).sendMessage({ clientMsgId: "k-3", conversationId: chat.id, content: "new 2" });
  const second = ctx.track(clientFor(ctx.server, alice, { storage }));
  const synced = new Promise((resolve) => second.once("synced", resolve));
  await second.connect();

  assert.deepEqual((await synced).messages, 2);
  assert.deepEqual(stored(second.messages(chat.id)), [
    [2, "new 1"],
    [3, "new 2"],
  ]);
});

test("a new device replays the whole history only when asked to (replayHistory)", async () => {
  const alice = await newUser(ctx.server.api, "alice");
  const bob = await newUser(ctx.server.api, "bob");
  const chat = await restAs(ctx.server, bob).createConversation([alice.user.id]);
  await restAs(ctx.server, bob).sendMessage({ clientMsgId: "r-1", conversationId: chat.id, content: "old" });
  const fresh = ctx.track(clientFor(ctx.server, alice));
  const replaying = ctx.track(clientFor(ctx.server, alice, { replayHistory: true }));
  await Promise.all([fresh.connect(), replaying.connect()]);

  await restAs(ctx.server, bob).sendMessage({ clientMsgId: "r-2", conversationId: chat.id, content: "new" });
  await fresh.sync();
  await replaying.sync();

  assert.deepEqual(stored(fresh.messages(chat.id)), [[2, "new"]], "from the present on");
  assert.deepEqual(stored(replaying.messages(chat.id)), [
    [1, "old"],
    [2, "new"],
  ]);
});

test("a new device marks delivered what came while the user had no device: the sender's ticks go delivered", async () => {
  const alice = await newUser(ctx.server.api, "alice");
  const bob = await newUser(ctx.server.api, "bob");
  const a = ctx.track(clientFor(ctx.server, alice));
  await a.connect();
  const chat = await a.openDirect(bob.user.id);
  const sent = [a.send({ conversationId: chat.id, content: "one" }), a.send({ conversationId: chat.id, content: "two" })];
  const status = () => sent.map((m) => a.messages(chat.id).find((s) => s.clientMsgId === m.clientMsgId)?.status);
  await until(a, "messages", () => status().every((s) => s === "sent"), "both stored, with no device of bob's");

  // Bob's first device starts from the present: the messages reach it through the list alone.
  const b = ctx.track(clientFor(ctx.server, bob));
  await b.connect();
  assert.equal(b.conversations.find((c) => c.id === chat.id)?.lastMessage?.content, "two");

  await until(a, "messages", () => status().every((s) => s === "delivered"), "both delivered");
});

test("a new device whose start from the present is lost in flight catches up from the beginning", async () => {
  const alice = await newUser(ctx.server.api, "alice");
  const bob = await newUser(ctx.server.api, "bob");
  const chat = await restAs(ctx.server, bob).createConversation([alice.user.id]);
  await restAs(ctx.server, bob).sendMessage({ clientMsgId: "l-1", conversationId: chat.id, content: "old" });
  const api = await networkProxy(ctx.server.api);
  const lost = api.swallow("since=now");
  const a = ctx.track(
    clientFor(ctx.server, alice, { apiUrl: api.url, requestTimeoutMs: SHORT_TIMEOUT_MS }),
  );
  const synced = new Promise((resolve) => a.once("synced", resolve));
  await a.connect();
  await withPatience(lost, "the lost since=now");

  assert.equal((await synced).messages, 1);
  assert.deepEqual(stored(a.messages(chat.id)), [[1, "old"]]);
  api.close();
});

test("a conversation started while the client was away arrives with its messages and unread count", async () => {
  const alice = await newUser(ctx.server.api, "alice");
  const bob = await newUser(ctx.server.api, "bob");
  const proxy = await networkProxy(ctx.server.socket);
  const a = ctx.track(clientFor(ctx.server, alice, { socketUrl: proxy.url }));
  await a.connect();
  let chat;
  await whileAway(a, proxy, async () => {
    chat = await restAs(ctx.server, bob).createConversation([alice.user.id]);
    for (const id of ["n-1", "n-2"]) {
      await restAs(ctx.server, bob).sendMessage({ clientMsgId: id, conversationId: chat.id, content: id });
    }
  });

  assert.deepEqual(stored(a.messages(chat.id)), [
    [1, "n-1"],
    [2, "n-2"],
  ]);
  const summary = a.conversations.find((c) => c.id === chat.id);
  assert.equal(summary?.unreadCount, 2);
  assert.equal(summary.lastMessage?.content, "n-2");
  proxy.close();
});

/** Alice and bob, bob's conversation with her, alice's client behind proxies of the relay and the API. */
async function aliceBehindProxies(options = {}) {
  const alice = await newUser(ctx.server.api, "alice");
  const bob = await newUser(ctx.server.api, "bob");
  const relay = await networkProxy(ctx.server.socket);
  const api = await networkProxy(ctx.server.api);
  const a = ctx.track(
    clientFor(ctx.server, alice, { socketUrl: relay.url, apiUrl: api.url, ...options }),
  );
  const errors = [];
  a.on("error", (error) => errors.push(error));
  await a.connect();
  const chat = await restAs(ctx.server, bob).createConversation([alice.user.id]);
  return { bob, relay, api, a, chat, errors };
}

/** Bob sends `contents` by REST while alice's socket is away; her catch-up request is lost. */
async function missedWhileSyncIsLost({ bob, relay, api, a, chat }, contents) {
  relay.down();
  await untilState(a, "reconnecting");
  for (const content of contents) {
    await restAs(ctx.server, bob).sendMessage({ clientMsgId: content, conversationId: chat.id, content });
  }
  const lost = api.swallow("GET /api/sync");
  relay.up();
  await withPatience(lost, "the lost catch-up request");
}

test("a catch-up request lost in flight times out and is tried again: the messages missed arrive", async () => {
  const setup = await aliceBehindProxies({ requestTimeoutMs: SHORT_TIMEOUT_MS });
  const { a, chat, errors } = setup;

  await missedWhileSyncIsLost(setup, ["m1", "m2"]);

  await until(a, "messages", () => stored(a.messages(chat.id)).length === 2, "the missed messages");
  assert.deepEqual(stored(a.messages(chat.id)), [
    [1, "m1"],
    [2, "m2"],
  ]);
  const timedOut = errors.find((e) => e.message.includes("GET /api/sync"));
  assert.equal(timedOut?.code, "network_error");
  assert.equal(timedOut.retryable, true);
  setup.relay.close();
  setup.api.close();
});

test("a reconnect catches up afresh instead of waiting on a catch-up request lost in flight", async () => {
  const setup = await aliceBehindProxies({ requestTimeoutMs: 600_000 }); // never, in this test
  const { a, chat, relay } = setup;
  await missedWhileSyncIsLost(setup, ["m1"]);

  relay.cut(); // the socket reconnects (a later hand-over)

  await until(a, "messages", () => stored(a.messages(chat.id)).length === 1, "the missed message");
  relay.close();
  setup.api.close();
});

test("connect() resolves when its conversation-list request is lost: the request times out and is reported", async () => {
  const alice = await newUser(ctx.server.api, "alice");
  const bob = await newUser(ctx.server.api, "bob");
  const chat = await restAs(ctx.server, bob).createConversation([alice.user.id]);
  await restAs(ctx.server, bob).sendMessage({ clientMsgId: "l-1", conversationId: chat.id, content: "hi" });
  const api = await networkProxy(ctx.server.api);
  const lost = api.swallow("GET /api/conversations?");
  const a = ctx.track(
    clientFor(ctx.server, alice, { apiUrl: api.url, requestTimeoutMs: SHORT_TIMEOUT_MS, replayHistory: true }),
  );
  const errors = [];
  a.on("error", (error) => errors.push(error));

  await withPatience(a.connect(), "connect()");

  await withPatience(lost, "the lost list request");
  assert.deepEqual(stored(a.messages(chat.id)), [[1, "hi"]], "caught up all the same");
  assert.equal(errors.find((e) => e.message.includes("GET /api/conversations"))?.code, "network_error");
  api.close();
});
