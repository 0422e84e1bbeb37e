// An image message: upload, optimistic copy with the upload's metadata, stored with signed URLs.

import assert from "node:assert/strict";
import { test } from "node:test";
import { deflateSync } from "node:zlib";
import { clientFor, newUser, until, useParley } from "./helpers.mjs";

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
