// Pluggable key-value storage for the session and the sync cursor.

/**
 * What the SDK persists into: the synchronous subset of the Web Storage API, so
 * `window.localStorage` fits as is. Values are strings.
 */
export interface KeyValueStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** Storage in memory: the default; forgets everything when the process or page ends. */
export class MemoryStorage implements KeyValueStorage {
  readonly #items = new Map<string, string>();

  getItem(key: string): string | null {
    return this.#items.get(key) ?? null;
  }

  setItem(key: string, value: string): void {
    this.#items.set(key, value);
  }

  removeItem(key: string): void {
    this.#items.delete(key);
  }
}

/**
 * The browser's `localStorage` when there is one (and it can be written: private modes may
 * refuse), otherwise a {@link MemoryStorage}.
 */
export function localStorageAdapter(): KeyValueStorage {
  try {
    const storage = (globalThis as { localStorage?: KeyValueStorage }).localStorage;
    if (storage) {
      const probe = "parley.__probe__";
      storage.setItem(probe, "1");
      storage.removeItem(probe);
      return storage;
    }
  } catch {
    // Fall through: storage exists but is not usable.
  }
  return new MemoryStorage();
}
