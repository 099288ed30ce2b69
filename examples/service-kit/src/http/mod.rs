//! HTTP plumbing of a service on an open port.

pub mod server;

/// The most header bytes (names and values) a service accepts before answering 431; the
/// server's own head limit ([`server::MAX_HEAD_BYTES`]) sits a little above it.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
