// Generated from the Rust wire types (shared/src/{ids,domain,errors,wire}.rs) by ts-rs.
// Do not edit: run `UPDATE_TS=1 cargo test -p shared ts_export` after changing them.

/**
 * A user's id.
 */
export type UserId = string;

/**
 * A conversation's id.
 */
export type ConversationId = string;

/**
 * A stored message's real id (the temporary one is [`crate::domain::ClientMsgId`]).
 */
export type MessageId = string;

/**
 * The kind of a message.
 */
export type MessageKind = "text" | "image" | "voice";

/**
 * Every error code Parley can answer with.
 */
export type ErrorCode = "validation_failed" | "invalid_json" | "missing_token" | "invalid_token" | "token_expired" | "token_revoked" | "invalid_credentials" | "username_taken" | "not_found" | "conversation_not_found" | "user_not_found" | "method_not_allowed" | "origin_not_allowed" | "idempotency_mismatch" | "payload_too_large" | "quota_exceeded" | "unsupported_media_type" | "range_not_satisfiable" | "invalid_signature" | "request_timeout" | "rate_limited" | "too_many_connections" | "storage_failed" | "service_unavailable" | "internal_error";

/**
 * The body of an error: `{"code","message"}` plus, for validation errors, the failing field.
 */
export type ErrorBody = { code: ErrorCode, message: string, field?: string | null, };

/**
 * The HTTP error envelope `{"error":{…}}`.
 */
export type ErrorEnvelope = { error: ErrorBody, };

/**
 * The error inside a failed Socket.IO ack: `{"code","message","retryable"}`.
 */
export type AckError = { code: ErrorCode, message: string, retryable: boolean, 
/**
 * When the server knows it (`rate_limited` by a rate): how long to wait before trying
 * again, in milliseconds, as HTTP's `Retry-After` says in seconds.
 */
retryAfterMs?: number, };

/**
 * A user as others see them.
 */
export type User = { id: UserId, username: string, displayName: string, createdAt: string, };

/**
 * A user with live presence, as `GET /api/users` returns them.
 */
export type UserWithPresence = { online: boolean, lastSeen: string | null, id: UserId, username: string, displayName: string, createdAt: string, };

/**
 * `{token, user}` answered by register and login.
 */
export type AuthResponse = { token: string, user: User, };

/**
 * Direct (exactly two members, unique per pair) or group.
 */
export type ConversationKind = "direct" | "group";

/**
 * A member's receipt watermarks in a conversation; also the `message_status` event.
 */
export type MemberState = { conversationId: ConversationId, userId: UserId, deliveredUpToSeq: number, readUpToSeq: number, 
/**
 * When the watermarks last moved.
 */
at: string, };

/**
 * A conversation with its members' watermarks.
 */
export type Conversation = { id: ConversationId, kind: ConversationKind, title: string | null, createdAt: string, lastSeq: number, members: Array<ConversationMember>, };

/**
 * A member of a conversation: the user and their watermarks.
 */
export type ConversationMember = { user: User, deliveredUpToSeq: number, readUpToSeq: number, joinedAt: string, };

/**
 * A conversation as the caller's list shows it.
 */
export type ConversationSummary = { lastMessage: Message | null, 
/**
 * Messages from others with `seq` above the caller's `readUpToSeq`.
 */
unreadCount: number, id: ConversationId, kind: ConversationKind, title: string | null, createdAt: string, lastSeq: number, members: Array<ConversationMember>, };

/**
 * Delivery status of a message, from its sender's point of view: `delivered` once every other
 * member's `deliveredUpToSeq` reaches it, `read` once every other member's `readUpToSeq` does.
 */
export type MessageStatus = "sent" | "delivered" | "read";

/**
 * A stored message.
 */
export type Message = { id: MessageId, clientMsgId: string, conversationId: ConversationId, senderId: UserId, seq: number, kind: MessageKind, content: string, attachmentId?: string | null, 
/**
 * The upload an image or voice message carries, with signed URLs (valid for
 * `attachments.signed_url_ttl_secs`; read the message again for fresh ones).
 */
attachment?: Attachment | null, createdAt: string, status: MessageStatus, };

/**
 * What an upload is.
 */
export type AttachmentKind = "image" | "voice";

/**
 * An upload as a message carries it: enough to render a placeholder of the right size at
 * once, and where to fetch it. `url` and `thumbnailUrl` are signed, relative to the API's
 * base, and usable without a token (in `<img>` and `<audio>`) until they expire.
 */
export type Attachment = { id: string, kind: AttachmentKind, mime: string, bytes: number, width?: number, height?: number, durationMs?: number, url?: string | null, thumbnailUrl?: string | null, };

/**
 * `201` of `POST /api/attachments`: the stored upload. Send it with a message by its `id`
 * (`attachmentId`); on the relay, pass this object as `attachment` too, so that recipients
 * see its size before the message is stored.
 */
export type UploadedAttachment = { 
/**
 * Lower-case hex SHA-256 of the bytes.
 */
sha256: string, createdAt: string, id: string, kind: AttachmentKind, mime: string, bytes: number, width?: number, height?: number, durationMs?: number, url?: string | null, thumbnailUrl?: string | null, };

/**
 * The body of `POST /api/messages` and of the `send_message` event. Exactly one of
 * `conversationId` and `recipientId`. Any `senderId` a client adds is ignored.
 */
export type SendMessageRequest = { 
/**
 * A string; an integer is read as its decimal digits (`tempId: Date.now()`), and the
 * first design document's `messageId` (its temporary id) is read as this.
 */
clientMsgId: string, conversationId?: ConversationId | null, recipientId?: UserId | null, kind?: MessageKind, 
/**
 * The text; for `image` and `voice`, an optional caption (absent or empty).
 */
content?: string, 
/**
 * The upload an `image` or `voice` message carries (required for them, refused on text).
 */
attachmentId?: string | null, 
/**
 * The relay only: the upload's metadata as `POST /api/attachments` answered it, relayed
 * as given (shape-checked) so that recipients render it before it is stored. The API
 * ignores it and describes the upload from its own record. One that does not read as an
 * attachment is dropped, not refused: it only decorates the live copy.
 */
attachment?: Attachment | null, };

/**
 * A page of a conversation's messages in `seq` order.
 */
export type MessagePage = { messages: Array<Message>, hasMore: boolean, };

/**
 * `{upToSeq}` for `/delivered` and `/read`.
 */
export type WatermarkRequest = { upToSeq: number, };

/**
 * What `GET /api/sync` and the `sync` event answer: every change since the cursor.
 */
export type SyncResponse = { 
/**
 * New messages, in the order they became visible (per conversation: `seq` order).
 */
messages: Array<Message>, 
/**
 * Watermark changes, latest state of each member that moved.
 */
receipts: Array<MemberState>, 
/**
 * Conversations created or whose membership changed.
 */
conversations: Array<Conversation>, 
/**
 * Pass as `since` next time. Opaque.
 */
nextCursor: string, 
/**
 * More changes are waiting: call again at once with `nextCursor`.
 */
hasMore: boolean, };

/**
 * `POST /api/conversations` body.
 */
export type CreateConversationRequest = { memberIds: Array<UserId>, title?: string, };

/**
 * The ack of a stored `send_message` and the `message_saved` event.
 */
export type MessageSaved = { clientMsgId: string, id: MessageId, seq: number, conversationId: ConversationId, createdAt: string, 
/**
 * The stored message's upload, as the API describes it (the relayed copy had the
 * sender's description).
 */
attachment?: Attachment | null, };

/**
 * `message_failed`: a relayed message could not be stored (the sender's ack carries the same
 * error); devices showing its optimistic copy mark it failed.
 */
export type MessageFailed = { clientMsgId: string, conversationId: ConversationId, error: AckError, };

/**
 * `typing`: a member started or stopped typing in a conversation.
 */
export type Typing = { conversationId: ConversationId, userId: UserId, isTyping: boolean, };

/**
 * `presence`: a contact came online or went offline.
 */
export type Presence = { userId: UserId, online: boolean, lastSeen: string | null, };

/**
 * `online_users`: the contacts online when a socket connects.
 */
export type OnlineUsers = { users: Array<UserId>, };

/**
 * `session_revoked`: the token this socket connected with was revoked; the socket is closed.
 */
export type SessionRevoked = { reason: string, };

/**
 * The ack of a stored `send_message`: [`MessageSaved`] with `success` and `status`, and
 * `messageId` (= `id`), the field the first design document's clients read the real id from.
 */
export type SendAck = { success: boolean, messageId: MessageId, status: MessageStatus, clientMsgId: string, id: MessageId, seq: number, conversationId: ConversationId, createdAt: string, 
/**
 * The stored message's upload, as the API describes it (the relayed copy had the
 * sender's description).
 */
attachment?: Attachment | null, };

/**
 * A failed Socket.IO ack: `{"success":false,"error":{"code","message","retryable"}}`.
 */
export type AckFailure = { success: boolean, error: AckError, };

/**
 * The answer to `ping`: the server's clock, for latency and skew.
 */
export type Pong = { serverTime: string, };
