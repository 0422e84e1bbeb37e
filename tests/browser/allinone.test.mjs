// The web app as `cargo run` serves it: two users in two browser contexts, default
// socket.io-client transports (polling, then the upgrade). A message sent while its recipient is
// away shows ✓ (sent); when the recipient comes back it turns ✓✓ (delivered) and, once they open
// the conversation, read. Typing, presence and unread counts on the way.

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  allInOneSuite, attachPng, imageLoaded, login, message, openPage, register, registerRest, rest, send, shot, startChat,
  unique, waitStatus, watch,
} from "./harness.mjs";

const suite = allInOneSuite();

test("a message goes sent, delivered, read between two users of the app served by cargo run", async () => {
  const { parley, browser } = suite;
  const alice = unique("alice");
  const bob = unique("bob");

  // Bob registers, then leaves (his page closes; his session stays in his context's storage).
  let bobPage = await openPage(browser, parley.web);
  await register(bobPage, bob);
  const bobContext = bobPage.context();
  await bobPage.close();

  // Alice registers, starts a chat with Bob and writes while he is away: ✓ (stored, not delivered).
  const alicePage = await openPage(browser, parley.web);
  await register(alicePage, alice);
  await alicePage.getByTestId("connection-banner").waitFor({ state: "hidden" });
  await alicePage.locator('[data-testid="latency"][data-ms]').waitFor(); // the first ping's answer
  await startChat(alicePage, bob);
  await send(alicePage, "hello bob");
  await message(alicePage, "hello bob").waitFor();
  await waitStatus(alicePage, "hello bob", "sent");
  assert.equal(await message(alicePage, "hello bob").getByTestId("message-status").textContent(), "✓");
  await shot(alicePage, "allinone-1-alice-sent");

  // Bob comes back: the SDK catches up and marks the message delivered (✓✓), the list shows 1 unread.
  bobPage = watch(await bobContext.newPage());
  await bobPage.goto(parley.web);
  const item = bobPage.getByTestId("conversation-item").filter({ hasText: alice });
  await item.getByTestId("unread-count").filter({ hasText: "1" }).waitFor();
  await waitStatus(alicePage, "hello bob", "delivered");
  assert.equal(await message(alicePage, "hello bob").getByTestId("message-status").textContent(), "✓✓");
  // Alice is online (the relay told Bob's page at connect): a green dot.
  await item.locator('[data-testid="presence-dot"][data-online="true"]').waitFor();
  await shot(bobPage, "allinone-2-bob-unread");
  await shot(alicePage, "allinone-2-alice-delivered");

  // Bob opens the conversation: the message is there, Alice sees it read.
  await item.click();
  await message(bobPage, "hello bob").waitFor();
  await waitStatus(alicePage, "hello bob", "read");
  await shot(alicePage, "allinone-3-alice-read");

  // Bob types: Alice sees it; Bob answers, Alice gets the answer live.
  await bobPage.getByTestId("composer-input").pressSequentially("hi al");
  await alicePage.getByTestId("typing-indicator").filter({ hasText: "is typing" }).waitFor();
  await shot(alicePage, "allinone-4-alice-sees-typing");
  await bobPage.getByTestId("composer-input").fill("hi alice");
  await bobPage.getByTestId("send-button").click();
  await message(alicePage, "hi alice").waitFor();
  await waitStatus(bobPage, "hi alice", "read");
  await shot(bobPage, "allinone-5-bob-answer-read");

  // Alice sends a picture (Attach): Bob's page shows it (a signed URL in an <img>).
  await attachPng(alicePage);
  await imageLoaded(bobPage);
  await shot(bobPage, "allinone-6-bob-sees-image");

  // Alice logs out: the form again, and after a reload too (the kept session is gone).
  await alicePage.getByTestId("logout-button").click();
  await alicePage.getByTestId("login-username").waitFor();
  await alicePage.reload();
  await alicePage.getByTestId("login-username").waitFor();
  assert.equal(await alicePage.getByTestId("me").count(), 0);
  assert.deepEqual(alicePage.consoleErrors, []);

  // socket.io-client's defaults: the handshake by polling, then the upgrade to WebSocket.
  assert.equal(bobPage.transports[0], "polling");
  assert.ok(bobPage.transports.includes("websocket"), bobPage.transports.join());
  assert.deepEqual(bobPage.consoleErrors, []);
});

test("the app is served after the API's routes: its files, its routes, the relay's port", async () => {
  const { parley } = suite;
  const get = (path, init) => fetch(new URL(path, parley.api), init);

  const index = await get("/");
  assert.equal(index.status, 200);
  assert.match(index.headers.get("content-type"), /^text\/html/);
  assert.match(await index.text(), /<script type="module" src="\/app.js">/);
  const route = await get("/c/42"); // a route of the app: its index
  assert.equal(route.status, 200);
  assert.match(await route.text(), /<div id="app"/);
  const script = await get("/app.js");
  assert.equal(script.status, 200);
  assert.match(script.headers.get("content-type"), /^text\/javascript/);

  const config = await (await get("/app-config.json")).json();
  assert.equal(config.socketPort, Number(new URL(parley.socket).port));

  // The API keeps its paths and its error shape.
  for (const [path, init, status] of [
    ["/api/nope", {}, 404],
    ["/api", {}, 404],
    ["/x.js", {}, 404],
    ["/", { method: "POST" }, 404],
  ]) {
    const response = await get(path, init);
    assert.equal(response.status, status, path);
    assert.equal((await response.json()).error.code, "not_found", path);
  }
  assert.equal((await (await get("/health")).json()).status, "ok");
  assert.equal((await get("/api/auth/me")).status, 401);
});

test("a long conversation: unread count in the list and the title, older messages on demand", async () => {
  const { parley, browser } = suite;
  const carol = await registerRest(parley.api, "carol");
  const dan = await registerRest(parley.api, "dan");
  const chat = await rest(parley.api, "POST", "/api/conversations", { token: dan.token, body: { memberIds: [carol.user.id] } });
  const page = await openPage(browser, parley.web);
  await login(page, carol.user.username);
  const item = page.getByTestId("conversation-item").filter({ hasText: dan.user.username });
  await item.waitFor(); // the list is loaded: what follows arrives live

  // Dan writes more than one page of history (50) by REST; Carol's list counts them live.
  const total = 55;
  for (let i = 1; i <= total; i++) {
    await rest(parley.api, "POST", "/api/messages", {
      token: dan.token,
      body: { clientMsgId: `m-${i}`, conversationId: chat.id, content: `message ${i}` },
    });
  }
  await item.getByTestId("unread-count").filter({ hasText: String(total) }).waitFor();
  assert.equal(await page.title(), `(${total}) Parley`);

  // After a reload the SDK's lists start empty and the kept sync cursor is past the 55: the
  // newest page of history, then older messages on demand.
  await page.evaluate(() => window.parley.sync()); // the kept cursor now covers all 55
  await page.reload();
  await item.click();
  await message(page, `message ${total}`).waitFor();
  await page.getByTestId("load-older").waitFor();
  const oldest = page.locator('[data-testid="message"][data-client-msg-id="m-1"]');
  assert.equal(await oldest.count(), 0);
  await shot(page, "allinone-7-long-conversation");
  await page.getByTestId("load-older").click();
  await oldest.waitFor();
  assert.equal(await page.getByTestId("message").count(), total);
  assert.equal(await page.getByTestId("load-older").count(), 0);
  await page.waitForFunction(() => document.title === "Parley"); // read now
  assert.deepEqual(page.consoleErrors, []);
});
