// The conversation list is read page after page (`Link: <…>; rel="next"`), against a real Parley.

import assert from "node:assert/strict";
import { once } from "node:events";
import http from "node:http";
import { test } from "node:test";
import { RestApi } from "../dist/index.js";
import { clientFor, newUser, restAs, useParley } from "./helpers.mjs";

const ctx = useParley();

/** `count` groups with `alice`, made by as many users as the server's burst of new ones needs. */
async function groupsWith(alice, count) {
  const perUser = 20;
  const ids = [];
  while (ids.length < count) {
    const rest = restAs(ctx.server, await newUser(ctx.server.api, "maker"));
    for (let n = 0; n < perUser && ids.length < count; n++) {
      ids.push((await rest.createConversation([alice.user.id], `group ${ids.length}`)).id);
    }
  }
  return ids;
}

/**
 * A proxy in front of the API that runs `beforePage(n)` before it forwards the `n`th request for
 * a page of the conversation list (from 1); everything else passes as it is.
 */
async function pageWatchingApi(target, beforePage) {
  let pages = 0;
  const server = http.createServer(async (req, res) => {
    if (new URL(req.url, target).pathname === "/api/conversations") await beforePage(++pages);
    const upstream = await fetch(new URL(req.url, target), {
      method: req.method,
      headers: { authorization: req.headers.authorization ?? "", accept: "application/json" },
    });
    const headers = { "content-type": upstream.headers.get("content-type") ?? "" };
    if (upstream.headers.has("link")) headers.link = upstream.headers.get("link");
    res.writeHead(upstream.status, headers);
    res.end(Buffer.from(await upstream.arrayBuffer()));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => server.close() };
}

test("all of a user's conversations are listed, in more than one page", async () => {
  const alice = await newUser(ctx.server.api, "alice");
  const ids = await groupsWith(alice, 210);
  const rest = restAs(ctx.server, alice);

  const first = await rest.conversationsPage();
  const all = await rest.conversations();
  const client = ctx.track(clientFor(ctx.server, alice));
  await client.connect();

  assert.equal(first.conversations.length, 50, "the server's default page");
  assert.match(first.next ?? "", /^\/api\/conversations\?limit=50&before=/);
  assert.deepEqual(all.map((c) => c.id), [...ids].reverse(), "newest first, each once");
  assert.deepEqual(client.conversations.map((c) => c.id), [...ids].reverse());
});

test("a conversation that becomes active while the pages are read is listed all the same", async (t) => {
  const alice = await newUser(ctx.server.api, "alice");
  const ids = await groupsWith(alice, 201);
  const oldest = ids[0]; // on the second page of 200
  const api = await pageWatchingApi(ctx.server.api, async (page) => {
    if (page === 2) {
      await restAs(ctx.server, alice).sendMessage({ clientMsgId: "revive", conversationId: oldest, content: "hi" });
    }
  });
  t.after(() => api.close());

  const all = await new RestApi(api.url, alice.token).conversations();

  assert.equal(all[0].id, oldest, "moved to the top");
  assert.equal(all[0].lastMessage?.content, "hi");
  assert.deepEqual(all.map((c) => c.id).sort(), [...ids].sort(), "each once");
});
