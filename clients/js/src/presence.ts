// What the client knows of its contacts' presence: `online_users` at connect, `presence`
// events, and user lists fetched by REST.

import type { UserId } from "./generated/wire.js";
import type { PresenceState } from "./types.js";

export class PresenceBook {
  readonly #states = new Map<UserId, PresenceState>();

  constructor(
    private readonly me: UserId,
    private readonly changed: (state: PresenceState) => void,
  ) {}

  get(userId: UserId): PresenceState | undefined {
    return this.#states.get(userId);
  }

  /** A user's state; `lastSeen` is kept from before when an offline update has none. */
  set(next: PresenceState): void {
    const old = this.#states.get(next.userId);
    const lastSeen = next.online ? null : (next.lastSeen ?? old?.lastSeen ?? null);
    if (old && old.online === next.online && old.lastSeen === lastSeen) return;
    const state: PresenceState = { userId: next.userId, online: next.online, lastSeen };
    this.#states.set(next.userId, state);
    this.changed(state);
  }

  /** `online_users`: exactly these contacts are online now; the others known went offline. */
  onlineNow(users: UserId[]): void {
    const online = new Set(users);
    for (const state of [...this.#states.values()]) {
      if (state.online && !online.has(state.userId) && state.userId !== this.me) {
        this.set({ userId: state.userId, online: false, lastSeen: state.lastSeen });
      }
    }
    for (const userId of users) this.set({ userId, online: true, lastSeen: null });
  }
}
