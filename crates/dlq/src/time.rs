//! Time for this crate: the shared wall clock ([`steadfast_retry::WallClock`], which answers
//! `SystemTime`) read as the `DateTime<Utc>` this crate stores, through `steadfast_retry::utc`
//! (saturating, never panicking; one copy shared with the other crates that store times).
//!
//! Every store reads "now" from its clock, the Postgres store included (it binds the clock's
//! time instead of calling `now()`), so one conformance suite drives both with a
//! [`ManualClock`](crate::ManualClock). Instances sharing a database should keep their clocks
//! in sync (NTP): a skew shortens or lengthens leases by that much.

pub(crate) use steadfast_retry::utc::{add, now, sub};

#[cfg(feature = "sqlite")]
use chrono::{DateTime, Utc};

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
