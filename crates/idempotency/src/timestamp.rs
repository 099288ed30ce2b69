//! The time stores compare, and its conversion from the shared wall clock
//! ([`steadfast_retry::WallClock`], which answers `SystemTime`): claims and the de-duplicator read
//! "now" from an injected clock, so tests control expiry exactly.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use steadfast_retry::WallClock;

/// Wall-clock milliseconds since the Unix epoch. Stores compare these, so every instance
/// sharing a store needs a reasonably synchronised clock (NTP); skew shortens or lengthens
/// leases by the skew.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// From milliseconds since the Unix epoch.
    pub const fn from_millis(ms: u64) -> Self {
        Timestamp(ms)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// The system's current time.
    pub fn now() -> Self {
        Timestamp::from(SystemTime::now())
    }

    /// `self + d`, saturating (also available as `+`).
    pub fn plus(self, d: Duration) -> Self {
        Timestamp(self.0.saturating_add(millis(d)))
    }

    /// Time from `self` until `later` (zero if `later` is not after `self`).
    pub fn until(self, later: Timestamp) -> Duration {
        Duration::from_millis(later.0.saturating_sub(self.0))
    }
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;

    fn add(self, d: Duration) -> Timestamp {
        self.plus(d)
    }
}

/// A duration in whole milliseconds, saturating (stores keep milliseconds).
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whole milliseconds since the Unix epoch (truncated), saturating: a time before the epoch
/// is 0.
impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        Timestamp(millis(t.duration_since(UNIX_EPOCH).unwrap_or_default()))
    }
}

/// The same instant as a `SystemTime` (so a [`ManualClock`](crate::ManualClock) can start at a
/// `Timestamp`). A time past what the platform's `SystemTime` holds becomes the end of year 9999.
impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> Self {
        UNIX_EPOCH
            .checked_add(Duration::from_millis(t.0))
            .unwrap_or_else(|| UNIX_EPOCH + Duration::from_secs(253_402_300_799))
    }
}

/// The clock's time as a [`Timestamp`].
pub(crate) fn now(clock: &dyn WallClock) -> Timestamp {
    Timestamp::from(clock.now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_system_time() {
        for ms in [0, 1, 1_700_000_000_123] {
            let t = Timestamp::from_millis(ms);
            assert_eq!(Timestamp::from(SystemTime::from(t)), t);
        }
        let before_epoch = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(Timestamp::from(before_epoch), Timestamp::from_millis(0));
        let with_nanos = UNIX_EPOCH + Duration::new(2, 999_999);
        assert_eq!(Timestamp::from(with_nanos).as_millis(), 2_000);
    }
}
