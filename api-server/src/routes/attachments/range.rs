//! What a download's `Range` header asks for (RFC 9110 §14.1–14.2): one byte range is answered
//! 206, with an end past the body (however large) clamped to its last byte; several ranges,
//! another unit or a header that does not parse are ignored (the whole body, 200); a valid
//! range that starts past the body, or a zero-length suffix, is 416.

use std::ops::Range;

/// What a `Range` header asks of a `len`-byte body.
#[derive(Debug, PartialEq, Eq)]
pub enum Wanted {
    /// No header, another unit, several ranges, or a header that does not parse.
    Whole,
    /// These bytes (never empty, within the body).
    Part(Range<u64>),
    /// Outside the body: 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Parse `header`, the `Range` header's value, for a `len`-byte body.
pub fn wanted(header: Option<&str>, len: u64) -> Wanted {
    let Some((unit, spec)) = header.and_then(|h| h.trim().split_once('=')) else {
        return Wanted::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Wanted::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    match (position(first), position(last)) {
        // `first-last` or `first-`: an end past the body means its last byte.
        (Some(first), Some(last)) if first <= last => within(first, last, len),
        (Some(first), None) if last.is_empty() => within(first, u64::MAX, len),
        // `-n`: the last n bytes (the whole body when it is shorter).
        (None, Some(n)) if first.is_empty() => {
            if n == 0 || len == 0 {
                Wanted::Unsatisfiable
            } else {
                Wanted::Part(len.saturating_sub(n)..len)
            }
        }
        // Anything else (a `last` below `first` included) is invalid.
        _ => Wanted::Whole,
    }
}

/// Bytes `first..=last` of a `len`-byte body, the end clamped to the body's.
fn within(first: u64, last: u64, len: u64) -> Wanted {
    if first >= len {
        Wanted::Unsatisfiable
    } else {
        Wanted::Part(first..last.min(len - 1) + 1)
    }
}

/// A byte position: ASCII digits only (no sign, no space), saturating at `u64::MAX`, which
/// lies past any body.
fn position(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEN: u64 = 1000;

    fn of(header: &str) -> Wanted {
        wanted(Some(header), LEN)
    }

    #[test]
    fn one_range_is_a_part_of_the_body() {
        assert_eq!(wanted(None, LEN), Wanted::Whole);
        assert_eq!(of("bytes=0-99"), Wanted::Part(0..100));
        assert_eq!(of("bytes=990-"), Wanted::Part(990..1000));
        assert_eq!(of("bytes=-10"), Wanted::Part(990..1000));
        assert_eq!(of("bytes=999-999"), Wanted::Part(999..1000));
        assert_eq!(of("Bytes=5-9"), Wanted::Part(5..10));
    }

    #[test]
    fn an_end_past_the_body_is_clamped_to_its_last_byte() {
        assert_eq!(of("bytes=0-99999999999999999999"), Wanted::Part(0..1000));
        assert_eq!(of("bytes=0-18446744073709551615"), Wanted::Part(0..1000));
        assert_eq!(of("bytes=500-5000"), Wanted::Part(500..1000));
        assert_eq!(of("bytes=-5000"), Wanted::Part(0..1000));
        assert_eq!(of("bytes=-99999999999999999999"), Wanted::Part(0..1000));
    }

    #[test]
    fn a_header_that_does_not_parse_is_ignored() {
        for header in [
            "bytes=abc",
            "bytes=",
            "bytes=-",
            "bytes=a-5",
            "bytes=1-b",
            "bytes=+1-5",
            "bytes=1--5",
            "bytes=5-3",
            "bytes=2000-b",
            "items=0-1",
            "bytes",
            "",
            "bytes=0-1,5-9",
        ] {
            assert_eq!(of(header), Wanted::Whole, "{header:?}");
        }
    }

    #[test]
    fn a_valid_range_outside_the_body_is_unsatisfiable() {
        for header in [
            "bytes=1000-",
            "bytes=1000-2000",
            "bytes=99999999999999999999-",
            "bytes=-0",
        ] {
            assert_eq!(of(header), Wanted::Unsatisfiable, "{header:?}");
        }
        assert_eq!(wanted(Some("bytes=0-"), 0), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=-5"), 0), Wanted::Unsatisfiable);
    }
}
