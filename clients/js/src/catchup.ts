// Catch-up: `GET /api/sync` from the kept cursor until `hasMore` is false, after every
// (re)connect; a failed run is retried with back-off while the client stays connected. A
// reconnect starts a fresh run rather than wait for one whose request may be lost in flight.

import type { SyncResponse } from "./generated/wire.js";
import type { RestApi } from "./rest.js";
import { ParleyError } from "./types.js";

export interface CatchupDeps {
  api: RestApi;
  cursor: { get(): string | null; set(cursor: string | null): void };
  /** Apply one page (through the same de-duplication as live events); returns new messages. */
  apply(page: SyncResponse): number;
  done(result: { messages: number; receipts: number }): void;
  /** Whether a failed run should be tried again (still connected, not closed). */
  shouldRetry(): boolean;
  failed(error: unknown): void;
}

/** Retry delays of a failed run: 1 s, 2 s, 4 s… at most 30 s. */
const RETRY_MS = [1_000, 2_000, 4_000, 8_000, 16_000, 30_000];

export class Catchup {
  #running: Promise<void> | null = null;
  /** Bumped by each run started: a run replaced by `restart()` stops applying pages. */
  #generation = 0;
  #again = false;
  #retryTimer: ReturnType<typeof setTimeout> | null = null;
  #failures = 0;
  #stopped = false;

  constructor(private readonly deps: CatchupDeps) {}

  /** Run now; a call during a run makes it go once more; concurrent callers share it. */
  run(): Promise<void> {
    this.#cancelRetry();
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    return this.#start();
  }

  /**
   * Run afresh now, even during a run (after a reconnect: the run's request may hang on the old
   * network until its timeout). That run's answers are dropped; its callers get this run's end.
   */
  restart(): Promise<void> {
    this.#cancelRetry();
    return this.#start();
  }

  #start(): Promise<void> {
    const generation = ++this.#generation;
    // Assigned before the run's first await, so before its `finally` reads it.
    let running!: Promise<void>;
    running = (async () => {
      try {
        do {
          this.#again = false;
          await this.#once(generation);
        } while (this.#again && this.#current(generation));
        if (!this.#current(generation)) return this.#after(running);
        this.#failures = 0;
      } catch (error) {
        if (!this.#current(generation)) return this.#after(running);
        this.deps.failed(error);
        this.#scheduleRetry();
        throw error;
      } finally {
        if (this.#running === running) this.#running = null;
      }
    })();
    this.#running = running;
    return running;
  }

  /** Where the callers of a replaced run wait: the run that replaced it, while under way. */
  #after(run: Promise<void>): Promise<void> | undefined {
    return this.#running !== run ? (this.#running ?? undefined) : undefined;
  }

  /** Whether the run of `generation` is the one to apply (not replaced by `restart()`, not stopped). */
  #current(generation: number): boolean {
    return generation === this.#generation && !this.#stopped;
  }

  stop(): void {
    this.#stopped = true;
    this.#cancelRetry();
  }

  async #once(generation: number): Promise<void> {
    let messages = 0;
    let receipts = 0;
    for (;;) {
      const since = this.deps.cursor.get();
      let page: SyncResponse;
      try {
        page = await this.deps.api.sync(since);
      } catch (error) {
        if (since !== null && error instanceof ParleyError && error.field === "since") {
          // A cursor this server did not issue (e.g. a restored database): from the beginning.
          this.deps.cursor.set(null);
          continue;
        }
        throw error;
      }
      if (!this.#current(generation)) return;
      messages += this.deps.apply(page);
      receipts += page.receipts.length;
      this.deps.cursor.set(page.nextCursor);
      if (!page.hasMore) break;
    }
    this.deps.done({ messages, receipts });
  }

  #scheduleRetry(): void {
    if (this.#stopped || !this.deps.shouldRetry()) return;
    const delay = RETRY_MS[Math.min(this.#failures, RETRY_MS.length - 1)]!;
    this.#failures++;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      if (!this.#stopped && this.deps.shouldRetry()) this.run().catch(() => {});
    }, delay);
  }

  #cancelRetry(): void {
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
  }
}
