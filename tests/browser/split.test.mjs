// The web app against the split services (the api-server and socket-server binaries on
// PostgreSQL and Redis, CORS_ALLOWED_ORIGINS naming the app's origin), served by a static server
// of the test's own:
// - a message shows on the sender's page (status sending) and on the recipient's page while the
//   test holds the messages table locked, so before it can be stored and acknowledged; ✓ once
//   the lock goes;
// - the relay stopped: the banner counts the reconnect attempts; a message sent by REST during
//   the outage appears once the relay is back, without a reload;
// - a page on an origin off the list is refused cleanly: the app says so, nothing hangs.

import assert from "node:assert/strict";
import { test } from "node:test";
import pg from "pg";
import {
  attachPng, audioLoaded, imageLoaded, message, openPage, PATIENCE, recordFor, send, shot, splitAppSuite, stopRecording,
  twoUsers, unique, waitStatus, waitStored,
} from "./harness.mjs";

const suite = splitAppSuite();

test("messages show before they are stored, and the app rides out a relay restart", async () => {
  const { alice, alicePage, bobPage } = await twoUsers(suite.browser, suite.url);
  await send(alicePage, "first");
  await waitStored(alicePage, "first"); // sent, or already delivered: Bob is online
  await bobPage.getByTestId("conversation-item").filter({ hasText: alice }).click();
  await message(bobPage, "first").waitFor();
  await waitStatus(alicePage, "first", "read");

  // Before the ack: nothing can be stored while the test holds the messages table.
  const db = new pg.Client({ connectionString: suite.split.databaseUrl });
  await db.connect();
  try {
    await db.query("BEGIN");
    await db.query("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE");
    await send(alicePage, "held by the lock");
    await waitStatus(alicePage, "held by the lock", "sending");
    await message(bobPage, "held by the lock").waitFor();
    await shot(alicePage, "split-1-alice-sending-under-lock");
    await shot(bobPage, "split-1-bob-received-before-storage");
  } finally {
    await db.query("COMMIT");
    await db.end();
  }
  await waitStatus(alicePage, "held by the lock", "read");
  await shot(alicePage, "split-2-alice-stored-and-read");

  // The relay goes away: the banner counts the attempts.
  await suite.split.relay.stop();
  const banner = alicePage.getByTestId("banner-text");
  await banner.filter({ hasText: /Reconnecting… \(attempt ([2-9]|\d{2,})\)/ }).waitFor();
  assert.equal(await alicePage.getByTestId("banner-reconnect").isVisible(), true);
  await shot(alicePage, "split-3-alice-reconnecting");

  // Bob writes by REST meanwhile; the relay comes back; Alice gets it without a reload.
  const token = await bobPage.evaluate(() => window.parley.session.token);
  const conversationId = await alicePage.getByTestId("conversation-item").first().getAttribute("data-conversation-id");
  const response = await fetch(`${suite.split.apiUrl}/api/messages`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ clientMsgId: unique("rest-"), conversationId, content: "sent during the outage" }),
  });
  assert.equal(response.status, 201, await response.text());
  await suite.split.startRelay();
  await alicePage.getByTestId("banner-reconnect").click(); // or wait for the next attempt
  await alicePage.getByTestId("connection-banner").waitFor({ state: "hidden" });
  await message(alicePage, "sent during the outage").waitFor();
  await shot(alicePage, "split-4-alice-caught-up");

  // And the live path works again.
  await send(alicePage, "back again");
  await message(bobPage, "back again").waitFor();
  await waitStatus(alicePage, "back again", "read");
  assert.deepEqual(alicePage.consoleErrors, []);
});

test("an image and a voice note from the app's origin, stored on disk by the API on PostgreSQL", async () => {
  // The app is on its own origin: the signed URLs are the API's, and <img>/<audio> load them
  // across origins (no token, no CORS needed).
  const { alice, alicePage, bobPage } = await twoUsers(suite.browser, suite.url);
  await attachPng(alicePage);
  await recordFor(alicePage, 1000);
  await stopRecording(alicePage);
  await bobPage.getByTestId("conversation-item").filter({ hasText: alice }).click();
  await imageLoaded(bobPage);
  await audioLoaded(bobPage);
  const src = await bobPage.getByTestId("message-audio").getAttribute("src");
  assert.ok(src.startsWith(`${suite.split.apiUrl}/api/attachments/`), src);
  await shot(bobPage, "split-5-bob-image-and-voice");
  assert.deepEqual(alicePage.consoleErrors, []);
  assert.deepEqual(bobPage.consoleErrors, []);
});

test("a page on an origin off CORS_ALLOWED_ORIGINS is refused with a message, not a hang", async () => {
  // localhost is not 127.0.0.1 for the browser: another origin, not on the list.
  const page = await openPage(suite.browser, `http://localhost:${suite.site.port}/`);
  await page.getByTestId("login-username").fill(unique("eve"));
  await page.getByTestId("login-password").fill("correct horse battery");
  await page.getByTestId("register-button").click();
  const error = page.getByTestId("auth-error").filter({ hasText: /Cannot reach the server/ });
  await error.waitFor({ timeout: PATIENCE });
  assert.match(await error.textContent(), /CORS_ALLOWED_ORIGINS/);
  assert.equal(await page.getByTestId("me").count(), 0);
  await shot(page, "split-6-other-origin-refused");
});
