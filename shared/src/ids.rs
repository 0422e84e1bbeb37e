//! Newtype ids. Stored as 64-bit integers, written on the wire as decimal strings so that
//! JavaScript clients never lose precision; accepted from clients as a string or a number.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

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
                s.trim().parse::<i64>().map($name)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                #[derive(Deserialize)]
                #[serde(untagged)]
                enum Raw {
                    Str(String),
                    Num(i64),
                }
                match Raw::deserialize(d)? {
                    Raw::Num(n) => Ok($name(n)),
                    Raw::Str(s) => s.parse().map_err(|_| {
                        serde::de::Error::custom(concat!("invalid ", stringify!($name)))
                    }),
                }
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
}
