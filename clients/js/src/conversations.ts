// The conversation list the SDK keeps live: the server's summaries, updated by new messages,
// receipts and conversation changes, most recently active first.

import type {
  Conversation,
  ConversationId,
  ConversationSummary,
  Message,
  UserId,
} from "./generated/wire.js";

/** What the SDK holds locally, for the unread counts (the message store). */
export interface KnownMessages {
  /** The user's read watermark as last heard (receipts, members, marks). */
  myReadUpTo(conversationId: ConversationId): number;
  /**
   * The stored messages from others with `seq` in `(after, upTo]`, and whether the list holds
   * every `seq` of that range (so the count is exact).
   */
  othersBetween(conversationId: ConversationId, after: number, upTo: number): { count: number; complete: boolean };
}

/** The server's numbers for a conversation: `unread` messages from others in `(read, seq]`. */
interface Baseline {
  seq: number;
  read: number;
  unread: number;
}

export class ConversationList {
  readonly #byId = new Map<ConversationId, ConversationSummary>();
  /** Per conversation, what the server last counted; unread is derived from it. */
  readonly #base = new Map<ConversationId, Baseline>();
  /** The newest stored message seen per conversation, even before the conversation is listed. */
  readonly #latest = new Map<ConversationId, Message>();
  #sorted: ConversationSummary[] | null = null;

  constructor(
    private readonly me: UserId,
    private readonly known: KnownMessages,
  ) {}

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

  /**
   * Replace the whole list (a fresh `GET /api/conversations`). The server's unread count and
   * `lastSeq` become the baseline; stored messages above that `lastSeq` the SDK already holds
   * (live events that overtook the list) are counted on top, so no interleaving loses one.
   */
  replaceAll(summaries: ConversationSummary[]): void {
    this.#byId.clear();
    this.#base.clear();
    for (const s of summaries) {
      this.#base.set(s.id, { seq: s.lastSeq, read: this.#myRead(s), unread: s.unreadCount });
      this.#byId.set(s.id, this.#withLatest(s));
      this.recount(s.id);
    }
    this.#sorted = null;
  }

  /** A conversation created or changed (members, title): keeps its last message and unread. */
  upsert(conversation: Conversation): ConversationSummary {
    const old = this.#byId.get(conversation.id);
    if (!this.#base.has(conversation.id)) {
      // New to the list and no count from the server: the messages above what the user has
      // read count as they become known (live or through sync).
      const read = this.#myRead(conversation);
      this.#base.set(conversation.id, { seq: Math.min(conversation.lastSeq, read), read, unread: 0 });
    }
    const next = this.#withLatest({
      ...conversation,
      lastSeq: Math.max(conversation.lastSeq, old?.lastSeq ?? 0),
      lastMessage: old?.lastMessage ?? null,
      unreadCount: old?.unreadCount ?? 0,
    });
    this.#byId.set(conversation.id, next);
    this.recount(conversation.id);
    this.#sorted = null;
    return this.#byId.get(conversation.id)!;
  }

  /**
   * A stored message seen for the first time: last message, `lastSeq`, unread count. False when
   * the conversation is not listed yet (the message is remembered for when it is).
   */
  messageStored(message: Message): boolean {
    const latest = this.#latest.get(message.conversationId);
    if (!latest || message.seq > latest.seq) this.#latest.set(message.conversationId, message);
    const old = this.#byId.get(message.conversationId);
    if (!old) return false;
    this.#byId.set(old.id, this.#withLatest(old));
    this.recount(old.id);
    this.#sorted = null;
    return true;
  }

  /**
   * Recompute the unread count from the server's baseline, the user's read watermark and the
   * stored messages known above them. Returns false when the watermark moved inside the range
   * the server counted and the SDK lacks some of its messages: the count is then an upper
   * bound and the caller should refresh the list from the server.
   */
  recount(id: ConversationId): boolean {
    const old = this.#byId.get(id);
    const base = this.#base.get(id);
    if (!old || !base) return true;
    const read = Math.max(this.known.myReadUpTo(id), base.read);
    let unread: number;
    let exact = true;
    if (read >= base.seq) {
      unread = this.known.othersBetween(id, read, Infinity).count;
    } else {
      const above = this.known.othersBetween(id, base.seq, Infinity).count;
      const between = this.known.othersBetween(id, read, base.seq);
      const readNow = this.known.othersBetween(id, base.read, read);
      if (read <= base.read) unread = base.unread;
      else if (between.complete) unread = between.count;
      else if (readNow.complete) unread = base.unread - readNow.count;
      else {
        unread = Math.min(base.unread - readNow.count, base.seq - read);
        exact = false;
      }
      unread = Math.max(0, unread) + above;
    }
    if (old.unreadCount !== unread) {
      this.#byId.set(id, { ...old, unreadCount: unread });
      this.#sorted = null;
    }
    return exact;
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
    this.#base.clear();
    this.#latest.clear();
    this.#sorted = null;
  }

  #myRead(conversation: Conversation): number {
    return conversation.members.find((m) => m.user.id === this.me)?.readUpToSeq ?? 0;
  }

  /** `summary` with the newest stored message known, when it is newer than the server's. */
  #withLatest(summary: ConversationSummary): ConversationSummary {
    const latest = this.#latest.get(summary.id);
    if (!latest || (summary.lastMessage && summary.lastMessage.seq >= latest.seq)) return summary;
    return { ...summary, lastMessage: latest, lastSeq: Math.max(summary.lastSeq, latest.seq) };
  }
}

function activity(s: ConversationSummary): string {
  return s.lastMessage?.createdAt ?? s.createdAt;
}
