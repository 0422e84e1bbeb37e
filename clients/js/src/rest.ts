// The REST API calls the SDK and apps need, with Parley's error shape turned into ParleyError.

import type {
  AuthResponse,
  Conversation,
  ConversationId,
  ConversationSummary,
  ErrorEnvelope,
  MemberState,
  Message,
  MessagePage,
  SendMessageRequest,
  SyncResponse,
  UploadedAttachment,
  User,
  UserId,
  UserWithPresence,
} from "./generated/wire.js";
import { ParleyError } from "./types.js";

/** What `register()` takes. */
export interface RegisterInput {
  username: string;
  password: string;
  displayName?: string;
}

/** What `login()` takes. */
export interface LoginInput {
  username: string;
  password: string;
}

/** A page of history: `beforeSeq` pages back from the newest, `afterSeq` forward. */
export interface HistoryQuery {
  beforeSeq?: number;
  afterSeq?: number;
  /** 1–200, default 50. */
  limit?: number;
}

/** A page of the conversation list, and the path of the next one (`null` on the last). */
export interface ConversationPage {
  conversations: ConversationSummary[];
  next: string | null;
}

/** How long a request may take, from sending it to the last byte of the answer. */
export interface RestTimeouts {
  /** Every request but uploads. Default 15 000 ms. */
  requestTimeoutMs?: number;
  /** `POST /api/attachments`. Default 300 000 ms (the server's own deadline for an upload). */
  uploadTimeoutMs?: number;
}

/**
 * Thin typed wrapper of Parley's REST routes (docs/protocol.md, "REST routes"). A request not
 * answered in time is aborted and fails as `network_error` (retryable): a request lost in flight
 * (a Wi-Fi hand-over, a NAT that forgot the connection) would otherwise wait for the platform's
 * own limit, minutes in node and none in browsers.
 */
export class RestApi {
  readonly #base: string;
  readonly #requestTimeoutMs: number;
  readonly #uploadTimeoutMs: number;
  token: string | null;

  constructor(apiUrl: string, token: string | null = null, timeouts: RestTimeouts = {}) {
    this.#base = apiUrl.replace(/\/+$/, "");
    this.token = token;
    this.#requestTimeoutMs = timeouts.requestTimeoutMs ?? 15_000;
    this.#uploadTimeoutMs = timeouts.uploadTimeoutMs ?? 300_000;
  }

  register(input: RegisterInput): Promise<AuthResponse> {
    return this.request("POST", "/api/auth/register", input, false);
  }

  login(input: LoginInput): Promise<AuthResponse> {
    return this.request("POST", "/api/auth/login", input, false);
  }

  logout(): Promise<void> {
    return this.request("POST", "/api/auth/logout");
  }

  me(): Promise<User> {
    return this.request("GET", "/api/auth/me");
  }

  users(search = "", limit?: number): Promise<UserWithPresence[]> {
    return this.request("GET", `/api/users${query({ search, limit })}`);
  }

  /**
   * All the caller's conversations, most recently active first: every page of the list. A
   * conversation that becomes active while the pages are read moves above them, to the first
   * page, so after more than one page the first is read again for it.
   */
  async conversations(): Promise<ConversationSummary[]> {
    const first = `/api/conversations${query({ limit: 200 })}`;
    const listed: ConversationSummary[] = [];
    let path: string | null = first;
    let pages = 0;
    while (path !== null) {
      const page: ConversationPage = await this.conversationsPage(path);
      listed.push(...page.conversations);
      pages += 1;
      if (page.next === path) {
        throw new ParleyError("internal_error", `GET ${path}: the next page is this page again`);
      }
      path = page.next;
    }
    if (pages === 1) return listed;
    const again = (await this.conversationsPage(first)).conversations;
    const newer = new Set(again.map((c) => c.id));
    return [...again, ...listed.filter((c) => !newer.has(c.id))];
  }

  /**
   * One page of the caller's conversations: the first by default, else the path a previous
   * page's `next` named (`limit`, `before`; docs/protocol.md).
   */
  async conversationsPage(path = "/api/conversations"): Promise<ConversationPage> {
    const { value, headers } = await this.#exchange<ConversationSummary[]>("GET", path);
    return { conversations: value, next: nextPage(headers.get("link")) };
  }

  conversation(id: ConversationId): Promise<Conversation> {
    return this.request("GET", `/api/conversations/${encodeURIComponent(id)}`);
  }

  createConversation(memberIds: UserId[], title?: string | null): Promise<Conversation> {
    return this.request("POST", "/api/conversations", { memberIds, title: title ?? null });
  }

  history(id: ConversationId, page: HistoryQuery = {}): Promise<MessagePage> {
    return this.request(
      "GET",
      `/api/conversations/${encodeURIComponent(id)}/messages${query({ ...page })}`,
    );
  }

  sendMessage(request: SendMessageRequest): Promise<Message> {
    return this.request("POST", "/api/messages", request);
  }

  markDelivered(id: ConversationId, upToSeq: number): Promise<MemberState> {
    return this.request("POST", `/api/conversations/${encodeURIComponent(id)}/delivered`, {
      upToSeq,
    });
  }

  markRead(id: ConversationId, upToSeq: number): Promise<MemberState> {
    return this.request("POST", `/api/conversations/${encodeURIComponent(id)}/read`, {
      upToSeq,
    });
  }

  /** Upload an image or voice note (its type is read from the bytes); send it by its `id`. */
  uploadAttachment(data: Blob | ArrayBuffer | Uint8Array): Promise<UploadedAttachment> {
    return this.request("POST", "/api/attachments", data);
  }

  sync(since: string | null, limit?: number): Promise<SyncResponse> {
    return this.request("GET", `/api/sync${query({ since: since ?? undefined, limit })}`);
  }

  /** One request; resolves with the JSON body (or nothing for 204), rejects with ParleyError. */
  async request<T>(method: string, path: string, body?: unknown, auth = true): Promise<T> {
    return (await this.#exchange<T>(method, path, body, auth)).value;
  }

  /** A request, answering the parsed body and the response's headers. */
  async #exchange<T>(
    method: string,
    path: string,
    body?: unknown,
    auth = true,
  ): Promise<{ value: T; headers: Headers }> {
    const headers: Record<string, string> = { accept: "application/json" };
    const raw = isBytes(body);
    if (body !== undefined) {
      headers["content-type"] = raw ? "application/octet-stream" : "application/json";
    }
    if (auth) {
      if (!this.token) throw new ParleyError("not_logged_in", "log in first");
      headers.authorization = `Bearer ${this.token}`;
    }
    const timeoutMs = raw ? this.#uploadTimeoutMs : this.#requestTimeoutMs;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), timeoutMs);
    let response: Response;
    let text: string;
    try {
      response = await fetch(this.#base + path, {
        method,
        headers,
        body: body === undefined ? undefined : raw ? (body as BodyInit) : JSON.stringify(body),
        signal: abort.signal,
      });
      text = await response.text();
    } catch (error) {
      const why = abort.signal.aborted ? `no answer in ${timeoutMs} ms` : describe(error);
      throw new ParleyError("network_error", `${method} ${path}: ${why}`, { retryable: true });
    } finally {
      clearTimeout(timer);
    }
    if (!response.ok) throw errorOf(response, text, `${method} ${path}`);
    return { value: (text ? JSON.parse(text) : undefined) as T, headers: response.headers };
  }
}

function isBytes(body: unknown): boolean {
  return (
    body instanceof ArrayBuffer ||
    ArrayBuffer.isView(body) ||
    (typeof Blob !== "undefined" && body instanceof Blob)
  );
}

function errorOf(response: Response, text: string, what: string): ParleyError {
  const status = response.status;
  const retryable = status === 408 || status === 429 || status >= 500;
  // `Retry-After` in seconds (the HTTP-date form is not sent by Parley).
  const after = Number(response.headers.get("retry-after") ?? Number.NaN);
  const retryAfterMs = Number.isFinite(after) && after >= 0 ? after * 1000 : undefined;
  try {
    const { error } = JSON.parse(text) as ErrorEnvelope;
    if (error && typeof error.code === "string") {
      return new ParleyError(error.code, error.message, {
        status,
        field: error.field ?? undefined,
        retryable,
        retryAfterMs,
      });
    }
  } catch {
    // Not our error shape (a proxy's page): described below.
  }
  return new ParleyError(status >= 500 ? "service_unavailable" : "http_error", `${what}: HTTP ${status}`, {
    status,
    retryable,
    retryAfterMs,
  });
}

function query(params: Record<string, string | number | undefined>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The target of a `Link` header's `rel="next"` (a path on the API), if it has one. */
function nextPage(link: string | null): string | null {
  if (link === null) return null;
  for (const part of link.split(",")) {
    const match = /^\s*<([^>]*)>\s*;(.*)$/.exec(part);
    if (match && /(^|;)\s*rel="?next"?\s*(;|$)/.test(match[2])) return match[1];
  }
  return null;
}
