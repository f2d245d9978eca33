//! Timestamps as milliseconds since the Unix epoch, rendered as RFC 3339 UTC
//! (`2026-11-26T15:22:05.123Z`). Pure arithmetic: the clock itself is a port.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    pub fn millis(&self) -> i64 {
        self.0
    }

    /// The UTC calendar date, `YYYY-MM-DD` (the key of daily read models).
    pub fn date(&self) -> String {
        self.prefix(10)
    }

    /// The UTC hour, `YYYY-MM-DDTHH` (the events table's `by_time` index is by hour).
    pub fn hour(&self) -> String {
        self.prefix(13)
    }

    /// The first `len` characters of the rendering (all ASCII).
    fn prefix(&self, len: usize) -> String {
        match self.rfc3339() {
            Some(text) => text.as_str()[..len].to_string(),
            None => self.to_string()[..len].to_string(),
        }
    }

    /// The rendering, digit by digit into a fixed buffer: every event, view and history
    /// entry carries timestamps, and `write!` with padded fields cost a replay about 8 %
    /// of its folding time. `None` for years outside 0–9999, which [`fmt::Display`]
    /// renders through `write!`.
    fn rfc3339(&self) -> Option<Rendered> {
        let ms = self.0.rem_euclid(1000);
        let secs = self.0.div_euclid(1000);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
        if !(0..=9999).contains(&y) {
            return None;
        }
        let mut b = *b"0000-00-00T00:00:00.000Z";
        let mut put = |at: usize, width: usize, mut n: i64| {
            for i in (at..at + width).rev() {
                // `n % 10` is 0–9 for the non-negative fields here.
                b[i] = b'0' + (n % 10) as u8;
                n /= 10;
            }
        };
        put(0, 4, y);
        put(5, 2, m);
        put(8, 2, d);
        put(11, 2, rem / 3600);
        put(14, 2, (rem / 60) % 60);
        put(17, 2, rem % 60);
        put(20, 3, ms);
        Some(Rendered(b))
    }

    /// Parses the RFC 3339 UTC forms we write (`Z` suffix, optional fraction). Only real
    /// calendar dates and times: no February 30th, and no leap second (`:60`), which we
    /// never write and an `at=` query must not slip past the API's schema with.
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
            return None;
        }
        if b[16] != b':' || *b.last()? != b'Z' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let t = s.get(r)?;
            if t.bytes().all(|c| c.is_ascii_digit()) {
                t.parse().ok()
            } else {
                None
            }
        };
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo)
            || d < 1
            || d > days_in_month(y, mo)
            || h > 23
            || mi > 59
            || sec > 59
        {
            return None;
        }
        let frac = &s[19..s.len() - 1];
        let millis = if frac.is_empty() {
            0
        } else {
            let digits = frac.strip_prefix('.')?;
            if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            // Milliseconds: the first three digits, padded with zeros (no allocation: a
            // replay parses one timestamp per event).
            digits
                .bytes()
                .chain(std::iter::repeat(b'0'))
                .take(3)
                .fold(0, |ms, c| ms * 10 + i64::from(c - b'0'))
        };
        let days = days_from_civil(y, mo, d);
        Some(Timestamp(
            ((days * 24 + h) * 60 + mi) * 60_000 + sec * 1000 + millis,
        ))
    }
}

/// A timestamp rendered as `YYYY-MM-DDTHH:MM:SS.mmmZ` (ASCII digits and separators).
struct Rendered([u8; 24]);

impl Rendered {
    fn as_str(&self) -> &str {
        // Only ASCII is ever written into the buffer, so this never falls back.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// A text that is not one of the forms [`Timestamp::parse`] reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an RFC 3339 UTC time")]
pub struct NotATimestamp(pub String);

impl FromStr for Timestamp {
    type Err = NotATimestamp;

    fn from_str(s: &str) -> Result<Self, NotATimestamp> {
        Timestamp::parse(s).ok_or_else(|| NotATimestamp(s.to_string()))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(text) = self.rfc3339() {
            return f.write_str(text.as_str());
        }
        let ms = self.0.rem_euclid(1000);
        let secs = self.0.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
            rem / 3600,
            (rem / 60) % 60,
            rem % 60
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.rfc3339() {
            Some(text) => s.serialize_str(text.as_str()),
            None => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Parsed from the borrowed text where the format allows it: no `String` per field.
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 UTC time as a string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Timestamp, E> {
                s.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(Text)
    }
}

/// The days of month `m` (1-12) of year `y` in the proleptic Gregorian calendar.
fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days-from-civil algorithms (proleptic Gregorian calendar).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn renders_known_instants() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp(1_795_706_525_123).to_string(),
            "2026-11-26T15:22:05.123Z"
        );
        assert_eq!(Timestamp(1_795_706_525_123).date(), "2026-11-26");
        assert_eq!(Timestamp(1_795_706_525_123).hour(), "2026-11-26T15");
        // Outside the four-digit years the rendering falls back to `write!`.
        assert_eq!(
            Timestamp(-62_198_755_200_000).to_string(),
            "-001-01-01T00:00:00.000Z"
        );
        assert_eq!(Timestamp(-62_198_755_200_000).date(), "-001-01-01");
        assert_eq!(
            serde_json::to_string(&Timestamp(1_795_706_525_123)).unwrap(),
            "\"2026-11-26T15:22:05.123Z\""
        );
    }

    #[test]
    fn decodes_from_strings_only_and_names_bad_text() {
        let t: Timestamp = serde_json::from_str("\"2026-11-26T15:22:05.123Z\"").unwrap();
        assert_eq!(t, Timestamp(1_795_706_525_123));
        let t: Timestamp =
            serde_json::from_value(serde_json::json!("2026-11-26T15:22:05Z")).unwrap();
        assert_eq!(t, Timestamp(1_795_706_525_000));
        let e = serde_json::from_str::<Timestamp>("\"soon\"").unwrap_err();
        assert!(
            e.to_string().contains("`soon` is not an RFC 3339 UTC time"),
            "{e}"
        );
        assert!(serde_json::from_str::<Timestamp>("12").is_err());
        assert_eq!(
            "tomorrow".parse::<Timestamp>(),
            Err(NotATimestamp("tomorrow".into()))
        );
    }

    #[test]
    fn parses_what_aws_and_we_write() {
        assert_eq!(
            Timestamp::parse("2026-11-26T15:22:05Z"),
            Some(Timestamp(1_795_706_525_000))
        );
        assert_eq!(
            Timestamp::parse("2026-11-26T15:22:05.1Z"),
            Some(Timestamp(1_795_706_525_100))
        );
        assert_eq!(
            Timestamp::parse("2026-11-26T15:22:05.123456Z"),
            Some(Timestamp(1_795_706_525_123)),
            "digits past the millisecond are cut"
        );
        assert_eq!(Timestamp::parse("2026-13-26T15:22:05Z"), None);
        assert_eq!(Timestamp::parse("yesterday"), None);
        assert_eq!(Timestamp::parse("2026-11-26T15:22:05.Z"), None);
        // Real dates and times only: the format's validators refuse the rest.
        assert_eq!(Timestamp::parse("2026-02-29T00:00:00Z"), None);
        assert!(
            Timestamp::parse("2028-02-29T00:00:00Z").is_some(),
            "a leap year"
        );
        assert_eq!(Timestamp::parse("2100-02-29T00:00:00Z"), None);
        assert!(Timestamp::parse("2000-02-29T00:00:00Z").is_some());
        assert_eq!(Timestamp::parse("2026-04-31T00:00:00Z"), None);
        assert!(Timestamp::parse("2026-12-31T23:59:59Z").is_some());
        assert_eq!(
            Timestamp::parse("4816-12-31T02:35:60Z"),
            None,
            "no leap second"
        );
    }

    proptest! {
        #[test]
        fn display_then_parse_is_identity(ms in -62_000_000_000_000i64..250_000_000_000_000i64) {
            let t = Timestamp(ms);
            if ms >= 0 {
                prop_assert_eq!(Timestamp::parse(&t.to_string()), Some(t));
            }
            // The digit-by-digit rendering agrees with the general one.
            let ms_part = ms.rem_euclid(1000);
            let secs = ms.div_euclid(1000);
            let rem = secs.rem_euclid(86_400);
            let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
            let general = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms_part:03}Z",
                rem / 3600,
                (rem / 60) % 60,
                rem % 60
            );
            prop_assert_eq!(t.to_string(), general.clone());
            prop_assert_eq!(t.date(), general[..general.find('T').unwrap_or(10)].to_string());
        }
    }
}
