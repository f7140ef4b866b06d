//! Dates in mail headers (RFC 5322 section 3.3): the `Received:` header the session prepends and
//! the bounce reports, always in UTC, formatted by `chrono`.
//!
//! It must never fail or panic, whatever the clock says: a time before 1970 (a broken clock) or
//! beyond `chrono`'s range prints as the epoch.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::DateTime;

/// RFC 5322 `date-time` in UTC, e.g. `Tue, 14 Nov 2023 22:13:20 +0000` (day of month unpadded).
pub(crate) fn rfc5322_date(now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let time = i64::try_from(secs)
        .ok()
        .and_then(|secs| DateTime::from_timestamp(secs, 0))
        .unwrap_or(DateTime::UNIX_EPOCH);
    time.format("%a, %-d %b %Y %H:%M:%S +0000").to_string()
}

#[cfg(test)]
mod tests;
