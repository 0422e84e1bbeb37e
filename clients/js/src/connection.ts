// The connection monitor: one socket.io-client socket, its states, exponential back-off, the
// browser's online/offline events and the latency ping.

import { io, type Socket } from "socket.io-client";
import type { ConnectionState, DisconnectReason, LatencySample } from "./types.js";

/** Refusals at connect that no retry can fix: a new token is needed. */
const AUTH_CODES = new Set(["missing_token", "invalid_token", "token_expired", "token_revoked"]);

/**
 * Failed attempts in a row, without a connection yet since `start()` / `reconnect()`, after
 * which the relay is reported unreachable (`hooks.unreachable`) while the attempts go on.
 */
export const UNREACHABLE_AFTER = 3;

export interface MonitorOptions {
  url: string;
  token: string;
  reconnectDelayMs: number;
  reconnectDelayMaxMs: number;
  reconnectAttempts: number;
  reconnectJitter: number;
  pingIntervalMs: number;
  slowThresholdMs: number;
  watchNetwork: boolean;
  socketOptions: Record<string, unknown>;
}

export interface MonitorHooks {
  state(state: ConnectionState): void;
  /** The socket connected (first time or again). */
  connected(socket: Socket): void;
  /** The socket lost its connection (the client's pending acks will never come). */
  disconnected(): void;
  latency(sample: LatencySample): void;
  /** The server refused the connection (`code`: `invalid_token`, `too_many_connections`…). */
  refused(code: string, message: string): void;
  /**
   * The first connection failed `attempts` times in a row with no answer of the relay's (the
   * network, the relay down, or the relay refusing a browser page's origin: the browser hides
   * which). Told once per streak; the attempts go on.
   */
  unreachable(attempts: number, reason: string): void;
}

/** The delay before reconnect attempt `attempt` (1-based), before jitter. */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.min(attempt - 1, 30));
}

export class ConnectionMonitor {
  readonly socket: Socket;
  #state: ConnectionState = { status: "idle" };
  #attempt = 0;
  #retryTimer: ReturnType<typeof setTimeout> | null = null;
  #pingTimer: ReturnType<typeof setInterval> | null = null;
  /** Bumped when pinging stops: answers to pings of an earlier connection are ignored. */
  #pingGeneration = 0;
  /** When the oldest ping still unanswered was sent. */
  #unansweredSince: number | null = null;
  readonly #slowTimers = new Set<ReturnType<typeof setTimeout>>();
  #networkDown = false;
  /** Whether a connection succeeded since `start()` / `reconnect()`. */
  #connectedOnce = false;
  /** Attempts that failed with no answer of the relay's, in a row. */
  #unanswered = 0;
  #revoked = false;
  #closed = false;
  #latency: LatencySample | null = null;
  readonly #removeNetworkListeners: () => void;

  constructor(
    private readonly options: MonitorOptions,
    private readonly hooks: MonitorHooks,
  ) {
    this.socket = io(options.url, {
      ...options.socketOptions,
      auth: { token: options.token },
      autoConnect: false,
      reconnection: false,
    });
    this.socket.on("connect", () => this.#onConnect());
    this.socket.on("disconnect", (reason) => this.#onDisconnect(reason));
    this.socket.on("connect_error", (error) => this.#onConnectError(error));
    this.#removeNetworkListeners = this.#watchNetwork();
  }

  get state(): ConnectionState {
    return this.#state;
  }

  get latency(): LatencySample | null {
    return this.#latency;
  }

  /** Connect for the first time. */
  start(): void {
    if (this.#closed || this.socket.connected || this.socket.active) return;
    this.#attempt = 0;
    this.#connectedOnce = false;
    this.#unanswered = 0;
    this.#setState(this.#networkDown ? { status: "offline" } : { status: "connecting" });
    if (!this.#networkDown) this.socket.connect();
  }

  /** Try now, with a fresh attempt count (after a give-up, or to skip a long back-off). */
  reconnect(): void {
    if (this.#closed || this.socket.connected) return;
    this.#clearRetry();
    this.#attempt = 0;
    this.#connectedOnce = false;
    this.#unanswered = 0;
    this.#revoked = false;
    this.#setState({ status: "connecting" });
    this.socket.disconnect();
    this.socket.connect();
  }

  /**
   * The connection looks open but does not answer (an ack overdue): drop it and connect again
   * on a fresh transport, after the back-off as for a lost connection.
   */
  drop(): void {
    if (this.#closed || !this.socket.connected) return;
    this.socket.disconnect(); // a client disconnect: #onDisconnect schedules no attempt
    this.#scheduleRetry();
  }

  /** The session was revoked by the server: stop for good (until `reconnect()` with a new token). */
  revoked(): void {
    this.#revoked = true;
  }

  /** Stop everything: timers, listeners, the socket. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#clearRetry();
    this.#stopPing();
    this.#removeNetworkListeners();
    this.socket.off();
    this.socket.disconnect();
    this.#setState({ status: "disconnected", reason: "closed" });
  }

  #onConnect(): void {
    this.#attempt = 0;
    this.#connectedOnce = true;
    this.#unanswered = 0;
    this.#clearRetry();
    this.#setState({ status: "connected" });
    this.#startPing();
    this.hooks.connected(this.socket);
  }

  #onDisconnect(reason: string): void {
    this.#stopPing();
    this.hooks.disconnected();
    if (this.#closed || reason === "io client disconnect") return;
    if (this.#revoked) {
      this.#stop("session_revoked");
      return;
    }
    this.#scheduleRetry();
  }

  #onConnectError(error: Error & { data?: { code?: string } }): void {
    const code = error.data?.code;
    if (this.#closed) return;
    // The server's refusals are worth telling; a network failure shows in the state alone.
    if (code) this.hooks.refused(code, error.message);
    if (code && AUTH_CODES.has(code)) {
      this.#stop("unauthorized");
      return;
    }
    if (!code && !this.#connectedOnce && ++this.#unanswered === UNREACHABLE_AFTER) {
      this.hooks.unreachable(this.#unanswered, error.message);
    }
    this.#scheduleRetry();
  }

  #scheduleRetry(): void {
    this.#clearRetry();
    if (this.#networkDown) {
      this.#setState({ status: "offline" });
      return;
    }
    this.#attempt++;
    if (this.#attempt > this.options.reconnectAttempts) {
      this.#stop("attempts_exhausted");
      return;
    }
    const base = backoffDelay(
      this.#attempt,
      this.options.reconnectDelayMs,
      this.options.reconnectDelayMaxMs,
    );
    const jitter = this.options.reconnectJitter;
    const delayMs = Math.round(base * (1 - jitter + 2 * jitter * Math.random()));
    this.#setState({ status: "reconnecting", attempt: this.#attempt, delayMs });
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      if (!this.#closed && !this.socket.connected) this.socket.connect();
    }, delayMs);
  }

  #stop(reason: DisconnectReason): void {
    this.#clearRetry();
    this.socket.disconnect();
    this.#setState({ status: "disconnected", reason });
  }

  #clearRetry(): void {
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
  }

  #setState(state: ConnectionState): void {
    const old = this.#state;
    if (JSON.stringify(old) === JSON.stringify(state)) return;
    this.#state = state;
    this.hooks.state(state);
  }

  #startPing(): void {
    this.#stopPing();
    if (this.options.pingIntervalMs <= 0) return;
    this.#ping();
    this.#pingTimer = setInterval(() => this.#ping(), this.options.pingIntervalMs);
  }

  #stopPing(): void {
    if (this.#pingTimer !== null) clearInterval(this.#pingTimer);
    this.#pingTimer = null;
    for (const timer of this.#slowTimers) clearTimeout(timer);
    this.#slowTimers.clear();
    this.#unansweredSince = null;
    this.#pingGeneration++;
  }

  /** One ping: its answer gives the latency; none for `slowThresholdMs` flags the network slow. */
  #ping(): void {
    const generation = this.#pingGeneration;
    const started = now();
    this.#unansweredSince ??= started;
    const slowTimer = setTimeout(() => {
      this.#slowTimers.delete(slowTimer);
      const since = this.#unansweredSince;
      if (generation !== this.#pingGeneration || since === null || this.#latency?.slow) return;
      const waited = now() - since;
      if (waited >= this.options.slowThresholdMs) {
        this.#report({ latencyMs: Math.round(waited), slow: true });
      }
    }, this.options.slowThresholdMs);
    this.#slowTimers.add(slowTimer);
    this.socket.emit("ping", {}, () => {
      if (generation !== this.#pingGeneration) return;
      this.#unansweredSince = null;
      const latencyMs = Math.round(now() - started);
      this.#report({ latencyMs, slow: latencyMs > this.options.slowThresholdMs });
    });
  }

  #report(sample: LatencySample): void {
    this.#latency = sample;
    this.hooks.latency(sample);
  }

  #watchNetwork(): () => void {
    const target = (globalThis as { window?: EventTarget & { navigator?: { onLine?: boolean } } })
      .window;
    if (!this.options.watchNetwork || !target || typeof target.addEventListener !== "function") {
      return () => {};
    }
    if (target.navigator?.onLine === false) this.#networkDown = true;
    const offline = (): void => {
      this.#networkDown = true;
      if (!this.socket.connected && !this.#closed && this.#state.status !== "disconnected") {
        this.#clearRetry();
        this.#setState({ status: "offline" });
      }
    };
    const online = (): void => {
      this.#networkDown = false;
      if (this.#state.status === "offline" || this.#state.status === "reconnecting") {
        this.reconnect();
      }
    };
    target.addEventListener("offline", offline);
    target.addEventListener("online", online);
    return () => {
      target.removeEventListener("offline", offline);
      target.removeEventListener("online", online);
    };
  }
}

function now(): number {
  return globalThis.performance?.now() ?? Date.now();
}
