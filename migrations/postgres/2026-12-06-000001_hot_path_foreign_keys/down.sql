DROP TRIGGER users_deleted ON users;
DROP FUNCTION users_deleted();
DROP TRIGGER messages_deleted ON messages;
DROP FUNCTION messages_deleted();
DROP TRIGGER conversations_deleted ON conversations;
DROP FUNCTION conversations_deleted();
ALTER TABLE changes
    ADD CONSTRAINT changes_conversation_id_fkey FOREIGN KEY (conversation_id)
        REFERENCES conversations (id) ON DELETE CASCADE,
    ADD CONSTRAINT changes_message_id_fkey FOREIGN KEY (message_id)
        REFERENCES messages (id) ON DELETE CASCADE,
    ADD CONSTRAINT changes_user_id_fkey FOREIGN KEY (user_id)
        REFERENCES users (id) ON DELETE CASCADE;
ALTER TABLE messages
    ADD CONSTRAINT messages_conversation_id_fkey FOREIGN KEY (conversation_id)
        REFERENCES conversations (id) ON DELETE CASCADE,
    ADD CONSTRAINT messages_sender_id_fkey FOREIGN KEY (sender_id) REFERENCES users (id);
