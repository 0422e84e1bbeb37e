// Engine.IO v4 conformance, against the raw echo at /engine.io/ (after the published
// engine.io-protocol specification and its test-suite).
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  Client,
  PING_INTERVAL,
  PING_TIMEOUT,
  URL,
  WS_URL,
  get,
  openPolling,
  openWebSocket,
  post,
  sleep,
  within,
} from "./helpers.mjs";

const PATH = "/engine.io/";

async function expectError(response, status, code) {
  assert.equal(response.status, status);
  const body = await response.json();
  assert.equal(body.code, code);
  assert.equal(typeof body.message, "string");
}

describe("Engine.IO handshake", () => {
  it("opens a long-polling session with the session parameters", async () => {
    const response = await fetch(`${URL}${PATH}?EIO=4&transport=polling`);
    assert.equal(response.status, 200);
    const text = await response.text();
    assert.ok(text.startsWith("0"), text);
    const value = JSON.parse(text.substring(1));
    assert.deepEqual(Object.keys(value).sort(), [
      "maxPayload",
      "pingInterval",
      "pingTimeout",
      "sid",
      "upgrades",
    ]);
    assert.equal(typeof value.sid, "string");
    assert.deepEqual(value.upgrades, ["websocket"]);
    assert.equal(value.pingInterval, PING_INTERVAL);
    assert.equal(value.pingTimeout, PING_TIMEOUT);
    assert.equal(value.maxPayload, 1000000);
  });

  it("opens a WebSocket session directly, with no further upgrade", async () => {
    const client = await openWebSocket(PATH);
    assert.deepEqual(client.handshake.upgrades, []);
    assert.equal(client.handshake.pingInterval, PING_INTERVAL);
    assert.equal(client.handshake.pingTimeout, PING_TIMEOUT);
    assert.equal(client.handshake.maxPayload, 1000000);
    client.close();
  });

  it("refuses a missing or unsupported EIO version with code 5", async () => {
    await expectError(await fetch(`${URL}${PATH}?transport=polling`), 400, 5);
    await expectError(await fetch(`${URL}${PATH}?EIO=abc&transport=polling`), 400, 5);
    await expectError(await fetch(`${URL}${PATH}?EIO=3&transport=polling`), 400, 5);
  });

  it("refuses a missing or unknown transport with code 0", async () => {
    await expectError(await fetch(`${URL}${PATH}?EIO=4`), 400, 0);
    await expectError(await fetch(`${URL}${PATH}?EIO=4&transport=abc`), 400, 0);
  });

  it("refuses a handshake with another method than GET with code 2", async () => {
    await expectError(await fetch(`${URL}${PATH}?EIO=4&transport=polling`, { method: "POST" }), 400, 2);
    await expectError(await fetch(`${URL}${PATH}?EIO=4&transport=polling`, { method: "PUT" }), 400, 2);
  });

  it("refuses an unknown sid with code 1", async () => {
    await expectError(await get(PATH, "does-not-exist"), 400, 1);
    await expectError(await post(PATH, "does-not-exist", "4x"), 400, 1);
  });

  it("refuses WebSocket handshakes with a bad EIO or transport", async () => {
    for (const query of ["transport=websocket", "EIO=abc&transport=websocket", "EIO=4", "EIO=4&transport=abc"]) {
      const client = new Client(`${WS_URL}${PATH}?${query}`);
      assert.equal(await within(30_000, client.failed, "handshake failure"), 400, query);
    }
  });

  it("answers other paths through the fallback with 404", async () => {
    const response = await fetch(`${URL}/nope`);
    assert.equal(response.status, 404);
  });
});

describe("Engine.IO messages over long-polling", () => {
  it("sends and receives one text packet", async () => {
    const sid = await openPolling(PATH);
    const push = await post(PATH, sid, "4hello");
    assert.equal(push.status, 200);
    assert.equal(await push.text(), "ok");
    const poll = await get(PATH, sid);
    assert.equal(poll.status, 200);
    assert.equal(await poll.text(), "4hello");
  });

  it("sends and receives several packets separated by \\x1e", async () => {
    const sid = await openPolling(PATH);
    assert.equal((await post(PATH, sid, "4test1\x1e4test2\x1e4test3")).status, 200);
    assert.equal(await (await get(PATH, sid)).text(), "4test1\x1e4test2\x1e4test3");
  });

  it("sends and receives base64 binary packets", async () => {
    const sid = await openPolling(PATH);
    assert.equal((await post(PATH, sid, "4hello\x1ebAQIDBA==")).status, 200);
    assert.equal(await (await get(PATH, sid)).text(), "4hello\x1ebAQIDBA==");
  });

  it("closes the session upon an invalid packet", async () => {
    const sid = await openPolling(PATH);
    assert.equal((await post(PATH, sid, "abc")).status, 400);
    assert.equal((await get(PATH, sid)).status, 400);
  });

  it("closes the session upon concurrent polls", async () => {
    const sid = await openPolling(PATH);
    const [first, second] = await Promise.all([
      get(PATH, sid),
      sleep(20).then(() => get(PATH, sid)),
    ]);
    assert.equal(first.status, 200);
    assert.equal(await first.text(), "1");
    assert.equal(second.status, 400);
    assert.equal((await get(PATH, sid)).status, 400);
  });

  it("answers a POST larger than maxPayload with 413 and closes the session", async () => {
    const sid = await openPolling(PATH);
    const response = await post(PATH, sid, "4" + "x".repeat(1000001));
    assert.equal(response.status, 413);
    assert.equal((await get(PATH, sid)).status, 400);
  });
});

describe("Engine.IO messages over WebSocket", () => {
  it("sends and receives a text packet", async () => {
    const client = await openWebSocket(PATH);
    client.send("4hello");
    assert.equal(await client.next(), "4hello");
    client.close();
  });

  it("sends and receives a binary packet without prefix", async () => {
    const client = await openWebSocket(PATH);
    client.send(Uint8Array.from([1, 2, 3, 4]));
    assert.deepEqual(await client.next(), Buffer.from([1, 2, 3, 4]));
    client.close();
  });

  it("closes the session upon an invalid packet", async () => {
    const client = await openWebSocket(PATH);
    client.send("abc");
    await within(30_000, client.closed, "close");
  });

  it("closes the session upon a message larger than maxPayload", async () => {
    const client = await openWebSocket(PATH);
    client.send("4" + "x".repeat(1000001));
    await within(30_000, client.closed, "close");
  });
});

describe("Engine.IO heartbeat", () => {
  it("pings long-polling clients every pingInterval and accepts their pongs", async () => {
    const sid = await openPolling(PATH);
    for (let i = 0; i < 3; i++) {
      const started = Date.now();
      const poll = await get(PATH, sid);
      assert.equal(await poll.text(), "2");
      const elapsed = Date.now() - started;
      assert.ok(elapsed < PING_INTERVAL + 300, `ping came after ${elapsed} ms`);
      assert.equal((await post(PATH, sid, "3")).status, 200);
    }
  });

  it("closes a long-polling session whose client does not answer", async () => {
    const sid = await openPolling(PATH);
    await sleep(PING_INTERVAL + PING_TIMEOUT + 150);
    assert.equal((await post(PATH, sid, "3")).status, 400);
  });

  it("pings WebSocket clients and accepts their pongs", async () => {
    const client = await openWebSocket(PATH);
    for (let i = 0; i < 3; i++) {
      assert.equal(await client.next({ keepPings: true }), "2");
      client.send("3");
    }
    client.close();
  });

  it("closes a WebSocket session whose client does not answer", async () => {
    const started = Date.now();
    const client = new Client(`${WS_URL}${PATH}?EIO=4&transport=websocket`);
    await within(30_000, client.closed, "close after the ping timeout");
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= PING_INTERVAL + PING_TIMEOUT - 50, `closed after ${elapsed} ms`);
  });
});

describe("Engine.IO close", () => {
  it("ends the pending poll with a noop when the client closes over long-polling", async () => {
    const sid = await openPolling(PATH);
    const [poll, push] = await Promise.all([get(PATH, sid), sleep(20).then(() => post(PATH, sid, "1"))]);
    assert.equal(push.status, 200);
    assert.equal(poll.status, 200);
    assert.equal(await poll.text(), "6");
    assert.equal((await get(PATH, sid)).status, 400);
  });

  it("closes the WebSocket when the client sends a close packet", async () => {
    const client = await openWebSocket(PATH);
    client.send("1");
    await within(30_000, client.closed, "close");
  });
});

describe("Engine.IO upgrade", () => {
  it("upgrades from long-polling to WebSocket", async () => {
    const sid = await openPolling(PATH);
    const client = new Client(`${WS_URL}${PATH}?EIO=4&transport=websocket&sid=${sid}`);
    await client.opened;
    client.send("2probe");
    assert.equal(await client.next(), "3probe");
    // the pending (or next) poll is ended with a noop
    const poll = await get(PATH, sid);
    assert.equal(poll.status, 200);
    assert.equal(await poll.text(), "6");
    client.send("5");
    client.send("4hello");
    assert.equal(await client.next(), "4hello");
    client.close();
  });

  it("ends a poll pending during the probe with a noop", async () => {
    const sid = await openPolling(PATH);
    const pending = get(PATH, sid);
    await sleep(20);
    const client = new Client(`${WS_URL}${PATH}?EIO=4&transport=websocket&sid=${sid}`);
    await client.opened;
    client.send("2probe");
    assert.equal(await client.next(), "3probe");
    assert.equal(await (await within(30_000, pending, "the pending poll")).text(), "6");
    client.send("5");
    client.send("4after");
    assert.equal(await client.next(), "4after");
    client.close();
  });

  it("refuses HTTP requests with the same sid after the upgrade", async () => {
    const sid = await openPolling(PATH);
    const client = new Client(`${WS_URL}${PATH}?EIO=4&transport=websocket&sid=${sid}`);
    await client.opened;
    client.send("2probe");
    assert.equal(await client.next(), "3probe");
    client.send("5");
    // an echo on the WebSocket: the upgrade is complete (no noop leaks into the WebSocket)
    client.send("4hello");
    assert.equal(await client.next(), "4hello");
    assert.equal((await get(PATH, sid)).status, 400);
    client.close();
  });

  it("ignores a second WebSocket with the same sid after the upgrade", async () => {
    const sid = await openPolling(PATH);
    const client = new Client(`${WS_URL}${PATH}?EIO=4&transport=websocket&sid=${sid}`);
    await client.opened;
    client.send("2probe");
    assert.equal(await client.next(), "3probe");
    client.send("5");
    client.send("4first");
    assert.equal(await client.next(), "4first");
    // as the reference server: the handshake completes, then the socket is closed (1002)
    const second = new Client(`${WS_URL}${PATH}?EIO=4&transport=websocket&sid=${sid}`);
    assert.equal(await within(30_000, second.closed, "the close"), 1002);
    client.send("4hello");
    assert.equal(await client.next(), "4hello");
    client.close();
  });
});
