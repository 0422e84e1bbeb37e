// The browser's online/offline events. Node has no `window`: this file gives it an EventTarget
// of that name (its own process under node's test runner), dispatching the two events a browser
// fires; the network itself is real (a proxy in front of a real Parley).

import assert from "node:assert/strict";
import { test } from "node:test";
import { clientFor, networkProxy, newUser, until, untilState, useParley } from "./helpers.mjs";

const ctx = useParley();

test("offline stops the attempts until online, which reconnects at once", async () => {
  const browser = new EventTarget();
  browser.navigator = { onLine: true };
  globalThis.window = browser;
  const alice = await newUser(ctx.server.api, "alice");
  const proxy = await networkProxy(ctx.server.socket);
  const a = ctx.track(clientFor(ctx.server, alice, { socketUrl: proxy.url }));
  await a.connect();
  const states = [];
  a.on("state", (state) => states.push(state.status));

  browser.dispatchEvent(new Event("offline"));
  assert.equal(a.state.status, "connected", "a live socket is kept while it works");
  proxy.down();
  await untilState(a, "offline");
  proxy.up();
  browser.dispatchEvent(new Event("online"));
  // Offline schedules no attempt: only the online event can reconnect.
  await untilState(a, "connected");

  assert.deepEqual(states, ["offline", "connecting", "connected"]);
  delete globalThis.window;
  proxy.close();
});

test("a client created while offline waits for online", async () => {
  const browser = new EventTarget();
  browser.navigator = { onLine: false };
  globalThis.window = browser;
  const alice = await newUser(ctx.server.api, "alice");
  const a = ctx.track(clientFor(ctx.server, alice));
  const connected = a.connect();
  await until(a, "state", () => a.state.status === "offline", "offline");

  browser.navigator.onLine = true;
  browser.dispatchEvent(new Event("online"));
  await connected;
  assert.equal(a.state.status, "connected");
  delete globalThis.window;
});
