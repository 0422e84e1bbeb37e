//! Newtype ids. Stored as 64-bit integers, written on the wire as decimal strings so that
//! JavaScript clients never lose precision; accepted from clients as a string or a number.

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// Reads an id as the wire has it, a decimal string or a number, straight from the
/// deserializer: no buffering of the value to try one form and then the other (what
/// `#[serde(untagged)]` does, with an allocation or two per id), and every failure says which
/// id was wrong. The string is read by [`parse_id`], as `FromStr` reads it.
struct IdVisitor(&'static str);

impl IdVisitor {
    fn invalid<E: de::Error>(&self) -> E {
        E::custom(format_args!("invalid {}", self.0))
    }
}

impl Visitor<'_> for IdVisitor {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} as a decimal string or an integer", self.0)
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<i64, E> {
        Ok(n)
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<i64, E> {
        i64::try_from(n).map_err(|_| self.invalid())
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<i64, E> {
        parse_id(s).map_err(|_| self.invalid())
    }
}

/// An id written as text (surrounding whitespace allowed): what `FromStr` and the wire accept.
fn parse_id(text: &str) -> Result<i64, std::num::ParseIntError> {
    text.trim().parse()
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[cfg_attr(test, derive(ts_rs::TS))]
        pub struct $name(#[cfg_attr(test, ts(type = "string"))] pub i64);

        impl $name {
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_id(s).map($name)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(itoa::Buffer::new().format(self.0))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(IdVisitor(stringify!($name))).map($name)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .examples(["42"])
                    .into()
            }
        }
        impl utoipa::ToSchema for $name {}
    };
}

/// The hashing of maps and sets keyed by these ids, on the relay's per-message path: foldhash,
/// seeded per map, instead of the standard library's SipHash (~4x fewer instructions for an
/// `i64`). The keys are ids the database assigned, not values a client chooses, so the
/// flooding resistance SipHash buys is not needed here; keep `std`'s default for keys that
/// carry client text (e.g. a `clientMsgId`).
pub type IdHasher = foldhash::fast::RandomState;
/// A `HashMap` keyed by ids (see [`IdHasher`]); make one with `IdMap::default()`.
pub type IdMap<K, V> = std::collections::HashMap<K, V, IdHasher>;
/// A `HashSet` of ids (see [`IdHasher`]).
pub type IdSet<K> = std::collections::HashSet<K, IdHasher>;

id_type!(
    /// A user's id.
    UserId
);
id_type!(
    /// A conversation's id.
    ConversationId
);
id_type!(
    /// A stored message's real id (the temporary one is [`crate::domain::ClientMsgId`]).
    MessageId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_strings_on_the_wire_and_accept_numbers_or_strings() {
        assert_eq!(serde_json::to_string(&UserId(7)).unwrap(), "\"7\"");
        assert_eq!(serde_json::from_str::<UserId>("\"7\"").unwrap(), UserId(7));
        assert_eq!(serde_json::from_str::<UserId>("7").unwrap(), UserId(7));
        assert!(serde_json::from_str::<UserId>("\"seven\"").is_err());
    }

    #[test]
    fn ids_read_padded_strings_and_refuse_what_is_not_an_i64_naming_the_id() {
        assert_eq!(
            serde_json::from_str::<ConversationId>("\" 12 \"").unwrap(),
            ConversationId(12)
        );
        assert_eq!(
            serde_json::from_str::<MessageId>("-3").unwrap(),
            MessageId(-3)
        );
        assert_eq!(
            serde_json::to_string(&MessageId(i64::MIN)).unwrap(),
            format!("\"{}\"", i64::MIN)
        );
        for refused in [
            "\"\"",
            "\"1.5\"",
            "1.5",
            "18446744073709551615",
            "true",
            "null",
            "[1]",
        ] {
            let error = serde_json::from_str::<ConversationId>(refused).unwrap_err();
            assert!(
                error.to_string().contains("ConversationId"),
                "{refused}: {error}"
            );
        }
        // From a `Value` too (the relay reads some payloads through one).
        let id: UserId = serde_json::from_value(serde_json::json!("9")).unwrap();
        assert_eq!(id, UserId(9));
    }
}
