// @generated automatically by Diesel CLI.

diesel::table! {
    attachments (id) {
        id -> Text,
        owner_id -> Int8,
        kind -> Text,
        mime -> Text,
        bytes -> Int8,
        sha256 -> Text,
        width -> Nullable<Int8>,
        height -> Nullable<Int8>,
        duration_ms -> Nullable<Int8>,
        message_id -> Nullable<Int8>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    changes (id) {
        id -> Int8,
        xid -> Int8,
        conversation_id -> Int8,
        kind -> Text,
        message_id -> Nullable<Int8>,
        user_id -> Nullable<Int8>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    conversations (id) {
        id -> Int8,
        kind -> Text,
        title -> Nullable<Text>,
        direct_key -> Nullable<Text>,
        last_seq -> Int8,
        last_message_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    members (conversation_id, user_id) {
        conversation_id -> Int8,
        user_id -> Int8,
        delivered_up_to_seq -> Int8,
        read_up_to_seq -> Int8,
        joined_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    messages (id) {
        id -> Int8,
        conversation_id -> Int8,
        sender_id -> Int8,
        client_msg_id -> Text,
        seq -> Int8,
        kind -> Text,
        content -> Text,
        attachment_id -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    sessions (jti) {
        jti -> Text,
        user_id -> Int8,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    users (id) {
        id -> Int8,
        username -> Text,
        display_name -> Text,
        password_hash -> Text,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(attachments -> messages (message_id));
diesel::joinable!(attachments -> users (owner_id));
diesel::joinable!(members -> conversations (conversation_id));
diesel::joinable!(members -> users (user_id));
diesel::joinable!(sessions -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    attachments,
    changes,
    conversations,
    members,
    messages,
    sessions,
    users,
);
