DROP INDEX sessions_expires_at;
DROP INDEX users_display_name_trgm;
DROP INDEX users_username_trgm;
-- pg_trgm is left: other objects of the database may use it.
