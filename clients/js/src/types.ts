// The SDK's own public types: options, connection states, the client-side message, events.
// The server's JSON shapes are in ./generated/wire.ts (generated from the Rust types).

import type {
  AckError,
  Attachment,
  AttachmentKind,
  Conversation,
  ConversationId,
  ConversationSummary,
  MessageId,
  Message,
  MessageKind,
  MessageStatus,
  User,
  UserId,
} from "./generated/wire.js";
import type { KeyValueStorage } from "./storage.js";

/**
 * The connection monitor's state.
 *
 * - `idle`: created, `connect()` not called yet (or `logout()` / `close()` called).
 * - `connecting`: the first connection attempt is under way.
 * - `connected`: the socket is connected (catch-up sync runs right after).
 * - `reconnecting`: the connection was lost; `attempt` (1, 2, …) is the attempt now scheduled or
 *   under way, `delayMs` the back-off before it.
 * - `disconnected`: not connected and not trying: the attempt limit was reached, the server
 *   refused the token, or the session was revoked (`reason` says which). `reconnect()` tries again.
 * - `offline`: the browser reports no network (`offline` event); attempts resume on `online`.
 */
export type ConnectionState =
  | { status: "idle" }
  | { status: "connecting" }
  | { status: "connected" }
  | { status: "reconnecting"; attempt: number; delayMs: number }
  | { status: "disconnected"; reason: DisconnectReason }
  | { status: "offline" };

/** Why the monitor stopped trying (see {@link ConnectionState}). */
export type DisconnectReason =
  | "attempts_exhausted"
  | "unauthorized"
  | "session_revoked"
  | "closed";

/**
 * A message's status as the UI shows it: `sending` (optimistic, not stored yet), then the
 * server's `sent → delivered → read` (never backwards), or `failed` (see `error`; `retry()`).
 */
export type ClientMessageStatus = "sending" | MessageStatus | "failed";

/**
 * A message as the SDK's lists hold it: stored, relayed (not stored yet) or optimistic. Every
 * field of the server's {@link Message} (generated), with `id` and `seq` `null` until stored.
 */
export interface ClientMessage extends Omit<Message, "id" | "seq" | "status"> {
  /** The client's id of the message: the key that ties the optimistic copy to the stored one. */
  clientMsgId: string;
  conversationId: ConversationId;
  senderId: UserId;
  /** The real id, once stored; `null` before. */
  id: MessageId | null;
  /** The position in the conversation (1, 2, 3…), once stored; `null` before. */
  seq: number | null;
  kind: MessageKind;
  content: string;
  attachmentId?: string | null;
  /** RFC 3339; the local clock until the message is stored, then the server's. */
  createdAt: string;
  status: ClientMessageStatus;
  /** Sent by the logged-in user (from this device or another one). */
  mine: boolean;
  /** Why it failed (`status` `failed`): `retryable` says whether `retry()` may succeed as is. */
  error?: SendError;
  /**
   * An image / voice note of `sendAttachment()` whose upload has not succeeded yet (status
   * `sending`: uploading; `failed`: the upload was refused). Replaced by `attachmentId` and
   * `attachment` (the server's answer) once uploaded; never on stored or relayed messages.
   */
  localAttachment?: LocalAttachment;
}

/** What the SDK knows of a file before its upload is answered: enough to draw a placeholder. */
export interface LocalAttachment {
  kind: AttachmentKind;
  /** The `mime` given, else the `Blob`'s own type; `null` when unknown (the server decides). */
  mime: string | null;
  /** The file's size. */
  bytes: number;
}

/** What `sendAttachment()` takes. */
export interface AttachmentInput {
  kind: AttachmentKind;
  /** The file: its type is read from the bytes by the server (`POST /api/attachments`). */
  body: Blob | ArrayBuffer | Uint8Array;
  /** The type as the app knows it, for the placeholder only. */
  mime?: string;
  /** An optional caption (the message's `content`). */
  caption?: string;
}

/**
 * Why a send failed: the server's ack error, or `timeout` (no answer within `sendTimeoutMs` on
 * three connections, or an earlier message of the conversation so failed; retryable); for an
 * attachment's upload the HTTP error's code (`unsupported_media_type`, `payload_too_large`,
 * `rate_limited`…) or the SDK's `network_error` / `http_error` (an answer not in Parley's error
 * shape).
 */
export interface SendError {
  code: AckError["code"] | "timeout" | "network_error" | "http_error";
  message: string;
  retryable: boolean;
}

/** What `send()` takes. */
export interface SendInput {
  conversationId: ConversationId;
  /** The text; for an `image` or `voice` message an optional caption. */
  content?: string;
  /** `text` (default), `image` or `voice`. */
  kind?: MessageKind;
  /** The upload an `image` / `voice` message carries (`POST /api/attachments`). */
  attachmentId?: string | null;
  /**
   * The upload's metadata as `POST /api/attachments` answered it: relayed with the message so
   * that recipients (and the optimistic copy) can render it before it is stored.
   */
  attachment?: Attachment | null;
}

/** A conversation in the list the SDK keeps: the server's summary, kept live. */
export type ConversationView = ConversationSummary;

/** What the SDK knows of a user's presence. */
export interface PresenceState {
  userId: UserId;
  online: boolean;
  /** When the user went offline; `null` while online or unknown. */
  lastSeen: string | null;
}

/** Latency measured by the periodic `ping`. */
export interface LatencySample {
  /** Round trip of the last answered ping, in milliseconds. */
  latencyMs: number;
  /** `latencyMs` above `slowThresholdMs`, or a ping unanswered for longer than that. */
  slow: boolean;
}

/** Options of {@link ParleyClient}. Only `apiUrl` is required. */
export interface ParleyClientOptions {
  /** The REST API's base URL, e.g. `http://127.0.0.1:3000`. */
  apiUrl: string;
  /** The Socket.IO relay's URL, e.g. `http://127.0.0.1:5000`. Default: `apiUrl` with port 5000. */
  socketUrl?: string;
  /** A token from an earlier login; otherwise the one kept in `storage`, if any. */
  token?: string;
  /**
   * Where the session (token, user) and the sync cursor are kept. Default: in memory. In
   * browsers pass `localStorageAdapter()` to survive reloads.
   */
  storage?: KeyValueStorage;
  /** Prefix of every storage key. Default `parley.`. */
  storageKeyPrefix?: string;
  /** First reconnect delay. Default 1000 ms; it doubles per attempt up to `reconnectDelayMaxMs`. */
  reconnectDelayMs?: number;
  /** Longest reconnect delay. Default 30 000 ms. */
  reconnectDelayMaxMs?: number;
  /** Attempts before giving up (state `disconnected`, reason `attempts_exhausted`). Default `Infinity`. */
  reconnectAttempts?: number;
  /** Random spread of each delay, 0..1. Default 0.5 (a delay of d waits d·(1 ± 0.5)). */
  reconnectJitter?: number;
  /** Period of the latency `ping`. Default 30 000 ms; 0 disables it. */
  pingIntervalMs?: number;
  /** Latency above which the network is flagged slow. Default 1 000 ms. */
  slowThresholdMs?: number;
  /**
   * How long a sent message may wait for its ack while connected. Past it the connection is
   * taken for dead (open, but not answering): the client reconnects on a fresh one and resends
   * the message (still `sending`), in send order. Default 15 000 ms. A message unanswered on
   * three connections is `failed` (`timeout`, retryable), with the later messages of its
   * conversation. Messages waiting when the connection drops are resent after reconnect.
   */
  sendTimeoutMs?: number;
  /**
   * How long a REST call (the conversation list, sync, receipts, history…) may take before it is
   * aborted and fails as `network_error` (retryable). Default 15 000 ms.
   */
  requestTimeoutMs?: number;
  /** The same for an upload (`upload()`, `sendAttachment()`). Default 300 000 ms. */
  uploadTimeoutMs?: number;
  /** Least time between two `typing: true` events for one conversation. Default 3 000 ms. */
  typingThrottleMs?: number;
  /** After this long without `typing()`, `typing: false` is sent. Default 5 000 ms. */
  typingIdleMs?: number;
  /** Others' typing indicators expire after this long without news. Default 8 000 ms. */
  typingExpiryMs?: number;
  /** Mark others' messages delivered as they arrive. Default `true`. */
  autoMarkDelivered?: boolean;
  /**
   * Without a kept sync cursor (a new device, storage cleared), replay the account's whole
   * history through sync. Default `false`: start from the present (`GET /api/sync?since=now`,
   * before the conversation list is read) and read older messages by conversation with
   * `loadHistory()`; on an old account the replay is millions of changes, all held in memory.
   */
  replayHistory?: boolean;
  /**
   * Listen to the browser's `online` / `offline` events (when `window` exists). Default `true`.
   */
  watchNetwork?: boolean;
  /** Extra options passed to `socket.io-client`'s `io()` (e.g. `transports`). */
  socketOptions?: Record<string, unknown>;
}

/** The events of {@link ParleyClient} and their payloads. */
export interface ParleyEvents {
  /** The connection monitor's state changed. */
  state: ConnectionState;
  /** A conversation's message list changed (a new, replaced or re-statused message). */
  messages: { conversationId: ConversationId; messages: readonly ClientMessage[] };
  /** A message from someone else arrived (live or through sync): for notifications. */
  message: ClientMessage;
  /** The conversation list changed (new conversation, last message, unread count, members). */
  conversations: readonly ConversationView[];
  /** One conversation was created or its members changed. */
  conversation: Conversation;
  /** Who is typing in a conversation now (others only). */
  typing: { conversationId: ConversationId; userIds: readonly UserId[] };
  /** A user's presence changed. */
  presence: PresenceState;
  /** A ping was answered (or went unanswered long enough to flag the network slow). */
  latency: LatencySample;
  /** A catch-up sync finished: `messages` new messages, `receipts` receipt changes applied. */
  synced: { messages: number; receipts: number };
  /** The session ended from the server's side (logout elsewhere, expiry); log in again. */
  sessionRevoked: { reason: string };
  /**
   * An error the app may want to show (a failed sync, a refused connection, a relay that has not
   * answered the first connection in three attempts: `network_error`…).
   */
  error: ParleyError;
}

/** Callback of an event. */
export type Listener<K extends keyof ParleyEvents> = (payload: ParleyEvents[K]) => void;

/**
 * Every error the SDK throws or emits: the server's code (`validation_failed`, `rate_limited`,
 * …, see docs/protocol.md), or one of the SDK's own: `network_error` (no answer),
 * `timeout` (no ack in time), `not_connected`, `not_logged_in`.
 */
export class ParleyError extends Error {
  readonly code: string;
  readonly retryable: boolean;
  /** The HTTP status, for REST errors. */
  readonly status?: number;
  /** The failing field, for `validation_failed`. */
  readonly field?: string;
  /** How long to wait before trying again, when the server said (`Retry-After`). */
  readonly retryAfterMs?: number;

  constructor(
    code: string,
    message: string,
    options: { retryable?: boolean; status?: number; field?: string; retryAfterMs?: number } = {},
  ) {
    super(message);
    this.name = "ParleyError";
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.status = options.status;
    this.field = options.field;
    this.retryAfterMs = options.retryAfterMs;
  }


}

/** A user with the token they are logged in with. */
export interface Session {
  token: string;
  user: User;
}
