-- The hourly pruning of expired sessions selects them by `expires_at`, 1 000 at a time: without
-- an index each batch read the whole table. (User search lower-cases both sides with a function
-- of Parley's own, which no index serves; the all-in-one is for small deployments.)
CREATE INDEX sessions_expires_at ON sessions (expires_at);
