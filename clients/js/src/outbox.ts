// The user's sends: the optimistic copy in the list, the emit with its ack, and the outbox of
// sends not acknowledged yet, resent with their original clientMsgId after a reconnect, and of
// failed ones, kept until the user retries or discards them.
//
// An ack not come within sendTimeoutMs on a connection that looks open means the connection is
// dead and its loss not noticed yet (a half-open link: the relay's heartbeat needs up to 45 s):
// the send stays `sending`, the client reconnects on a fresh transport and resends everything
// waiting, in send order. A send unanswered on UNANSWERED_TRIES connections fails (`timeout`,
// retryable), and the later sends of its conversation with it, so a retry keeps their order.
//
// The kept outbox is shared by every client of the user on one storage (two tabs share
// localStorage): each change reads it, changes that one entry and writes it back, so a client
// never drops another's entries. A send kept by two live clients may be sent by both: harmless,
// sends are idempotent on (sender, clientMsgId).
//
// A send refused `rate_limited` (the relay's per-user rate, or its queue) is not failed: the
// outbox holds every send for a back-off (the ack's `retryAfterMs` when it has one, else 1 s,
// 2 s, 4 s … 30 s) and then sends them again one at a time, in send order, until it drains;
// after RATE_LIMIT_TRIES refusals in a row the send is failed (retryable) as any other.

import type { Socket } from "socket.io-client";
import type {
  AckError,
  MessageSaved,
  SendAck,
  SendMessageRequest,
  UserId,
} from "./generated/wire.js";
import { newClientMsgId } from "./ids.js";
import { wellFormed } from "./text.js";
import type { MessageStore } from "./store.js";
import { ParleyError, type ClientMessage, type SendError, type SendInput } from "./types.js";

export interface OutboxDeps {
  me: UserId;
  store: MessageStore;
  socket: Socket;
  sendTimeoutMs: number;
  /**
   * Where the sends not acknowledged yet and the failed ones are kept (JSON), so that a reload
   * resends the first and shows the others failed.
   */
  kept: { get(): string | null; set(value: string | null): void };
  /** A send was acknowledged as stored. */
  saved(saved: MessageSaved): void;
  /** A send's ack is overdue on a connection that looks open: reconnect on a fresh one. */
  dropConnection(): void;
  closed(): boolean;
}

/** A send waiting for its ack (or failed: `error`): the request and when the user sent it. */
interface Pending {
  request: SendMessageRequest;
  sentAt: string;
  error?: SendError;
}

/** Connections a send goes unanswered on (sendTimeoutMs each) before it is marked failed. */
const UNANSWERED_TRIES = 3;

/** Refusals `rate_limited` in a row before a send is marked failed. */
const RATE_LIMIT_TRIES = 6;
const RATE_LIMIT_DELAY_MS = 1_000;
const RATE_LIMIT_DELAY_MAX_MS = 30_000;

interface AckFailureLike {
  success: false;
  error?: AckError;
}

export class Outbox {
  /** Sends waiting for their ack or failed, by clientMsgId, in send order. */
  readonly #pending = new Map<string, Pending>();
  /** Sends whose ack did not come in time, by clientMsgId: on how many connections so far. */
  readonly #unanswered = new Map<string, number>();
  /** Emitted on this connection, waiting for their ack: the back-off round they were sent in. */
  readonly #inFlight = new Map<string, number>();
  /** Bumped by each back-off: refusals of sends emitted before it count once. */
  #round = 0;
  /** After a `rate_limited` refusal: one send in flight at a time until the outbox drains. */
  #oneByOne = false;
  /** `rate_limited` back-offs in a row (reset by any stored send). */
  #refusals = 0;
  /** The back-off after a `rate_limited` refusal: nothing is emitted until it fires. */
  #holdTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(private readonly deps: OutboxDeps) {
    this.#restore();
  }

  send(input: SendInput): ClientMessage {
    const { conversationId } = input;
    const given = input.content ?? "";
    // A text needs content; an upload (attachmentId) may go without a caption.
    if (typeof given !== "string" || (given.trim() === "" && !input.attachmentId)) {
      throw new ParleyError("validation_failed", "content: must not be empty or blank", {
        field: "content",
      });
    }
    const content = wellFormed(given);
    const request: SendMessageRequest = {
      clientMsgId: newClientMsgId(),
      conversationId,
      kind: input.kind ?? "text",
      content,
      attachmentId: input.attachmentId ?? null,
    };
    if (input.attachment) request.attachment = input.attachment;
    const pending = { request, sentAt: new Date().toISOString() };
    this.#addOptimistic(pending);
    this.#enqueue(pending);
    return this.deps.store.findMine(request.clientMsgId)!;
  }

  /**
   * Send the user's message already in the list as `message` (an attachment's placeholder, now
   * uploaded: its `attachmentId` and `attachment` set), with its clientMsgId and creation time.
   */
  sendListed(message: ClientMessage): ClientMessage | null {
    const next = this.deps.store.replaceUnstored(message);
    if (next) this.#enqueue({ request: requestOf(next), sentAt: next.createdAt });
    return next;
  }

  /** Send a `failed` message again with its clientMsgId; other statuses are left alone. */
  retry(clientMsgId: string): ClientMessage {
    const message = this.deps.store.findMine(clientMsgId);
    if (!message) throw new ParleyError("not_found", `no message ${clientMsgId} of yours`);
    if (message.status !== "failed") return message;
    const next = this.deps.store.markSending(message);
    this.#enqueue({ request: requestOf(message), sentAt: message.createdAt });
    return next;
  }

  discard(clientMsgId: string): boolean {
    const message = this.deps.store.findMine(clientMsgId);
    if (!message || message.status !== "failed") return false;
    this.settled(clientMsgId);
    return this.deps.store.remove(message.conversationId, clientMsgId, this.deps.me);
  }

  /** The server refused the user's `message` later (`message_failed`): keep it failed. */
  failed(message: ClientMessage, error: SendError): void {
    this.#unanswered.delete(message.clientMsgId);
    const pending = this.#pending.get(message.clientMsgId);
    this.#pending.set(message.clientMsgId, {
      request: pending?.request ?? requestOf(message),
      sentAt: pending?.sentAt ?? message.createdAt,
      error,
    });
    this.#save(message.clientMsgId);
  }

  /** The socket (re)connected: send everything still waiting (not failed), in send order. */
  resendAll(): void {
    this.#inFlight.clear(); // their acks were lost with the old connection
    for (const clientMsgId of this.#pending.keys()) this.#emit(clientMsgId);
  }

  /** The client is closed: no more back-off. */
  close(): void {
    if (this.#holdTimer !== null) clearTimeout(this.#holdTimer);
    this.#holdTimer = null;
  }

  /** The message is stored (seen through `message_saved` or a sync): stop waiting for it. */
  settled(clientMsgId: string): void {
    this.#unanswered.delete(clientMsgId);
    if (this.#pending.delete(clientMsgId)) this.#save(clientMsgId);
  }

  #addOptimistic({ request, sentAt }: Pending): void {
    this.deps.store.addOptimistic({
      clientMsgId: request.clientMsgId,
      conversationId: request.conversationId!,
      senderId: this.deps.me,
      id: null,
      seq: null,
      kind: (request.kind as ClientMessage["kind"] | undefined) ?? "text",
      content: request.content ?? "",
      attachmentId: request.attachmentId ?? null,
      ...(request.attachment ? { attachment: request.attachment } : {}),
      createdAt: sentAt,
      status: "sending",
      mine: true,
    });
  }

  #enqueue(pending: Pending): void {
    this.#pending.set(pending.request.clientMsgId, pending);
    this.#save(pending.request.clientMsgId);
    if (this.deps.socket.connected) this.#emit(pending.request.clientMsgId);
  }

  /** The sends a previous session of this user left unacknowledged (a reload, a crash). */
  #restore(): void {
    const kept = this.#readKept();
    this.deps.store.batch(() => {
      for (const pending of kept) {
        const { clientMsgId, conversationId } = pending?.request ?? {};
        if (!clientMsgId || !conversationId) continue;
        this.#addOptimistic(pending);
        if (pending.error) this.deps.store.markFailed(conversationId, clientMsgId, pending.error, this.deps.me);
        this.#pending.set(clientMsgId, pending);
      }
    });
  }

  /**
   * Write this client's change of `clientMsgId` into the kept outbox, as it is now: the entry
   * set (in send order) while pending here, removed once resolved (stored, discarded). Other
   * clients' entries on the same storage are left as they are.
   */
  #save(clientMsgId: string): void {
    const kept = this.#readKept();
    const at = kept.findIndex((p) => p?.request?.clientMsgId === clientMsgId);
    const pending = this.#pending.get(clientMsgId);
    if (pending) {
      if (at >= 0) kept[at] = pending;
      else kept.push(pending);
    } else if (at >= 0) {
      kept.splice(at, 1);
    } else {
      return;
    }
    this.deps.kept.set(kept.length ? JSON.stringify(kept) : null);
  }

  /** The kept outbox as the storage holds it now (every client's entries). */
  #readKept(): Pending[] {
    try {
      const kept = JSON.parse(this.deps.kept.get() ?? "[]") as unknown;
      return Array.isArray(kept) ? (kept as Pending[]) : [];
    } catch {
      return []; // unreadable: nothing to resend
    }
  }

  /** Emit the send now, unless it waits: failed, in flight already, or held by a back-off. */
  #emit(clientMsgId: string): void {
    const pending = this.#pending.get(clientMsgId);
    if (!pending || pending.error || this.#inFlight.has(clientMsgId)) return;
    if (this.#holdTimer !== null || (this.#oneByOne && this.#inFlight.size > 0)) return;
    const { request } = pending;
    const socket = this.deps.socket;
    const round = this.#round;
    this.#inFlight.set(clientMsgId, round);
    socket
      .timeout(this.deps.sendTimeoutMs)
      .emit("send_message", request, (timeout: Error | null, ack?: SendAck | AckFailureLike) => {
        if (this.deps.closed()) return;
        this.#inFlight.delete(clientMsgId);
        if (timeout) {
          // Lost with the connection: resent on reconnect.
          const waiting = this.#pending.get(clientMsgId);
          if (!socket.connected || !waiting || waiting.error) return;
          // No answer on a connection that looks open: taken for dead (half-open, its loss not
          // noticed yet). The send stays `sending` and is resent, in order, on a fresh one.
          const tries = (this.#unanswered.get(clientMsgId) ?? 0) + 1;
          this.#unanswered.set(clientMsgId, tries);
          if (tries >= UNANSWERED_TRIES) this.#failUnanswered(request, tries);
          this.deps.dropConnection();
          return;
        } else if (ack && ack.success === true) {
          this.#refusals = 0;
          this.settled(clientMsgId);
          // The ack is MessageSaved plus the ack's own fields, which are not the message's.
          const { success: _success, messageId: _id, status: _status, ...saved } = ack as SendAck;
          this.deps.saved(saved);
        } else {
          const error = (ack as AckFailureLike | undefined)?.error ?? {
            code: "internal_error",
            message: "the server answered the send with no error",
            retryable: true,
          };
          if (error.code === "rate_limited" && (round < this.#round || ++this.#refusals < RATE_LIMIT_TRIES)) {
            // Still sending: sent again after the back-off (one started by an earlier refusal
            // of the same burst, or a new one).
            if (round === this.#round) this.#holdBack(error.retryAfterMs);
            return;
          }
          this.#fail(request, error);
        }
        this.#next();
      });
  }

  /**
   * Sent too fast: hold every send for a back-off, then send them one at a time. The relay's
   * `retryAfterMs`, when it gives one (its per-user rate), is the wait, plus up to a quarter;
   * otherwise (a queue full) the back-off doubles from 1 s.
   */
  #holdBack(retryAfterMs?: number | null): void {
    this.#oneByOne = true;
    this.#round++;
    if (this.#holdTimer !== null) clearTimeout(this.#holdTimer);
    const delay =
      retryAfterMs != null && retryAfterMs >= 0
        ? Math.min(RATE_LIMIT_DELAY_MAX_MS, retryAfterMs) * (1 + 0.25 * Math.random())
        : Math.min(RATE_LIMIT_DELAY_MAX_MS, RATE_LIMIT_DELAY_MS * 2 ** (this.#refusals - 1)) *
          (0.75 + 0.5 * Math.random());
    this.#holdTimer = setTimeout(() => {
      this.#holdTimer = null;
      this.#next();
    }, Math.round(delay));
  }

  /** One by one after a rate limit: send the oldest send still waiting, if none is in flight. */
  #next(): void {
    if (!this.#oneByOne || this.deps.closed() || !this.deps.socket.connected) return;
    for (const [clientMsgId, pending] of this.#pending) {
      if (pending.error) continue;
      this.#emit(clientMsgId);
      return;
    }
    this.#oneByOne = false; // drained: back to sending at once
  }

  /**
   * No answer on `tries` connections: fail the send, and the later sends of its conversation
   * with it, so that retrying them keeps their order.
   */
  #failUnanswered(request: SendMessageRequest, tries: number): void {
    const error: SendError = {
      code: "timeout",
      message: `no answer from the server on ${tries} connections`,
      retryable: true,
    };
    let later = false;
    for (const [clientMsgId, pending] of [...this.#pending]) {
      later ||= clientMsgId === request.clientMsgId;
      if (later && !pending.error && pending.request.conversationId === request.conversationId) {
        this.#fail(pending.request, error);
      }
    }
  }

  #fail(request: SendMessageRequest, error: SendError): void {
    const message = this.deps.store.markFailed(request.conversationId!, request.clientMsgId, error, this.deps.me);
    // Kept (with its error) until retried or discarded; a send stored meanwhile is forgotten.
    if (message) this.failed(message, error);
    else this.settled(request.clientMsgId);
  }
}

/** The request that sends `message` (again), with its clientMsgId. */
function requestOf(message: ClientMessage): SendMessageRequest {
  return {
    clientMsgId: message.clientMsgId,
    conversationId: message.conversationId,
    kind: message.kind,
    content: message.content,
    attachmentId: message.attachmentId ?? null,
    ...(message.attachment ? { attachment: message.attachment } : {}),
  };
}
