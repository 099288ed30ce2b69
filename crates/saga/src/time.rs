//! The shared wall clock and conversions to the `DateTime<Utc>` this crate records.
//!
//! Every store reads "now" from its clock (the Postgres one binds it instead of calling the
//! server's `now()`), so tests drive leases exactly. Instances sharing a database need synced
//! clocks (NTP): a skew shortens or lengthens leases by that much.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};

pub use steadfast_retry::WallClock;

/// The clock's time as a `DateTime<Utc>`, saturating outside chrono's range instead of
/// panicking.
pub(crate) fn now(clock: &dyn WallClock) -> DateTime<Utc> {
    to_utc(clock.now())
}

pub(crate) fn to_utc(t: SystemTime) -> DateTime<Utc> {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs())
            .ok()
            .and_then(|s| DateTime::from_timestamp(s, d.subsec_nanos()))
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
        Err(e) => {
            let d = e.duration();
            i64::try_from(d.as_secs())
                .ok()
                .and_then(|s| match d.subsec_nanos() {
                    0 => DateTime::from_timestamp(-s, 0),
                    n => DateTime::from_timestamp(-s - 1, 1_000_000_000 - n),
                })
                .unwrap_or(DateTime::<Utc>::MIN_UTC)
        }
    }
}

pub(crate) fn add(at: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| at.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Time from `from` to `to`, zero when `to` is earlier.
pub(crate) fn since(from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    (to - from).to_std().unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_utc_matches_chrono_in_range_and_saturates_outside() {
        for t in [
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
            UNIX_EPOCH - Duration::new(86_400, 5),
        ] {
            assert_eq!(to_utc(t), DateTime::<Utc>::from(t));
        }
        let far = UNIX_EPOCH + Duration::from_secs(i64::MAX as u64 / 2);
        assert_eq!(to_utc(far), DateTime::<Utc>::MAX_UTC);
    }
}
