-- User search (`GET /api/users?search=`) matches `ILIKE '%text%'` on the username and the
-- display name: a leading wildcard no b-tree can serve, so every search read the whole table
-- (177 ms a keystroke at 100 000 users, linear beyond). Trigram indexes serve it for a text of
-- three characters or more (0.15–0.3 ms there). pg_trgm ships with PostgreSQL and is a trusted
-- extension: a role with CREATE on the database may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX users_username_trgm ON users USING gin (username gin_trgm_ops);
CREATE INDEX users_display_name_trgm ON users USING gin (display_name gin_trgm_ops);

-- The hourly pruning of expired sessions selects them by `expires_at`, 1 000 at a time: without
-- an index each batch read the whole table (513 ms at 2 million sessions).
CREATE INDEX sessions_expires_at ON sessions (expires_at);
