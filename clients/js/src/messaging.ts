// Everything that happens over a connected session: the outbox of optimistic sends, the
// socket's events into the message lists, receipts, catch-up sync, presence.

import type { Socket } from "socket.io-client";
import { Catchup } from "./catchup.js";
import { backoffDelay } from "./connection.js";
import { ConversationList } from "./conversations.js";
import type {
  Conversation,
  ConversationId,
  MemberState,
  Message,
  MessageFailed,
  MessagePage,
  MessageSaved,
  OnlineUsers,
  Presence,
  SyncResponse,
  Typing,
  UserId,
  UserWithPresence,
} from "./generated/wire.js";
import { Outbox } from "./outbox.js";
import type { HistoryQuery, RestApi } from "./rest.js";
import { PresenceBook } from "./presence.js";
import { MessageStore, type MergeResult, type RelayedMessage } from "./store.js";
import { TypingTracker } from "./typing.js";
import { Uploads } from "./uploads.js";
import {
  ParleyError,
  type ConversationView,
  type DisconnectReason,
  type ParleyEvents,
  type PresenceState,
} from "./types.js";

/** A value kept in the client's storage (`null`: none). */
export interface Kept {
  get(): string | null;
  set(value: string | null): void;
}

export interface MessagingDeps {
  me: UserId;
  api: RestApi;
  socket: Socket;
  options: {
    sendTimeoutMs: number;
    typingThrottleMs: number;
    typingIdleMs: number;
    typingExpiryMs: number;
    autoMarkDelivered: boolean;
    replayHistory: boolean;
  };
  /** The sync cursor, kept in the client's storage. */
  cursor: Kept;
  /** The sends not acknowledged yet, kept in the client's storage. */
  outbox: Kept;
  emit<K extends keyof ParleyEvents>(event: K, payload: ParleyEvents[K]): void;
  /** The server revoked the session: the monitor must not reconnect. */
  revoked(): void;
  /** The connection looks open but does not answer: reconnect on a fresh one. */
  dropConnection(): void;
}

interface Waiter {
  resolve(): void;
  reject(error: ParleyError): void;
}

export class Messaging {
  readonly store: MessageStore;
  readonly conversations: ConversationList;
  readonly typing: TypingTracker;
  readonly outbox: Outbox;
  /** Images and voice notes being uploaded before they are sent (`sendAttachment()`). */
  readonly uploads: Uploads;
  readonly #presence: PresenceBook;
  readonly #catchup: Catchup;
  readonly #deliveredDue = new Map<ConversationId, number>();
  /** Conversations being fetched because a message arrived for one the list lacks. */
  readonly #fetching = new Set<ConversationId>();
  #deliveredTimer: ReturnType<typeof setTimeout> | null = null;
  /** Delivery receipts failed in a row: their retry's back-off. */
  #receiptFailures = 0;
  #caughtUp = false;
  /** Connections so far: a connection's catch-up is left to the next one's once it comes. */
  #connections = 0;
  #refreshing = false;
  #waiters: Waiter[] = [];
  #closed = false;

  constructor(private readonly deps: MessagingDeps) {
    this.store = new MessageStore(deps.me, (conversationId) =>
      deps.emit("messages", { conversationId, messages: this.store.list(conversationId) }),
    );
    this.conversations = new ConversationList(deps.me, this.store);
    this.typing = new TypingTracker({
      throttleMs: deps.options.typingThrottleMs,
      idleMs: deps.options.typingIdleMs,
      expiryMs: deps.options.typingExpiryMs,
      send: (conversationId, isTyping) => {
        if (deps.socket.connected) deps.socket.emit("typing", { conversationId, isTyping });
      },
      changed: (conversationId, userIds) => deps.emit("typing", { conversationId, userIds }),
    });
    this.outbox = new Outbox({
      me: deps.me,
      store: this.store,
      socket: deps.socket,
      sendTimeoutMs: deps.options.sendTimeoutMs,
      kept: deps.outbox,
      saved: (saved) => this.#saved(saved, deps.me),
      dropConnection: () => deps.dropConnection(),
      closed: () => this.#closed,
    });
    this.uploads = new Uploads({
      me: deps.me,
      store: this.store,
      outbox: this.outbox,
      upload: (body) => deps.api.uploadAttachment(body),
      closed: () => this.#closed,
    });
    this.#presence = new PresenceBook(deps.me, (state) => deps.emit("presence", state));
    this.#catchup = new Catchup({
      api: deps.api,
      cursor: deps.cursor,
      apply: (page) => this.#applySyncPage(page),
      done: (result) => {
        // Receipts that failed go again with the messages just caught up on.
        if (this.#deliveredDue.size) this.#sendDeliveredIn(0);
        deps.emit("synced", result);
        this.#settleWaiters(null);
      },
      shouldRetry: () => deps.socket.connected && !this.#closed,
      failed: (error) => this.#report(error),
    });
    this.#listen(deps.socket);
  }

  // ---- connection lifecycle ---------------------------------------------------------------

  /** Resolves once connected and the first sync is done. */
  whenCaughtUp(): Promise<void> {
    if (this.#caughtUp) return Promise.resolve();
    if (this.#closed) return Promise.reject(new ParleyError("closed", "the client was closed"));
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  /** The socket (re)connected: resend what was not acknowledged, refresh the list, catch up. */
  connected(): void {
    this.outbox.resendAll();
    const connection = ++this.#connections;
    void (async () => {
      // No cursor: start from the present rather than replay the account's history; taken
      // before the list is read, so what the list does not show comes through sync. If this
      // fails, the catch-up replays from the beginning: slower, nothing missed.
      if (this.deps.cursor.get() === null && !this.deps.options.replayHistory) {
        await this.deps.api
          .sync("now")
          .then((start) => {
            if (this.deps.cursor.get() === null) this.deps.cursor.set(start.nextCursor);
          })
          .catch((error: unknown) => this.#report(error));
        if (connection !== this.#connections) return; // a newer connection does it
      }
      // The list first, so `connect()` resolves with it loaded; then what was missed. Each
      // request is bounded (requestTimeoutMs): one lost in flight holds the sync up that long.
      await this.loadConversations().catch((error: unknown) => this.#report(error));
      if (connection !== this.#connections) return; // a newer connection does it
      // Afresh, even during a run: its request may be lost with the old network. A failure is
      // reported and retried by the catch-up itself while connected.
      await this.#catchup.restart().catch(() => {});
    })();
  }

  disconnected(): void {
    // Pending acks are lost with the connection; their messages stay `sending` in the outbox.
  }

  /** The monitor stopped trying: whoever awaits `connect()` learns why. */
  gaveUp(reason: DisconnectReason): void {
    if (reason === "closed") return;
    this.#settleWaiters(
      new ParleyError(reason, `not connected: ${reason.replace("_", " ")}`, {
        retryable: reason === "attempts_exhausted",
      }),
    );
  }

  close(): void {
    this.#closed = true;
    this.#catchup.stop();
    this.outbox.close();
    this.typing.clear();
    if (this.#deliveredTimer !== null) clearTimeout(this.#deliveredTimer);
    this.#deliveredTimer = null;
    this.#settleWaiters(new ParleyError("closed", "the client was closed"));
  }

  // ---- sending ------------------------------------------------------------------------------

  #saved(saved: MessageSaved, senderId?: UserId): void {
    const result = this.store.applySaved(saved, senderId);
    if (!result) {
      // Stored, but this device never saw it (connected after it was relayed): `message_saved`
      // has no content, so fetch it. Known stored messages (a second event) change nothing.
      if (!this.store.hasId(saved.conversationId, saved.id)) this.sync().catch(() => {});
      return;
    }
    if (result.message.mine) this.outbox.settled(saved.clientMsgId);
    this.#afterStored(result);
  }

  // ---- receiving ----------------------------------------------------------------------------

  #listen(socket: Socket): void {
    socket.on("receive_message", (payload: Message | RelayedMessage) => {
      if ("id" in payload && payload.id != null && typeof payload.seq === "number") {
        this.#afterStored(this.store.mergeStored(payload as Message));
      } else {
        const message = this.store.mergeRelayed(payload as RelayedMessage);
        if (message && !message.mine) {
          this.typing.messageFrom(message.conversationId, message.senderId);
          this.deps.emit("message", message);
        }
      }
    });
    socket.on("message_saved", (saved: MessageSaved) => this.#saved(saved));
    socket.on("message_failed", (failed: MessageFailed) => {
      const message = this.store.markFailed(failed.conversationId, failed.clientMsgId, failed.error);
      if (message?.mine) this.outbox.failed(message, failed.error);
    });
    socket.on("message_status", (state: MemberState) => this.#receipt(state));
    socket.on("typing", (typing: Typing) => {
      if (typing.userId !== this.deps.me) {
        this.typing.received(typing.conversationId, typing.userId, typing.isTyping);
      }
    });
    socket.on("presence", (presence: Presence) => this.#presence.set(presence));
    socket.on("online_users", ({ users }: OnlineUsers) => this.#presence.onlineNow(users));
    socket.on("conversation_changed", (conversation: Conversation) =>
      this.conversationChanged(conversation),
    );
    socket.on("session_revoked", ({ reason }: { reason: string }) => {
      this.deps.revoked();
      this.deps.emit("sessionRevoked", { reason });
    });
  }

  /** A message became stored in the list: notifications, unread counts, delivery receipts. */
  #afterStored(result: MergeResult): void {
    const { message } = result;
    if (!result.newlyStored || message.seq === null || message.id === null) return;
    if (message.mine) this.outbox.settled(message.clientMsgId);
    if (!message.mine) {
      this.typing.messageFrom(message.conversationId, message.senderId);
      if (result.isNew) this.deps.emit("message", message);
      if (this.deps.options.autoMarkDelivered) this.#deliverLater(message.conversationId, message.seq);
    }
    const { mine: _mine, error: _error, ...fields } = message;
    const stored: Message = {
      ...fields,
      id: message.id,
      seq: message.seq,
      status: message.status === "sending" || message.status === "failed" ? "sent" : message.status,
    };
    if (this.conversations.messageStored(stored)) {
      this.deps.emit("conversations", this.conversations.all());
    } else if (!this.conversations.has(message.conversationId)) {
      void this.#fetchConversation(message.conversationId);
    }
  }

  #receipt(state: MemberState): void {
    this.store.applyReceipt(state);
    this.conversations.memberMoved(
      state.conversationId,
      state.userId,
      state.deliveredUpToSeq,
      state.readUpToSeq,
    );
    // The server's count, the watermark and the messages known above them (not the loaded
    // history): when that cannot be exact, the server counts again.
    if (state.userId === this.deps.me && !this.conversations.recount(state.conversationId)) {
      this.#refreshList();
    }
    this.deps.emit("conversations", this.conversations.all());
  }

  conversationChanged(conversation: Conversation): void {
    // The watermarks first: the unread count is recomputed from the user's.
    this.store.batch(() => this.#applyMembers(conversation));
    this.conversations.upsert(conversation);
    this.deps.emit("conversation", conversation);
    this.deps.emit("conversations", this.conversations.all());
  }

  /** The members and their watermarks, for the statuses of the user's messages. */
  #applyMembers(conversation: Conversation): void {
    this.store.setMembers(conversation.id, conversation.members.map((m) => m.user.id));
    for (const m of conversation.members) {
      this.store.applyReceipt({
        conversationId: conversation.id,
        userId: m.user.id,
        deliveredUpToSeq: m.deliveredUpToSeq,
        readUpToSeq: m.readUpToSeq,
      });
    }
  }

  async #fetchConversation(id: ConversationId): Promise<void> {
    if (this.#fetching.has(id)) return;
    this.#fetching.add(id);
    try {
      const conversation = await this.deps.api.conversation(id);
      if (!this.#closed) this.conversationChanged(conversation);
    } catch (error) {
      this.#report(error);
    } finally {
      this.#fetching.delete(id);
    }
  }

  // ---- REST-backed operations ---------------------------------------------------------------

  /** Fetch the list again (once for a burst of calls), reporting a failure. */
  #refreshList(): void {
    if (this.#refreshing || this.#closed) return;
    this.#refreshing = true;
    setTimeout(() => {
      this.loadConversations()
        .catch((error: unknown) => this.#report(error))
        .finally(() => (this.#refreshing = false));
    }, 0);
  }

  async loadConversations(): Promise<readonly ConversationView[]> {
    const summaries = await this.deps.api.conversations();
    if (this.#closed) return summaries;
    this.conversations.replaceAll(summaries);
    this.store.batch(() => {
      for (const s of summaries) this.#applyMembers(s);
    });
    if (this.deps.options.autoMarkDelivered) {
      // The list shows each conversation's last message, so the device has learnt of every
      // message up to it: a device that started from the present (or whose sync is still
      // under way) marks them delivered here, or their senders would keep ✓.
      for (const s of summaries) {
        const mine = s.members.find((m) => m.user.id === this.deps.me);
        if (mine && s.lastSeq > mine.deliveredUpToSeq) this.#deliverLater(s.id, s.lastSeq);
      }
    }
    this.deps.emit("conversations", this.conversations.all());
    return this.conversations.all();
  }

  async loadHistory(conversationId: ConversationId, page: HistoryQuery): Promise<MessagePage> {
    const result = await this.deps.api.history(conversationId, page);
    if (!this.#closed) {
      this.store.batch(() => {
        for (const m of result.messages) this.store.mergeStored(m);
      });
    }
    return result;
  }

  async mark(kind: "read" | "delivered", conversationId: ConversationId, upToSeq?: number): Promise<void> {
    const seq = upToSeq ?? this.store.lastSeq(conversationId);
    if (seq <= 0) return;
    const state =
      kind === "read"
        ? await this.deps.api.markRead(conversationId, seq)
        : await this.deps.api.markDelivered(conversationId, seq);
    if (!this.#closed) this.#receipt(state);
  }

  #deliverLater(conversationId: ConversationId, seq: number): void {
    this.#deliveredDue.set(conversationId, Math.max(seq, this.#deliveredDue.get(conversationId) ?? 0));
    this.#sendDeliveredIn(0);
  }

  /**
   * Send the due delivery receipts after `delayMs`: 0 coalesces a burst (a sync page, a busy
   * conversation) into one request per conversation and wins over a retry's back-off.
   */
  #sendDeliveredIn(delayMs: number): void {
    if (this.#deliveredTimer !== null) {
      if (delayMs > 0) return;
      clearTimeout(this.#deliveredTimer);
    }
    this.#deliveredTimer = setTimeout(() => {
      this.#deliveredTimer = null;
      const due = [...this.#deliveredDue];
      this.#deliveredDue.clear();
      for (const [id, upTo] of due) {
        this.mark("delivered", id, upTo).then(
          () => (this.#receiptFailures = 0),
          (error: unknown) => this.#deliveryFailed(id, upTo, error),
        );
      }
    }, delayMs);
  }

  /**
   * A receipt that could not be sent stays due (marking up to a seq is idempotent): sent again
   * after a back-off (1 s, 2 s … 30 s) while connected, and after the next catch-up.
   */
  #deliveryFailed(conversationId: ConversationId, seq: number, error: unknown): void {
    this.#report(error);
    if (this.#closed || !(error instanceof ParleyError && error.retryable)) return;
    this.#deliveredDue.set(conversationId, Math.max(seq, this.#deliveredDue.get(conversationId) ?? 0));
    if (this.deps.socket.connected) {
      this.#sendDeliveredIn(backoffDelay(++this.#receiptFailures, 1_000, 30_000));
    }
  }

  // ---- catch-up ----------------------------------------------------------------------------

  /** Catch up now: `sync` from the kept cursor until `hasMore` is false. */
  sync(): Promise<void> {
    return this.#catchup.run();
  }

  /** One sync page, through the same de-duplication as live events; returns new messages. */
  #applySyncPage(page: SyncResponse): number {
    let messages = 0;
    this.store.batch(() => {
      for (const c of page.conversations) this.conversationChanged(c);
      for (const m of page.messages) {
        const result = this.store.mergeStored(m);
        if (result.isNew) messages++;
        this.#afterStored(result);
      }
      for (const r of page.receipts) this.#receipt(r);
    });
    return messages;
  }

  // ---- presence ----------------------------------------------------------------------------

  presence(userId: UserId): PresenceState | undefined {
    return this.#presence.get(userId);
  }

  presenceFromUsers(users: UserWithPresence[]): void {
    for (const u of users) this.#presence.set({ userId: u.id, online: u.online, lastSeen: u.lastSeen });
  }

  // ---- helpers ------------------------------------------------------------------------------

  #settleWaiters(error: ParleyError | null): void {
    if (error === null) this.#caughtUp = true;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) {
      if (error) w.reject(error);
      else w.resolve();
    }
  }

  #report(error: unknown): void {
    if (this.#closed) return;
    this.deps.emit(
      "error",
      error instanceof ParleyError ? error : new ParleyError("internal_error", String(error)),
    );
  }
}
