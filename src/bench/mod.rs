//! `soc-runtime bench`: performance measured against a baseline in the same run, never a
//! timed test.
//!
//! - [`bus`]: bus throughput against a bare channel and raw pipelined `XADD`.
//! - [`ingest`]: raw alerts through ingest and grouping onto the bus, against reading lines.
//! - [`llm`]: gateway overhead against direct client calls, on a zero-latency upstream and on
//!   a real model server, and memory per queued request.
//! - [`memory`]: case memory at scale: fold throughput, recall latency, clustering time.

pub mod bus;
pub mod ingest;
pub mod llm;
pub mod memory;
