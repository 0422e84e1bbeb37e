// Unread counts follow the server's numbers whatever the interleaving and whatever history the
// device has loaded, against a real Parley.

import assert from "node:assert/strict";
import { once } from "node:events";
import http from "node:http";
import { test } from "node:test";
import { MemoryStorage } from "../dist/index.js";
import { clientFor, newUser, restAs, until, useParley, withPatience } from "./helpers.mjs";

const ctx = useParley();

/**
 * An HTTP proxy in front of the API that, while `hold()` is on, asks the server for a page of
 * `GET /api/conversations` at once but keeps the answer until `release()`: the list the client
 * applies is older than what reaches it meanwhile over the socket. `answered` resolves once the
 * server has answered a held request.
 */
async function listHoldingApi(target) {
  let gate = null;
  let answered = null;
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const headers = { ...req.headers };
    delete headers.host;
    delete headers.connection;
    delete headers["content-length"];
    const upstream = await fetch(new URL(req.url, target), {
      method: req.method,
      headers,
      body: chunks.length ? Buffer.concat(chunks) : undefined,
    });
    const body = Buffer.from(await upstream.arrayBuffer());
    if (gate && req.method === "GET" && new URL(req.url, target).pathname === "/api/conversations") {
      answered.resolve();
      await gate.promise;
    }
    res.writeHead(upstream.status, { "content-type": upstream.headers.get("content-type") ?? "" });
    res.end(body);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    hold() {
      gate = deferred();
      answered = deferred();
      return answered.promise;
    },
    release() {
      gate?.resolve();
      gate = null;
    },
    close() {
      this.release();
      server.close();
    },
  };
}

function deferred() {
  let resolve;
  const promise = new Promise((r) => (resolve = r));
  return { promise, resolve };
}

/** `count` REST sends to `chat`, one after the other. */
async function sendAll(bobRest, chat, prefix, count) {
  for (let i = 1; i <= count; i++) {
    await bobRest.sendMessage({ clientMsgId: `${prefix}-${i}`, conversationId: chat.id, content: `${prefix} ${i}` });
  }
}

function summary(client, id) {
  return client.conversations.find((c) => c.id === id);
}

test("live messages that arrive while the conversation list is loading are all counted unread", async (t) => {
  const alice = await newUser(ctx.server.api, "alice");
  const bob = await newUser(ctx.server.api, "bob");
  const bobRest = restAs(ctx.server, bob);
  const chat = await bobRest.createConversation([alice.user.id]);
  await sendAll(bobRest, chat, "before", 2);

  const api = await listHoldingApi(ctx.server.api);
  t.after(() => api.close());
  const listAnswered = api.hold();
  const a = ctx.track(clientFor(ctx.server, alice, { apiUrl: api.url }));
  const connected = a.connect();
  await withPatience(listAnswered, "the server's answer to the list");
  // The server counted 2; three more reach the socket before the client sees that list.
  await sendAll(bobRest, chat, "during", 3);
  await until(
    a,
    "messages",
    () => a.messages(chat.id).filter((m) => m.seq !== null).length === 3,
    "the three live messages",
  );
  api.release();
  await connected;

  const listed = summary(a, chat.id);
  assert.equal(listed.unreadCount, 5);
  assert.equal(listed.lastSeq, 5);
  assert.equal(listed.lastMessage?.content, "during 3");
  await a.markRead(chat.id);
  await until(a, "conversations", () => summary(a, chat.id)?.unreadCount === 0, "unread 0 after read");
});

test("receipts after a reload keep the server's unread count although no history is loaded", async () => {
  const alice = await newUser(ctx.server.api, "alice");
  const bob = await newUser(ctx.server.api, "bob");
  const bobRest = restAs(ctx.server, bob);
  const aliceRest = restAs(ctx.server, alice);
  const chat = await bobRest.createConversation([alice.user.id]);
  await sendAll(bobRest, chat, "b", 2);
  await aliceRest.sendMessage({ clientMsgId: "a-3", conversationId: chat.id, content: "mine" });
  await aliceRest.sendMessage({ clientMsgId: "a-4", conversationId: chat.id, content: "mine too" });
  await sendAll(bobRest, chat, "c", 1); // seqs: bob 1, 2, alice 3, 4, bob 5

  // A page that caught up once (its sync cursor kept), then reloaded: the list is loaded, the
  // catch-up has nothing new, the messages are not in memory.
  const storage = new MemoryStorage();
  const before = clientFor(ctx.server, alice, { storage });
  await before.connect();
  before.close();
  const a = ctx.track(clientFor(ctx.server, alice, { storage }));
  const counts = [];
  a.on("conversations", () => counts.push(summary(a, chat.id)?.unreadCount));
  await a.connect();
  assert.deepEqual(a.messages(chat.id), []);
  assert.equal(summary(a, chat.id).unreadCount, 3);

  // Another device of Alice's acknowledges delivery: her receipt reaches this one.
  await aliceRest.markDelivered(chat.id, 5);
  await until(
    a,
    "conversations",
    () => summary(a, chat.id)?.members.find((m) => m.user.id === alice.user.id)?.deliveredUpToSeq === 5,
    "Alice's own delivery receipt",
  );
  assert.equal(summary(a, chat.id).unreadCount, 3);

  // …then reads up to 1: of the messages this device never loaded, 2 and 5 are left.
  await aliceRest.markRead(chat.id, 1);
  await until(a, "conversations", () => summary(a, chat.id)?.unreadCount === 2, "unread 2");
  assert.ok(!counts.includes(0), `the count never dropped to 0: ${counts}`);

  await aliceRest.markRead(chat.id, 5);
  await until(a, "conversations", () => summary(a, chat.id)?.unreadCount === 0, "unread 0");
});
