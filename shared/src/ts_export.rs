//! The TypeScript declarations of the client-visible wire types, rendered with `ts-rs` into
//! `clients/js/src/generated/wire.ts` (the `@parley/client` SDK imports them). The test fails
//! when the checked-in file differs from what the Rust types say, so CI catches drift;
//! `UPDATE_TS=1 cargo test -p shared ts_export` rewrites it.

use crate::{domain, errors, ids, wire};
use std::path::PathBuf;
use ts_rs::TS;

/// Every type a client sees, in the order the file lists them.
fn declarations() -> Vec<(Option<String>, String)> {
    macro_rules! decls {
        ($($t:ty),* $(,)?) => {
            vec![$((<$t as TS>::docs(), <$t as TS>::decl())),*]
        };
    }
    decls![
        ids::UserId,
        ids::ConversationId,
        ids::MessageId,
        domain::MessageKind,
        errors::ErrorCode,
        errors::ErrorBody,
        errors::ErrorEnvelope,
        errors::AckError,
        wire::User,
        wire::UserWithPresence,
        wire::AuthResponse,
        wire::ConversationKind,
        wire::MemberState,
        wire::Conversation,
        wire::ConversationMember,
        wire::ConversationSummary,
        wire::MessageStatus,
        wire::Message,
        wire::AttachmentKind,
        wire::Attachment,
        wire::UploadedAttachment,
        wire::SendMessageRequest,
        wire::MessagePage,
        wire::WatermarkRequest,
        wire::SyncResponse,
        wire::CreateConversationRequest,
        wire::MessageSaved,
        wire::MessageFailed,
        wire::Typing,
        wire::Presence,
        wire::OnlineUsers,
        wire::SessionRevoked,
        wire::SendAck,
        wire::AckFailure,
        wire::Pong,
    ]
}

fn render() -> String {
    let mut out = String::from(
        "// Generated from the Rust wire types (shared/src/{ids,domain,errors,wire}.rs) by ts-rs.\n\
         // Do not edit: run `UPDATE_TS=1 cargo test -p shared ts_export` after changing them.\n",
    );
    for (docs, decl) in declarations() {
        out.push('\n');
        if let Some(docs) = docs {
            out.push_str(&docs);
        }
        out.push_str("export ");
        out.push_str(&decl);
        out.push('\n');
    }
    out
}

#[test]
fn ts_export_matches_the_checked_in_declarations() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../clients/js/src/generated/wire.ts");
    let rendered = render();
    if std::env::var_os("UPDATE_TS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &rendered).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == rendered,
        "{} is out of date with the Rust wire types; run `UPDATE_TS=1 cargo test -p shared \
         ts_export` and commit the result",
        path.display()
    );
}
