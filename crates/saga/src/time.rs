//! The shared wall clock, read as the `DateTime<Utc>` this crate records through
//! `steadfast_retry::utc` (saturating, never panicking; one copy shared with the other crates
//! that store times).
//!
//! Every store reads "now" from its clock (the Postgres one binds it instead of calling the
//! server's `now()`), so tests drive leases exactly. Instances sharing a database need synced
//! clocks (NTP): a skew shortens or lengthens leases by that much.

pub use steadfast_retry::WallClock;
#[cfg(feature = "testing")]
pub(crate) use steadfast_retry::utc::to_utc;
pub(crate) use steadfast_retry::utc::{add, now, since};
