//! Event arguments, with their binary attachments.

use bytes::Bytes;
use serde_json::Value;

/// The arguments of an event or an ack.
///
/// Binary data travels as attachments: in `args`, each binary argument (at any depth) is the
/// placeholder object `{"_placeholder":true,"num":N}` and its bytes are `attachments[N]` — the
/// wire representation of Socket.IO, kept as is. Most events have no attachment; for those,
/// `attachments` is empty and `args` is plain JSON. [`Payload::binary`] makes a placeholder,
/// [`Payload::attachment`] resolves one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Payload {
    pub args: Vec<Value>,
    pub attachments: Vec<Bytes>,
}

impl Payload {
    pub fn new(args: Vec<Value>) -> Self {
        Self {
            args,
            attachments: Vec::new(),
        }
    }

    /// Adds `data` as an attachment and returns the placeholder to put among the arguments.
    pub fn binary(&mut self, data: Bytes) -> Value {
        let num = self.attachments.len();
        self.attachments.push(data);
        placeholder(num)
    }

    /// The bytes a placeholder stands for; `None` if `value` is not a placeholder of this payload.
    pub fn attachment(&self, value: &Value) -> Option<&Bytes> {
        placeholder_num(value).and_then(|n| self.attachments.get(n))
    }

    /// Whether every placeholder in `args` points to an existing attachment.
    pub fn placeholders_valid(&self) -> bool {
        fn check(value: &Value, count: usize) -> bool {
            if let Some(num) = placeholder_num(value) {
                return num < count;
            }
            match value {
                Value::Array(items) => items.iter().all(|v| check(v, count)),
                Value::Object(map) => map.values().all(|v| check(v, count)),
                _ => true,
            }
        }
        self.args.iter().all(|v| check(v, self.attachments.len()))
    }
}

impl From<Vec<Value>> for Payload {
    fn from(args: Vec<Value>) -> Self {
        Payload::new(args)
    }
}

/// One argument.
impl From<Value> for Payload {
    fn from(arg: Value) -> Self {
        Payload::new(vec![arg])
    }
}

/// No argument.
impl From<()> for Payload {
    fn from((): ()) -> Self {
        Payload::default()
    }
}

/// `{"_placeholder":true,"num":num}`.
pub fn placeholder(num: usize) -> Value {
    serde_json::json!({ "_placeholder": true, "num": num })
}

/// `Some(N)` if `value` is exactly a placeholder object.
pub fn placeholder_num(value: &Value) -> Option<usize> {
    let map = value.as_object()?;
    if map.len() != 2 || map.get("_placeholder") != Some(&Value::Bool(true)) {
        return None;
    }
    map.get("num")?
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn binary_arguments_become_numbered_placeholders() {
        let mut payload = Payload::default();
        let first = payload.binary(Bytes::from_static(b"\x01\x02"));
        let second = payload.binary(Bytes::from_static(b"\x03"));
        payload.args = vec![json!({ "file": first }), second.clone()];
        assert_eq!(second, json!({"_placeholder": true, "num": 1}));
        assert_eq!(payload.attachment(&payload.args[1]).unwrap(), &b"\x03"[..]);
        assert!(payload.placeholders_valid());
    }

    #[test]
    fn a_placeholder_beyond_the_attachments_is_invalid() {
        let payload = Payload::new(vec![json!([1, {"_placeholder": true, "num": 0}])]);
        assert!(!payload.placeholders_valid());
        assert_eq!(payload.attachment(&payload.args[0]), None);
    }
}
