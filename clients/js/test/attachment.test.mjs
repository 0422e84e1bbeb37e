// Image messages: upload then send, and sendAttachment()'s placeholder replaced in place.

import assert from "node:assert/strict";
import { test } from "node:test";
import { deflateSync } from "node:zlib";
import { clientFor, networkProxy, newUser, until, useParley, withPatience } from "./helpers.mjs";

const ctx = useParley();

/** A valid `width`×`height` PNG (opaque red), built here so the test carries no binary file. */
function png(width, height) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (bytes) => {
    let c = 0xffffffff;
    for (const b of bytes) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc(body), 8 + data.length);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  const row = Buffer.concat([Buffer.from([0]), Buffer.alloc(width * 3, Buffer.from([255, 0, 0]))]);
  const pixels = Buffer.concat(Array.from({ length: height }, () => row));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    chunk("IDAT", deflateSync(pixels)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

test("an image is uploaded, shown at once with its size, and stored with its attachment", async () => {
  const alice = await newUser(ctx.server.api, "alice");
  const bob = await newUser(ctx.server.api, "bob");
  const a = ctx.track(clientFor(ctx.server, alice));
  const b = ctx.track(clientFor(ctx.server, bob));
  await Promise.all([a.connect(), b.connect()]);
  const chat = await a.openDirect(bob.user.id);

  const upload = await a.upload(new Uint8Array(png(40, 30)));
  assert.equal(upload.kind, "image");
  assert.equal(upload.mime, "image/png");
  const optimistic = a.send({
    conversationId: chat.id,
    kind: "image",
    attachmentId: upload.id,
    attachment: upload,
  });

  assert.equal(optimistic.status, "sending");
  assert.equal(optimistic.content, "");
  assert.deepEqual([optimistic.attachment.width, optimistic.attachment.height], [40, 30]);
  const mine = await until(a, "messages", () => a.messages(chat.id).find((m) => m.seq !== null), "stored");
  assert.equal(mine.attachmentId, upload.id);
  assert.equal(mine.kind, "image");
  const theirs = await until(
    b,
    "messages",
    () => b.messages(chat.id).find((m) => m.seq !== null && m.attachment?.url),
    "bob's stored copy with its signed URL",
  );
  assert.equal(theirs.attachment.id, upload.id);
  assert.equal(b.messages(chat.id).length, 1);
  const image = await fetch(new URL(theirs.attachment.url, ctx.server.api));
  assert.equal(image.status, 200);
  assert.equal(image.headers.get("content-type"), "image/png");
});

/** Alice's connected client and a direct conversation with a new user. */
async function aliceWithChat(options = {}) {
  const alice = await newUser(ctx.server.api, "alice");
  const bob = await newUser(ctx.server.api, "bob");
  const a = ctx.track(clientFor(ctx.server, alice, options));
  await a.connect();
  return { a, chat: await a.openDirect(bob.user.id) };
}

/** Every list of `conversationId` that `client` emits from now on. */
function recordLists(client, conversationId) {
  const lists = [];
  client.on("messages", (e) => e.conversationId === conversationId && lists.push(e.messages));
  return lists;
}

test("sendAttachment shows a placeholder at once, then the stored image in its place", async () => {
  const { a, chat } = await aliceWithChat();
  const lists = recordLists(a, chat.id);
  const file = new Uint8Array(png(24, 16));

  const placeholder = a.sendAttachment(chat.id, { kind: "image", body: file, caption: "a red square" });

  // Synchronously: in the list, nothing uploaded yet (the upload is a request not even sent).
  assert.deepEqual(a.messages(chat.id), [placeholder]);
  assert.equal(placeholder.status, "sending");
  assert.equal(placeholder.kind, "image");
  assert.equal(placeholder.content, "a red square");
  assert.deepEqual(placeholder.localAttachment, { kind: "image", mime: null, bytes: file.byteLength });
  assert.equal(placeholder.attachmentId, null);
  assert.equal(placeholder.attachment, undefined);
  assert.equal(placeholder.id, null);

  const stored = await until(a, "messages", () => a.messages(chat.id).find((m) => m.seq !== null), "stored");
  assert.equal(stored.clientMsgId, placeholder.clientMsgId);
  assert.equal(stored.localAttachment, undefined);
  assert.equal(stored.attachment.id, stored.attachmentId);
  assert.deepEqual([stored.attachment.width, stored.attachment.height], [24, 16]);
  assert.equal(stored.content, "a red square");
  // In place at every step: one entry, always under the placeholder's clientMsgId.
  assert.ok(lists.length >= 2, `lists seen: ${lists.length}`);
  for (const list of lists) {
    assert.deepEqual(list.map((m) => m.clientMsgId), [placeholder.clientMsgId]);
  }
  assert.ok(lists.some((l) => l[0].attachmentId && l[0].seq === null), "uploaded, then sent");
  const history = await a.api.history(chat.id);
  assert.equal(history.messages.length, 1);
  assert.equal(history.messages[0].clientMsgId, placeholder.clientMsgId);
  assert.equal(history.messages[0].attachment.id, stored.attachmentId);
  assert.equal(history.messages[0].attachment.mime, "image/png");
});

test("a refused upload leaves the placeholder failed with the server's error; retry uploads again", async () => {
  const { a, chat } = await aliceWithChat();
  const text = new TextEncoder().encode("not an image at all, just text\n");

  const placeholder = a.sendAttachment(chat.id, { kind: "image", body: text, mime: "image/png" });
  assert.deepEqual(placeholder.localAttachment, { kind: "image", mime: "image/png", bytes: text.byteLength });

  const failed = await until(a, "messages", () => a.messages(chat.id).find((m) => m.status === "failed"), "failed");
  assert.equal(failed.clientMsgId, placeholder.clientMsgId);
  assert.equal(failed.error.code, "unsupported_media_type");
  assert.equal(failed.error.retryable, false);
  assert.equal(a.messages(chat.id).length, 1);

  // retry() uploads again (refused again: a fresh failure of the same entry).
  const statuses = [];
  a.on("messages", (e) => e.conversationId === chat.id && statuses.push(e.messages[0]?.status));
  assert.equal(a.retry(placeholder.clientMsgId).status, "sending");
  await until(a, "messages", () => statuses.includes("failed"), "failed again");
  assert.equal(a.messages(chat.id).length, 1);

  assert.equal(a.discard(placeholder.clientMsgId), true);
  assert.deepEqual(a.messages(chat.id), []);
  const history = await a.api.history(chat.id);
  assert.deepEqual(history.messages, []);
});

test("an upload lost in flight is tried again by itself, and the placeholder never fails", async () => {
  // Arrange: the API behind a proxy that loses the first upload; uploads given 5 s to answer
  const proxy = await networkProxy(ctx.server.api);
  const { a, chat } = await aliceWithChat({ apiUrl: proxy.url, uploadTimeoutMs: 5_000 });
  const lost = proxy.swallow("POST /api/attachments");
  const statuses = recordLists(a, chat.id);

  // Act
  const placeholder = a.sendAttachment(chat.id, { kind: "image", body: new Uint8Array(png(8, 8)) });
  await withPatience(lost, "the first upload lost");

  // Assert: stored in place, never failed on the way
  const stored = await until(a, "messages", () => a.messages(chat.id).find((m) => m.seq !== null), "stored");
  assert.equal(stored.clientMsgId, placeholder.clientMsgId);
  assert.ok(stored.attachment?.url, "with its attachment");
  assert.ok(!statuses.some((list) => list.some((m) => m.status === "failed")), "it failed on the way");
  proxy.close();
});

test("discard cancels a placeholder still uploading", async () => {
  // Arrange: an upload held in flight
  const proxy = await networkProxy(ctx.server.api);
  const { a, chat } = await aliceWithChat({ apiUrl: proxy.url });
  const held = proxy.swallow("POST /api/attachments");
  const placeholder = a.sendAttachment(chat.id, { kind: "image", body: new Uint8Array(png(8, 8)) });
  await withPatience(held, "the upload in flight");

  // Act
  const discarded = a.discard(placeholder.clientMsgId);

  // Assert: gone from the list; sending a text afterwards stores only the text
  assert.equal(discarded, true);
  assert.deepEqual(a.messages(chat.id), []);
  a.send({ conversationId: chat.id, content: "only this" });
  await until(a, "messages", () => a.messages(chat.id).find((m) => m.seq !== null), "the text stored");
  const history = await a.api.history(chat.id);
  assert.deepEqual(
    history.messages.map((m) => m.content),
    ["only this"],
  );
  proxy.close();
});

/** The `exp` (unix seconds) of a signed URL. */
const expiryOf = (url) => Number(new URL(url, "http://x").searchParams.get("exp"));

test("reading a message again (history) replaces its signed URLs with the server's fresher ones", async () => {
  const { a, chat } = await aliceWithChat();
  a.sendAttachment(chat.id, { kind: "image", body: new Uint8Array(png(8, 8)) });
  const stored = await until(
    a,
    "messages",
    () => a.messages(chat.id).find((m) => m.seq !== null && m.attachment?.url),
    "stored with its signed URLs",
  );
  const old = stored.attachment;
  // The server signs for `now + ttl` in whole seconds: wait until it hands out a later expiry
  // (a state of the server's answers, polled; whatever attachments.signed_url_ttl_secs is).
  const deadline = Date.now() + 60_000;
  let fresh;
  do {
    fresh = (await a.api.history(chat.id)).messages[0].attachment;
    if (expiryOf(fresh.url) > expiryOf(old.url)) break;
    await new Promise((r) => setTimeout(r, 200));
  } while (Date.now() < deadline);
  assert.ok(expiryOf(fresh.url) > expiryOf(old.url), "the server signs later expiries as time passes");

  await a.loadHistory(chat.id);

  const [again] = a.messages(chat.id);
  assert.equal(again.clientMsgId, stored.clientMsgId);
  assert.ok(expiryOf(again.attachment.url) > expiryOf(old.url), `url ${again.attachment.url} after ${old.url}`);
  assert.ok(expiryOf(again.attachment.thumbnailUrl) > expiryOf(old.thumbnailUrl), "the thumbnail's too");
  assert.equal(again.status, stored.status);
  const image = await fetch(new URL(again.attachment.url, ctx.server.api));
  assert.equal(image.status, 200);
});
