// The real `socket.io-client` 4.x against the echo, with each transport setting.
import { describe, it, after } from "node:test";
import assert from "node:assert/strict";
import { io, Manager } from "socket.io-client";
import { URL, within } from "./helpers.mjs";

// Waits for what must happen; only a real failure exhausts them, never a busy machine.
const PATIENCE_MS = 60_000;

const sockets = [];

function connect(path, options = {}) {
  const socket = io(`${URL}${path}`, { forceNew: true, reconnection: false, ...options });
  sockets.push(socket);
  return socket;
}

const once = (socket, event) => new Promise((resolve) => socket.once(event, (...args) => resolve(args)));

after(() => sockets.forEach((s) => s.disconnect()));

const TRANSPORTS = [
  ["default transports (polling, then upgrade)", undefined, "websocket"],
  ["websocket only", ["websocket"], "websocket"],
  ["polling only", ["polling"], "polling"],
];

for (const [label, transports, finalTransport] of TRANSPORTS) {
  describe(`socket.io-client with ${label}`, () => {
    const options = transports ? { transports } : {};

    it("connects with auth and receives it back", async () => {
      const socket = connect("/", { ...options, auth: { token: "abc" } });
      const [auth] = await within(30_000, once(socket, "auth"), "auth event");
      assert.deepEqual(auth, { token: "abc" });
      assert.ok(socket.connected);
      assert.equal(typeof socket.id, "string");
      if (finalTransport === "websocket" && !transports) {
        // the client upgrades shortly after connecting
        if (socket.io.engine.transport.name !== "websocket") {
          await within(30_000, once(socket.io.engine, "upgrade"), "upgrade");
        }
      }
      assert.equal(socket.io.engine.transport.name, finalTransport);
      socket.disconnect();
    });

    it("emits and receives events in order", async () => {
      const socket = connect("/", options);
      await within(30_000, once(socket, "auth"), "auth event");
      const received = [];
      const done = new Promise((resolve) =>
        socket.on("message-back", (...args) => {
          received.push(args);
          if (received.length === 20) resolve();
        }),
      );
      for (let i = 0; i < 20; i++) socket.emit("message", i, { n: [i] });
      await within(30_000, done, "20 echoes");
      assert.deepEqual(
        received,
        Array.from({ length: 20 }, (_, i) => [i, { n: [i] }]),
      );
      socket.disconnect();
    });

    it("gets acknowledgements with every argument", async () => {
      const socket = connect("/", options);
      await within(30_000, once(socket, "auth"), "auth event");
      const args = await within(30_000,
        new Promise((resolve) => socket.emit("message-with-ack", 1, "2", { 3: [false] }, (...a) => resolve(a))),
        "ack",
      );
      assert.deepEqual(args, [1, "2", { 3: [false] }]);
      assert.equal(await socket.timeout(PATIENCE_MS).emitWithAck("message-with-ack", "single"), "single");
      socket.disconnect();
    });

    it("round-trips binary data in events and acks", async () => {
      const socket = connect("/", options);
      await within(30_000, once(socket, "auth"), "auth event");
      const payload = Buffer.from([0, 1, 2, 253, 254, 255]);
      socket.emit("message", "file", { data: payload });
      const [name, body] = await within(30_000, once(socket, "message-back"), "binary echo");
      assert.equal(name, "file");
      assert.deepEqual(Buffer.from(body.data), payload);
      const acked = await socket.timeout(PATIENCE_MS).emitWithAck("message-with-ack", payload);
      assert.deepEqual(Buffer.from(acked), payload);
      socket.disconnect();
    });

    it("answers the server's acks", async () => {
      const socket = connect("/", options);
      await within(30_000, once(socket, "auth"), "auth event");
      socket.on("ack-request", (question, callback) => callback(`${question}!`));
      socket.emit("request-ack", "hello");
      const [answer] = await within(30_000, once(socket, "ack-result"), "ack result");
      assert.equal(answer, "hello!");
      socket.disconnect();
    });

    it("connects to a custom namespace", async () => {
      const socket = connect("/custom", { ...options, auth: { room: 1 } });
      const [auth] = await within(30_000, once(socket, "auth"), "auth event");
      assert.deepEqual(auth, { room: 1 });
      socket.emit("message", "in custom");
      const [echo] = await within(30_000, once(socket, "message-back"), "echo");
      assert.equal(echo, "in custom");
      socket.disconnect();
    });

    it("receives connect_error with the refusal's message and data", async () => {
      const socket = connect("/refuse", options);
      const [error] = await within(30_000, once(socket, "connect_error"), "connect_error");
      assert.equal(error.message, "refused");
      assert.deepEqual(error.data, { reason: "test" });
      socket.disconnect();
    });

    it("is told when the server disconnects it", async () => {
      const socket = connect("/", options);
      await within(30_000, once(socket, "auth"), "auth event");
      socket.emit("disconnect-me");
      const [reason] = await within(30_000, once(socket, "disconnect"), "disconnect");
      assert.equal(reason, "io server disconnect");
    });

    it("multiplexes namespaces on one connection", async () => {
      const manager = new Manager(URL, { reconnection: false, ...(transports ? { transports } : {}) });
      const main = manager.socket("/");
      const custom = manager.socket("/custom");
      sockets.push(main, custom);
      await within(30_000, Promise.all([once(main, "auth"), once(custom, "auth")]), "both auth events");
      main.emit("message", "main");
      custom.emit("message", "custom");
      const [[a], [b]] = await within(30_000,
        Promise.all([once(main, "message-back"), once(custom, "message-back")]),
        "both echoes",
      );
      assert.equal(a, "main");
      assert.equal(b, "custom");
      main.disconnect();
      custom.disconnect();
    });

    it("stays connected across several heartbeats", async () => {
      const socket = connect("/", options);
      await within(30_000, once(socket, "auth"), "auth event");
      await new Promise((resolve) => setTimeout(resolve, 1200));
      assert.ok(socket.connected);
      socket.emit("message", "still here");
      const [echo] = await within(30_000, once(socket, "message-back"), "echo");
      assert.equal(echo, "still here");
      socket.disconnect();
    });
  });
}
