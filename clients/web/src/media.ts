// Images and voice notes in the chat pane: the upload's signed URLs (relative to the API) in
// <img> and <audio>, which cannot send a token; and the file picker that uploads and sends one.

import type { Attachment, ClientMessage, ParleyClient } from "@parley/client";
import { h } from "./dom.js";

/** The message's image or voice note, or `null` for text. */
export function attachmentView(m: ClientMessage, apiUrl: string): HTMLElement | null {
  const a: Attachment | null | undefined = m.attachment;
  if (!a) return m.kind === "text" ? null : h("span", { className: "media-missing" }, `[${m.kind}]`);
  const url = a.url ? new URL(a.url, apiUrl).href : null;
  if (a.kind === "image") {
    const thumb = a.thumbnailUrl ? new URL(a.thumbnailUrl, apiUrl).href : url;
    if (!thumb) return h("span", { className: "media-missing" }, "[image]");
    return h(
      "a",
      { href: url ?? thumb, target: "_blank", rel: "noopener", className: "media" },
      h("img", { src: thumb, alt: m.content || "image", testid: "message-image", loading: "lazy" }),
    );
  }
  if (!url) return h("span", { className: "media-missing" }, "[voice note]");
  return h("audio", { controls: true, preload: "none", src: url, testid: "message-audio", className: "media" });
}

/** An Attach button: pick an image or a recording, upload it, send it as a message. */
export function attachButton(
  client: ParleyClient,
  conversationId: () => string | null,
  caption: () => string,
  failed: (error: unknown) => void,
): HTMLElement {
  const picker = h("input", {
    type: "file",
    accept: "image/*,audio/*",
    hidden: true,
    testid: "attach-input",
  });
  picker.addEventListener("change", async () => {
    const file = picker.files?.[0];
    const id = conversationId();
    picker.value = "";
    if (!file || !id) return;
    try {
      const upload = await client.upload(file);
      client.send({
        conversationId: id,
        kind: upload.kind,
        attachmentId: upload.id,
        attachment: upload,
        content: caption(),
      });
    } catch (e) {
      failed(e);
    }
  });
  const button = h(
    "button",
    { type: "button", testid: "attach-button", title: "Send an image or a voice note", onclick: () => picker.click() },
    "Attach",
  );
  return h("span", {}, picker, button);
}
