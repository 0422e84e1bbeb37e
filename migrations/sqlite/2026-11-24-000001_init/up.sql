-- Parley's schema on the embedded SQLite store: the PostgreSQL one in SQLite terms. Timestamps
-- are UTC text ('YYYY-MM-DD HH:MM:SS.ffffff+00:00', diesel's TimestamptzSqlite), which sorts in
-- time order; the store writes them from the application clock.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f+00:00', 'now'))
);

-- Issued tokens, so that logout can revoke one.
CREATE TABLE sessions (
    jti        TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f+00:00', 'now')),
    expires_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE conversations (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('direct', 'group')),
    title           TEXT,
    -- "<low user id>:<high user id>" for a direct conversation: one per pair.
    direct_key      TEXT UNIQUE,
    -- The last allocated seq, incremented inside the message insert's write transaction
    -- (SQLite has one writer at a time), so seqs are gap-free.
    last_seq        INTEGER NOT NULL DEFAULT 0,
    last_message_at TEXT,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f+00:00', 'now')),
    CHECK ((kind = 'direct') = (direct_key IS NOT NULL))
);

CREATE TABLE members (
    conversation_id     INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id             INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    delivered_up_to_seq INTEGER NOT NULL DEFAULT 0 CHECK (delivered_up_to_seq >= 0),
    read_up_to_seq      INTEGER NOT NULL DEFAULT 0 CHECK (read_up_to_seq >= 0),
    joined_at           TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f+00:00', 'now')),
    updated_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f+00:00', 'now')),
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX members_user ON members (user_id);

CREATE TABLE messages (
    id              INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    sender_id       INTEGER NOT NULL REFERENCES users (id),
    client_msg_id   TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('text', 'image', 'voice')),
    content         TEXT NOT NULL,
    attachment_id   TEXT,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f+00:00', 'now')),
    -- A send is idempotent: a retry from any device or path finds the original.
    UNIQUE (sender_id, client_msg_id),
    UNIQUE (conversation_id, seq)
);

-- The change log sync reads. No `xid`: writes are serialized, and a row's id is assigned
-- inside the write transaction that commits it, so ids commit in order and `id > cursor` never
-- skips a change. AUTOINCREMENT: an id is never reused, even after a delete.
CREATE TABLE changes (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    kind            TEXT NOT NULL CHECK (kind IN ('message', 'receipt', 'conversation')),
    message_id      INTEGER REFERENCES messages (id) ON DELETE CASCADE,
    user_id         INTEGER REFERENCES users (id) ON DELETE CASCADE,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f+00:00', 'now'))
);
CREATE INDEX changes_conversation_id ON changes (conversation_id, id);
