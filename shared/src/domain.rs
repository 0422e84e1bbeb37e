//! Parsed inputs: a value of these types has passed its checks, so a handler cannot forget one.
//!
//! # Text rules
//! Every text a client sends is parsed here before it goes anywhere near storage (PostgreSQL
//! refuses NUL bytes in text; the other control characters are refused because no client means
//! them). Refused with the field named:
//! - **single-line texts** (username, password, display name, conversation title, user search,
//!   attachment id): every control character (`Cc`: U+0000–U+001F, U+007F–U+009F) and the line
//!   and paragraph separators U+2028, U+2029;
//! - **message content**: every control character but tab, line feed and carriage return (so
//!   `\r\n` line ends pass);
//! - `clientMsgId`: anything but visible ASCII.
//!
//! A text is **blank** when it has nothing visible: only whitespace and invisible characters
//! ([`is_invisible`]: zero-width and format characters, variation selectors, fillers, tags —
//! the `Default_Ignorable_Code_Point`s). Blank content is refused like empty content, a blank
//! display name is refused, a blank title means no title. Invisible characters are otherwise
//! kept as they are: they belong inside emoji (`❤\u{FE0F}`, `👩\u{200D}💻`) and scripts
//! (ZWNJ in Persian).

use crate::ids::{ConversationId, UserId};
use crate::wire::SendMessageRequest;
use serde::{Deserialize, Serialize};

/// Why an input was refused: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// Whether `c` is a control character no single-line text may hold: `Cc` and the line and
/// paragraph separators.
fn breaks_a_line(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// Whether `c` is a control character message content may not hold: `Cc` but tab, line feed
/// and carriage return.
fn is_refused_in_content(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r')
}

/// Refuse a single-line text holding a control character (see the module doc).
fn single_line(field: &'static str, text: &str) -> Result<(), FieldError> {
    if text.contains(breaks_a_line) {
        return Err(FieldError::new(
            field,
            "must not contain control characters or line breaks",
        ));
    }
    Ok(())
}

/// Whether `c` shows nothing by itself: the `Default_Ignorable_Code_Point`s of Unicode 15 (a
/// hand list: format controls, zero-width characters, variation selectors, fillers, tags),
/// plus the blank Braille pattern U+2800, which renders as a space. Whitespace is not in it
/// (see [`is_blank`]).
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'                      // soft hyphen
            | '\u{034F}'                // combining grapheme joiner
            | '\u{061C}'                // Arabic letter mark
            | '\u{115F}' | '\u{1160}'    // Hangul choseong / jungseong fillers
            | '\u{17B4}' | '\u{17B5}'    // Khmer inherent vowels
            | '\u{180B}'..='\u{180F}'    // Mongolian variation selectors, vowel separator
            | '\u{200B}'..='\u{200F}'    // zero-width space, ZWNJ, ZWJ, LRM, RLM
            | '\u{202A}'..='\u{202E}'    // bidi embeddings and overrides
            | '\u{2060}'..='\u{206F}'    // word joiner, invisible operators, bidi isolates
            | '\u{2800}'                // Braille pattern blank
            | '\u{3164}'                // Hangul filler
            | '\u{FE00}'..='\u{FE0F}'    // variation selectors
            | '\u{FEFF}'                // zero-width no-break space (BOM)
            | '\u{FFA0}'                // halfwidth Hangul filler
            | '\u{FFF0}'..='\u{FFF8}'    // reserved, default ignorable
            | '\u{1BCA0}'..='\u{1BCA3}'  // shorthand format controls
            | '\u{1D173}'..='\u{1D17A}'  // musical symbol format controls
            | '\u{E0000}'..='\u{E0FFF}'  // tags, variation selectors supplement
    )
}

/// Whether `text` shows nothing: empty, or only whitespace and [invisible](is_invisible)
/// characters.
pub fn is_blank(text: &str) -> bool {
    text.chars().all(|c| c.is_whitespace() || is_invisible(c))
}

/// The kind of a message.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, utoipa::ToSchema,
)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    #[default]
    Text,
    Image,
    Voice,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Text => "text",
            MessageKind::Image => "image",
            MessageKind::Voice => "voice",
        }
    }

    pub fn parse(s: &str) -> Result<Self, FieldError> {
        match s {
            "text" => Ok(MessageKind::Text),
            "image" => Ok(MessageKind::Image),
            "voice" => Ok(MessageKind::Voice),
            other => Err(FieldError::new(
                "kind",
                format!("must be text, image or voice, not {other:?}"),
            )),
        }
    }
}

/// The temporary id a client gives a message before it is stored. 1 to 128 visible ASCII
/// characters; unique per sender (the idempotency key of a send).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ClientMsgId(String);

impl ClientMsgId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(FieldError::new(
                "clientMsgId",
                format!("must be 1 to {} characters", Self::MAX_LEN),
            ));
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(FieldError::new(
                "clientMsgId",
                "must be printable ASCII without spaces",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A message's content: not [blank](is_blank), at most `max_chars` characters, no control
/// character but tab, line feed and carriage return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct MessageContent(String);

impl MessageContent {
    /// An image's or voice note's caption: as [`MessageContent::parse`], but absent or blank
    /// is no caption (empty).
    pub fn caption(raw: &str, max_chars: usize) -> Result<Self, FieldError> {
        if is_blank(raw) {
            return Ok(Self(String::new()));
        }
        Self::parse(raw, max_chars)
    }

    pub fn parse(raw: &str, max_chars: usize) -> Result<Self, FieldError> {
        if is_blank(raw) {
            return Err(FieldError::new("content", "must not be empty or blank"));
        }
        if raw.chars().count() > max_chars {
            return Err(FieldError::new(
                "content",
                format!("must be at most {max_chars} characters"),
            ));
        }
        if raw.contains(is_refused_in_content) {
            return Err(FieldError::new(
                "content",
                "must not contain control characters other than tab and line breaks",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A username: 3 to 32 characters of `a-z 0-9 _ . -`, stored lower-case. Only ASCII is
/// lower-cased, so no other letter folds into one (the Kelvin sign U+212A is not a `k`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let name = raw.trim().to_ascii_lowercase();
        if !(3..=32).contains(&name.chars().count()) {
            return Err(FieldError::new("username", "must be 3 to 32 characters"));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err(FieldError::new(
                "username",
                "may contain only letters, digits, '_', '.' and '-'",
            ));
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password as typed at registration: 8 to 256 characters, no control characters (it is only
/// ever hashed, never stored, but no keyboard types a NUL or an escape and a client sending one
/// has a bug). Never logged. Login does not parse it: a stored hash is compared as it is.
pub struct Password(String);

impl Password {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let n = raw.chars().count();
        if !(8..=256).contains(&n) {
            return Err(FieldError::new("password", "must be 8 to 256 characters"));
        }
        single_line("password", raw)?;
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A display name: 1 to 64 characters after trimming, not [blank](is_blank), on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let name = raw.trim();
        if name.is_empty() || name.chars().count() > Self::MAX_CHARS {
            return Err(FieldError::new(
                "displayName",
                format!("must be 1 to {} characters", Self::MAX_CHARS),
            ));
        }
        single_line("displayName", name)?;
        if is_blank(name) {
            return Err(FieldError::new(
                "displayName",
                "must have a visible character",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A conversation's title: trimmed, at most 100 characters, on one line. A [blank](is_blank)
/// one (or none) means no title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationTitle(String);

impl ConversationTitle {
    pub const MAX_CHARS: usize = 100;

    /// `None` for an absent or blank title. Checked before it is trimmed: a title of nothing
    /// but a line separator is refused, not read as blank.
    pub fn parse(raw: Option<&str>) -> Result<Option<Self>, FieldError> {
        let Some(raw) = raw else {
            return Ok(None);
        };
        single_line("title", raw)?;
        let title = raw.trim();
        if title.chars().count() > Self::MAX_CHARS {
            return Err(FieldError::new(
                "title",
                format!("must be at most {} characters", Self::MAX_CHARS),
            ));
        }
        if is_blank(title) {
            return Ok(None);
        }
        Ok(Some(Self(title.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// What a user search looks for: trimmed, at most 100 characters, on one line; empty (or
/// absent) means everyone.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SearchText(String);

impl SearchText {
    pub const MAX_CHARS: usize = 100;

    /// Checked before it is trimmed: a search of nothing but a line separator or a tab is
    /// refused, not read as empty (which lists everyone).
    pub fn parse(raw: Option<&str>) -> Result<Self, FieldError> {
        let raw = raw.unwrap_or("");
        single_line("search", raw)?;
        let text = raw.trim();
        if text.chars().count() > Self::MAX_CHARS {
            return Err(FieldError::new(
                "search",
                format!("must be at most {} characters", Self::MAX_CHARS),
            ));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a message goes: an existing conversation, or the direct conversation with a user (found
/// or created by the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendTarget {
    Conversation(ConversationId),
    Recipient(UserId),
}

/// A `send_message` / `POST /api/messages` request that passed every check. The API and the
/// relay both parse with this, so a message the relay shows at once is one the API will accept.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    pub client_msg_id: ClientMsgId,
    pub target: SendTarget,
    pub kind: MessageKind,
    pub content: MessageContent,
    /// `None` also for an empty `attachmentId`; otherwise at most 256 characters on one line.
    /// Required for `image` and `voice`, refused on `text`.
    pub attachment_id: Option<String>,
    /// The client's description of the upload (the relay's optimistic copy shows it), kept only
    /// when its shape fits (see [`relayable_attachment`]); never trusted for storage.
    pub attachment: Option<Box<crate::wire::Attachment>>,
}

impl OutgoingMessage {
    /// Longest `attachmentId`, in characters.
    pub const MAX_ATTACHMENT_ID_CHARS: usize = 256;

    /// Check every field; `max_chars` bounds the content.
    pub fn parse(request: &SendMessageRequest, max_chars: usize) -> Result<Self, FieldError> {
        let target = match (request.conversation_id, request.recipient_id) {
            (Some(c), None) => SendTarget::Conversation(c),
            (None, Some(r)) => SendTarget::Recipient(r),
            (Some(_), Some(_)) => {
                return Err(FieldError::new(
                    "recipientId",
                    "give either conversationId or recipientId, not both",
                ))
            }
            (None, None) => {
                return Err(FieldError::new(
                    "conversationId",
                    "conversationId or recipientId is required",
                ))
            }
        };
        let client_msg_id = ClientMsgId::parse(&request.client_msg_id)?;
        let kind = MessageKind::parse(request.kind.as_deref().unwrap_or("text"))?;
        let attachment_id = request
            .attachment_id
            .clone()
            .or_else(|| request.attachment.as_ref().map(|a| a.id.clone()))
            .filter(|a| !a.is_empty());
        let content = match kind {
            MessageKind::Text => {
                if attachment_id.is_some() {
                    return Err(FieldError::new(
                        "attachmentId",
                        "only image and voice messages carry an upload",
                    ));
                }
                MessageContent::parse(&request.content, max_chars)?
            }
            MessageKind::Image | MessageKind::Voice => {
                if attachment_id.is_none() {
                    return Err(FieldError::new(
                        "attachmentId",
                        format!(
                            "a {} message needs the id of an upload (POST /api/attachments)",
                            kind.as_str()
                        ),
                    ));
                }
                MessageContent::caption(&request.content, max_chars)?
            }
        };
        if let Some(attachment) = &attachment_id {
            if attachment.chars().count() > Self::MAX_ATTACHMENT_ID_CHARS {
                return Err(FieldError::new(
                    "attachmentId",
                    format!(
                        "must be at most {} characters",
                        Self::MAX_ATTACHMENT_ID_CHARS
                    ),
                ));
            }
            single_line("attachmentId", attachment)?;
        }
        let attachment = match (&attachment_id, &request.attachment) {
            (Some(id), Some(given)) => relayable_attachment(given, id, kind),
            _ => None,
        };
        Ok(Self {
            client_msg_id,
            target,
            kind,
            content,
            attachment_id,
            attachment,
        })
    }
}

/// Longest query a relayed download URL may carry: the API signs with `exp=<unix seconds>&sig=<64
/// hex digits>` (~90 bytes), so this leaves room without letting one send carry a large payload
/// to every member's devices.
const RELAYED_QUERY_MAX: usize = 256;

/// The client's description of its upload `id`, when it can be relayed as given: its id and
/// kind are the message's (the id made of letters, digits, `-` and `_` only, as the API's
/// are), its type one the API stores, its numbers in range (sides at most 65 535 px, the most a
/// JPEG or WebP has, and at most an hour: a recipient lays out the copy by them before the API
/// has answered), and its URLs this upload's own
/// download paths with a short query of its own (so a sender cannot make recipients load another
/// site, another path, or a large payload).
pub fn relayable_attachment(
    given: &crate::wire::Attachment,
    id: &str,
    kind: MessageKind,
) -> Option<Box<crate::wire::Attachment>> {
    const MIMES: [&str; 8] = [
        "image/jpeg",
        "image/png",
        "image/webp",
        "image/gif",
        "audio/ogg",
        "audio/webm",
        "audio/mp4",
        "audio/mpeg",
    ];
    let in_range = |v: Option<i64>, max: i64| v.is_none_or(|v| (0..=max).contains(&v));
    let own_path = |url: &Option<String>, suffix: &str| {
        url.as_deref().is_none_or(|u| {
            u.strip_prefix(&format!("/api/attachments/{id}{suffix}?"))
                .is_some_and(|q| {
                    q.len() <= RELAYED_QUERY_MAX
                        && q.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"=&_-".contains(&b))
                })
        })
    };
    let path_safe = |id: &str| {
        id.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let fits = given.id == id
        && path_safe(id)
        && given.kind.as_str() == kind.as_str()
        && MIMES.contains(&given.mime.as_str())
        && in_range(Some(given.bytes), 1 << 40)
        && in_range(given.width, 65_535)
        && in_range(given.height, 65_535)
        && in_range(given.duration_ms, 3_600_000)
        && own_path(&given.url, "")
        && own_path(&given.thumbnail_url, "/thumbnail");
    fits.then(|| Box::new(given.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_and_voice_need_an_upload_and_take_an_optional_caption_text_takes_none() {
        let parse = |json: serde_json::Value| {
            OutgoingMessage::parse(&serde_json::from_value(json).unwrap(), 100)
        };
        let bare = parse(
            serde_json::json!({"clientMsgId": "c", "recipientId": "2", "kind": "voice", "attachmentId": "a1"}),
        );
        assert_eq!(bare.unwrap().content.as_str(), "");
        let missing =
            parse(serde_json::json!({"clientMsgId": "c", "recipientId": "2", "kind": "image"}));
        assert_eq!(missing.unwrap_err().field, "attachmentId");
        let text = parse(
            serde_json::json!({"clientMsgId": "c", "recipientId": "2", "content": "hi", "attachmentId": "a1"}),
        );
        assert_eq!(text.unwrap_err().field, "attachmentId");
    }

    #[test]
    fn a_relayed_description_must_be_the_uploads_own() {
        let good = crate::wire::Attachment {
            id: "a1".into(),
            kind: crate::wire::AttachmentKind::Image,
            mime: "image/png".into(),
            bytes: 10,
            width: Some(3),
            height: Some(2),
            duration_ms: None,
            url: Some("/api/attachments/a1?exp=1&sig=ab".into()),
            thumbnail_url: Some("/api/attachments/a1/thumbnail?exp=1&sig=ab".into()),
        };
        assert!(relayable_attachment(&good, "a1", MessageKind::Image).is_some());
        assert!(relayable_attachment(&good, "a2", MessageKind::Image).is_none());
        assert!(relayable_attachment(&good, "a1", MessageKind::Voice).is_none());
        let elsewhere = crate::wire::Attachment {
            url: Some("https://tracker.example/a1".into()),
            ..good.clone()
        };
        assert!(relayable_attachment(&elsewhere, "a1", MessageKind::Image).is_none());
        let script = crate::wire::Attachment {
            mime: "text/html".into(),
            ..good.clone()
        };
        assert!(relayable_attachment(&script, "a1", MessageKind::Image).is_none());
        let huge = crate::wire::Attachment {
            width: Some(1 << 40),
            ..good.clone()
        };
        assert!(relayable_attachment(&huge, "a1", MessageKind::Image).is_none());
        let padded = crate::wire::Attachment {
            url: Some(format!("/api/attachments/a1?exp=1&sig={}", "a".repeat(300))),
            ..good.clone()
        };
        assert!(relayable_attachment(&padded, "a1", MessageKind::Image).is_none());
        let climbing = "../../../api/users?search=";
        let elsewhere_here = crate::wire::Attachment {
            id: climbing.into(),
            url: Some(format!("/api/attachments/{climbing}?x=1")),
            thumbnail_url: None,
            ..good
        };
        assert!(relayable_attachment(&elsewhere_here, climbing, MessageKind::Image).is_none());
    }

    #[test]
    fn an_outgoing_message_needs_exactly_one_target_and_a_bounded_attachment() {
        let request = |json: serde_json::Value| -> SendMessageRequest {
            serde_json::from_value(json).unwrap()
        };
        let ok = OutgoingMessage::parse(
            &request(serde_json::json!({"clientMsgId": "c", "recipientId": "2", "content": "hi", "attachmentId": ""})),
            10,
        )
        .unwrap();
        assert_eq!(ok.target, SendTarget::Recipient(UserId(2)));
        assert_eq!((ok.kind, ok.attachment_id), (MessageKind::Text, None));
        let none = request(serde_json::json!({"clientMsgId": "c", "content": "hi"}));
        assert_eq!(
            OutgoingMessage::parse(&none, 10).unwrap_err().field,
            "conversationId"
        );
        let long = request(serde_json::json!({
            "clientMsgId": "c", "conversationId": "1", "content": "hi", "attachmentId": "a".repeat(257)
        }));
        assert_eq!(
            OutgoingMessage::parse(&long, 10).unwrap_err().field,
            "attachmentId"
        );
    }

    #[test]
    fn content_is_refused_when_blank_too_long_or_with_nul() {
        assert!(MessageContent::parse("  ", 10).is_err());
        assert!(MessageContent::parse("abcdefghijk", 10).is_err());
        assert!(MessageContent::parse("a\0b", 10).is_err());
        assert_eq!(MessageContent::parse("héllo", 5).unwrap().as_str(), "héllo");
    }

    #[test]
    fn client_msg_ids_are_bounded_printable_ascii() {
        assert!(ClientMsgId::parse("").is_err());
        assert!(ClientMsgId::parse("has space").is_err());
        assert!(ClientMsgId::parse(&"x".repeat(129)).is_err());
        assert!(ClientMsgId::parse("tmp-123_abc").is_ok());
    }

    #[test]
    fn usernames_are_lowercased_and_restricted() {
        assert_eq!(Username::parse(" Alice ").unwrap().as_str(), "alice");
        assert!(Username::parse("al").is_err());
        assert!(Username::parse("al ice").is_err());
        assert!(Username::parse("al\0ice").is_err());
        assert!(
            Username::parse("\u{212A}ate").is_err(),
            "the Kelvin sign is not a k"
        );
    }

    #[test]
    fn content_may_hold_tabs_and_line_breaks_but_no_other_control_character() {
        let text = "one\r\ntwo\n\tthree";
        assert_eq!(MessageContent::parse(text, 100).unwrap().as_str(), text);
        for bad in [
            "\0",
            "a\u{1}",
            "a\u{7}b",
            "\u{1b}[31m",
            "a\u{7f}",
            "a\u{85}",
            "a\u{9f}",
        ] {
            assert_eq!(
                MessageContent::parse(bad, 100).unwrap_err().field,
                "content"
            );
        }
    }

    #[test]
    fn content_of_only_invisible_characters_is_blank() {
        let blank = [
            "",
            "\u{200b}",
            "\u{200b}\u{200c}\u{200d}",
            " \u{2060}\t\u{feff}\n",
            "\u{ad}",
            "\u{fe0f}\u{fe0e}",
            "\u{e0020}\u{e007f}\u{e0100}",
            "\u{3164}\u{ffa0}\u{115f}\u{1160}",
            "\u{2800}\u{3000}\u{a0}",
            "\u{180e}\u{034f}\u{061c}\u{2066}\u{202e}",
        ];
        for text in blank {
            assert!(is_blank(text), "{text:?}");
            let refused = MessageContent::parse(text, 100).unwrap_err();
            assert_eq!(refused.field, "content", "{text:?}");
        }
        for visible in ["❤\u{fe0f}", "👩\u{200d}💻", "\u{200b}a", "\u{301}", "."] {
            assert!(!is_blank(visible), "{visible:?}");
            assert!(MessageContent::parse(visible, 100).is_ok(), "{visible:?}");
        }
    }

    #[test]
    fn display_names_are_one_visible_line() {
        assert_eq!(DisplayName::parse(" Alice ").unwrap().as_str(), "Alice");
        assert_eq!(
            DisplayName::parse("❤\u{fe0f}").unwrap().as_str(),
            "❤\u{fe0f}"
        );
        for bad in [
            "",
            "a\0b",
            "Al\tice",
            "Al\nice",
            "a\u{1b}",
            "a\u{85}b",
            "a\u{2028}b",
            "\u{200b}",
            " \u{200d}\u{feff} ",
            "\u{3164}",
        ] {
            assert_eq!(
                DisplayName::parse(bad).unwrap_err().field,
                "displayName",
                "{bad:?}"
            );
        }
        assert!(DisplayName::parse(&"x".repeat(65)).is_err());
    }

    #[test]
    fn passwords_refuse_control_characters_only() {
        assert!(Password::parse("correct horse ❤ ünïcode").is_ok());
        for bad in [
            "correct\0horse",
            "correct\thorse",
            "correct\u{7f}horse",
            "short",
        ] {
            assert_eq!(
                Password::parse(bad).unwrap_err().field,
                "password",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn titles_are_trimmed_one_line_and_blank_means_none() {
        let title = |raw| ConversationTitle::parse(Some(raw)).map(|t| t.map(|t| t.into_inner()));
        assert_eq!(title("  Team  ").unwrap().as_deref(), Some("Team"));
        assert_eq!(title("   ").unwrap(), None);
        assert_eq!(title("\u{200b}\u{feff}").unwrap(), None);
        assert_eq!(ConversationTitle::parse(None).unwrap(), None);
        for bad in [
            "a\0b",
            "team\u{1b}",
            "two\nlines",
            "\u{2028}",
            " \n",
            &"x".repeat(101),
        ] {
            assert_eq!(title(bad).unwrap_err().field, "title", "{bad:?}");
        }
    }

    #[test]
    fn searches_are_trimmed_bounded_and_one_line() {
        assert_eq!(SearchText::parse(None).unwrap().as_str(), "");
        assert_eq!(SearchText::parse(Some(" ob ")).unwrap().as_str(), "ob");
        // Alone too: trimmed away first, they would have read as an empty search (everyone).
        for bad in [
            "\0", "al\0ice", "a\u{1b}b", "\u{7f}", "a\nb", "a\u{85}b", "\u{2028}", "\t", " \n ",
        ] {
            assert_eq!(
                SearchText::parse(Some(bad)).unwrap_err().field,
                "search",
                "{bad:?}"
            );
        }
        assert!(SearchText::parse(Some(&"x".repeat(101))).is_err());
    }

    #[test]
    fn client_msg_ids_and_attachment_ids_refuse_control_characters() {
        assert!(ClientMsgId::parse("c\u{0}1").is_err());
        let request: SendMessageRequest = serde_json::from_value(serde_json::json!({
            "clientMsgId": "c", "conversationId": "1", "content": "hi", "attachmentId": "img\u{0}"
        }))
        .unwrap();
        assert_eq!(
            OutgoingMessage::parse(&request, 10).unwrap_err().field,
            "attachmentId"
        );
    }
}
