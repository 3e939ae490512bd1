//! soc-runtime: an AI Security Operations Center as a supervised actor runtime.
//!
//! Roles (sentinel, tier2, ir_lead, threat_intel, ...) are actors under one supervisor; they
//! never call each other, they consume and publish typed events ([`proto`]) over a durable bus
//! ([`bus`]) whose audit stream is the truth. Start one with [`runtime::Runtime::start`].

pub mod actors;
pub mod approvals;
pub mod backtest;
pub mod bench;
pub mod bus;
pub mod calendar;
pub mod config;
pub mod dashboard;
pub mod http;
pub mod ingest;
pub mod judgment;
pub mod knowledge;
pub mod llm;
pub mod memory;
pub mod metrics;
pub mod outbound;
pub mod proto;
pub mod runtime;
pub mod store;
pub mod supervisor;
pub mod task;
pub mod telemetry;
pub mod tools;
pub mod webex;
