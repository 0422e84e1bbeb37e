//! The timestamps of a message's hot path: the stored message, `message_saved` and the relayed
//! copy, three per relayed message (`serialize_with = "crate::rfc3339::serialize"`,
//! `deserialize_with = "crate::rfc3339::deserialize"`; ts-rs refuses `with`). Written and read
//! exactly as chrono's own `Serialize` / `Deserialize` do (RFC 3339, a fraction of 0, 3, 6 or 9
//! digits, `Z`), without chrono's general machinery (issue 12).
//!
//! chrono writes through a `Display` adapter one character at a time (~2 500 instructions into a
//! `serde_json::Value`; its `to_rfc3339_opts` into a `String`, ~1 100); here the digits go into a
//! stack buffer. chrono reads any RFC 3339 offset, separator and case (~1 400 instructions);
//! here the one form Parley writes is read directly, and anything else (an offset, a leap
//! second, a year chrono writes signed) is handed to chrono, so what is accepted and what it
//! means are unchanged.

use std::fmt;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveTime, SecondsFormat, Timelike, Utc};
use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

/// `YYYY-MM-DDThh:mm:ss.nnnnnnnnnZ`
const MAX_LEN: usize = 30;

/// Where the date and time fields are separated, and by what.
const SEPARATORS: [(usize, u8); 5] = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];

pub(crate) fn serialize<S: Serializer>(
    at: &DateTime<Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; MAX_LEN];
    match write(at, &mut buf) {
        Some(len) => serializer.serialize_str(
            std::str::from_utf8(&buf[..len]).expect("an RFC 3339 timestamp is ASCII"),
        ),
        None => serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
    }
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    d.deserialize_str(Rfc3339Visitor)
}

struct Rfc3339Visitor;

impl Visitor<'_> for Rfc3339Visitor {
    type Value = DateTime<Utc>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an RFC 3339 timestamp")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<DateTime<Utc>, E> {
        match parse(text) {
            Some(at) => Ok(at),
            // What chrono's `Deserialize for DateTime<Utc>` does.
            None => text
                .parse::<DateTime<FixedOffset>>()
                .map(|at| at.with_timezone(&Utc))
                .map_err(E::custom),
        }
    }
}

/// Writes `at` as chrono's `to_rfc3339_opts(SecondsFormat::AutoSi, true)` does into `buf`,
/// returning the length; `None` for a year outside 0..=9999.
fn write(at: &DateTime<Utc>, buf: &mut [u8; MAX_LEN]) -> Option<usize> {
    let (date, time) = (at.date_naive(), at.time());
    let year = u32::try_from(date.year()).ok().filter(|y| *y <= 9999)?;
    // A leap second is carried as 1_000_000_000 nanoseconds or more; chrono writes it as :60.
    let (second, nanos) = match time.nanosecond() {
        n if n >= 1_000_000_000 => (time.second() + 1, n - 1_000_000_000),
        n => (time.second(), n),
    };
    let mut put = |at: usize, value: u32, width: usize| {
        let mut value = value;
        for slot in buf[at..at + width].iter_mut().rev() {
            *slot = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, year, 4);
    put(5, date.month(), 2);
    put(8, date.day(), 2);
    put(11, time.hour(), 2);
    put(14, time.minute(), 2);
    put(17, second, 2);
    let fraction = match nanos {
        0 => None,
        n if n % 1_000_000 == 0 => Some((n / 1_000_000, 3)),
        n if n % 1_000 == 0 => Some((n / 1_000, 6)),
        n => Some((n, 9)),
    };
    let mut len = 19;
    if let Some((value, width)) = fraction {
        put(20, value, width);
        buf[19] = b'.';
        len += 1 + width;
    }
    for (at, separator) in SEPARATORS {
        buf[at] = separator;
    }
    buf[len] = b'Z';
    Some(len + 1)
}

/// Reads `YYYY-MM-DDThh:mm:ss[.f]Z` (1 to 9 fraction digits, seconds below 60), the form
/// [`write`] writes; `None` for anything else, valid or not.
fn parse(text: &str) -> Option<DateTime<Utc>> {
    let bytes = text.as_bytes();
    let digits = |at: usize, width: usize| -> Option<u32> {
        bytes.get(at..at + width)?.iter().try_fold(0u32, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    if bytes.len() < 20
        || bytes.last() != Some(&b'Z')
        || SEPARATORS.iter().any(|&(at, c)| bytes[at] != c)
    {
        return None;
    }
    let nanos = match &bytes[19..bytes.len() - 1] {
        [] => 0,
        [b'.', fraction @ ..] if (1..=9).contains(&fraction.len()) => {
            let width = fraction.len();
            digits(20, width)? * 10u32.pow(9 - width as u32)
        }
        _ => return None,
    };
    let year = i32::try_from(digits(0, 4)?).ok()?;
    let date = NaiveDate::from_ymd_opt(year, digits(5, 2)?, digits(8, 2)?)?;
    let second = digits(17, 2).filter(|s| *s < 60)?;
    let time = NaiveTime::from_hms_nano_opt(digits(11, 2)?, digits(14, 2)?, second, nanos)?;
    Some(date.and_time(time).and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone};
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Fast(#[serde(with = "crate::rfc3339")] DateTime<Utc>);

    fn cases() -> Vec<DateTime<Utc>> {
        let base = Utc.with_ymd_and_hms(2026, 12, 4, 21, 45, 34).unwrap();
        let leap = |nanos| {
            NaiveDate::from_ymd_opt(2016, 12, 31)
                .unwrap()
                .and_hms_nano_opt(23, 59, 59, nanos)
                .unwrap()
                .and_utc()
        };
        let mut cases = vec![
            base,
            DateTime::<Utc>::UNIX_EPOCH,
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MAX_UTC,
            Utc.with_ymd_and_hms(-1, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9, 2, 3, 4, 5, 6).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap()
                + TimeDelta::nanoseconds(999_999_999),
        ];
        // Leap seconds with every fraction width.
        for nanos in [
            1_000_000_000,
            1_000_000_001,
            1_000_001_000,
            1_123_000_000,
            1_500_000_000,
            1_999_999_999,
        ] {
            cases.push(leap(nanos));
        }
        // Every fraction width.
        for nanos in [
            1,
            999,
            1_000,
            120_000,
            1_000_000,
            123_000_000,
            123_456_000,
            123_456_789,
            999_999_999,
        ] {
            cases.push(base + TimeDelta::nanoseconds(nanos));
        }
        // Every month, day and hour width, across four centuries.
        let mut at = Utc.with_ymd_and_hms(1900, 1, 1, 0, 0, 0).unwrap();
        while at.year() < 2300 {
            cases.push(at);
            at += TimeDelta::seconds(86_400 * 17 + 3_600 * 5 + 61) + TimeDelta::microseconds(7);
        }
        cases
    }

    #[test]
    fn timestamps_are_written_exactly_as_chrono_writes_them() {
        for at in cases() {
            assert_eq!(
                serde_json::to_string(&Fast(at)).unwrap(),
                serde_json::to_string(&at).unwrap()
            );
            assert_eq!(
                serde_json::to_value(Fast(at)).unwrap(),
                serde_json::to_value(at).unwrap()
            );
        }
    }

    #[test]
    fn timestamps_are_read_exactly_as_chrono_reads_them() {
        let written = cases()
            .into_iter()
            .map(|at| serde_json::to_string(&at).unwrap());
        let odd = [
            "2026-12-04T21:45:34+01:00",
            "2026-12-04T21:45:34-00:30",
            "2026-12-04t21:45:34z",
            "2026-12-04 21:45:34Z",
            "2026-12-04T21:45:34.Z",
            "2026-12-04T21:45:34.1234567891Z",
            "2026-12-04T21:45Z",
            "2026-12-04T24:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2016-12-31T23:59:60Z",
            "2016-12-31T23:59:60.5Z",
            "2026-12-04T21:45:6xZ",
            "+2026-12-04T21:45:34Z",
            "２026-12-04T21:45:34Z",
            "",
            "Z",
            "not a time",
        ]
        .map(|text| serde_json::to_string(text).unwrap());
        for json in written.chain(odd) {
            let ours = serde_json::from_str::<Fast>(&json).map(|Fast(at)| at);
            let chrono = serde_json::from_str::<DateTime<Utc>>(&json);
            match (&ours, &chrono) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{json}"),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{json}"),
                _ => panic!("{json}: ours {ours:?}, chrono's {chrono:?}"),
            }
            // From a `Value` too (the relay reads the bus's events through one).
            let value: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!(
                serde_json::from_value::<Fast>(value)
                    .map(|Fast(at)| at)
                    .ok(),
                chrono.ok(),
                "{json}"
            );
        }
    }
}
