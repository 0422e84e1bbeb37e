//! What a subscribed connection reads, parsed in place from the read buffer: RESP2 replies and
//! pushes, of which a subscriber needs three shapes (`message`, and the `subscribe` /
//! `unsubscribe` confirmations) and the handshake's `+OK` or `-ERR …`. Anything else well formed
//! is skipped whole; anything malformed ends the connection.
//!
//! redis-rs's reader parses each push with `combine`'s resumable parsers and builds a `Value`
//! tree of owned strings before the payload is copied out: ~11 000 instructions per message
//! read, a quarter of a relay's instructions when two relays share the users. Here a push costs
//! two short line scans and the payload's one copy.

/// The longest bulk string accepted. Redis's own limit is 512 MiB; an event is a few KiB.
const MAX_BULK: usize = 64 << 20;
/// The most elements accepted in an array.
const MAX_ARRAY: usize = 1 << 20;
/// How deeply arrays may nest (subscribed connections read flat ones).
const MAX_DEPTH: usize = 4;

/// One whole frame at the start of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    /// A `message` push: what was published on `channel`.
    Message {
        channel: &'a [u8],
        payload: &'a [u8],
    },
    /// A channel's `subscribe` confirmation.
    Subscribed,
    /// A channel's `unsubscribe` confirmation.
    Unsubscribed,
    /// The answer to `PING`: `["pong", ""]` on a subscribed connection, `+PONG` otherwise.
    Pong,
    /// A simple string (`+OK`).
    Simple(&'a [u8]),
    /// An error reply (`-ERR …`).
    Error(&'a [u8]),
    /// Anything else well formed (integers, `pmessage`, nulls): not used here.
    Other,
}

/// The bytes do not follow RESP2.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Malformed(pub &'static str);

/// One element, as far as this reader cares.
enum Element<'a> {
    Bulk(&'a [u8]),
    Simple(&'a [u8]),
    Error(&'a [u8]),
    /// An array: how many elements, and the first three if they are bulk strings (a push is
    /// `[kind, channel, payload]`; `bulks` says how many of them are).
    Array {
        count: usize,
        first: [&'a [u8]; 3],
        bulks: usize,
    },
    /// Integers, nulls.
    Other,
}

/// The frame at the start of `buf` and its length in bytes; `None` while it is incomplete.
pub(crate) fn frame(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, Malformed> {
    let Some((element, len)) = element(buf, 0, 0)? else {
        return Ok(None);
    };
    let frame = match element {
        Element::Simple(b"PONG") => Frame::Pong,
        Element::Simple(line) => Frame::Simple(line),
        Element::Error(line) => Frame::Error(line),
        Element::Array {
            count: 3,
            first: [kind, channel, payload],
            bulks,
        } => match (kind, bulks) {
            (b"message", 3) => Frame::Message { channel, payload },
            (b"subscribe", 2) => Frame::Subscribed,
            (b"unsubscribe", 2) => Frame::Unsubscribed,
            _ => Frame::Other,
        },
        Element::Array {
            count: 2,
            first: [b"pong", _, _],
            bulks: 2,
        } => Frame::Pong,
        Element::Bulk(_) | Element::Array { .. } | Element::Other => Frame::Other,
    };
    Ok(Some((frame, len)))
}

/// The element at `at` (inside `depth` arrays), and where it ends; `None` while incomplete.
fn element(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Element<'_>, usize)>, Malformed> {
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some((line, mut end)) = line(buf, at + 1)? else {
        return Ok(None);
    };
    let element = match kind {
        b'+' => Element::Simple(line),
        b'-' => Element::Error(line),
        b':' => {
            integer(line)?;
            Element::Other
        }
        b'$' => match bulk(buf, line, end)? {
            Some((bytes, bulk_end)) => {
                end = bulk_end;
                bytes.map_or(Element::Other, Element::Bulk)
            }
            None => return Ok(None),
        },
        b'*' => {
            if depth >= MAX_DEPTH {
                return Err(Malformed("arrays nested too deeply"));
            }
            let Some(count) = length(line, MAX_ARRAY)? else {
                return Ok(Some((Element::Other, end)));
            };
            let mut first = [&[][..]; 3];
            let mut bulks = 0;
            for i in 0..count {
                let Some((element, next)) = element(buf, end, depth + 1)? else {
                    return Ok(None);
                };
                if let (Element::Bulk(bytes), true) = (element, i < first.len() && bulks == i) {
                    first[i] = bytes;
                    bulks += 1;
                }
                end = next;
            }
            Element::Array {
                count,
                first,
                bulks,
            }
        }
        _ => return Err(Malformed("unknown type byte")),
    };
    Ok(Some((element, end)))
}

/// A bulk string whose header `line` ended at `at`: its bytes (`None` for the null bulk) and
/// where it ends; `None` while incomplete.
#[allow(clippy::type_complexity)]
fn bulk<'a>(
    buf: &'a [u8],
    line: &[u8],
    at: usize,
) -> Result<Option<(Option<&'a [u8]>, usize)>, Malformed> {
    let Some(len) = length(line, MAX_BULK)? else {
        return Ok(Some((None, at)));
    };
    let end = at + len;
    match buf.get(end..end + 2) {
        None => Ok(None),
        Some(b"\r\n") => Ok(Some((Some(&buf[at..end]), end + 2))),
        Some(_) => Err(Malformed("bulk string not ended by CRLF")),
    }
}

/// The line from `at` to the next CRLF and where the next one starts; `None` while incomplete.
fn line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, Malformed> {
    let rest = buf.get(at..).unwrap_or_default();
    match rest.iter().position(|&b| b == b'\r') {
        None => Ok(None),
        Some(cr) => match rest.get(cr + 1) {
            None => Ok(None),
            Some(b'\n') => Ok(Some((&rest[..cr], at + cr + 2))),
            Some(_) => Err(Malformed("CR not followed by LF")),
        },
    }
}

/// A length header: `None` for `-1` (null), an error above `max`.
fn length(line: &[u8], max: usize) -> Result<Option<usize>, Malformed> {
    match integer(line)? {
        -1 => Ok(None),
        n if n < 0 => Err(Malformed("negative length")),
        n if n as u64 > max as u64 => Err(Malformed("length over the limit")),
        n => Ok(Some(n as usize)),
    }
}

fn integer(line: &[u8]) -> Result<i64, Malformed> {
    let (negative, digits) = match line {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, line),
    };
    if digits.is_empty() {
        return Err(Malformed("empty integer"));
    }
    let mut n: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return Err(Malformed("not an integer"));
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(i64::from(b - b'0')))
            .ok_or(Malformed("integer overflow"))?;
    }
    Ok(if negative { -n } else { n })
}

/// A command as RESP2 sends it: an array of bulk strings, appended to `out`.
pub(crate) fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    // Room for the whole command at once: headers of at most 20 digits and 3 bytes each.
    out.reserve(args.iter().map(|arg| arg.len() + 25).sum::<usize>() + 23);
    let mut digits = itoa::Buffer::new();
    out.push(b'*');
    out.extend_from_slice(digits.format(args.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        out.push(b'$');
        out.extend_from_slice(digits.format(arg.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_push_gives_its_channel_and_payload() {
        let message = b"*3\r\n$7\r\nmessage\r\n$10\r\nparley:u:7\r\n$10\r\n{\"a\":\"\r\n\"}\r\n";
        assert_eq!(
            frame(message),
            Ok(Some((
                Frame::Message {
                    channel: b"parley:u:7",
                    payload: b"{\"a\":\"\r\n\"}",
                },
                message.len()
            )))
        );
    }

    #[test]
    fn every_prefix_of_a_frame_is_incomplete_not_malformed() {
        let message = b"*3\r\n$7\r\nmessage\r\n$10\r\nparley:u:7\r\n$10\r\n{\"a\":\"\r\n\"}\r\n";
        for end in 0..message.len() {
            assert_eq!(frame(&message[..end]), Ok(None), "the first {end} bytes");
        }
    }

    #[test]
    fn frames_back_to_back_are_read_one_at_a_time() {
        let mut buf = b"*3\r\n$9\r\nsubscribe\r\n$10\r\nparley:u:7\r\n:1\r\n".to_vec();
        buf.extend_from_slice(b"*3\r\n$11\r\nunsubscribe\r\n$10\r\nparley:u:7\r\n:0\r\n");
        buf.extend_from_slice(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n+PONG\r\n");
        buf.extend_from_slice(b"+OK\r\n-ERR no\r\n");
        let mut at = 0;
        let mut read = Vec::new();
        while let Some((frame, len)) = frame(&buf[at..]).unwrap() {
            read.push(format!("{frame:?}"));
            at += len;
        }
        assert_eq!(at, buf.len());
        assert_eq!(
            read,
            [
                "Subscribed",
                "Unsubscribed",
                "Pong",
                "Pong",
                "Simple([79, 75])",
                "Error([69, 82, 82, 32, 110, 111])"
            ]
        );
    }

    #[test]
    fn replies_a_subscriber_does_not_use_are_skipped_whole() {
        for other in [
            &b"*4\r\n$8\r\npmessage\r\n$3\r\np:*\r\n$3\r\np:1\r\n$1\r\nx\r\n"[..],
            b":42\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
            b"$3\r\nabc\r\n",
            b"*2\r\n*1\r\n:1\r\n$1\r\nx\r\n",
            b"*3\r\n$7\r\nmessage\r\n$-1\r\n$1\r\nx\r\n",
        ] {
            assert_eq!(
                frame(other),
                Ok(Some((Frame::Other, other.len()))),
                "{other:?}"
            );
        }
    }

    #[test]
    fn malformed_input_is_an_error() {
        for bad in [
            &b"?\r\n"[..],
            b"$abc\r\n",
            b"$3\r\nabcd\r\n",
            b":1\rx",
            b"*-2\r\n",
            b"$99999999999\r\n",
            b":99999999999999999999\r\n",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
        ] {
            assert!(frame(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        command(&mut out, &[b"SUBSCRIBE", b"parley:u:7"]);
        assert_eq!(out, b"*2\r\n$9\r\nSUBSCRIBE\r\n$10\r\nparley:u:7\r\n");
    }
}
