// @generated automatically by Diesel CLI.

diesel::table! {
    attachments (id) {
        id -> Text,
        owner_id -> BigInt,
        kind -> Text,
        mime -> Text,
        bytes -> BigInt,
        sha256 -> Text,
        width -> Nullable<BigInt>,
        height -> Nullable<BigInt>,
        duration_ms -> Nullable<BigInt>,
        message_id -> Nullable<BigInt>,
        created_at -> TimestamptzSqlite,
    }
}

diesel::table! {
    changes (id) {
        id -> BigInt,
        conversation_id -> BigInt,
        kind -> Text,
        message_id -> Nullable<BigInt>,
        user_id -> Nullable<BigInt>,
        created_at -> TimestamptzSqlite,
    }
}

diesel::table! {
    conversations (id) {
        id -> BigInt,
        kind -> Text,
        title -> Nullable<Text>,
        direct_key -> Nullable<Text>,
        last_seq -> BigInt,
        last_message_at -> Nullable<TimestamptzSqlite>,
        created_at -> TimestamptzSqlite,
    }
}

diesel::table! {
    members (conversation_id, user_id) {
        conversation_id -> BigInt,
        user_id -> BigInt,
        delivered_up_to_seq -> BigInt,
        read_up_to_seq -> BigInt,
        joined_at -> TimestamptzSqlite,
        updated_at -> TimestamptzSqlite,
    }
}

diesel::table! {
    messages (id) {
        id -> BigInt,
        conversation_id -> BigInt,
        sender_id -> BigInt,
        client_msg_id -> Text,
        seq -> BigInt,
        kind -> Text,
        content -> Text,
        attachment_id -> Nullable<Text>,
        created_at -> TimestamptzSqlite,
    }
}

diesel::table! {
    sessions (jti) {
        jti -> Text,
        user_id -> BigInt,
        created_at -> TimestamptzSqlite,
        expires_at -> TimestamptzSqlite,
        revoked_at -> Nullable<TimestamptzSqlite>,
    }
}

diesel::table! {
    users (id) {
        id -> BigInt,
        username -> Text,
        display_name -> Text,
        password_hash -> Text,
        created_at -> TimestamptzSqlite,
    }
}

diesel::joinable!(attachments -> messages (message_id));
diesel::joinable!(attachments -> users (owner_id));
diesel::joinable!(changes -> conversations (conversation_id));
diesel::joinable!(changes -> messages (message_id));
diesel::joinable!(changes -> users (user_id));
diesel::joinable!(members -> conversations (conversation_id));
diesel::joinable!(members -> users (user_id));
diesel::joinable!(messages -> conversations (conversation_id));
diesel::joinable!(messages -> users (sender_id));
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
