//! Round robin: a shared cursor modulo the number of candidates.

use std::sync::atomic::AtomicUsize;

/// The next index in `0..len` (`len > 0`). When the candidate set changes size the sequence
/// shifts, which is harmless: every candidate still gets its turn within one cycle.
pub(crate) fn pick(cursor: &AtomicUsize, len: usize, advance: bool) -> usize {
    super::ticket(cursor, advance) % len
}
