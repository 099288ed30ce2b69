//! Time for this crate: the shared wall clock ([`steadfast_retry::WallClock`], which answers
//! `SystemTime`) read as the `DateTime<Utc>` this crate stores, through `steadfast_retry::utc`
//! (saturating, never panicking; one copy shared with the other crates that store times).
//!
//! Every store reads "now" from its clock, the Postgres store included (it binds the clock's
//! time instead of calling `now()`), so one conformance suite drives both with a
//! [`ManualClock`](crate::ManualClock). Instances sharing a database should keep their clocks
//! in sync (NTP): a skew shortens or lengthens leases by that much.

pub(crate) use steadfast_retry::utc::{add, now, sub};
