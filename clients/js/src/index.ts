/**
 * `@parley/client`: the typed client SDK of Parley (docs/client.md).
 *
 * - {@link ParleyClient}: log in, connect, send with optimistic UI, ordered de-duplicated
 *   message lists with `sending → sent → delivered → read`, the connection monitor
 *   (`connecting / connected / reconnecting(attempt) / disconnected / offline`, back-off, ping
 *   latency), catch-up sync after every reconnect, typing, presence, logout.
 * - The server's JSON shapes, generated from the Rust wire types (`./generated/wire.ts`).
 *
 * @packageDocumentation
 */

export { ParleyClient } from "./client.js";
export { RestApi } from "./rest.js";
export type { ConversationPage, HistoryQuery, LoginInput, RegisterInput } from "./rest.js";
export { MemoryStorage, localStorageAdapter } from "./storage.js";
export type { KeyValueStorage } from "./storage.js";
export { backoffDelay } from "./connection.js";
export { newClientMsgId } from "./ids.js";
export { wellFormed } from "./text.js";
export { ParleyError } from "./types.js";
export type {
  AttachmentInput,
  ClientMessage,
  ClientMessageStatus,
  ConnectionState,
  ConversationView,
  DisconnectReason,
  LatencySample,
  Listener,
  LocalAttachment,
  ParleyClientOptions,
  ParleyEvents,
  PresenceState,
  SendError,
  SendInput,
  Session,
} from "./types.js";
export type * from "./generated/wire.js";
