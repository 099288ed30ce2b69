//! The wall clock's time as a `chrono::DateTime<Utc>`, for crates that store timestamps
//! (feature `chrono`).
//!
//! Stores that keep leases and due times (the dlq's, the saga log's) read "now" from a
//! [`WallClock`] and record `DateTime<Utc>`. chrono's own `From<SystemTime>` panics on a time
//! outside its range; a test clock set far ahead must not crash a store, so these conversions
//! and sums saturate at chrono's ends instead. One copy here, so the crates agree.
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use steadfast_retry::{ManualClock, utc};
//!
//! let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
//! let now = utc::now(&clock);
//! assert_eq!(now.timestamp(), 1_700_000_000);
//! assert_eq!(utc::add(now, Duration::MAX), chrono::DateTime::<chrono::Utc>::MAX_UTC);
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};

use crate::WallClock;

/// The clock's time as a `DateTime<Utc>`, saturating outside chrono's range.
pub fn now(clock: &dyn WallClock) -> DateTime<Utc> {
    to_utc(clock.now())
}

/// `t` as a `DateTime<Utc>`. Unlike chrono's `From<SystemTime>`, this never panics: a time
/// outside chrono's range saturates to `MIN_UTC` / `MAX_UTC`.
pub fn to_utc(t: SystemTime) -> DateTime<Utc> {
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

/// `at + d`, saturating at `MAX_UTC`.
pub fn add(at: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| at.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `at - d`, saturating at `MIN_UTC`.
pub fn sub(at: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| at.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Time from `from` to `to`, zero when `to` is earlier.
pub fn since(from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
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
        let early = UNIX_EPOCH - Duration::from_secs(i64::MAX as u64 / 2);
        assert_eq!(to_utc(early), DateTime::<Utc>::MIN_UTC);
    }

    #[test]
    fn sums_saturate_and_since_never_goes_negative() {
        let t = to_utc(UNIX_EPOCH + Duration::from_secs(1_000));
        assert_eq!(add(t, Duration::MAX), DateTime::<Utc>::MAX_UTC);
        assert_eq!(sub(t, Duration::MAX), DateTime::<Utc>::MIN_UTC);
        assert_eq!(since(t, sub(t, Duration::from_secs(5))), Duration::ZERO);
        assert_eq!(
            since(t, add(t, Duration::from_secs(5))),
            Duration::from_secs(5)
        );
    }
}
