-- Image and voice uploads: the PostgreSQL table in SQLite terms (see its migration). Writes are
-- serialized, so linking an upload to a message and claiming it as garbage cannot interleave.
CREATE TABLE attachments (
    id          TEXT PRIMARY KEY,
    owner_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('image', 'voice')),
    mime        TEXT NOT NULL,
    bytes       INTEGER NOT NULL CHECK (bytes > 0),
    sha256      TEXT NOT NULL,
    width       INTEGER,
    height      INTEGER,
    duration_ms INTEGER,
    message_id  INTEGER UNIQUE REFERENCES messages (id) ON DELETE SET NULL,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f+00:00', 'now'))
);
CREATE INDEX attachments_owner ON attachments (owner_id);
CREATE INDEX attachments_unattached ON attachments (created_at) WHERE message_id IS NULL;
