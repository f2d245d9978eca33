//! ISO-8601 timestamps as Step Functions accepts and renders them.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Parses an ISO-8601 extended offset date-time (`2016-03-14T01:59:00Z`, fractions and
/// `+hh:mm` offsets allowed). Returns Unix time in nanoseconds.
pub fn parse(s: &str) -> Option<i128> {
    // RFC 3339 also allows a space or lowercase 't' separator; AWS does not.
    if s.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp_nanos())
}

/// Renders Unix milliseconds as `2024-01-02T03:04:05.678Z`.
pub fn format_millis(ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_aws_forms() {
        assert!(parse("2016-03-14T01:59:00Z").is_some());
        assert!(parse("2016-03-05T21:29:29.243167252Z").is_some());
        assert!(parse("2016-03-14T01:59:00+02:00").is_some());
        for bad in [
            "2016-12-05 21:29:29Z",
            "2016-12-05T21:29:29",
            "2016-13-05T21:29:29Z",
            "2016-12-05T25:29:29Z",
            "05-12-2016T21:29:29Z",
            "",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
        assert_eq!(format_millis(1_500), "1970-01-01T00:00:01.500Z");
    }
}
