// Sending against a real Parley: optimistic copy, replacement by the stored message, receipts,
// failures and retry(), resends after a broken connection without duplicates.

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
  withPatience,
} from "./helpers.mjs";

const ctx = useParley();

/** Two users with a direct conversation, each with a connected client (options for alice's). */
async function pair(aliceOptions = {}) {
  const alice = await newUser(ctx.server.api, "alice");
  const bob = await newUser(ctx.server.api, "bob");
  const a = clientFor(ctx.server, alice, aliceOptions);
  const b = clientFor(ctx.server, bob);
  ctx.track(a);
  ctx.track(b);
  await Promise.all([a.connect(), b.connect()]);
  const chat = await a.openDirect(bob.user.id);
  return { alice, bob, a, b, chat };
}

test("a text cut in the middle of an emoji is sent with U+FFFD for its lone surrogate, not refused", async () => {
  const { a, chat } = await pair();
  const half = "typed 😀".slice(0, 7);

  const optimistic = a.send({ conversationId: chat.id, content: half });

  assert.equal(optimistic.content, "typed \uFFFD", "shown as it will be stored");
  const [stored] = await until(
    a,
    "messages",
    () => a.messages(chat.id).filter((m) => m.id !== null),
    "the stored message",
  );
  assert.equal(stored.content, "typed \uFFFD");
  assert.equal(stored.status, "sent");
});

test("send returns the optimistic message at once, then the list holds the stored one", async () => {
  const { a, chat } = await pair();
  const events = [];
  a.on("messages", ({ conversationId, messages }) => {
    if (conversationId === chat.id) events.push(messages.map((m) => m.status));
  });

  const optimistic = a.send({ conversationId: chat.id, content: "hello" });

  assert.equal(optimistic.status, "sending");
  assert.equal(optimistic.id, null);
  assert.equal(optimistic.seq, null);
  assert.equal(optimistic.mine, true);
  assert.match(optimistic.clientMsgId, /^c-[0-9a-f]{32}$/);
  assert.deepEqual(a.messages(chat.id), [optimistic], "in the list before any answer");
  const [stored] = await until(
    a,
    "messages",
    () => a.messages(chat.id).filter((m) => m.id !== null),
    "the stored message",
  );
  assert.equal(stored.clientMsgId, optimistic.clientMsgId);
  assert.equal(stored.seq, 1);
  assert.match(stored.id, /^\d+$/);
  assert.equal(stored.status, "sent");
  assert.equal(a.messages(chat.id).length, 1, "replaced, not added");
  assert.deepEqual(
    Object.keys(stored).filter((k) => ["success", "messageId"].includes(k)),
    [],
    "the ack's own fields are not the message's",
  );
  assert.deepEqual(events[0], ["sending"]);
});

test("the recipient sees the message once, and the sender's ticks go delivered then read", async () => {
  const { a, b, chat } = await pair();
  const sent = a.send({ conversationId: chat.id, content: "are you there?" });

  const [received] = await until(
    b,
    "messages",
    () => b.messages(chat.id).filter((m) => m.seq !== null),
    "bob's stored copy",
  );
  assert.equal(received.clientMsgId, sent.clientMsgId);
  assert.equal(received.mine, false);
  assert.equal(b.messages(chat.id).length, 1);
  // Bob's client marks it delivered by itself (autoMarkDelivered).
  await until(a, "messages", () => a.messages(chat.id)[0]?.status === "delivered", "delivered");
  await b.markRead(chat.id);
  await until(a, "messages", () => a.messages(chat.id)[0]?.status === "read", "read");
  assert.equal(a.messages(chat.id).length, 1);
});

test("a delivery receipt lost in flight is sent again: the sender's tick still goes to delivered", async () => {
  const alice = await newUser(ctx.server.api, "alice");
  const bob = await newUser(ctx.server.api, "bob");
  const api = await networkProxy(ctx.server.api);
  const a = ctx.track(clientFor(ctx.server, alice));
  const b = ctx.track(
    clientFor(ctx.server, bob, { apiUrl: api.url, requestTimeoutMs: SHORT_TIMEOUT_MS }),
  );
  await Promise.all([a.connect(), b.connect()]);
  const chat = await a.openDirect(bob.user.id);
  const lost = api.swallow("/delivered");

  const sent = a.send({ conversationId: chat.id, content: "did you get it?" });

  await withPatience(lost, "bob's lost receipt");
  await until(
    a,
    "messages",
    () => a.messages(chat.id).find((m) => m.clientMsgId === sent.clientMsgId)?.status === "delivered",
    "delivered",
  );
  api.close();
});

test("a delivery receipt that failed while the socket was down is sent after the catch-up", async () => {
  const alice = await newUser(ctx.server.api, "alice");
  const bob = await newUser(ctx.server.api, "bob");
  const api = await networkProxy(ctx.server.api);
  const relay = await networkProxy(ctx.server.socket);
  const a = ctx.track(clientFor(ctx.server, alice));
  const b = ctx.track(clientFor(ctx.server, bob, { apiUrl: api.url, socketUrl: relay.url }));
  await Promise.all([a.connect(), b.connect()]);
  const chat = await a.openDirect(bob.user.id);
  const errors = [];
  b.on("error", (error) => errors.push(error));
  const lost = api.swallow("/delivered");
  const sent = a.send({ conversationId: chat.id, content: "did you get it?" });
  await withPatience(lost, "bob's lost receipt");

  relay.down();
  await untilState(b, "reconnecting");
  api.cut(); // the receipt fails now, with the socket down: no retry of its own
  await until(b, "error", () => errors.some((e) => e.message.includes("/delivered")), "the failure");
  relay.up();

  await until(
    a,
    "messages",
    () => a.messages(chat.id).find((m) => m.clientMsgId === sent.clientMsgId)?.status === "delivered",
    "delivered",
  );
  api.close();
  relay.close();
});

test("a refused send is marked failed with the server's error and can be discarded", async () => {
  const { a, chat } = await pair();
  const tooLong = "x".repeat(4001);

  const message = a.send({ conversationId: chat.id, content: tooLong });
  const [failed] = await until(
    a,
    "messages",
    () => a.messages(chat.id).filter((m) => m.status === "failed"),
    "the failed send",
  );
  assert.equal(failed.clientMsgId, message.clientMsgId);
  assert.equal(failed.error.code, "validation_failed");
  assert.equal(failed.error.retryable, false);
  assert.equal(a.discard(message.clientMsgId), true);
  assert.deepEqual(a.messages(chat.id), []);
});

/**
 * Alice's client (options), over a proxy of the relay on a WebSocket alone (one connection to
 * silence), and her direct conversation with bob.
 */
async function aliceBehindProxy(options) {
  const alice = await newUser(ctx.server.api, "alice");
  const bob = await newUser(ctx.server.api, "bob");
  const proxy = await networkProxy(ctx.server.socket);
  const a = ctx.track(
    clientFor(ctx.server, alice, {
      socketUrl: proxy.url,
      socketOptions: { transports: ["websocket"] },
      ...options,
    }),
  );
  await a.connect();
  const chat = await a.openDirect(bob.user.id);
  return { alice, a, chat, proxy };
}

test("sends unanswered on a connection that looks open stay sending, and are resent on a fresh one in order", async () => {
  const { alice, a, chat, proxy } = await aliceBehindProxy({ sendTimeoutMs: SHORT_TIMEOUT_MS });
  const statuses = new Set();
  a.on("messages", ({ messages }) => messages.forEach((m) => statuses.add(m.status)));

  proxy.silence(); // half-open: the connection stays open, nothing crosses it
  const sent = ["one", "two", "three"].map((content) => a.send({ conversationId: chat.id, content }));

  await until(a, "messages", () => a.messages(chat.id).every((m) => m.seq !== null), "all stored");
  assert.equal(statuses.has("failed"), false, "never failed");
  const history = await restAs(ctx.server, alice).history(chat.id);
  assert.deepEqual(
    history.messages.map((m) => [m.seq, m.clientMsgId]),
    sent.map((m, i) => [i + 1, m.clientMsgId]),
    "stored once each, in send order",
  );
  proxy.close();
});

test("a send unanswered on three connections fails as timeout, with the later sends of its conversation; retry() stores them in order", async () => {
  const { alice, a, chat, proxy } = await aliceBehindProxy({ sendTimeoutMs: SHORT_TIMEOUT_MS });
  let connections = 0;
  const silenceEach = a.on("state", ({ status }) => {
    if (status !== "connected") return;
    connections++;
    proxy.silence(); // every new connection goes dead as soon as it is up
  });
  proxy.silence();
  const sent = ["one", "two"].map((content) => a.send({ conversationId: chat.id, content }));

  const failed = await until(
    a,
    "messages",
    () => a.messages(chat.id).every((m) => m.status === "failed") && a.messages(chat.id),
    "both failed",
  );
  silenceEach();
  assert.equal(connections, 2, "tried on the first connection and two fresh ones");
  assert.deepEqual(
    failed.map((m) => [m.clientMsgId, m.error.code, m.error.retryable]),
    sent.map((m) => [m.clientMsgId, "timeout", true]),
  );
  assert.match(failed[0].error.message, /3 connections/);

  await untilState(a, "connected");
  for (const m of sent) a.retry(m.clientMsgId);
  await until(a, "messages", () => a.messages(chat.id).every((m) => m.seq !== null), "both stored");
  const history = await restAs(ctx.server, alice).history(chat.id);
  assert.deepEqual(
    history.messages.map((m) => [m.seq, m.clientMsgId]),
    sent.map((m, i) => [i + 1, m.clientMsgId]),
    "stored once each, in send order",
  );
  proxy.close();
});

for (const [lost, drop] of [
  ["the send", "dropUp"],
  ["the ack", "dropDown"],
]) {
  test(`when ${lost} is lost with the connection, the send is resent after reconnect and stored once`, async () => {
    const alice = await newUser(ctx.server.api, "alice");
    const bob = await newUser(ctx.server.api, "bob");
    const proxy = await networkProxy(ctx.server.socket);
    const a = clientFor(ctx.server, alice, { socketUrl: proxy.url });
    ctx.track(a);
    await a.connect();
    const chat = await a.openDirect(bob.user.id);
    const first = a.send({ conversationId: chat.id, content: "before" });
    await until(a, "messages", () => a.messages(chat.id)[0]?.seq === 1, "the first message stored");

    proxy[drop]();
    const message = a.send({ conversationId: chat.id, content: "across the outage" });
    if (drop === "dropDown") {
      // Stored by the ctx.server, ack lost: wait until bob's device sees it stored (a new
      // device replaying the history, as the message may be stored before it connects).
      const b = clientFor(ctx.server, bob, { replayHistory: true });
      ctx.track(b);
      await b.connect();
      await until(b, "messages", () => b.messages(chat.id).at(-1)?.seq === 2, "bob sees it stored");
    }
    proxy.down();
    await until(a, "state", () => a.state.status === "reconnecting", "reconnecting");
    assert.equal(a.messages(chat.id).at(-1).status, "sending", "still waiting for its ack");
    proxy.up();
    await until(
      a,
      "messages",
      () => a.messages(chat.id).find((m) => m.clientMsgId === message.clientMsgId)?.seq === 2,
      "the resent message stored",
    );

    const history = await restAs(ctx.server, alice).history(chat.id);
    assert.deepEqual(
      history.messages.map((m) => [m.seq, m.clientMsgId]),
      [
        [1, first.clientMsgId],
        [2, message.clientMsgId],
      ],
      "each message stored exactly once",
    );
    assert.equal(a.messages(chat.id).length, 2);
    proxy.close();
  });
}

test("a send not acknowledged when the page goes away is resent by the next client with the same storage", async () => {
  const alice = await newUser(ctx.server.api, "alice");
  const bob = await newUser(ctx.server.api, "bob");
  const storage = new MemoryStorage();
  const proxy = await networkProxy(ctx.server.socket);
  const before = ctx.track(clientFor(ctx.server, alice, { socketUrl: proxy.url, storage }));
  await before.connect();
  const chat = await before.openDirect(bob.user.id);
  proxy.down();
  await untilState(before, "reconnecting");
  const message = before.send({ conversationId: chat.id, content: "typed offline" });
  before.close(); // the tab is reloaded

  const after = ctx.track(clientFor(ctx.server, alice, { storage }));
  const connected = after.connect();
  assert.deepEqual(
    after.messages(chat.id).map((m) => [m.clientMsgId, m.status]),
    [[message.clientMsgId, "sending"]],
    "shown at once, still sending",
  );
  await connected;
  await until(after, "messages", () => after.messages(chat.id)[0]?.seq === 1, "stored");

  const history = await restAs(ctx.server, alice).history(chat.id);
  assert.deepEqual(history.messages.map((m) => m.clientMsgId), [message.clientMsgId]);
  assert.equal(storage.getItem(`parley.outbox.${alice.user.id}`), null, "nothing left to resend");
  proxy.close();
});

test("failed sends survive a reload as failed, are not resent by themselves, and can be retried or discarded", async () => {
  const alice = await newUser(ctx.server.api, "alice");
  const bob = await newUser(ctx.server.api, "bob");
  const storage = new MemoryStorage();
  const proxy = await networkProxy(ctx.server.socket);
  const before = ctx.track(
    clientFor(ctx.server, alice, {
      socketUrl: proxy.url,
      socketOptions: { transports: ["websocket"] },
      storage,
      sendTimeoutMs: SHORT_TIMEOUT_MS,
    }),
  );
  await before.connect();
  const chat = await before.openDirect(bob.user.id);
  const refused = before.send({ conversationId: chat.id, content: "x".repeat(4001) });
  await until(before, "messages", () => before.messages(chat.id)[0]?.status === "failed", "refused");
  // The next send never gets an answer, on this connection or the fresh ones: it times out.
  before.on("state", ({ status }) => status === "connected" && proxy.silence());
  proxy.silence();
  const lost = before.send({ conversationId: chat.id, content: "lost in transit" });
  await until(before, "messages", () => before.messages(chat.id)[1]?.status === "failed", "timed out");
  before.close(); // the tab is reloaded
  proxy.close();

  const after = ctx.track(clientFor(ctx.server, alice, { storage }));
  const shown = () => after.messages(chat.id).map((m) => [m.clientMsgId, m.status, m.error?.code]);
  const expected = [
    [refused.clientMsgId, "failed", "validation_failed"],
    [lost.clientMsgId, "failed", "timeout"],
  ];
  const connected = after.connect();
  assert.deepEqual(shown(), expected, "shown at once, failed, with their errors");
  await connected;
  assert.deepEqual(shown(), expected, "still failed after the catch-up");
  assert.deepEqual((await restAs(ctx.server, alice).history(chat.id)).messages, [], "nothing resent");

  after.retry(lost.clientMsgId);
  await until(after, "messages", () => after.messages(chat.id)[0]?.seq === 1, "the retried send stored");
  assert.equal(after.discard(refused.clientMsgId), true);
  assert.deepEqual(
    after.messages(chat.id).map((m) => [m.clientMsgId, m.seq]),
    [[lost.clientMsgId, 1]],
  );
  const history = await restAs(ctx.server, alice).history(chat.id);
  assert.deepEqual(history.messages.map((m) => m.clientMsgId), [lost.clientMsgId]);
  assert.equal(storage.getItem(`parley.outbox.${alice.user.id}`), null, "nothing left kept");
});

test("two tabs of one user sharing storage, both offline: each one's unsent messages survive the other", async () => {
  const alice = await newUser(ctx.server.api, "alice");
  const bob = await newUser(ctx.server.api, "bob");
  const storage = new MemoryStorage(); // one browser profile's localStorage
  const proxy = await networkProxy(ctx.server.socket);
  const chat = await restAs(ctx.server, alice).createConversation([bob.user.id]);
  proxy.down(); // both tabs open without a network to the relay
  const tab1 = ctx.track(clientFor(ctx.server, alice, { socketUrl: proxy.url, storage }));
  const tab2 = ctx.track(clientFor(ctx.server, alice, { socketUrl: proxy.url, storage }));
  for (const tab of [tab1, tab2]) {
    tab.connect().catch(() => {}); // rejected by close() below
    await untilState(tab, "reconnecting");
  }

  const a = tab1.send({ conversationId: chat.id, content: "from tab 1" });
  const b = tab2.send({ conversationId: chat.id, content: "from tab 2" });
  const c = tab1.send({ conversationId: chat.id, content: "from tab 1 again" });
  tab1.close();
  tab2.close();

  const next = ctx.track(clientFor(ctx.server, alice, { storage }));
  const connected = next.connect();
  assert.deepEqual(
    next.messages(chat.id).map((m) => [m.clientMsgId, m.status]),
    [a, b, c].map((m) => [m.clientMsgId, "sending"]),
    "every tab's unsent messages, in send order",
  );
  await connected;
  await until(next, "messages", () => next.messages(chat.id).every((m) => m.seq !== null), "all stored");
  const history = await restAs(ctx.server, alice).history(chat.id);
  assert.deepEqual(
    history.messages.map((m) => m.clientMsgId).sort(),
    [a, b, c].map((m) => m.clientMsgId).sort(),
    "each stored once",
  );
  assert.equal(storage.getItem(`parley.outbox.${alice.user.id}`), null, "nothing left to resend");
  proxy.close();
});

test("a tab that resolves its own sends leaves the other tab's unsent ones in the shared storage", async () => {
  const alice = await newUser(ctx.server.api, "alice");
  const bob = await newUser(ctx.server.api, "bob");
  const storage = new MemoryStorage();
  const offline = await networkProxy(ctx.server.socket);
  offline.down();
  const chat = await restAs(ctx.server, alice).createConversation([bob.user.id]);
  const away = ctx.track(clientFor(ctx.server, alice, { socketUrl: offline.url, storage }));
  away.connect().catch(() => {});
  await untilState(away, "reconnecting");
  const online = ctx.track(clientFor(ctx.server, alice, { storage, autoMarkDelivered: false }));
  await online.connect();

  const waiting = away.send({ conversationId: chat.id, content: "waits for the network" });
  const sent = online.send({ conversationId: chat.id, content: "goes at once" });
  await until(
    online,
    "messages",
    () => online.messages(chat.id).find((m) => m.clientMsgId === sent.clientMsgId && m.seq !== null),
    "the online tab's message stored",
  );
  away.close();
  online.close();

  const kept = JSON.parse(storage.getItem(`parley.outbox.${alice.user.id}`) ?? "[]");
  assert.deepEqual(
    kept.map((p) => p.request.clientMsgId),
    [waiting.clientMsgId],
    "the other tab's send is still kept; the stored one is not",
  );
  offline.close();
});

test("a burst past the relay's send rate is stored whole: rate_limited sends wait and go again by themselves", async () => {
  const { alice, a, chat } = await pair();
  const refusals = [];
  a.on("messages", ({ messages }) => {
    for (const m of messages) if (m.status === "failed") refusals.push(m.error?.code);
  });

  // 40 at once: past limits.sends_burst (20) and sends_per_sec (10) of one user.
  const sent = Array.from({ length: 40 }, (_, i) => a.send({ conversationId: chat.id, content: `burst ${i}` }));

  await until(
    a,
    "messages",
    () => a.messages(chat.id).filter((m) => m.seq !== null).length === sent.length,
    "every send stored",
  );
  assert.deepEqual(refusals, [], "none shown failed on the way");
  const history = await restAs(ctx.server, alice).history(chat.id, { limit: 100 });
  assert.deepEqual(
    history.messages.map((m) => m.clientMsgId).sort(),
    sent.map((m) => m.clientMsgId).sort(),
    "each stored once",
  );
});
