// Socket.IO v5 conformance over raw Engine.IO, against the echo at /socket.io/ (after the
// published socket.io-protocol specification and its test-suite).
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { get, openPolling, openWebSocket, post, sleep, within, WS_URL } from "./helpers.mjs";

const PATH = "/socket.io/";

/** A WebSocket session connected to the main namespace, `auth` packet consumed. */
async function connected() {
  const client = await openWebSocket(PATH);
  client.autoPong = true;
  client.send("40");
  assert.ok((await client.next()).startsWith("40"));
  assert.equal(await client.next(), '42["auth",{}]');
  return client;
}

function handshakeSid(packet, prefix) {
  assert.ok(packet.startsWith(prefix), packet);
  const value = JSON.parse(packet.substring(prefix.length));
  assert.deepEqual(Object.keys(value), ["sid"]);
  assert.equal(typeof value.sid, "string");
  return value.sid;
}

describe("Socket.IO connect", () => {
  it("connects to the main namespace", async () => {
    const client = await openWebSocket(PATH);
    client.send("40");
    handshakeSid(await client.next(), "40");
    assert.equal(await client.next(), '42["auth",{}]');
    client.close();
  });

  it("connects to the main namespace with an auth payload", async () => {
    const client = await openWebSocket(PATH);
    client.send('40{"token":"123"}');
    handshakeSid(await client.next(), "40");
    assert.equal(await client.next(), '42["auth",{"token":"123"}]');
    client.close();
  });

  it("connects to a custom namespace", async () => {
    const client = await openWebSocket(PATH);
    client.send("40/custom,");
    handshakeSid(await client.next(), "40/custom,");
    assert.equal(await client.next(), '42/custom,["auth",{}]');
    client.close();
  });

  it("connects to a custom namespace with an auth payload", async () => {
    const client = await openWebSocket(PATH);
    client.send('40/custom,{"token":"abc"}');
    handshakeSid(await client.next(), "40/custom,");
    assert.equal(await client.next(), '42/custom,["auth",{"token":"abc"}]');
    client.close();
  });

  it("sends auth in a read of its own after the CONNECT answer, as the official suite awaits it", async () => {
    // The official suite adds a listener for each message only once it awaits it, and ws emits
    // every message of one read before that: a packet read together with the CONNECT answer is
    // lost to it (socketio/socket.io-protocol#32).
    const ws = new WebSocket(`${WS_URL}${PATH}?EIO=4&transport=websocket`, { allowSynchronousEvents: true });
    const nextMessage = () =>
      new Promise((resolve) => ws.addEventListener("message", ({ data }) => resolve(data), { once: true }));
    await within(30_000, nextMessage(), "Engine.IO handshake");
    ws.send("40");
    handshakeSid(await within(30_000, nextMessage(), "CONNECT answer"), "40");
    // pings go unanswered: a missed auth shows as the first ping, "2"
    assert.equal(await within(30_000, nextMessage(), "auth packet"), '42["auth",{}]');
    ws.close();
  });

  it("refuses an unknown namespace with CONNECT_ERROR", async () => {
    const client = await openWebSocket(PATH);
    client.send("40/random");
    assert.equal(await client.next(), '44/random,{"message":"Invalid namespace"}');
    client.close();
  });

  it("forwards a handler's refusal with its message and data", async () => {
    const client = await openWebSocket(PATH);
    client.send("40/refuse,");
    const packet = await client.next();
    assert.ok(packet.startsWith("44/refuse,"), packet);
    assert.deepEqual(JSON.parse(packet.substring("44/refuse,".length)), {
      message: "refused",
      data: { reason: "test" },
    });
    client.close();
  });

  it("closes the connection upon an invalid handshake", async () => {
    const client = await openWebSocket(PATH);
    client.send("4abc");
    await within(30_000, client.closed, "close");
  });

  it("closes a connection that joins no namespace within connectTimeout", async () => {
    const started = Date.now();
    const client = await openWebSocket(PATH);
    // keep the heartbeat going so that only the connect timeout can close it
    const pong = setInterval(() => client.send("3"), 100);
    try {
      await within(30_000, client.closed, "close after connectTimeout");
    } finally {
      clearInterval(pong);
    }
    // the echo's connectTimeout is 1500 ms
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 1400 && elapsed < 3000, `closed after ${elapsed} ms`);
  });

  it("multiplexes several namespaces on one session", async () => {
    const client = await connected();
    client.send("40/custom,");
    const mainSid = client.handshake.sid;
    handshakeSid(await client.next(), "40/custom,");
    assert.equal(await client.next(), '42/custom,["auth",{}]');
    client.send('42/custom,["message","to custom"]');
    client.send('42["message","to main"]');
    // each namespace is ordered on its own; between namespaces, any order
    const answers = [await client.next(), await client.next()].sort();
    assert.deepEqual(answers, ['42/custom,["message-back","to custom"]', '42["message-back","to main"]']);
    assert.equal(client.handshake.sid, mainSid);
    client.close();
  });
});

describe("Socket.IO disconnect", () => {
  it("keeps the connection after leaving the main namespace", async () => {
    const client = await connected();
    client.send("41");
    // the next packet is the heartbeat: the Engine.IO session is still open
    assert.equal(await client.next({ keepPings: true }), "2");
    client.close();
  });

  it("connects then disconnects from a custom namespace", async () => {
    const client = await connected();
    client.send("40/custom");
    await client.next(); // Socket.IO handshake
    await client.next(); // auth packet
    client.send("41/custom");
    client.send('42["message","message to main namespace"]');
    assert.equal(await client.next(), '42["message-back","message to main namespace"]');
    client.close();
  });

  it("sends DISCONNECT when the server disconnects the socket", async () => {
    const client = await connected();
    client.send('42["disconnect-me"]');
    assert.equal(await client.next(), "41");
    client.close();
  });
});

describe("Socket.IO messages", () => {
  it("echoes a plain-text event", async () => {
    const client = await connected();
    client.send('42["message",1,"2",{"3":[true]}]');
    assert.equal(await client.next(), '42["message-back",1,"2",{"3":[true]}]');
    client.close();
  });

  it("echoes an event with binary attachments", async () => {
    const client = await connected();
    client.send('452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
    client.send(Uint8Array.from([1, 2, 3]));
    client.send(Uint8Array.from([4, 5, 6]));
    assert.equal(
      await client.next(),
      '452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
    );
    assert.deepEqual(await client.next(), Buffer.from([1, 2, 3]));
    assert.deepEqual(await client.next(), Buffer.from([4, 5, 6]));
    client.close();
  });

  it("acknowledges an event with its ack id", async () => {
    const client = await connected();
    client.send('42456["message-with-ack",1,"2",{"3":[false]}]');
    assert.equal(await client.next(), '43456[1,"2",{"3":[false]}]');
    client.close();
  });

  it("acknowledges an event with binary attachments with a BINARY_ACK", async () => {
    const client = await connected();
    client.send('452-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
    client.send(Uint8Array.from([1, 2, 3]));
    client.send(Uint8Array.from([4, 5, 6]));
    assert.equal(await client.next(), '462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
    assert.deepEqual(await client.next(), Buffer.from([1, 2, 3]));
    assert.deepEqual(await client.next(), Buffer.from([4, 5, 6]));
    client.close();
  });

  it("asks the client for an ack and receives its answer", async () => {
    const client = await connected();
    client.send('42["request-ack","question"]');
    const request = await client.next();
    const match = /^42(\d+)\["ack-request","question"\]$/.exec(request);
    assert.ok(match, request);
    client.send(`43${match[1]}["answer",7]`);
    assert.equal(await client.next(), '42["ack-result","answer",7]');
    client.close();
  });

  it("reports a server ack that times out", async () => {
    const client = await connected();
    client.send('42["request-ack"]');
    assert.match(await client.next(), /^42\d+\["ack-request"\]$/);
    // answer pings only (autoPong), never the ack: the server gives up after 2 s
    const result = await client.next({ timeout: 30_000 });
    assert.equal(result, '42["ack-result",{"error":"no acknowledgement within the timeout"}]');
    client.close();
  });

  it("carries events and binary attachments over long-polling", async () => {
    const sid = await openPolling(PATH);
    assert.equal((await post(PATH, sid, '40{"via":"polling"}')).status, 200);
    // the CONNECT answer, then auth (the echo pauses between them: one poll or two)
    const packets = (await (await get(PATH, sid)).text()).split("\x1e");
    if (packets.length === 1) packets.push(await (await get(PATH, sid)).text());
    const [ack, auth] = packets;
    handshakeSid(ack, "40");
    assert.equal(auth, '42["auth",{"via":"polling"}]');
    const body = '451-["message",{"_placeholder":true,"num":0}]\x1ebAQID';
    assert.equal((await post(PATH, sid, body)).status, 200);
    assert.equal(
      await (await get(PATH, sid)).text(),
      '451-["message-back",{"_placeholder":true,"num":0}]\x1ebAQID',
    );
  });

  for (const [name, packet] of [
    ["an unknown packet type", "4abc"],
    ["an invalid payload", "42{}"],
    ["an invalid ack id", '42abc["message-with-ack",1,"2",{"3":[false]}]'],
    ["binary data out of place", Uint8Array.from([1])],
    ["a second CONNECT to a joined namespace", "40"],
  ]) {
    it(`closes the connection upon ${name}`, async () => {
      const client = await connected();
      client.send(packet);
      await within(30_000, client.closed, "close");
    });
  }
});

describe("Socket.IO over a raw session without namespace", () => {
  it("ignores events to namespaces it has not joined", async () => {
    const client = await connected();
    client.send('42/custom,["message","ignored"]');
    client.send('42["message","kept"]');
    assert.equal(await client.next(), '42["message-back","kept"]');
    client.close();
  });

  it("does not answer before the CONNECT packet", async () => {
    const client = await openWebSocket(PATH);
    client.send('42["message","too early"]');
    await sleep(100);
    client.send("40");
    assert.ok((await client.next()).startsWith("40"));
    client.close();
  });
});
