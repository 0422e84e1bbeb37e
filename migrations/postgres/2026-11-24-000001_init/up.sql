-- Parley's system of record on PostgreSQL.

CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Issued tokens, so that logout can revoke one.
CREATE TABLE sessions (
    jti        TEXT PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE conversations (
    id              BIGSERIAL PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('direct', 'group')),
    title           TEXT,
    -- "<low user id>:<high user id>" for a direct conversation: one per pair.
    direct_key      TEXT UNIQUE,
    -- The last allocated seq. Incremented under the row lock inside the message insert
    -- transaction, so seqs are gap-free and commit in order.
    last_seq        BIGINT NOT NULL DEFAULT 0,
    last_message_at TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((kind = 'direct') = (direct_key IS NOT NULL))
);

CREATE TABLE members (
    conversation_id     BIGINT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id             BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    delivered_up_to_seq BIGINT NOT NULL DEFAULT 0 CHECK (delivered_up_to_seq >= 0),
    read_up_to_seq      BIGINT NOT NULL DEFAULT 0 CHECK (read_up_to_seq >= 0),
    joined_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX members_user ON members (user_id);

CREATE TABLE messages (
    id              BIGSERIAL PRIMARY KEY,
    conversation_id BIGINT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    sender_id       BIGINT NOT NULL REFERENCES users (id),
    client_msg_id   TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('text', 'image', 'voice')),
    content         TEXT NOT NULL,
    attachment_id   TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- A send is idempotent: a retry from any device or path finds the original.
    UNIQUE (sender_id, client_msg_id),
    UNIQUE (conversation_id, seq)
);

-- The change log sync reads. `xid` is the writing transaction's id: a reader only returns rows
-- whose xid is below the oldest transaction still running (pg_snapshot_xmin), so a row can
-- never appear later behind a cursor already handed out, whatever the commit order.
CREATE TABLE changes (
    id              BIGSERIAL PRIMARY KEY,
    xid             BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    conversation_id BIGINT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    kind            TEXT NOT NULL CHECK (kind IN ('message', 'receipt', 'conversation')),
    message_id      BIGINT REFERENCES messages (id) ON DELETE CASCADE,
    user_id         BIGINT REFERENCES users (id) ON DELETE CASCADE,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX changes_conversation_xid ON changes (conversation_id, xid, id);
