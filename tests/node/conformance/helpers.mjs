// Shared helpers of the conformance tests. The server under test is Parley's protocol echo
// (protocol-echo/, the `protocol_echo` binary), whose port is given in PARLEY_ECHO_PORT.
import WebSocket from "ws";

const port = process.env.PARLEY_ECHO_PORT;
if (!port) {
  throw new Error(
    "PARLEY_ECHO_PORT is not set: run these tests through `cargo test -p socket-server`, " +
      "or start `cargo run -p protocol-echo -- --port 3000` and set PARLEY_ECHO_PORT=3000",
  );
}

export const URL = `http://127.0.0.1:${port}`;
export const WS_URL = URL.replace("http", "ws");
export const PING_INTERVAL = 300;
export const PING_TIMEOUT = 200;

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Rejects if `promise` has not settled within `ms` (so a broken server fails fast). */
export function within(ms, promise, what = "operation") {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * A WebSocket that queues what it receives, so no message is missed between awaits.
 * Text frames come out as strings, binary frames as Buffers.
 */
export class Client {
  constructor(url) {
    this.ws = new WebSocket(url);
    this.queue = [];
    this.waiters = [];
    this.closed = new Promise((resolve) => this.ws.on("close", (code) => resolve(code)));
    this.failed = new Promise((resolve) => {
      this.ws.on("unexpected-response", (req, res) => {
        // with this listener, ws leaves aborting the request to us
        req.destroy();
        resolve(res.statusCode);
      });
      this.ws.on("error", () => resolve(null));
    });
    this.opened = new Promise((resolve) => this.ws.on("open", resolve));
    /** Answer every ping with a pong, as a real client does. */
    this.autoPong = false;
    this.ws.on("message", (data, isBinary) => {
      const item = isBinary ? Buffer.from(data) : data.toString();
      if (this.autoPong && item === "2") this.ws.send("3");
      const waiter = this.waiters.shift();
      if (waiter) waiter(item);
      else this.queue.push(item);
    });
  }

  /** The next message, ignoring pings ("2") unless `keepPings`. */
  async next({ keepPings = false, timeout = 30_000 } = {}) {
    for (;;) {
      const item = await within(
        timeout,
        this.queue.length
          ? Promise.resolve(this.queue.shift())
          : new Promise((resolve) => this.waiters.push(resolve)),
        "a websocket message",
      );
      if (keepPings || item !== "2") return item;
    }
  }

  send(data) {
    this.ws.send(data);
  }

  close() {
    this.ws.close();
  }
}

/** Opens a raw WebSocket session (EIO=4, no sid) and consumes the handshake. */
export async function openWebSocket(path) {
  const client = new Client(`${WS_URL}${path}?EIO=4&transport=websocket`);
  const handshake = await client.next();
  if (!handshake.startsWith("0")) throw new Error(`unexpected handshake ${handshake}`);
  client.handshake = JSON.parse(handshake.substring(1));
  return client;
}

/** Opens a long-polling session and returns its sid. */
export async function openPolling(path) {
  const response = await fetch(`${URL}${path}?EIO=4&transport=polling`);
  const text = await response.text();
  return JSON.parse(text.substring(1)).sid;
}

export const pollUrl = (path, sid) => `${URL}${path}?EIO=4&transport=polling&sid=${sid}`;

export const post = (path, sid, body) =>
  fetch(pollUrl(path, sid), { method: "POST", body });

export const get = (path, sid) => fetch(pollUrl(path, sid));
