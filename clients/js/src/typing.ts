// Typing indicators: the user's own (throttled, stopped after idle) and others' (expiring).

import type { ConversationId, UserId } from "./generated/wire.js";

export interface TypingOptions {
  throttleMs: number;
  idleMs: number;
  expiryMs: number;
  /** Send `typing` `{conversationId, isTyping}` (when connected). */
  send(conversationId: ConversationId, isTyping: boolean): void;
  /** Who types in a conversation changed. */
  changed(conversationId: ConversationId, userIds: readonly UserId[]): void;
}

interface Outgoing {
  lastSentAt: number;
  idleTimer: ReturnType<typeof setTimeout>;
}

export class TypingTracker {
  readonly #outgoing = new Map<ConversationId, Outgoing>();
  readonly #incoming = new Map<ConversationId, Map<UserId, ReturnType<typeof setTimeout>>>();

  constructor(private readonly options: TypingOptions) {}

  /** The user typed: `typing: true` at most once per throttle, `false` after the idle time. */
  typing(conversationId: ConversationId): void {
    const now = Date.now();
    const old = this.#outgoing.get(conversationId);
    if (old) clearTimeout(old.idleTimer);
    const due = !old || now - old.lastSentAt >= this.options.throttleMs;
    if (due) this.options.send(conversationId, true);
    this.#outgoing.set(conversationId, {
      lastSentAt: due ? now : old!.lastSentAt,
      idleTimer: setTimeout(() => this.stop(conversationId), this.options.idleMs),
    });
  }

  /** The user stopped (sent the message, cleared the input): `typing: false` at once. */
  stop(conversationId: ConversationId): void {
    const old = this.#outgoing.get(conversationId);
    if (!old) return;
    clearTimeout(old.idleTimer);
    this.#outgoing.delete(conversationId);
    this.options.send(conversationId, false);
  }

  /** A `typing` event from another member. */
  received(conversationId: ConversationId, userId: UserId, isTyping: boolean): void {
    let users = this.#incoming.get(conversationId);
    if (!users) {
      users = new Map();
      this.#incoming.set(conversationId, users);
    }
    const timer = users.get(userId);
    if (timer !== undefined) clearTimeout(timer);
    const wasTyping = timer !== undefined;
    if (isTyping) {
      users.set(
        userId,
        setTimeout(() => this.received(conversationId, userId, false), this.options.expiryMs),
      );
    } else {
      users.delete(userId);
    }
    if (wasTyping !== isTyping) this.options.changed(conversationId, this.typers(conversationId));
  }

  /** A message from `userId` arrived: they are no longer typing it. */
  messageFrom(conversationId: ConversationId, userId: UserId): void {
    if (this.#incoming.get(conversationId)?.has(userId)) {
      this.received(conversationId, userId, false);
    }
  }

  typers(conversationId: ConversationId): UserId[] {
    return [...(this.#incoming.get(conversationId)?.keys() ?? [])];
  }

  /** Forget everything and cancel every timer (without sending anything). */
  clear(): void {
    for (const o of this.#outgoing.values()) clearTimeout(o.idleTimer);
    this.#outgoing.clear();
    for (const users of this.#incoming.values()) {
      for (const timer of users.values()) clearTimeout(timer);
    }
    this.#incoming.clear();
  }
}
