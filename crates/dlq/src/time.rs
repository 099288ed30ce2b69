//! Conversions between the shared wall clock ([`steadfast_retry::WallClock`], which answers
//! `SystemTime`) and the `DateTime<Utc>` this crate stores.
//!
//! Every store reads "now" from its clock, the Postgres store included (it binds the clock's
//! time instead of calling `now()`), so one conformance suite drives both with a
//! [`ManualClock`](crate::ManualClock). Instances sharing a database should keep their clocks
//! in sync (NTP): a skew shortens or lengthens leases by that much.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use steadfast_retry::WallClock;

/// The clock's time as a `DateTime<Utc>`. Unlike chrono's `From<SystemTime>`, this never
/// panics: a time outside chrono's range saturates to its ends.
pub(crate) fn now(clock: &dyn WallClock) -> DateTime<Utc> {
    to_utc(clock.now())
}

fn to_utc(t: SystemTime) -> DateTime<Utc> {
    let (secs, nanos, before_epoch) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs(), d.subsec_nanos(), false),
        Err(e) => (e.duration().as_secs(), e.duration().subsec_nanos(), true),
    };
    let at = i64::try_from(secs).ok().and_then(|secs| {
        if before_epoch {
            // -(secs + nanos) = -(secs + 1) + (1 s - nanos)
            match nanos {
                0 => DateTime::from_timestamp(-secs, 0),
                n => DateTime::from_timestamp(-secs - 1, 1_000_000_000 - n),
            }
        } else {
            DateTime::from_timestamp(secs, nanos)
        }
    });
    at.unwrap_or(if before_epoch {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

pub(crate) fn add(at: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| at.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

pub(crate) fn sub(at: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| at.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Microseconds since the Unix epoch: how the SQLite store keeps times (the precision
/// Postgres keeps; chrono's whole range fits in an `i64`).
#[cfg(feature = "sqlite")]
pub(crate) fn to_micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// The time `micros` (from [`to_micros`]) stands for; a value outside chrono's range is a
/// corrupt row, not a panic.
#[cfg(feature = "sqlite")]
pub(crate) fn from_micros(micros: i64) -> Result<DateTime<Utc>, crate::Error> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| crate::Error::Corrupt(format!("time {micros} out of range")))
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
        let early = UNIX_EPOCH - Duration::from_secs(i64::MAX as u64 / 2);
        assert_eq!(to_utc(early), DateTime::<Utc>::MIN_UTC);
    }
}
