// Not a test: `node test/measure.mjs` prints the SDK's latencies against a local Parley.
import { clientFor, networkProxy, newUser, parley, until } from "./helpers.mjs";

const server = await parley();
const alice = await newUser(server.api, "alice");
const bob = await newUser(server.api, "bob");
const a = clientFor(server, alice, { reconnectDelayMs: 1000 });
const b = clientFor(server, bob);
await Promise.all([a.connect(), b.connect()]);
const chat = await a.openDirect(bob.user.id);
const N = Number(process.env.N ?? 100);
const syncCall = [], toStored = [], toPeer = [];
const pending = new Map();
a.on("messages", ({ messages }) => {
  for (const m of messages) {
    const p = pending.get(m.clientMsgId);
    if (p && m.seq !== null && p.stored === undefined) { p.stored = performance.now(); toStored.push(p.stored - p.t0); }
  }
});
b.on("messages", ({ messages }) => {
  for (const m of messages) {
    const p = pending.get(m.clientMsgId);
    if (p && p.peer === undefined) { p.peer = performance.now(); toPeer.push(p.peer - p.t0); }
  }
});
for (let i = 0; i < N; i++) {
  const t0 = performance.now();
  const m = a.send({ conversationId: chat.id, content: `m${i}` });
  syncCall.push(performance.now() - t0);
  pending.set(m.clientMsgId, { t0 });
  await new Promise((r) => setTimeout(r, 125)); // 8/s: under the 10/s send budget
}
await until(a, "messages", () => toStored.length === N && toPeer.length === N, "all stored");
const pct = (xs, p) => { const s = [...xs].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p * s.length))].toFixed(2); };
for (const [name, xs] of [["send() returns", syncCall], ["send → stored (ack)", toStored], ["send → on peer's list", toPeer]]) {
  console.log(`${name}: p50 ${pct(xs, 0.5)} ms, p99 ${pct(xs, 0.99)} ms, max ${pct(xs, 1)} ms (n=${xs.length})`);
}
// Reconnect and catch-up after a connection reset, default back-off (1 s ± 50 %).
const proxy = await networkProxy(server.socket);
const c = clientFor(server, alice, { socketUrl: proxy.url, reconnectDelayMs: 1000, reconnectDelayMaxMs: 30000 });
await c.connect();
const times = [];
for (let i = 0; i < 5; i++) {
  const t0 = performance.now();
  const synced = new Promise((r) => c.once("synced", r));
  proxy.cut();
  await synced;
  times.push(performance.now() - t0);
}
console.log(`connection reset → reconnected and caught up: ${times.map((t) => t.toFixed(0)).join(", ")} ms`);
a.close(); b.close(); c.close(); proxy.close();
