//! Compact JSON, byte for byte as `serde_json::to_writer` writes it, for what the relay writes on
//! every message (events, acks, the store requests).
//!
//! serde_json escapes each string a byte at a time through a lookup table; a relayed message's
//! packets and store request hold ~45 strings (keys and values), ~7 % of the relay's
//! instructions per message.
//! Here a string is checked for anything to escape many bytes at a time and, as nearly always,
//! copied whole; a string that needs escaping, a float, and a 128-bit integer are written by
//! serde_json itself, so the output is the same. Map keys may be strings, chars, integers or
//! bools, written as serde_json writes them; anything else is an error (serde_json would also
//! quote a float key: nothing the relay writes has one).

use serde::ser::{self, Impossible, Serialize};
use serde_json::Error;

/// Appends `value` as compact JSON.
pub fn write<T: Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T) -> Result<(), Error> {
    value.serialize(&mut Writer { buf })
}

/// `value` as compact JSON.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    let mut buf = Vec::with_capacity(128);
    write(&mut buf, value)?;
    Ok(buf)
}

/// Appends `text` as a JSON string: copied whole unless it holds a control character, `"` or
/// `\` (then serde_json escapes it).
pub fn write_str(buf: &mut Vec<u8>, text: &str) {
    if needs_escaping(text.as_bytes()) {
        // Into a `Vec`, writing a string cannot fail.
        let _ = serde_json::to_writer(&mut *buf, text);
    } else {
        buf.reserve(text.len() + 2);
        buf.push(b'"');
        buf.extend_from_slice(text.as_bytes());
        buf.push(b'"');
    }
}

/// Whether `bytes` hold a control character, `"` or `\`: eight bytes at a time (SWAR), the
/// last eight overlapping the ones before; a string shorter than eight bytes from a table. Most
/// strings written are short (keys, ids): this takes ~2 instructions a byte where serde_json's
/// table lookup takes ~5.
fn needs_escaping(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // Some byte of `x` is below `n` (n <= 0x80): the classic "has less than" bit trick.
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    let escapes = |word: &[u8]| {
        let x = u64::from_ne_bytes(word.try_into().unwrap_or_default());
        below(x, 0x20)
            | below(x ^ (ONES * u64::from(b'"')), 1)
            | below(x ^ (ONES * u64::from(b'\\')), 1)
    };
    let Some(last) = bytes.last_chunk::<8>() else {
        return bytes.iter().any(|&b| ESCAPED[usize::from(b)]);
    };
    bytes
        .chunks_exact(8)
        .fold(escapes(last), |found, word| found | escapes(word))
        != 0
}

/// Whether a byte must be escaped in a JSON string.
const ESCAPED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = b < 0x20 || b == b'"' as usize || b == b'\\' as usize;
        b += 1;
    }
    table
};

/// Written by serde_json (floats, 128-bit integers: rare, and formatted exactly as it does).
fn delegate<T: Serialize>(buf: &mut Vec<u8>, value: &T) -> Result<(), Error> {
    serde_json::to_writer(buf, value)
}

fn write_int(buf: &mut Vec<u8>, value: impl itoa::Integer) {
    buf.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// The eight `serialize_<integer>` methods up to 64 bits, each evaluating `$write` with `$this`
/// bound to `self` and `$v` to the integer.
macro_rules! integers {
    (|$this:ident, $v:ident| $write:expr) => {
        integers!(@each |$this, $v| $write;
            serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
            serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64);
    };
    (@each |$this:ident, $v:ident| $write:expr; $($method:ident: $ty:ty),*) => {$(
        fn $method(self, $v: $ty) -> Result<(), Error> {
            let $this = self;
            $write
        }
    )*};
}

struct Writer<'a> {
    buf: &'a mut Vec<u8>,
}

/// An array or object being written: whether an element was written yet (for the commas).
struct Compound<'a, 'b> {
    writer: &'b mut Writer<'a>,
    first: bool,
    /// Closes the enclosing `{"variant":…}` of a tuple or struct variant too.
    variant: bool,
}

impl Compound<'_, '_> {
    fn comma(&mut self) {
        if !std::mem::replace(&mut self.first, false) {
            self.writer.buf.push(b',');
        }
    }

    fn close(self, close: u8) {
        self.writer.buf.push(close);
        if self.variant {
            self.writer.buf.push(b'}');
        }
    }
}

impl<'a, 'b> Writer<'a> {
    fn open(&'b mut self, open: u8, variant: Option<&str>) -> Compound<'a, 'b> {
        if let Some(variant) = variant {
            self.buf.push(b'{');
            write_str(self.buf, variant);
            self.buf.push(b':');
        }
        self.buf.push(open);
        Compound {
            writer: self,
            first: true,
            variant: variant.is_some(),
        }
    }
}

impl<'a, 'b> ser::Serializer for &'b mut Writer<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'a, 'b>;
    type SerializeTuple = Compound<'a, 'b>;
    type SerializeTupleStruct = Compound<'a, 'b>;
    type SerializeTupleVariant = Compound<'a, 'b>;
    type SerializeMap = Compound<'a, 'b>;
    type SerializeStruct = Compound<'a, 'b>;
    type SerializeStructVariant = Compound<'a, 'b>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.buf
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    integers!(|this, v| {
        write_int(this.buf, v);
        Ok(())
    });
    fn serialize_i128(self, v: i128) -> Result<(), Error> {
        delegate(self.buf, &v)
    }
    fn serialize_u128(self, v: u128) -> Result<(), Error> {
        delegate(self.buf, &v)
    }
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        delegate(self.buf, &v)
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        delegate(self.buf, &v)
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        write_str(self.buf, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        write_str(self.buf, v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        let mut seq = self.open(b'[', None);
        for byte in v {
            seq.comma();
            write_int(seq.writer.buf, *byte);
        }
        seq.close(b']');
        Ok(())
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.buf.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        write_str(self.buf, variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.buf.push(b'{');
        write_str(self.buf, variant);
        self.buf.push(b':');
        value.serialize(&mut *self)?;
        self.buf.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Ok(self.open(b'[', None))
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, Error> {
        Ok(self.open(b'[', None))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Ok(self.open(b'[', None))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Ok(self.open(b'[', Some(variant)))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Ok(self.open(b'{', None))
    }
    fn serialize_struct(
        self,
        name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, Error> {
        if name == RAW_VALUE {
            return Err(ser::Error::custom("serde_json's RawValue is not supported"));
        }
        Ok(self.open(b'{', None))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Ok(self.open(b'{', Some(variant)))
    }
}

/// The struct name serde_json gives a `RawValue` (written verbatim there, refused here: nothing
/// the relay writes holds one).
const RAW_VALUE: &str = "$serde_json::private::RawValue";

impl ser::SerializeSeq for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.comma();
        value.serialize(&mut *self.writer)
    }
    fn end(self) -> Result<(), Error> {
        self.close(b']');
        Ok(())
    }
}

/// Tuples are written as sequences.
macro_rules! as_seq {
    ($($trait:ident::$method:ident),*) => {$(
        impl ser::$trait for Compound<'_, '_> {
            type Ok = ();
            type Error = Error;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
                ser::SerializeSeq::serialize_element(self, value)
            }
            fn end(self) -> Result<(), Error> {
                ser::SerializeSeq::end(self)
            }
        }
    )*};
}

as_seq!(
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.comma();
        key.serialize(Key {
            buf: self.writer.buf,
        })?;
        self.writer.buf.push(b':');
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        value.serialize(&mut *self.writer)
    }
    fn end(self) -> Result<(), Error> {
        self.close(b'}');
        Ok(())
    }
}

impl ser::SerializeStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.comma();
        write_str(self.writer.buf, key);
        self.writer.buf.push(b':');
        value.serialize(&mut *self.writer)
    }
    fn end(self) -> Result<(), Error> {
        self.close(b'}');
        Ok(())
    }
}

impl ser::SerializeStructVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        ser::SerializeStruct::serialize_field(self, key, value)
    }
    fn end(self) -> Result<(), Error> {
        ser::SerializeStruct::end(self)
    }
}

/// A map key: a string as is; a char, integer or bool quoted, as serde_json writes them.
struct Key<'a> {
    buf: &'a mut Vec<u8>,
}

impl Key<'_> {
    fn quoted(self, write: impl FnOnce(&mut Vec<u8>)) -> Result<(), Error> {
        self.buf.push(b'"');
        write(self.buf);
        self.buf.push(b'"');
        Ok(())
    }
}

fn key_must_be_a_string() -> Error {
    ser::Error::custom("key must be a string")
}

impl ser::Serializer for Key<'_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Impossible<(), Error>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Impossible<(), Error>;
    type SerializeStruct = Impossible<(), Error>;
    type SerializeStructVariant = Impossible<(), Error>;

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        write_str(self.buf, v);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.quoted(|buf| buf.extend_from_slice(if v { b"true" } else { b"false" }))
    }
    integers!(|this, v| this.quoted(|buf| write_int(buf, v)));
    fn serialize_i128(self, v: i128) -> Result<(), Error> {
        self.quoted(|buf| write_int(buf, v))
    }
    fn serialize_u128(self, v: u128) -> Result<(), Error> {
        self.quoted(|buf| write_int(buf, v))
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }

    fn serialize_f32(self, _v: f32) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_f64(self, _v: f64) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_none(self) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_unit(self) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(key_must_be_a_string())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;
    use serde_json::json;

    fn same_as_serde_json<T: Serialize + std::fmt::Debug>(value: &T) {
        let ours = super::to_vec(value).expect("written");
        let theirs = serde_json::to_vec(value).expect("written by serde_json");
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            String::from_utf8(theirs).unwrap(),
            "{value:?}"
        );
    }

    #[test]
    fn values_are_written_exactly_as_serde_json_writes_them() {
        // Every byte JSON escapes, in strings and in keys, next to what it leaves alone.
        let tricky: String = (0u8..0x20).map(char::from).collect::<String>() + "\"\\/\u{7f}é🙂";
        let values = [
            json!(null),
            json!(true),
            json!(-12),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(1.5e-7),
            json!(5.0000000000000005e110),
            json!(""),
            json!("plain text, nothing to escape, longer than thirty-two bytes"),
            json!(tricky),
            json!("a \"quoted\" word"),
            json!("ends with a backslash\\"),
            json!([]),
            json!({}),
            json!({ tricky.clone(): [tricky.clone(), 1, {"x": null}], "b": {"c": [[], {}]} }),
            json!(["hello", 2, false, {"_placeholder": true, "num": 0}]),
        ];
        for value in &values {
            same_as_serde_json(value);
        }
        same_as_serde_json(&values);
    }

    #[test]
    fn every_shape_serde_derives_is_written_as_serde_json_writes_it() {
        #[derive(Debug, Serialize)]
        enum Shape {
            Unit,
            Newtype(u8),
            Tuple(i32, &'static str),
            Struct { a: Option<u32>, b: Vec<bool> },
        }
        #[derive(Debug, Serialize)]
        struct Inner {
            inner: &'static str,
        }
        #[derive(Debug, Serialize)]
        #[serde(rename_all = "camelCase", tag = "kind")]
        enum Tagged {
            First { x: i8 },
        }
        #[derive(Debug, Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Everything {
            shapes: Vec<Shape>,
            #[serde(skip_serializing_if = "Option::is_none")]
            skipped: Option<u8>,
            none: Option<u8>,
            #[serde(flatten)]
            flattened: Inner,
            tagged: Tagged,
            tuple: (u16, char, f32, f64),
            not_finite: [f64; 2],
            big: (u128, i128),
            #[serde(with = "serde_bytes_as_seq")]
            bytes: Vec<u8>,
            int_keys: BTreeMap<i64, &'static str>,
            char_keys: BTreeMap<char, u8>,
            unit: (),
        }
        mod serde_bytes_as_seq {
            pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(v)
            }
        }
        same_as_serde_json(&Everything {
            shapes: vec![
                Shape::Unit,
                Shape::Newtype(7),
                Shape::Tuple(-3, "t\n"),
                Shape::Struct {
                    a: Some(1),
                    b: vec![true, false],
                },
                Shape::Struct { a: None, b: vec![] },
            ],
            skipped: None,
            none: None,
            flattened: Inner { inner: "é" },
            tagged: Tagged::First { x: -1 },
            tuple: (65535, '"', 0.1, -2.5e300),
            not_finite: [f64::NAN, f64::INFINITY],
            big: (u128::MAX, i128::MIN),
            bytes: vec![0, 1, 255],
            int_keys: BTreeMap::from([(-5, "a"), (12, "b")]),
            char_keys: BTreeMap::from([('k', 1), ('"', 2)]),
            unit: (),
        });
    }

    #[test]
    fn the_relays_wire_types_are_written_as_serde_json_writes_them() {
        let stored: shared::wire::Message = serde_json::from_value(json!({
            "id": "42", "clientMsgId": "c-1 \"quoted\"", "conversationId": "4", "senderId": "1",
            "seq": 12, "kind": "image", "content": "caption\twith a tab", "attachmentId": "up-9",
            "createdAt": "2026-12-06T09:30:00.123Z", "status": "sent"
        }))
        .expect("a stored message");
        let saved = shared::wire::MessageSaved::from(&stored);
        let ack = shared::wire::SendAck {
            success: true,
            saved: saved.clone(),
            message_id: stored.id,
            status: stored.status,
        };
        same_as_serde_json(&stored);
        same_as_serde_json(&saved);
        same_as_serde_json(&ack);
        same_as_serde_json(&shared::port::StoreOutcome::Message(stored));
    }

    #[test]
    fn every_byte_that_needs_escaping_is_found_wherever_it_is() {
        let plain = |b: u8| b >= 0x20 && b != b'"' && b != b'\\';
        for len in 1..=19 {
            for at in 0..len {
                for byte in 0..=255u8 {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = byte;
                    assert_eq!(
                        super::needs_escaping(&bytes),
                        !plain(byte),
                        "byte {byte:#x} at {at} of {len}"
                    );
                }
            }
        }
        // Next to bytes just above and below the limits (borrows between lanes).
        assert!(!super::needs_escaping(b" !#[]~\x7f\x80\xff"));
        assert!(super::needs_escaping(b"\x80\x80\x80\x80\x1f\x80\x80\x80"));
    }

    #[test]
    fn a_key_that_is_not_a_string_number_char_or_bool_is_refused() {
        let map = BTreeMap::from([(vec![1u8], 1u8)]);
        assert!(super::to_vec(&map).is_err());
        assert!(serde_json::to_vec(&map).is_err());
    }
}
