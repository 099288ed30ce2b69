//! Criterion benchmarks for Steadfast; see `benches/` and `BENCHMARKS.md` at the workspace root.
//!
//! Run them all with `cargo bench -p steadfast-benches`, or one group with
//! `cargo bench -p steadfast-benches --bench <name>`.
#![forbid(unsafe_code)]
