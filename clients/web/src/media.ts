// Images and voice notes in the chat pane: the upload's signed URLs (relative to the API) in
// <img> and <audio>, which cannot send a token; the file picker; and the upload-then-send both
// the picker and the voice recorder use.

import type { Attachment, ClientMessage, ParleyClient } from "@parley/client";
import { h } from "./dom.js";
import { duration } from "./voice.js";

/** The longer side of an image's thumbnail in the list, in CSS pixels (see style.css). */
const THUMB_PX = 240;

/** Reads the message again (fresh signed URLs); resolves with it as the list then holds it. */
export type Reread = (m: ClientMessage) => Promise<ClientMessage | undefined>;

/**
 * The open conversation's images and players, kept across re-renders of the list (which
 * rebuild it on every change): a voice note goes on playing, an image is not fetched again.
 *
 * Signed URLs expire (`attachments.signed_url_ttl_secs`, 1 h) and every read of a message
 * (history, sync) brings fresh ones: a view is kept while its own URL is still valid, and made
 * again with the fresh URLs once it is not. An image or player that fails to load with an
 * expired URL, or a full image opened after it expired, reads the message again (`reread`).
 */
export class MediaViews {
  /** By message and upload: the view and the URL it loads. */
  readonly #views = new Map<string, { view: HTMLElement; url: string }>();
  /** Messages being read again, by clientMsgId (one request at a time for each). */
  readonly #rereading = new Map<string, Promise<ClientMessage | undefined>>();

  constructor(
    private readonly apiUrl: string,
    private readonly reread: Reread,
  ) {}

  /** The message's image or voice note, or `null` for text. */
  render(m: ClientMessage): HTMLElement | null {
    const a = m.attachment;
    const key = a ? `${m.senderId} ${m.clientMsgId} ${a.id}` : undefined;
    const url = a?.url ?? a?.thumbnailUrl ?? "";
    const kept = key ? this.#views.get(key) : undefined;
    if (kept && (kept.url === url || !expired(kept.url))) return kept.view;
    const view = attachmentView(m, this.apiUrl, (m) => this.#fresh(m));
    // Only a view with its URL is kept (an optimistic copy may have none yet).
    if (key && url && view && !view.classList.contains("media-missing")) this.#views.set(key, { view, url });
    return view;
  }

  #fresh(m: ClientMessage): Promise<ClientMessage | undefined> {
    let pending = this.#rereading.get(m.clientMsgId);
    if (!pending) {
      pending = this.reread(m).finally(() => this.#rereading.delete(m.clientMsgId));
      this.#rereading.set(m.clientMsgId, pending);
    }
    return pending;
  }

  /** Another conversation opens: forget this one's. */
  clear(): void {
    this.#views.clear();
  }
}

/**
 * Whether a signed URL has expired by this device's clock; a URL without an expiry never does.
 * A 403 is not told apart from other load errors in `<img>`: an image failing with a URL still
 * valid is not read again (no loop on a file that is gone).
 */
function expired(url: string): boolean {
  const exp = Number(new URL(url, "http://x").searchParams.get("exp"));
  return exp > 0 && exp * 1000 <= Date.now();
}

function attachmentView(
  m: ClientMessage,
  apiUrl: string,
  fresh: (m: ClientMessage) => Promise<ClientMessage | undefined>,
): HTMLElement | null {
  const a: Attachment | null | undefined = m.attachment;
  // Failed to load with an expired URL: read it again; the list re-renders with the new URLs.
  const onerror = (event: Event) => {
    const src = (event.target as HTMLImageElement | HTMLAudioElement).src;
    if (src && expired(src)) void fresh(m);
  };
  if (!a) return m.kind === "text" ? null : h("span", { className: "media-missing" }, `[${m.kind}]`);
  const url = a.url ? new URL(a.url, apiUrl).href : null;
  if (a.kind === "image") {
    const thumb = a.thumbnailUrl ? new URL(a.thumbnailUrl, apiUrl).href : url;
    if (!thumb) return h("span", { className: "media-missing" }, "[image]");
    // The upload's dimensions reserve the thumbnail's box before it loads (no jump).
    const scale = a.width && a.height ? Math.min(1, THUMB_PX / Math.max(a.width, a.height)) : 0;
    const href = url ?? thumb;
    // Opened after its URL expired: open the fresh one instead (a user's click still, for the
    // browser's pop-up rule, when the answer comes within a few seconds).
    const open = (event: Event) => {
      if (!expired(href)) return;
      event.preventDefault();
      const tab = window.open("", "_blank");
      if (tab) tab.opener = null; // as rel=noopener would
      void fresh(m).then((next) => {
        const again = next?.attachment?.url ?? next?.attachment?.thumbnailUrl;
        if (tab && again && !expired(again)) tab.location.href = new URL(again, apiUrl).href;
        else tab?.close();
      });
    };
    return h(
      "a",
      { href, target: "_blank", rel: "noopener", className: "media", title: "Open the full image", testid: "message-image-link", onclick: open },
      h("img", {
        src: thumb,
        alt: m.content || "image",
        testid: "message-image",
        onerror,
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
    h("audio", { controls: true, preload: "metadata", src: url, testid: "message-audio", onerror }),
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
