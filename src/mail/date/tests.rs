use std::time::{Duration, UNIX_EPOCH};

use super::rfc5322_date;

#[test]
fn date_formatting() {
    assert_eq!(rfc5322_date(UNIX_EPOCH), "Thu, 1 Jan 1970 00:00:00 +0000");
    assert_eq!(
        rfc5322_date(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        "Tue, 14 Nov 2023 22:13:20 +0000"
    );
    // 2024-02-29 12:00:00 UTC, a leap day.
    let leap = UNIX_EPOCH + Duration::from_secs(1_709_208_000);
    assert_eq!(rfc5322_date(leap), "Thu, 29 Feb 2024 12:00:00 +0000");
    let before = UNIX_EPOCH - Duration::from_secs(10);
    assert_eq!(rfc5322_date(before), "Thu, 1 Jan 1970 00:00:00 +0000");
    assert_eq!(
        rfc5322_date(UNIX_EPOCH + Duration::from_secs(253_402_300_799)),
        "Fri, 31 Dec 9999 23:59:59 +0000"
    );
}

#[test]
fn a_clock_beyond_the_calendar_prints_the_epoch_instead_of_panicking() {
    if let Some(far) = UNIX_EPOCH.checked_add(Duration::from_secs(1 << 60)) {
        assert_eq!(rfc5322_date(far), "Thu, 1 Jan 1970 00:00:00 +0000");
    }
}
