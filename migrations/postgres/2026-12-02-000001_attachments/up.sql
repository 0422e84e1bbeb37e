-- Image and voice uploads. The bytes live in the object store (ATTACHMENTS_URL) under
-- objects/<id> and thumbnails/<id>; this row is the record of each. `message_id` is set in the
-- transaction that stores the message referencing the upload (once: one upload, one message);
-- garbage collection claims rows still unattached after a while with DELETE ... RETURNING, and
-- an UPDATE that links one waits for (and re-checks after) a concurrent claim, and vice versa.
CREATE TABLE attachments (
    id          TEXT PRIMARY KEY,
    owner_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('image', 'voice')),
    mime        TEXT NOT NULL,
    bytes       BIGINT NOT NULL CHECK (bytes > 0),
    sha256      TEXT NOT NULL,
    width       BIGINT,
    height      BIGINT,
    duration_ms BIGINT,
    message_id  BIGINT UNIQUE REFERENCES messages (id) ON DELETE SET NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX attachments_owner ON attachments (owner_id);
CREATE INDEX attachments_unattached ON attachments (created_at) WHERE message_id IS NULL;
