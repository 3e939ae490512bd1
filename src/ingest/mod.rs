//! Alert feeds: parsing what sources deliver into [`crate::proto::Alert`]s.
//!
//! Everything here handles untrusted input: a malformed record is an error value with a reason,
//! never a panic, and never stops the feed.

pub mod jsonl;
