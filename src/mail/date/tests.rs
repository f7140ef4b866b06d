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
}
