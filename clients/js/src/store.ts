// The message lists: one per conversation, ordered by `seq` (messages not stored yet after, in
// the order they were added), de-duplicated by (sender, clientMsgId) and by id, with statuses
// computed from the members' receipt watermarks.

import type {
  Attachment,
  ConversationId,
  MemberState,
  Message,
  MessageId,
  MessageSaved,
  UserId,
} from "./generated/wire.js";
import type { ClientMessage, ClientMessageStatus, SendError } from "./types.js";

/** A relayed copy as `receive_message` carries it before the message is stored. */
export interface RelayedMessage extends Partial<Omit<Message, "id" | "seq" | "status">> {
  clientMsgId: string;
  conversationId: ConversationId;
  senderId: UserId;
  sentAt?: string;
}

/** What changed when a stored message was merged. */
export interface MergeResult {
  message: ClientMessage;
  /** The message was not in the list before, in any form. */
  isNew: boolean;
  /** The message got its `seq` with this merge (it was unknown or not stored yet). */
  newlyStored: boolean;
}

const RANK: Record<ClientMessageStatus, number> = {
  failed: 0,
  sending: 0,
  sent: 1,
  delivered: 2,
  read: 3,
};

interface Watermarks {
  delivered: number;
  read: number;
}

class ConversationLog {
  /** By `${senderId} ${clientMsgId}`. */
  readonly byKey = new Map<string, ClientMessage>();
  readonly keyById = new Map<MessageId, string>();
  /** Insertion order of every key, for the messages without `seq`. */
  readonly order = new Map<string, number>();
  readonly watermarks = new Map<UserId, Watermarks>();
  /** Members other than the user, when the conversation is known. */
  others: UserId[] | null = null;
  sorted: ClientMessage[] | null = null;
}

function keyOf(senderId: UserId, clientMsgId: string): string {
  return `${senderId} ${clientMsgId}`;
}

/**
 * The attachment to keep of the one held and the one just read: the new one unless it has no
 * signed URL or its URLs expire earlier (a stale page applied late). `held` itself when nothing
 * changes, so callers can tell.
 */
function fresher(held: Attachment | null | undefined, read: Attachment | null | undefined): Attachment | null | undefined {
  if (!read || !read.url) return held ?? read;
  if (!held || !held.url) return read;
  if (read.url === held.url && read.thumbnailUrl === held.thumbnailUrl) return held;
  return expiryOf(read.url) >= expiryOf(held.url) ? read : held;
}

/** The `exp` (unix seconds) of a signed URL; 0 when it has none. */
function expiryOf(url: string): number {
  const exp = /[?&]exp=(\d+)/.exec(url)?.[1];
  return exp ? Number(exp) : 0;
}

export class MessageStore {
  readonly #logs = new Map<ConversationId, ConversationLog>();
  readonly #changed = new Set<ConversationId>();
  #counter = 0;
  #batchDepth = 0;

  /**
   * @param me the logged-in user (their messages get `mine` and computed statuses)
   * @param onChange called with each conversation whose list changed (once per batch)
   */
  constructor(
    readonly me: UserId,
    private readonly onChange: (conversationId: ConversationId) => void,
  ) {}

  /** The conversation's messages: stored ones by `seq`, then the others in arrival order. */
  list(conversationId: ConversationId): readonly ClientMessage[] {
    const log = this.#logs.get(conversationId);
    if (!log) return [];
    if (!log.sorted) {
      log.sorted = [...log.byKey.values()].sort((a, b) => {
        if (a.seq !== null && b.seq !== null) return a.seq - b.seq;
        if (a.seq !== null) return -1;
        if (b.seq !== null) return 1;
        return (
          log.order.get(keyOf(a.senderId, a.clientMsgId))! -
          log.order.get(keyOf(b.senderId, b.clientMsgId))!
        );
      });
    }
    return log.sorted;
  }

  conversationIds(): ConversationId[] {
    return [...this.#logs.keys()];
  }

  /** The highest `seq` in the list (0 when none is stored). */
  lastSeq(conversationId: ConversationId): number {
    const list = this.list(conversationId);
    for (let i = list.length - 1; i >= 0; i--) {
      const seq = list[i]!.seq;
      if (seq !== null) return seq;
    }
    return 0;
  }

  /** Whether the list holds the stored message `id`. */
  hasId(conversationId: ConversationId, id: MessageId): boolean {
    return this.#logs.get(conversationId)?.keyById.has(id) ?? false;
  }

  /** The user's message by its client id, in any conversation. */
  findMine(clientMsgId: string): ClientMessage | undefined {
    const key = keyOf(this.me, clientMsgId);
    for (const log of this.#logs.values()) {
      const message = log.byKey.get(key);
      if (message) return message;
    }
    return undefined;
  }

  /** Run `f`, notifying each changed conversation once at the end. */
  batch<T>(f: () => T): T {
    this.#batchDepth++;
    try {
      return f();
    } finally {
      this.#batchDepth--;
      if (this.#batchDepth === 0) this.#flush();
    }
  }

  /** Add the user's optimistic message (status `sending`). */
  addOptimistic(message: ClientMessage): void {
    const log = this.#log(message.conversationId);
    const key = keyOf(message.senderId, message.clientMsgId);
    if (log.byKey.has(key)) return;
    log.byKey.set(key, message);
    log.order.set(key, this.#counter++);
    this.#touch(message.conversationId);
  }

  /** Put `next` under `key` (new or replacing); returns it. */
  #replace(log: ConversationLog, key: string, next: ClientMessage): ClientMessage {
    log.byKey.set(key, next);
    if (next.id !== null) log.keyById.set(next.id, key);
    this.#touch(next.conversationId);
    return next;
  }

  /** Merge a stored message (ack, `receive_message` with an id, history, sync). */
  mergeStored(stored: Message): MergeResult {
    const log = this.#log(stored.conversationId);
    const key = keyOf(stored.senderId, stored.clientMsgId);
    const existingKey = log.keyById.get(stored.id) ?? key;
    const existing = log.byKey.get(existingKey);
    if (existing && existing.id !== null && existing.seq !== null) {
      // Known and stored: only a status may move forward, and signed URLs be renewed (they
      // expire; reading the message again gives fresh ones).
      const status = this.#statusOf(log, stored.senderId, stored.seq, existing.status, stored.status);
      const attachment = fresher(existing.attachment, stored.attachment);
      if (status === existing.status && attachment === existing.attachment) {
        return { message: existing, isNew: false, newlyStored: false };
      }
      const next: ClientMessage = { ...existing, status };
      if (attachment) next.attachment = attachment;
      return { message: this.#replace(log, existingKey, next), isNew: false, newlyStored: false };
    }
    const base: ClientMessage = existing ?? {
      clientMsgId: stored.clientMsgId,
      conversationId: stored.conversationId,
      senderId: stored.senderId,
      id: null,
      seq: null,
      kind: stored.kind,
      content: stored.content,
      createdAt: stored.createdAt,
      status: "sent",
      mine: stored.senderId === this.me,
    };
    if (!existing) log.order.set(existingKey, this.#counter++);
    // Every field the server sends (those added to the wire later too), over the local copy.
    const next: ClientMessage = {
      ...base,
      ...stored,
      status: this.#statusOf(log, stored.senderId, stored.seq, "sent", stored.status),
      mine: stored.senderId === this.me,
    };
    delete next.error;
    const attachment = fresher(base.attachment, stored.attachment);
    if (attachment) next.attachment = attachment;
    return { message: this.#replace(log, existingKey, next), isNew: !existing, newlyStored: true };
  }

  /** Add a relayed copy (not stored yet); ignored when the message is already known. */
  mergeRelayed(relayed: RelayedMessage): ClientMessage | null {
    const log = this.#log(relayed.conversationId);
    const key = keyOf(relayed.senderId, relayed.clientMsgId);
    const held = log.byKey.get(key);
    if (held && !(held.status === "failed" && !held.mine && held.seq === null)) return null;
    // Someone else's copy whose send had failed (`message_failed`), relayed again: they retried.
    const { sentAt, ...fields } = relayed;
    const message: ClientMessage = {
      ...fields,
      id: null,
      seq: null,
      kind: relayed.kind ?? "text",
      content: relayed.content ?? "",
      createdAt: sentAt ?? relayed.createdAt ?? new Date().toISOString(),
      status: relayed.senderId === this.me ? "sending" : "sent",
      mine: relayed.senderId === this.me,
    };
    if (!held) log.order.set(key, this.#counter++);
    return this.#replace(log, key, message);
  }

  /**
   * Apply `message_saved` / a successful ack: the message waiting under `clientMsgId` gets its
   * id and `seq`. `senderId` when known (an ack: the user); otherwise the one message of the
   * conversation not stored yet with that client id, or the stored message `saved.id` (whose
   * signed URLs it renews).
   */
  applySaved(saved: MessageSaved, senderId?: UserId): MergeResult | null {
    const log = this.#log(saved.conversationId);
    // A message stored already (another `message_saved`) may still get fresher signed URLs.
    const key =
      senderId !== undefined
        ? keyOf(senderId, saved.clientMsgId)
        : (this.#pendingKey(log, saved.clientMsgId) ?? log.keyById.get(saved.id));
    if (key === undefined) return null;
    const existing = log.byKey.get(key);
    if (!existing) return null;
    // The local copy, completed by everything the server said (id, seq, time, signed URLs…).
    const { mine: _mine, error: _error, status: _status, ...fields } = existing;
    return this.mergeStored({
      ...fields,
      ...saved,
      senderId: existing.senderId,
      status: "sent",
    } as Message);
  }

  /** Mark the message under `clientMsgId` failed, unless it is stored already. */
  markFailed(
    conversationId: ConversationId,
    clientMsgId: string,
    error: SendError,
    senderId?: UserId,
  ): ClientMessage | null {
    const log = this.#log(conversationId);
    const key = senderId !== undefined ? keyOf(senderId, clientMsgId) : this.#pendingKey(log, clientMsgId);
    const existing = key === undefined ? undefined : log.byKey.get(key);
    if (!existing || existing.seq !== null) return null;
    return this.#replace(log, key!, { ...existing, status: "failed", error });
  }

  /** Set the user's unstored message back to `sending` (retry). */
  markSending(message: ClientMessage): ClientMessage {
    const log = this.#log(message.conversationId);
    const next: ClientMessage = { ...message, status: "sending" };
    delete next.error;
    return this.#replace(log, keyOf(message.senderId, message.clientMsgId), next);
  }

  /** Replace the user's message not stored yet by `next` (same conversation and client id). */
  replaceUnstored(next: ClientMessage): ClientMessage | null {
    const log = this.#log(next.conversationId);
    const key = keyOf(next.senderId, next.clientMsgId);
    const existing = log.byKey.get(key);
    if (!existing || existing.seq !== null) return null;
    return this.#replace(log, key, next);
  }

  /** Remove a message not stored yet (a failed send the user discards). */
  remove(conversationId: ConversationId, clientMsgId: string, senderId: UserId): boolean {
    const log = this.#logs.get(conversationId);
    const key = keyOf(senderId, clientMsgId);
    const existing = log?.byKey.get(key);
    if (!log || !existing || existing.seq !== null) return false;
    log.byKey.delete(key);
    log.order.delete(key);
    this.#touch(conversationId);
    return true;
  }

  /** The members other than the user (from the conversation), for receipt statuses. */
  setMembers(conversationId: ConversationId, members: UserId[]): void {
    const log = this.#log(conversationId);
    log.others = members.filter((m) => m !== this.me);
    this.#restatus(log);
  }

  /** Apply a member's watermarks (`message_status`, a sync receipt, a conversation's members). */
  applyReceipt(state: Pick<MemberState, "conversationId" | "userId" | "deliveredUpToSeq" | "readUpToSeq">): void {
    const log = this.#log(state.conversationId);
    const old = log.watermarks.get(state.userId) ?? { delivered: 0, read: 0 };
    const next = {
      delivered: Math.max(old.delivered, state.deliveredUpToSeq, state.readUpToSeq),
      read: Math.max(old.read, state.readUpToSeq),
    };
    if (next.delivered === old.delivered && next.read === old.read) return;
    log.watermarks.set(state.userId, next);
    if (state.userId !== this.me) this.#restatus(log);
  }

  /** The user's own read watermark in the conversation. */
  myReadUpTo(conversationId: ConversationId): number {
    return this.#logs.get(conversationId)?.watermarks.get(this.me)?.read ?? 0;
  }

  /**
   * The stored messages from others with `seq` in `(after, upTo]`, and whether the list holds
   * every `seq` of that range (a conversation's seqs have no gaps).
   */
  othersBetween(conversationId: ConversationId, after: number, upTo: number): { count: number; complete: boolean } {
    let count = 0;
    let held = 0;
    const list = this.list(conversationId);
    // From the newest: the ranges asked are near the end, and the stored ones come by `seq`.
    for (let i = list.length - 1; i >= 0; i--) {
      const m = list[i]!;
      if (m.seq === null || m.seq > upTo) continue;
      if (m.seq <= after) break;
      held++;
      if (!m.mine) count++;
    }
    return { count, complete: held === upTo - after };
  }

  #pendingKey(log: ConversationLog, clientMsgId: string): string | undefined {
    const mine = keyOf(this.me, clientMsgId);
    const own = log.byKey.get(mine);
    if (own && own.seq === null) return mine;
    for (const [key, m] of log.byKey) {
      if (m.clientMsgId === clientMsgId && m.seq === null) return key;
    }
    return undefined;
  }

  /** The status of a message by `senderId` at `seq`, never below `floor` or `server`. */
  #statusOf(
    log: ConversationLog,
    senderId: UserId,
    seq: number,
    floor: ClientMessageStatus,
    server: ClientMessageStatus,
  ): ClientMessageStatus {
    let best = RANK[server] > RANK[floor] ? server : floor;
    if (senderId !== this.me) return best;
    const others = log.others ?? [...log.watermarks.keys()].filter((u) => u !== this.me);
    if (others.length === 0) return best;
    const marks = others.map((u) => log.watermarks.get(u) ?? { delivered: 0, read: 0 });
    const computed: ClientMessageStatus = marks.every((w) => w.read >= seq)
      ? "read"
      : marks.every((w) => w.delivered >= seq)
        ? "delivered"
        : "sent";
    if (RANK[computed] > RANK[best]) best = computed;
    return best;
  }

  #restatus(log: ConversationLog): void {
    for (const [key, m] of log.byKey) {
      if (!m.mine || m.seq === null) continue;
      const status = this.#statusOf(log, m.senderId, m.seq, m.status, m.status);
      if (status !== m.status) this.#replace(log, key, { ...m, status });
    }
  }

  #log(conversationId: ConversationId): ConversationLog {
    let log = this.#logs.get(conversationId);
    if (!log) {
      log = new ConversationLog();
      this.#logs.set(conversationId, log);
    }
    return log;
  }

  #touch(conversationId: ConversationId): void {
    const log = this.#logs.get(conversationId);
    if (log) log.sorted = null;
    this.#changed.add(conversationId);
    if (this.#batchDepth === 0) this.#flush();
  }

  #flush(): void {
    const changed = [...this.#changed];
    this.#changed.clear();
    for (const id of changed) this.onChange(id);
  }
}
