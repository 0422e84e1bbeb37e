// Images and voice notes with an optimistic placeholder: the message is in the list at once
// (status `sending`, `localAttachment`), then uploaded (POST /api/attachments), then sent through
// the outbox with the same clientMsgId and the upload's answer. An upload that fails for a
// reason that may pass (no answer, 408, 429, 5xx) is tried again by itself, UPLOAD_TRIES times in
// all, after the server's `Retry-After` or a back-off; `discard` cancels one still uploading. The
// bytes are held in memory only, so an upload is not resumed after a reload (the message is not
// kept until uploaded).

import type { ConversationId, UploadedAttachment, UserId } from "./generated/wire.js";
import { newClientMsgId } from "./ids.js";
import type { Outbox } from "./outbox.js";
import type { MessageStore } from "./store.js";
import { wellFormed } from "./text.js";
import { ParleyError, type AttachmentInput, type ClientMessage, type SendError } from "./types.js";

type Body = AttachmentInput["body"];

/** Attempts of one upload before its placeholder is `failed` (for errors that may pass). */
const UPLOAD_TRIES = 4;
/** The first back-off between attempts; it doubles, up to UPLOAD_DELAY_MAX_MS. */
const UPLOAD_DELAY_MS = 1_000;
const UPLOAD_DELAY_MAX_MS = 30_000;

export interface UploadsDeps {
  me: UserId;
  store: MessageStore;
  outbox: Outbox;
  upload(body: Body): Promise<UploadedAttachment>;
  closed(): boolean;
}

export class Uploads {
  /** The files of placeholders not uploaded yet (uploading or failed), by clientMsgId. */
  readonly #bodies = new Map<string, Body>();

  constructor(private readonly deps: UploadsDeps) {}

  send(conversationId: ConversationId, input: AttachmentInput): ClientMessage {
    const { kind, body } = input ?? ({} as Partial<AttachmentInput>);
    if (kind !== "image" && kind !== "voice") {
      throw new ParleyError("validation_failed", "kind: must be image or voice", { field: "kind" });
    }
    const bytes = sizeOf(body);
    if (bytes === null) {
      throw new ParleyError("validation_failed", "body: must be a Blob, ArrayBuffer or Uint8Array", {
        field: "body",
      });
    }
    const caption = input.caption ?? "";
    if (typeof caption !== "string") {
      throw new ParleyError("validation_failed", "caption: must be a string", { field: "caption" });
    }
    const blobType = typeof Blob !== "undefined" && body instanceof Blob ? body.type : "";
    const clientMsgId = newClientMsgId();
    this.deps.store.addOptimistic({
      clientMsgId,
      conversationId,
      senderId: this.deps.me,
      id: null,
      seq: null,
      kind,
      content: wellFormed(caption),
      attachmentId: null,
      localAttachment: { kind, mime: input.mime || blobType || null, bytes },
      createdAt: new Date().toISOString(),
      status: "sending",
      mine: true,
    });
    this.#bodies.set(clientMsgId, body as Body);
    void this.#upload(clientMsgId);
    return this.deps.store.findMine(clientMsgId)!;
  }

  /** Whether `clientMsgId` is a placeholder whose upload has not succeeded. */
  has(clientMsgId: string): boolean {
    return this.#bodies.has(clientMsgId);
  }

  /** Upload a `failed` placeholder again; other statuses are left alone. */
  retry(clientMsgId: string): ClientMessage {
    const message = this.#mine(clientMsgId);
    if (message.status !== "failed") return message;
    const next = this.deps.store.markSending(message);
    void this.#upload(clientMsgId);
    return next;
  }

  /**
   * Drop a placeholder that failed, or cancel one still uploading: an upload in flight is then
   * not sent (the server collects it as an upload no message took).
   */
  discard(clientMsgId: string): boolean {
    const message = this.deps.store.findMine(clientMsgId);
    if (!message || !this.#bodies.delete(clientMsgId)) return false;
    return this.deps.store.remove(message.conversationId, clientMsgId, this.deps.me);
  }

  async #upload(clientMsgId: string): Promise<void> {
    let uploaded: UploadedAttachment | undefined;
    for (let attempt = 1; uploaded === undefined; attempt++) {
      const body = this.#bodies.get(clientMsgId);
      if (body === undefined || this.deps.closed()) return;
      try {
        uploaded = await this.deps.upload(body);
      } catch (error) {
        if (this.deps.closed() || !this.#bodies.has(clientMsgId)) return;
        const again = error instanceof ParleyError && error.retryable && attempt < UPLOAD_TRIES;
        if (again) {
          await sleep(backOff(attempt, error.retryAfterMs));
          continue;
        }
        const message = this.deps.store.findMine(clientMsgId);
        if (message) {
          this.deps.store.markFailed(message.conversationId, clientMsgId, sendErrorOf(error), this.deps.me);
        }
        return;
      }
    }
    const message = this.deps.store.findMine(clientMsgId);
    if (this.deps.closed() || !this.#bodies.delete(clientMsgId) || !message) return;
    // The same entry, now with the server's upload (sizes, duration), sent as any message.
    const { localAttachment: _local, ...fields } = message;
    this.deps.outbox.sendListed({
      ...fields,
      kind: uploaded.kind,
      attachmentId: uploaded.id,
      attachment: uploaded,
    });
  }

  #mine(clientMsgId: string): ClientMessage {
    const message = this.deps.store.findMine(clientMsgId);
    if (!message) throw new ParleyError("not_found", `no message ${clientMsgId} of yours`);
    return message;
  }
}

/** The wait before attempt `attempt + 1`: the server's, else 1 s, 2 s, 4 s …; plus up to 25 %. */
function backOff(attempt: number, retryAfterMs: number | undefined): number {
  const base = retryAfterMs ?? UPLOAD_DELAY_MS * 2 ** (attempt - 1);
  return Math.min(UPLOAD_DELAY_MAX_MS, base) * (1 + 0.25 * Math.random());
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The size of an upload body, `null` when it is none of the accepted types. */
function sizeOf(body: unknown): number | null {
  if (typeof Blob !== "undefined" && body instanceof Blob) return body.size;
  if (body instanceof ArrayBuffer || body instanceof Uint8Array) return body.byteLength;
  return null;
}

function sendErrorOf(error: unknown): SendError {
  if (error instanceof ParleyError) {
    return { code: error.code as SendError["code"], message: error.message, retryable: error.retryable };
  }
  return { code: "internal_error", message: String(error), retryable: true };
}
