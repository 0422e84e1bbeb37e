// The conversation list the SDK keeps live: the server's summaries, updated by new messages,
// receipts and conversation changes, most recently active first.

import type {
  Conversation,
  ConversationId,
  ConversationSummary,
  Message,
  UserId,
} from "./generated/wire.js";

export class ConversationList {
  readonly #byId = new Map<ConversationId, ConversationSummary>();
  #sorted: ConversationSummary[] | null = null;

  constructor(private readonly me: UserId) {}

  /** Most recently active first. */
  all(): readonly ConversationSummary[] {
    if (!this.#sorted) {
      this.#sorted = [...this.#byId.values()].sort(
        (a, b) => activity(b).localeCompare(activity(a)) || Number(b.id) - Number(a.id),
      );
    }
    return this.#sorted;
  }

  get(id: ConversationId): ConversationSummary | undefined {
    return this.#byId.get(id);
  }

  has(id: ConversationId): boolean {
    return this.#byId.has(id);
  }

  /** Replace the whole list (a fresh `GET /api/conversations`). */
  replaceAll(summaries: ConversationSummary[]): void {
    this.#byId.clear();
    for (const s of summaries) this.#byId.set(s.id, s);
    this.#sorted = null;
  }

  /** A conversation created or changed (members, title): keeps its last message and unread. */
  upsert(conversation: Conversation): ConversationSummary {
    const old = this.#byId.get(conversation.id);
    // `lastSeq` here is the last message accounted for in `unreadCount`: a conversation new to
    // the list starts at what the user has read, so the messages that follow (live or through
    // sync) count; the server's `lastSeq` may already include messages not seen yet.
    const myRead = conversation.members.find((m) => m.user.id === this.me)?.readUpToSeq ?? 0;
    const next: ConversationSummary = {
      ...conversation,
      lastSeq: old ? old.lastSeq : Math.min(conversation.lastSeq, myRead),
      lastMessage: old?.lastMessage ?? null,
      unreadCount: old?.unreadCount ?? 0,
    };
    this.#byId.set(conversation.id, next);
    this.#sorted = null;
    return next;
  }

  /**
   * A stored message seen for the first time: last message, `lastSeq`, unread count (when it is
   * from someone else and above the user's read watermark). False when the conversation is unknown.
   */
  messageStored(message: Message, myReadUpTo: number): boolean {
    const old = this.#byId.get(message.conversationId);
    if (!old) return false;
    const newer = !old.lastMessage || message.seq > old.lastMessage.seq;
    const unread =
      message.senderId !== this.me && message.seq > myReadUpTo && message.seq > old.lastSeq;
    this.#byId.set(old.id, {
      ...old,
      lastMessage: newer ? message : old.lastMessage,
      lastSeq: Math.max(old.lastSeq, message.seq),
      unreadCount: old.unreadCount + (unread ? 1 : 0),
    });
    this.#sorted = null;
    return true;
  }

  /** The user's read watermark moved: `unread` is what is left above it. */
  setUnread(id: ConversationId, unread: number): void {
    const old = this.#byId.get(id);
    if (!old || old.unreadCount === unread) return;
    this.#byId.set(id, { ...old, unreadCount: Math.max(0, unread) });
    this.#sorted = null;
  }

  /** A member's watermarks moved (keeps the members' view in the summary current). */
  memberMoved(id: ConversationId, userId: UserId, delivered: number, read: number): void {
    const old = this.#byId.get(id);
    if (!old) return;
    const members = old.members.map((m) =>
      m.user.id === userId
        ? {
            ...m,
            deliveredUpToSeq: Math.max(m.deliveredUpToSeq, delivered),
            readUpToSeq: Math.max(m.readUpToSeq, read),
          }
        : m,
    );
    this.#byId.set(id, { ...old, members });
    this.#sorted = null;
  }

  clear(): void {
    this.#byId.clear();
    this.#sorted = null;
  }
}

function activity(s: ConversationSummary): string {
  return s.lastMessage?.createdAt ?? s.createdAt;
}
