// The web app's chat pane with what users actually type and what the server actually answers,
// on the split services (the app built from its sources and served on its own origin), with
// signed attachment URLs that live 3 s:
// - one long unbroken text (a URL, 4000 'x') wraps in its bubble: the page never scrolls
//   sideways, the composer's Send stays on screen;
// - a failed message says why on the page; Retry only when it can succeed as it is, Discard
//   for the sender; the recipient of a copy whose send failed sees it not delivered, no button;
// - the tab's title counts the open conversation while the tab is hidden;
// - a display name with bidi controls stays in its own box;
// - an image whose signed URLs expired loads again (the app reads the message again), and
//   "Open the full image" opens a fresh URL;
// - a page whose origin the API accepts but the relay refuses says it cannot reach the relay
//   instead of "Connecting…" for ever.

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  attachPng, imageLoaded, login, message, openPage, PASSWORD, register, send, shot, splitAppSuite, startChat, twoUsers,
  unique, waitStored,
} from "./harness.mjs";

/** Lifetime of the signed URLs in this file (attachments.signed_url_ttl_secs). */
const TTL_SECS = 3;

const suite = splitAppSuite({
  // localhost is another origin than 127.0.0.1 for the browser: the API's, not the relay's.
  origins: (port) => ({ api: [`http://127.0.0.1:${port}`, `http://localhost:${port}`], relay: [`http://127.0.0.1:${port}`] }),
  env: { PARLEY__ATTACHMENTS__SIGNED_URL_TTL_SECS: String(TTL_SECS) },
});

/** Whether the page is no wider than its window, and `testid`'s elements all inside it. */
function fitsWidth(page, testid) {
  return page.evaluate((testid) => {
    const width = document.documentElement.clientWidth;
    const outside = [...document.querySelectorAll(`[data-testid="${testid}"], [data-testid="send-button"]`)]
      .map((el) => el.getBoundingClientRect())
      .filter((r) => r.right > width + 1 || r.left < -1);
    return { scrollWidth: document.documentElement.scrollWidth, width, outside: outside.length };
  }, testid);
}

test("one long unbroken text wraps in its bubble: no sideways scrolling, Send on screen", async () => {
  const { alice, alicePage, bobPage } = await twoUsers(suite.browser, suite.url);
  const url = `https://example.com/${"a1b2c3d4".repeat(40)}`;
  await send(alicePage, url);
  await send(alicePage, "x".repeat(4000));
  await waitStored(alicePage, "xxxxxxxxxx");
  await bobPage.getByTestId("conversation-item").filter({ hasText: alice }).click();
  await message(bobPage, "xxxxxxxxxx").waitFor();
  await message(bobPage, url).waitFor();

  for (const page of [alicePage, bobPage]) {
    const fit = await fitsWidth(page, "message");
    assert.ok(fit.scrollWidth <= fit.width, `the page is ${fit.scrollWidth}px wide in a ${fit.width}px window`);
    assert.equal(fit.outside, 0, "every bubble and the Send button inside the window");
  }
  await shot(alicePage, "app-1-long-text-wraps");
  assert.deepEqual(alicePage.consoleErrors, []);
  assert.deepEqual(bobPage.consoleErrors, []);
});

test("a failed message says why; Retry only when it can succeed, Discard for its sender, nothing on the recipient's copy", async () => {
  const { alicePage, bobPage, alice, conversationId } = await twoUsers(suite.browser, suite.url);
  await send(alicePage, "first");
  await waitStored(alicePage, "first");
  await bobPage.getByTestId("conversation-item").filter({ hasText: alice }).click();
  await message(bobPage, "first").waitFor();

  // An image message naming an upload that does not exist: relayed to Bob at once, then refused
  // by the API (validation_failed, not retryable): message_failed to both.
  await alicePage.evaluate(
    (conversationId) =>
      window.parley.send({ conversationId, kind: "image", attachmentId: "0123456789abcdef0123456789abcdef", content: "no such upload" }),
    conversationId,
  );
  const mine = alicePage.locator('[data-testid="message"][data-status="failed"]').filter({ hasText: "no such upload" });
  await mine.getByTestId("failure-reason").filter({ hasText: /^Not sent: .+/ }).waitFor();
  assert.equal(await mine.getByTestId("retry-button").count(), 0, "not retryable: no Retry");
  assert.equal(await mine.getByTestId("discard-button").count(), 1);

  const theirs = bobPage.locator('[data-testid="message"][data-status="failed"]').filter({ hasText: "no such upload" });
  await theirs.getByTestId("failure-reason").filter({ hasText: /^Not delivered/ }).waitFor();
  assert.equal(await theirs.getByTestId("retry-button").count(), 0, "someone else's message: no Retry");
  assert.equal(await theirs.getByTestId("discard-button").count(), 0);
  await shot(alicePage, "app-2-failed-not-retryable");
  await shot(bobPage, "app-2-recipient-not-delivered");

  await mine.getByTestId("discard-button").click();
  await mine.waitFor({ state: "detached" });
  assert.equal(await message(alicePage, "first").count(), 1);
  assert.deepEqual(alicePage.consoleErrors, []);
  assert.deepEqual(bobPage.consoleErrors, []);
});

/** Make the page's document hidden (or visible again), as switching tabs does. */
function setHidden(page, hidden) {
  return page.evaluate((hidden) => {
    Object.defineProperty(document, "visibilityState", { value: hidden ? "hidden" : "visible", configurable: true });
    Object.defineProperty(document, "hidden", { value: hidden, configurable: true });
    document.dispatchEvent(new Event("visibilitychange"));
  }, hidden);
}

test("the tab's title counts the open conversation's new messages while the tab is hidden", async () => {
  const { alice, alicePage, bobPage } = await twoUsers(suite.browser, suite.url);
  await send(alicePage, "hello");
  await bobPage.getByTestId("conversation-item").filter({ hasText: alice }).click();
  await message(bobPage, "hello").waitFor();
  await bobPage.waitForFunction(() => document.title === "Parley");

  await setHidden(bobPage, true);
  await send(alicePage, "while you were away");
  await send(alicePage, "and again");
  await message(bobPage, "and again").waitFor();
  await bobPage.waitForFunction(() => document.title === "(2) Parley");
  await waitStored(alicePage, "and again");
  assert.equal(
    await alicePage.locator('[data-testid="message"][data-status="read"]').filter({ hasText: "and again" }).count(),
    0,
    "not marked read while hidden",
  );

  await setHidden(bobPage, false);
  await bobPage.waitForFunction(() => document.title === "Parley");
  await alicePage.locator('[data-testid="message"][data-status="read"]').filter({ hasText: "and again" }).waitFor();
  assert.deepEqual(bobPage.consoleErrors, []);
});

test("a display name with bidi controls stays in its own box: list, title, typing indicator", async () => {
  const mallory = unique("mallory");
  const name = "\u202Eevil name";
  const response = await fetch(new URL("/api/auth/register", suite.split.apiUrl), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: mallory, password: PASSWORD, displayName: name }),
  });
  assert.equal(response.status, 201, await response.text());
  const alicePage = await openPage(suite.browser, suite.url);
  const alice = unique("alice");
  await register(alicePage, alice);
  await startChat(alicePage, mallory);

  // Mallory logs in on her page and types to Alice: Alice's indicator names her, isolated.
  const malloryPage = await openPage(suite.browser, suite.url);
  await login(malloryPage, mallory);
  await startChat(malloryPage, alice);
  await malloryPage.getByTestId("composer-input").pressSequentially("hi");
  await alicePage.getByTestId("typing-indicator").filter({ hasText: "is typing" }).waitFor();
  const typing = await alicePage.getByTestId("typing-indicator").evaluate((el) => ({
    names: [...el.querySelectorAll("bdi")].map((b) => b.textContent),
    rest: [...el.childNodes].filter((n) => n.nodeType === Node.TEXT_NODE).map((n) => n.textContent).join(""),
  }));
  assert.deepEqual(typing, { names: [name], rest: " is typing…" });
  for (const testid of ["chat-title", "conversation-item"]) {
    const bdi = await alicePage.getByTestId(testid).first().locator("bdi").allTextContents();
    assert.deepEqual(bdi, [name], testid);
  }
  await send(alicePage, "שלום and hello");
  const text = message(alicePage, "hello").getByTestId("message-text");
  assert.equal(await text.getAttribute("dir"), "auto");
  await shot(alicePage, "app-4-bidi-name");
});

test("an image whose signed URLs expired loads again, and opening it opens a fresh URL", async () => {
  const { alice, alicePage, bobPage } = await twoUsers(suite.browser, suite.url);
  await attachPng(alicePage);
  await imageLoaded(alicePage);
  // Bob's client got the stored message (with its URLs) live; he opens the conversation only
  // once they have expired.
  const held = await bobPage.waitForFunction(() => {
    for (const c of window.parley.conversations) {
      const m = window.parley.messages(c.id).find((m) => m.attachment?.url && m.seq !== null);
      if (m) return m.attachment.url;
    }
    return null;
  });
  const stale = new URL(await held.jsonValue(), suite.split.apiUrl).href;
  await untilStatus(stale, 403);

  await bobPage.getByTestId("conversation-item").filter({ hasText: alice }).click();
  await imageLoaded(bobPage);

  // The link's URL expires in turn: opening it reads the message again and opens a fresh one.
  const link = bobPage.getByTestId("message-image-link").first();
  await untilStatus(new URL(await link.getAttribute("href"), suite.split.apiUrl).href, 403);
  const [tab] = await Promise.all([bobPage.context().waitForEvent("page"), link.click()]);
  await tab.waitForURL(/\/api\/attachments\/.*exp=/);
  const opened = await tab.evaluate(() => {
    const img = document.querySelector("img");
    return img ? new Promise((r) => (img.complete ? r(img.naturalWidth) : img.addEventListener("load", () => r(img.naturalWidth)))) : 0;
  });
  assert.ok(opened > 0, "the full image opened with a valid URL");
  assert.deepEqual(bobPage.consoleErrors, []);
});

/** Wait until GET `url` answers `status` (a signed URL expiring: the server's state, polled). */
async function untilStatus(url, status) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const response = await fetch(url);
    await response.arrayBuffer();
    if (response.status === status) return;
    if (Date.now() > deadline) throw new Error(`${url} did not answer ${status} within 60 s`);
    await new Promise((r) => setTimeout(r, 200)); // polling interval, not a synchronisation
  }
}

test("a page whose origin the relay refuses says it cannot reach the relay, and keeps trying", async () => {
  const page = await openPage(suite.browser, `http://localhost:${suite.site.port}/`);
  await register(page, unique("dora")); // the API accepts this origin
  const error = page.getByTestId("app-error").filter({ hasText: /cannot reach the relay/ });
  await error.waitFor();
  assert.match(await error.textContent(), /CORS_ALLOWED_ORIGINS/);
  await page.getByTestId("banner-text").filter({ hasText: /Reconnecting/ }).waitFor();
  await shot(page, "app-6-relay-refuses-origin");
});
