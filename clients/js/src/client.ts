// ParleyClient: the SDK's one class. Session and REST helpers here; sending, receiving and
// catch-up in ./messaging.ts; the socket's states in ./connection.ts.

import { backoffDelay, ConnectionMonitor } from "./connection.js";
import { Emitter } from "./emitter.js";
import type {
  Conversation,
  ConversationId,
  MessagePage,
  UploadedAttachment,
  User,
  UserId,
  UserWithPresence,
} from "./generated/wire.js";
import { Messaging, type Kept } from "./messaging.js";
import { RestApi, type HistoryQuery, type LoginInput, type RegisterInput } from "./rest.js";
import { MemoryStorage, type KeyValueStorage } from "./storage.js";
import {
  ParleyError,
  type AttachmentInput,
  type ClientMessage,
  type ConnectionState,
  type ConversationView,
  type LatencySample,
  type ParleyClientOptions,
  type ParleyEvents,
  type PresenceState,
  type SendInput,
  type Session,
} from "./types.js";

/**
 * A Parley client: log in, `connect()`, then render `messages(conversationId)` and
 * `conversations` and re-render on the `messages` / `conversations` events.
 *
 * ```ts
 * const client = new ParleyClient({ apiUrl: "http://127.0.0.1:3000" });
 * await client.login({ username: "alice", password: "correct horse" });
 * client.on("messages", ({ conversationId, messages }) => render(conversationId, messages));
 * await client.connect();
 * const chat = await client.openDirect(bobId);
 * client.send({ conversationId: chat.id, content: "hi" }); // shown at once, status "sending"
 * ```
 */
export class ParleyClient extends Emitter<ParleyEvents> {
  /** The REST API, for routes the client has no helper for. */
  readonly api: RestApi;
  readonly #options: Required<Omit<ParleyClientOptions, "token" | "storage">>;
  readonly #storage: KeyValueStorage;
  #session: Session | null = null;
  #monitor: ConnectionMonitor | null = null;
  #messaging: Messaging | null = null;
  #state: ConnectionState = { status: "idle" };
  /** Bumped by `close()`: a `connect()` waiting for the API to answer gives up. */
  #closes = 0;
  /** Ends the wait of such a `connect()` at once. */
  #stopWaiting: (() => void) | null = null;

  constructor(options: ParleyClientOptions) {
    super();
    this.#options = {
      apiUrl: options.apiUrl,
      socketUrl: options.socketUrl ?? defaultSocketUrl(options.apiUrl),
      storageKeyPrefix: options.storageKeyPrefix ?? "parley.",
      reconnectDelayMs: options.reconnectDelayMs ?? 1_000,
      reconnectDelayMaxMs: options.reconnectDelayMaxMs ?? 30_000,
      reconnectAttempts: options.reconnectAttempts ?? Infinity,
      reconnectJitter: options.reconnectJitter ?? 0.5,
      pingIntervalMs: options.pingIntervalMs ?? 30_000,
      slowThresholdMs: options.slowThresholdMs ?? 1_000,
      sendTimeoutMs: options.sendTimeoutMs ?? 15_000,
      requestTimeoutMs: options.requestTimeoutMs ?? 15_000,
      uploadTimeoutMs: options.uploadTimeoutMs ?? 300_000,
      typingThrottleMs: options.typingThrottleMs ?? 3_000,
      typingIdleMs: options.typingIdleMs ?? 5_000,
      typingExpiryMs: options.typingExpiryMs ?? 8_000,
      autoMarkDelivered: options.autoMarkDelivered ?? true,
      replayHistory: options.replayHistory ?? false,
      watchNetwork: options.watchNetwork ?? true,
      socketOptions: options.socketOptions ?? {},
    };
    this.#storage = options.storage ?? new MemoryStorage();
    const kept = this.#loadSession();
    const timeouts = this.#options;
    if (options.token && options.token !== kept?.token) {
      this.api = new RestApi(options.apiUrl, options.token, timeouts);
    } else {
      this.#session = kept;
      this.api = new RestApi(options.apiUrl, kept?.token ?? null, timeouts);
    }
  }

  // ---- session ----------------------------------------------------------------------------

  /** The logged-in user and token, or `null`. */
  get session(): Session | null {
    return this.#session;
  }

  get user(): User | null {
    return this.#session?.user ?? null;
  }

  /** Create an account and log in with it. */
  async register(input: RegisterInput): Promise<Session> {
    return this.#startSession(await this.api.register(input));
  }

  async login(input: LoginInput): Promise<Session> {
    return this.#startSession(await this.api.login(input));
  }

  /** The user the token belongs to (also completes a session restored from a bare token). */
  async me(): Promise<User> {
    const user = await this.api.me();
    if (this.api.token) this.#setSession({ token: this.api.token, user });
    return user;
  }

  /**
   * Revoke the token on the server and stop everything here: the socket, every timer, the
   * in-memory lists, the kept session, sync cursor and unsent messages. Local state is cleared even when the
   * server cannot be reached (the error is rethrown after).
   */
  async logout(): Promise<void> {
    let failure: unknown = null;
    if (this.api.token) {
      try {
        await this.api.logout();
      } catch (error) {
        // A token the server no longer knows is logged out already.
        if (!(error instanceof ParleyError && error.status === 401)) failure = error;
      }
    }
    const userId = this.#session?.user.id;
    this.close();
    if (userId !== undefined) {
      this.#storage.removeItem(this.#cursorKey(userId));
      this.#storage.removeItem(this.#outboxKey(userId));
    }
    this.#storage.removeItem(this.#key("session"));
    this.#session = null;
    this.api.token = null;
    if (failure) throw failure;
  }

  // ---- connection ----------------------------------------------------------------------------

  get state(): ConnectionState {
    return this.#state;
  }

  /** The last latency measured by the ping, or `null` before the first answer. */
  get latency(): LatencySample | null {
    return this.#monitor?.latency ?? null;
  }

  /**
   * Open the socket; resolves once connected and caught up (the first sync done), rejects
   * with a ParleyError if the monitor gives up (token refused, attempt limit) or `close()` is
   * called first. Reconnecting after that is automatic.
   */
  async connect(): Promise<void> {
    if (!this.#session) {
      if (!this.api.token) throw new ParleyError("not_logged_in", "log in first");
      await this.#identify();
    }
    const session = this.#session!;
    if (!this.#monitor) this.#open(session);
    await this.#messaging!.whenCaughtUp();
  }

  /**
   * Learn whose the `token` option is (`GET /api/auth/me`). While the API cannot be reached
   * (an app started offline, the API restarting) it is asked again as the connection would be
   * (state `reconnecting`, the same delays and attempt limit, an `error` event each time);
   * `close()` ends the wait.
   */
  async #identify(): Promise<void> {
    const closes = this.#closes;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.me();
        return;
      } catch (error) {
        if (error instanceof ParleyError && error.status === 401) {
          // A token the API refuses: told and shown as when the relay refuses a kept session's.
          this.emit("error", new ParleyError(error.code, `connect refused: ${error.message}`));
          this.#setState({ status: "disconnected", reason: "unauthorized" });
          throw new ParleyError("unauthorized", "not connected: unauthorized");
        }
        const retryable = error instanceof ParleyError && error.retryable;
        if (!retryable || closes !== this.#closes) throw error;
        if (attempt >= this.#options.reconnectAttempts) {
          this.#setState({ status: "disconnected", reason: "attempts_exhausted" });
          throw new ParleyError("attempts_exhausted", "not connected: attempts exhausted", {
            retryable: true,
          });
        }
        this.emit("error", error);
        const delayMs = backoffDelay(
          attempt,
          this.#options.reconnectDelayMs,
          this.#options.reconnectDelayMaxMs,
        );
        this.#setState({ status: "reconnecting", attempt, delayMs });
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delayMs);
          this.#stopWaiting = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.#stopWaiting = null;
        if (closes !== this.#closes) {
          throw new ParleyError("closed", "the client was closed");
        }
      }
    }
  }

  /** Try to connect now, with a fresh attempt count (a "Reconnect" button). */
  reconnect(): void {
    this.#monitor?.reconnect();
  }

  /** Stop the socket and every timer without logging out (`connect()` starts again). */
  close(): void {
    this.#closes++;
    this.#stopWaiting?.();
    this.#messaging?.close();
    this.#monitor?.close();
    this.#messaging = null;
    this.#monitor = null;
    this.#setState({ status: "idle" });
  }

  // ---- conversations and users ----------------------------------------------------------------

  /** The conversation list, most recently active first, with live unread counts. */
  get conversations(): readonly ConversationView[] {
    return this.#messaging?.conversations.all() ?? [];
  }

  /** Fetch the conversation list (also done at every connect). */
  async loadConversations(): Promise<readonly ConversationView[]> {
    return this.#requireMessaging().loadConversations();
  }

  /** The direct conversation with `userId`, created if needed. */
  async openDirect(userId: UserId): Promise<Conversation> {
    const conversation = await this.api.createConversation([userId]);
    this.#messaging?.conversationChanged(conversation);
    return conversation;
  }

  /** A new group with `memberIds` (the user is always a member). */
  async createGroup(memberIds: UserId[], title?: string): Promise<Conversation> {
    const conversation = await this.api.createConversation(memberIds, title ?? null);
    this.#messaging?.conversationChanged(conversation);
    return conversation;
  }

  /** Users whose username or display name contains `search` (empty: everyone), with presence. */
  async searchUsers(search = "", limit?: number): Promise<UserWithPresence[]> {
    const users = await this.api.users(search, limit);
    this.#messaging?.presenceFromUsers(users);
    return users;
  }

  /** What the client knows of a user's presence (from `online_users`, `presence`, user lists). */
  presence(userId: UserId): PresenceState | undefined {
    return this.#messaging?.presence(userId);
  }

  // ---- messages ---------------------------------------------------------------------------------

  /** The conversation's list: stored messages by `seq`, then unstored ones in send order. */
  messages(conversationId: ConversationId): readonly ClientMessage[] {
    return this.#messaging?.store.list(conversationId) ?? [];
  }

  /**
   * Load a page of history into the list (the newest page by default; `beforeSeq` the first
   * `seq` you have to page back). Returns the page as the server sent it.
   */
  async loadHistory(conversationId: ConversationId, page: HistoryQuery = {}): Promise<MessagePage> {
    return this.#requireMessaging().loadHistory(conversationId, page);
  }

  /**
   * Send a message: returns its optimistic copy at once (status `sending`, a new
   * `clientMsgId`); the list then replaces it with the stored one (`sent`, with `id` and
   * `seq`), or marks it `failed`. Sent when connected, else as soon as the socket connects.
   */
  send(input: SendInput): ClientMessage {
    return this.#requireMessaging().outbox.send(input);
  }

  /**
   * Upload an image or voice note; then `send({conversationId, kind, attachmentId: up.id,
   * attachment: up})` (the metadata lets recipients render it before it is stored). Or
   * `sendAttachment()`, which does both with a placeholder in the list meanwhile.
   */
  upload(data: Blob | ArrayBuffer | Uint8Array): Promise<UploadedAttachment> {
    return this.api.uploadAttachment(data);
  }

  /**
   * Send an image or voice note: returns its placeholder at once (status `sending`, a new
   * `clientMsgId`, the caption as `content`, `localAttachment` {kind, mime, bytes}), uploads the
   * file, then sends it with the same `clientMsgId`; the list entry gets `attachmentId` and
   * `attachment` from the upload, then becomes the stored message, in place. A refused upload
   * marks it `failed` with the server's error (`retry()` uploads again). Not resumed after a
   * reload while uploading.
   */
  sendAttachment(conversationId: ConversationId, input: AttachmentInput): ClientMessage {
    return this.#requireMessaging().uploads.send(conversationId, input);
  }

  /**
   * Send a `failed` message again, with the same `clientMsgId` (never stored twice); an
   * attachment whose upload failed is uploaded again.
   */
  retry(clientMsgId: string): ClientMessage {
    const messaging = this.#requireMessaging();
    if (messaging.uploads.has(clientMsgId)) return messaging.uploads.retry(clientMsgId);
    return messaging.outbox.retry(clientMsgId);
  }

  /** Drop a `failed` message from its list. */
  discard(clientMsgId: string): boolean {
    const messaging = this.#requireMessaging();
    if (messaging.uploads.has(clientMsgId)) return messaging.uploads.discard(clientMsgId);
    return messaging.outbox.discard(clientMsgId);
  }

  /** Mark read up to `upToSeq` (default: the newest message in the list). */
  async markRead(conversationId: ConversationId, upToSeq?: number): Promise<void> {
    await this.#requireMessaging().mark("read", conversationId, upToSeq);
  }

  /** Mark delivered up to `upToSeq` (default: the newest message; automatic by default). */
  async markDelivered(conversationId: ConversationId, upToSeq?: number): Promise<void> {
    await this.#requireMessaging().mark("delivered", conversationId, upToSeq);
  }

  /** Catch up now (done after every connect): `sync` from the kept cursor until `hasMore` is false. */
  async sync(): Promise<void> {
    await this.#requireMessaging().sync();
  }

  // ---- typing -----------------------------------------------------------------------------------

  /** Call on every keystroke: sends `typing` at most every `typingThrottleMs`, stops after idle. */
  typing(conversationId: ConversationId): void {
    this.#messaging?.typing.typing(conversationId);
  }

  /** The user stopped typing (cleared the input); `send()` does it too. */
  stopTyping(conversationId: ConversationId): void {
    this.#messaging?.typing.stop(conversationId);
  }

  /** Others typing in the conversation now. */
  typingUsers(conversationId: ConversationId): readonly UserId[] {
    return this.#messaging?.typing.typers(conversationId) ?? [];
  }

  // ---- internals --------------------------------------------------------------------------------

  #open(session: Session): void {
    const options = this.#options;
    let messaging: Messaging | null = null;
    const monitor = new ConnectionMonitor(
      {
        url: options.socketUrl,
        token: session.token,
        reconnectDelayMs: options.reconnectDelayMs,
        reconnectDelayMaxMs: options.reconnectDelayMaxMs,
        reconnectAttempts: options.reconnectAttempts,
        reconnectJitter: options.reconnectJitter,
        pingIntervalMs: options.pingIntervalMs,
        slowThresholdMs: options.slowThresholdMs,
        watchNetwork: options.watchNetwork,
        socketOptions: options.socketOptions,
      },
      {
        state: (state) => {
          if (
            state.status === "disconnected" &&
            (state.reason === "unauthorized" || state.reason === "session_revoked")
          ) {
            // The kept token is dead: a reload must not start with it.
            this.#storage.removeItem(this.#key("session"));
          }
          this.#setState(state);
          if (state.status === "disconnected") messaging?.gaveUp(state.reason);
        },
        connected: () => messaging?.connected(),
        disconnected: () => messaging?.disconnected(),
        latency: (sample) => this.emit("latency", sample),
        refused: (code, message) =>
          this.emit("error", new ParleyError(code, `connect refused: ${message}`)),
        unreachable: (attempts, reason) =>
          this.emit(
            "error",
            new ParleyError(
              "network_error",
              `cannot reach the relay at ${options.socketUrl} (${attempts} attempts, ${reason}): ` +
                "no network, the relay down, or the relay refusing this page's origin " +
                "(its CORS_ALLOWED_ORIGINS); still trying",
              { retryable: true },
            ),
          ),
      },
    );
    messaging = new Messaging({
      me: session.user.id,
      api: this.api,
      socket: monitor.socket,
      options,
      cursor: this.#kept(this.#cursorKey(session.user.id)),
      outbox: this.#kept(this.#outboxKey(session.user.id)),
      emit: (event, payload) => this.emit(event, payload),
      revoked: () => monitor.revoked(),
      dropConnection: () => monitor.drop(),
    });
    this.#monitor = monitor;
    this.#messaging = messaging;
    monitor.start();
  }

  #startSession(auth: Session): Session {
    if (this.#session && this.#session.user.id !== auth.user.id) this.close();
    this.#setSession(auth);
    return auth;
  }

  #setSession(session: Session): void {
    this.#session = session;
    this.api.token = session.token;
    this.#storage.setItem(this.#key("session"), JSON.stringify(session));
  }

  #loadSession(): Session | null {
    try {
      const raw = this.#storage.getItem(this.#key("session"));
      const session = raw ? (JSON.parse(raw) as Session) : null;
      return session && typeof session.token === "string" && session.user ? session : null;
    } catch {
      return null;
    }
  }

  #requireMessaging(): Messaging {
    if (!this.#messaging) throw new ParleyError("not_connected", "call connect() first");
    return this.#messaging;
  }

  #setState(state: ConnectionState): void {
    this.#state = state;
    this.emit("state", state);
  }

  #key(name: string): string {
    return this.#options.storageKeyPrefix + name;
  }

  #cursorKey(userId: UserId): string {
    return this.#key(`cursor.${userId}`);
  }

  #outboxKey(userId: UserId): string {
    return this.#key(`outbox.${userId}`);
  }

  #kept(key: string): Kept {
    return {
      get: () => this.#storage.getItem(key),
      set: (value) =>
        value === null ? this.#storage.removeItem(key) : this.#storage.setItem(key, value),
    };
  }
}

/** `http://host:3000` → `http://host:5000` (the default ports of the two services). */
function defaultSocketUrl(apiUrl: string): string {
  try {
    const url = new URL(apiUrl);
    url.port = "5000";
    return url.origin;
  } catch {
    return apiUrl;
  }
}
