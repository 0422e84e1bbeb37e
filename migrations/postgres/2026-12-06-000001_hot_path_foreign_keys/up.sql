-- Storing a message checks no foreign key row by row. PostgreSQL checks each foreign key of an
-- inserted row with a query of its own that locks the referenced row (FOR KEY SHARE): four per
-- message (its conversation and sender, its change row's conversation and message), a quarter
-- to a half of PostgreSQL's CPU per stored message (bench/README.md, session 24); a fifth one,
-- `changes.user_id`, is null on a message's change row but still queued and fired for it.
--
-- What those checks guaranteed still holds, by construction: every message is inserted in the
-- transaction that allocates its seq by updating (and so locking until commit) its
-- conversation's row (batch_sql.rs STORE_MESSAGES joins the insert to that update; the single
-- send of queries/messages.rs updates it first), for the sender the request authenticated, and
-- its change row is written from what the insert returned; receipt and conversation change
-- rows are written with the member or conversation row they describe. Parley itself deletes no
-- conversation, user or message.
--
-- What deleting them by hand did stays as it was, by statement-level triggers that cost
-- nothing on insert:
-- - a deleted conversation takes its messages and change rows with it (was ON DELETE CASCADE);
-- - a deleted message takes its change rows with it (was ON DELETE CASCADE);
-- - a user who sent messages cannot be deleted (was NO ACTION: foreign_key_violation). Unlike
--   the foreign key, this does not see a message still being stored: revoke the user's sessions
--   before deleting them (docs/operations.md);
-- - a deleted user's receipt change rows go with them (was ON DELETE CASCADE).
ALTER TABLE messages
    DROP CONSTRAINT messages_conversation_id_fkey,
    DROP CONSTRAINT messages_sender_id_fkey;
ALTER TABLE changes
    DROP CONSTRAINT changes_conversation_id_fkey,
    DROP CONSTRAINT changes_message_id_fkey,
    DROP CONSTRAINT changes_user_id_fkey;

CREATE FUNCTION conversations_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM messages WHERE conversation_id IN (SELECT id FROM gone);
    DELETE FROM changes WHERE conversation_id IN (SELECT id FROM gone);
    RETURN NULL;
END
$$;
CREATE TRIGGER conversations_deleted AFTER DELETE ON conversations
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION conversations_deleted();

CREATE FUNCTION messages_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM changes WHERE message_id IN (SELECT id FROM gone);
    RETURN NULL;
END
$$;
CREATE TRIGGER messages_deleted AFTER DELETE ON messages
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION messages_deleted();

CREATE FUNCTION users_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    sender BIGINT;
BEGIN
    SELECT m.sender_id INTO sender FROM messages m JOIN gone g ON m.sender_id = g.id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'user % sent messages: delete them first', sender
            USING ERRCODE = 'foreign_key_violation', TABLE = 'messages';
    END IF;
    DELETE FROM changes WHERE user_id IN (SELECT id FROM gone);
    RETURN NULL;
END
$$;
CREATE TRIGGER users_deleted AFTER DELETE ON users
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION users_deleted();
