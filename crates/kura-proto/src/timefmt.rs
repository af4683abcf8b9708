//! Timestamps as the SDKs parse them: XML `YYYY-MM-DDTHH:MM:SS.000Z` (oss2 insists on `.000Z`),
//! HTTP dates in RFC 1123 with a two-digit day.

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use time::OffsetDateTime;

/// Milliseconds since the epoch: how Kura stores times.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn to_datetime(millis: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp((millis / 1000) as i64).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `2015-12-12T00:36:26.000Z`.
pub fn iso8601(millis: u64) -> String {
    let t = to_datetime(millis);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.000Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// ISO 8601 basic, as signatures use it: `20151212T003626Z`.
pub fn iso8601_basic(millis: u64) -> String {
    let t = to_datetime(millis);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `Sat, 12 Dec 2015 00:35:55 GMT`.
pub fn http_date(millis: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_millis(millis / 1000 * 1000))
}

/// Parses an RFC 1123 date into epoch seconds.
pub fn parse_http_date(s: &str) -> Option<u64> {
    httpdate::parse_http_date(s.trim())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
}

/// Parses ISO 8601 basic `20231216T162057Z` into epoch seconds.
pub fn parse_iso8601_basic(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> { s.get(r)?.parse().ok() };
    let date = time::Date::from_calendar_date(
        num(0..4)? as i32,
        time::Month::try_from(num(4..6)? as u8).ok()?,
        num(6..8)? as u8,
    )
    .ok()?;
    let t = time::Time::from_hms(num(9..11)? as u8, num(11..13)? as u8, num(13..15)? as u8).ok()?;
    let ts = date.with_time(t).assume_utc().unix_timestamp();
    u64::try_from(ts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let ms = 1_449_880_586_123; // 2015-12-12T00:36:26.123Z
        assert_eq!(iso8601(ms), "2015-12-12T00:36:26.000Z");
        assert_eq!(http_date(ms), "Sat, 12 Dec 2015 00:36:26 GMT");
        assert_eq!(parse_http_date("Sat, 12 Dec 2015 00:36:26 GMT"), Some(ms / 1000));
        assert_eq!(parse_iso8601_basic("20151212T003626Z"), Some(ms / 1000));
        assert_eq!(iso8601_basic(ms), "20151212T003626Z");
        assert_eq!(parse_iso8601_basic("2015-12-12"), None);
    }
}
