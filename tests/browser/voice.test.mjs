// Voice notes recorded in the page (issue 11): Chromium's fake microphone (a beep, no prompt)
// through the app's MediaRecorder, uploaded to the all-in-one and sent as `kind: voice`; the
// other user's page gets a player whose signed URL loads. What Chromium records (WebM/Opus) is
// what the server must accept.

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  allInOneSuite, audioLoaded, launchChromium, login, message, openPage, recordFor, registerRest, rest, shot, stopRecording,
  waitStored,
} from "./harness.mjs";

const suite = allInOneSuite();

const recorder = (page) => page.getByTestId("record-button");

/** `user`'s page with the conversation with `other` open. */
async function openChat(browser, user, other, options) {
  const page = await openPage(browser, suite.parley.web, options);
  await login(page, user.user.username);
  await page.getByTestId("conversation-item").filter({ hasText: other.user.username }).click();
  await page.getByTestId("composer-input").waitFor();
  return page;
}


test("a voice note recorded in Chromium plays on the other user's page", async (t) => {
  const { parley, browser } = suite;
  const alice = await registerRest(parley.api, "alice");
  const bob = await registerRest(parley.api, "bob");
  const chat = await rest(parley.api, "POST", "/api/conversations", { token: alice.token, body: { memberIds: [bob.user.id] } });
  const alicePage = await openChat(browser, alice, bob);
  const bobPage = await openChat(browser, bob, alice);

  // Alice records about a second (as her page measures it) and stops: the note is uploaded and sent.
  await recordFor(alicePage, 1000);
  await shot(alicePage, "voice-1-alice-recording");
  const recordedMs = Number(await recorder(alicePage).getAttribute("data-elapsed-ms"));
  // While it uploads, Alice's list shows it as being sent (seen by an observer: no race).
  await alicePage.evaluate(() => {
    window.sawPending = false;
    const seen = () => document.querySelector('[data-testid="upload-pending"]') && (window.sawPending = true);
    new MutationObserver(seen).observe(document.body, { childList: true, subtree: true });
  });
  await stopRecording(alicePage);
  assert.equal(await alicePage.getByTestId("app-error").textContent(), "");
  await alicePage.locator('[data-testid="message"]:not([data-id=""]):has([data-testid="message-audio"])').waitFor(); // stored

  // Bob's page shows the player; its source (a signed URL) loads far enough to know the format.
  await audioLoaded(bobPage);
  assert.equal(await alicePage.evaluate(() => window.sawPending), true);
  assert.equal(await alicePage.getByTestId("upload-pending").count(), 0);
  const played = await bobPage.evaluate(() => {
    const a = document.querySelector('[data-testid="message-audio"]');
    return { error: a.error?.code ?? null, src: a.currentSrc };
  });
  assert.equal(played.error, null);
  await shot(bobPage, "voice-2-bob-sees-voice-note");

  // What the server stored: a voice note of Chromium's container, about as long as recorded.
  const stored = await bobPage.evaluate((id) => window.parley.messages(id).find((m) => m.kind === "voice"), chat.id);
  const { mime, bytes, durationMs } = stored.attachment;
  t.diagnostic(`recorded ${recordedMs} ms before Stop; stored ${mime}, ${bytes} bytes, ${durationMs} ms`);
  assert.equal(stored.attachment.kind, "voice");
  assert.match(stored.attachment.mime, /^audio\/(webm|ogg)$/);
  assert.ok(stored.attachment.durationMs >= 500 && stored.attachment.durationMs < 120_000, String(stored.attachment.durationMs));
  assert.match(await bobPage.getByTestId("voice-duration").textContent(), /^\d+:\d\d$/);
  // The signed URL needs no token: node fetches it like the <audio> did.
  const response = await fetch(played.src);
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), stored.attachment.mime);
  assert.equal((await response.arrayBuffer()).byteLength, stored.attachment.bytes);
  // A player seeks with ranges: the first 100 bytes.
  const range = await fetch(played.src, { headers: { range: "bytes=0-99" } });
  assert.equal(range.status, 206);
  assert.equal((await range.arrayBuffer()).byteLength, 100);
  // The list names a bare voice note.
  await bobPage.getByTestId("conversation-item").filter({ hasText: "Voice note" }).waitFor();

  // A cancelled recording sends nothing: the next message Bob sees is Alice's text. Bob's
  // player is the same element after that message re-rendered his list (it would go on playing).
  await bobPage.evaluate(() => (document.querySelector('[data-testid="message-audio"]').dataset.kept = "yes"));
  await recordFor(alicePage, 300);
  await alicePage.getByTestId("record-cancel").click();
  await alicePage.locator('[data-testid="record-button"][data-state="idle"]').waitFor();
  await alicePage.getByTestId("composer-input").fill("that was all");
  await alicePage.getByTestId("send-button").click();
  await message(bobPage, "that was all").waitFor();
  await waitStored(alicePage, "that was all");
  assert.equal(await bobPage.getByTestId("message-audio").count(), 1);
  assert.equal(await alicePage.getByTestId("message-audio").count(), 1);
  assert.equal(await bobPage.getByTestId("message-audio").getAttribute("data-kept"), "yes");
  await shot(alicePage, "voice-3-alice-after-cancel");

  assert.deepEqual(alicePage.consoleErrors, []);
  assert.deepEqual(bobPage.consoleErrors, []);
});

test("a refused microphone is said on the page, and nothing is sent", async () => {
  const { parley } = suite;
  const alice = await registerRest(parley.api, "alice");
  const bob = await registerRest(parley.api, "bob");
  await rest(parley.api, "POST", "/api/conversations", { token: alice.token, body: { memberIds: [bob.user.id] } });
  // A browser that asks, and a page never granted the microphone: headless Chromium says no.
  const browser = await launchChromium({ prompts: false });
  try {
    const page = await openChat(browser, alice, bob, { microphone: false });
    await recorder(page).click();
    await page.getByTestId("app-error").filter({ hasText: "The microphone was refused" }).waitFor();
    await page.locator('[data-testid="record-button"][data-state="idle"]').waitFor();
    await shot(page, "voice-4-microphone-refused");
    assert.equal(await page.getByTestId("message").count(), 0);
    assert.deepEqual(page.consoleErrors, []);
  } finally {
    await browser.close();
  }
});

test("a file the server refuses (not an image nor a voice note) is said on the page, and nothing is sent", async () => {
  const { parley, browser } = suite;
  const alice = await registerRest(parley.api, "alice");
  const bob = await registerRest(parley.api, "bob");
  await rest(parley.api, "POST", "/api/conversations", { token: alice.token, body: { memberIds: [bob.user.id] } });
  const page = await openChat(browser, alice, bob);
  // Text named .png: the server reads the bytes, not the name or the type (415). The caption
  // typed for it stays in the composer.
  await page.getByTestId("composer-input").fill("my holiday");
  const text = { name: "notes.png", mimeType: "image/png", buffer: Buffer.from("not a picture\n") };
  await page.getByTestId("attach-input").setInputFiles(text);
  await page.getByTestId("app-error").filter({ hasText: "not an image" }).waitFor();
  await page.locator('[data-testid="attach-button"]:not([disabled])').filter({ hasText: "Attach" }).waitFor();
  await shot(page, "voice-5-upload-refused");
  assert.equal(await page.getByTestId("composer-input").inputValue(), "my holiday");
  assert.equal(await page.getByTestId("message").count(), 0);
  assert.deepEqual(page.consoleErrors, []);
});
