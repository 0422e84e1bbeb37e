// Images and voice notes in the chat pane: the upload's signed URLs (relative to the API) in
// <img> and <audio>, which cannot send a token; the file picker; and the upload-then-send both
// the picker and the voice recorder use.

import type { Attachment, ClientMessage, ParleyClient } from "@parley/client";
import { h } from "./dom.js";
import { duration } from "./voice.js";

/** The longer side of an image's thumbnail in the list, in CSS pixels (see style.css). */
const THUMB_PX = 240;

/**
 * The open conversation's images and players, kept across re-renders of the list (which
 * rebuild it on every change): a voice note goes on playing, an image is not fetched again.
 * Kept by upload and URLs: fresh signed URLs (history fetched again) make a new element.
 */
export class MediaViews {
  readonly #views = new Map<string, HTMLElement>();

  constructor(private readonly apiUrl: string) {}

  /** The message's image or voice note, or `null` for text. */
  render(m: ClientMessage): HTMLElement | null {
    const a = m.attachment;
    const id = a ? `${a.id} ${a.url ?? ""} ${a.thumbnailUrl ?? ""}` : undefined;
    const kept = id ? this.#views.get(id) : undefined;
    if (kept) return kept;
    const view = attachmentView(m, this.apiUrl);
    // Only a view with its URL is kept (an optimistic copy may have none yet).
    if (id && view && !view.classList.contains("media-missing")) this.#views.set(id, view);
    return view;
  }

  /** Another conversation opens: forget this one's. */
  clear(): void {
    this.#views.clear();
  }
}

function attachmentView(m: ClientMessage, apiUrl: string): HTMLElement | null {
  const a: Attachment | null | undefined = m.attachment;
  if (!a) return m.kind === "text" ? null : h("span", { className: "media-missing" }, `[${m.kind}]`);
  const url = a.url ? new URL(a.url, apiUrl).href : null;
  if (a.kind === "image") {
    const thumb = a.thumbnailUrl ? new URL(a.thumbnailUrl, apiUrl).href : url;
    if (!thumb) return h("span", { className: "media-missing" }, "[image]");
    // The upload's dimensions reserve the thumbnail's box before it loads (no jump).
    const scale = a.width && a.height ? Math.min(1, THUMB_PX / Math.max(a.width, a.height)) : 0;
    return h(
      "a",
      { href: url ?? thumb, target: "_blank", rel: "noopener", className: "media", title: "Open the full image" },
      h("img", {
        src: thumb,
        alt: m.content || "image",
        testid: "message-image",
        loading: "lazy",
        width: scale ? Math.max(1, Math.round(a.width! * scale)) : null,
        height: scale ? Math.max(1, Math.round(a.height! * scale)) : null,
      }),
    );
  }
  if (!url) return h("span", { className: "media-missing" }, "[voice note]");
  // MediaRecorder's WebM has no duration in its header (the player shows none until it has
  // played it through): the length the server read from the container is shown next to it.
  return h(
    "span",
    { className: "media voice" },
    h("audio", { controls: true, preload: "metadata", src: url, testid: "message-audio" }),
    a.durationMs != null ? h("span", { className: "duration", testid: "voice-duration" }, duration(a.durationMs)) : null,
  );
}

/**
 * Uploads under way: each is shown at the end of its conversation's list ("Sending image…",
 * with a local preview) from the moment it starts until its message is sent or it fails.
 */
export class PendingUploads {
  readonly #pending = new Map<number, { conversationId: string; view: HTMLElement }>();
  #next = 0;

  /** `changed` re-renders a conversation's list. */
  constructor(
    private readonly client: ParleyClient,
    private readonly changed: (conversationId: string) => void,
  ) {}

  /** Upload `data` (the server reads its type from the bytes) and send it with `caption`. */
  async send(conversationId: string, data: Blob, caption = ""): Promise<void> {
    const key = this.#next++;
    const image = data.type.startsWith("image/");
    const preview = image ? URL.createObjectURL(data) : null;
    const view = h(
      "div",
      { className: "msg mine uploading", testid: "upload-pending" },
      preview ? h("img", { src: preview, alt: "", className: "preview" }) : null,
      image ? "Sending image…" : "Sending voice note…",
    );
    this.#pending.set(key, { conversationId, view });
    this.changed(conversationId);
    try {
      const upload = await this.client.upload(data);
      this.client.send({ conversationId, kind: upload.kind, attachmentId: upload.id, attachment: upload, content: caption });
    } finally {
      this.#pending.delete(key);
      if (preview) URL.revokeObjectURL(preview);
      this.changed(conversationId);
    }
  }

  /** The conversation's uploads under way, oldest first. */
  views(conversationId: string): HTMLElement[] {
    return [...this.#pending.values()].filter((p) => p.conversationId === conversationId).map((p) => p.view);
  }
}

/**
 * An Attach button: pick an image or an audio file, upload it, send it as a message with the
 * composer's text as its caption (`caption` takes it; `failed` gets it back with the error).
 */
export function attachButton(
  send: (conversationId: string, file: Blob, caption: string) => Promise<void>,
  conversationId: () => string | null,
  caption: () => string,
  failed: (error: unknown, caption: string) => void,
): HTMLElement {
  const picker = h("input", {
    type: "file",
    accept: "image/jpeg,image/png,image/webp,image/gif,audio/*",
    hidden: true,
    testid: "attach-input",
  });
  const button = h(
    "button",
    { type: "button", testid: "attach-button", title: "Send an image or a voice note", onclick: () => picker.click() },
    "Attach",
  );
  picker.addEventListener("change", async () => {
    const file = picker.files?.[0];
    const id = conversationId();
    picker.value = "";
    if (!file || !id) return;
    button.disabled = true;
    button.textContent = "Sending…";
    const text = caption();
    try {
      await send(id, file, text);
    } catch (e) {
      failed(e, text);
    } finally {
      button.disabled = false;
      button.textContent = "Attach";
    }
  });
  return h("span", {}, picker, button);
}
