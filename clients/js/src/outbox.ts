// The user's sends: the optimistic copy in the list, the emit with its ack, and the outbox of
// sends not acknowledged yet, resent with their original clientMsgId after a reconnect.

import type { Socket } from "socket.io-client";
import type {
  AckError,
  MessageSaved,
  SendAck,
  SendMessageRequest,
  UserId,
} from "./generated/wire.js";
import { newClientMsgId } from "./ids.js";
import type { MessageStore } from "./store.js";
import { ParleyError, type ClientMessage, type SendInput } from "./types.js";

export interface OutboxDeps {
  me: UserId;
  store: MessageStore;
  socket: Socket;
  sendTimeoutMs: number;
  /** A send was acknowledged as stored. */
  saved(saved: MessageSaved): void;
  closed(): boolean;
}

interface AckFailureLike {
  success: false;
  error?: AckError;
}

export class Outbox {
  /** Sends waiting for their ack, by clientMsgId, in send order. */
  readonly #pending = new Map<string, SendMessageRequest>();

  constructor(private readonly deps: OutboxDeps) {}

  send(input: SendInput): ClientMessage {
    const { conversationId } = input;
    const content = input.content ?? "";
    // A text needs content; an upload (attachmentId) may go without a caption.
    if (typeof content !== "string" || (content.trim() === "" && !input.attachmentId)) {
      throw new ParleyError("validation_failed", "content: must not be empty or blank", {
        field: "content",
      });
    }
    const request: SendMessageRequest = {
      clientMsgId: newClientMsgId(),
      conversationId,
      kind: input.kind ?? "text",
      content,
      attachmentId: input.attachmentId ?? null,
    };
    this.deps.store.addOptimistic({
      clientMsgId: request.clientMsgId,
      conversationId,
      senderId: this.deps.me,
      id: null,
      seq: null,
      kind: input.kind ?? "text",
      content,
      attachmentId: request.attachmentId ?? null,
      createdAt: new Date().toISOString(),
      status: "sending",
      mine: true,
    });
    this.#enqueue(request);
    return this.deps.store.findMine(request.clientMsgId)!;
  }

  /** Send a `failed` message again with its clientMsgId; other statuses are left alone. */
  retry(clientMsgId: string): ClientMessage {
    const message = this.deps.store.findMine(clientMsgId);
    if (!message) throw new ParleyError("not_found", `no message ${clientMsgId} of yours`);
    if (message.status !== "failed") return message;
    const next = this.deps.store.markSending(message);
    this.#enqueue({
      clientMsgId,
      conversationId: message.conversationId,
      kind: message.kind,
      content: message.content,
      attachmentId: message.attachmentId ?? null,
    });
    return next;
  }

  discard(clientMsgId: string): boolean {
    const message = this.deps.store.findMine(clientMsgId);
    if (!message || message.status !== "failed") return false;
    return this.deps.store.remove(message.conversationId, clientMsgId, this.deps.me);
  }

  /** The socket (re)connected: send everything still waiting, in send order. */
  resendAll(): void {
    for (const clientMsgId of this.#pending.keys()) this.#emit(clientMsgId);
  }

  /** The message is stored (seen through `message_saved` or a sync): stop waiting for it. */
  settled(clientMsgId: string): void {
    this.#pending.delete(clientMsgId);
  }

  #enqueue(request: SendMessageRequest): void {
    this.#pending.set(request.clientMsgId, request);
    if (this.deps.socket.connected) this.#emit(request.clientMsgId);
  }

  #emit(clientMsgId: string): void {
    const request = this.#pending.get(clientMsgId);
    if (!request) return;
    const socket = this.deps.socket;
    socket
      .timeout(this.deps.sendTimeoutMs)
      .emit("send_message", request, (timeout: Error | null, ack?: SendAck | AckFailureLike) => {
        if (this.deps.closed()) return;
        if (timeout) {
          // Lost with the connection: resent on reconnect. No answer while connected: failed.
          if (!socket.connected || !this.#pending.has(clientMsgId)) return;
          this.#fail(request, {
            code: "timeout" as AckError["code"],
            message: "no answer from the server in time",
            retryable: true,
          });
          return;
        }
        if (ack && ack.success === true) {
          this.#pending.delete(clientMsgId);
          this.deps.saved(ack as SendAck);
        } else {
          this.#fail(
            request,
            (ack as AckFailureLike | undefined)?.error ?? {
              code: "internal_error",
              message: "the server answered the send with no error",
              retryable: true,
            },
          );
        }
      });
  }

  #fail(request: SendMessageRequest, error: AckError): void {
    this.#pending.delete(request.clientMsgId);
    this.deps.store.markFailed(request.conversationId!, request.clientMsgId, error, this.deps.me);
  }
}
