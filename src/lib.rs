//! soc-runtime: an AI Security Operations Center as a supervised actor runtime.
//!
//! Roles (sentinel, tier2, ir_lead, threat_intel, ...) are actors under one supervisor; they
//! never call each other, they consume and publish typed events ([`proto`]) over a durable bus
//! ([`bus`]) whose audit stream is the truth. Start one with [`app::runtime::Runtime::start`].
//!
//! The crate is layered: a module imports only from the layers below it, never across a cycle
//! (CI runs `../shared/tools/import-cycles`).
//!
//! 1. **Leaves**, which import nothing of the crate but the contract: [`proto`] (the events),
//!    [`secret`], `text` (untrusted text made safe), `histogram`, `task`, `outbound`,
//!    `indicators`, [`telemetry`].
//! 2. **Infrastructure**: [`bus`] (memory and Redis Streams, the bridge, the feeder), [`llm`]
//!    (the model gateway), [`judgment`] (vendor knowledge, learned priors, the score).
//! 3. **Knowledge and stores**: [`knowledge`], [`ingest`] (alert sources), [`store`] (SQLite,
//!    and the projection of the audit into it), [`memory`] (case memory queries).
//! 4. **Capabilities**: [`tools`], [`approvals`], [`webex`], [`calendar`].
//! 5. **Actors**: [`actors`] (the roles, the alert source, the projector, the notifier).
//! 6. **App shell**: [`app`] (config assembly, runtime, HTTP, dashboard, metrics, health) with
//!    the [`supervisor`]; on top of it, the harnesses that drive a whole runtime: [`backtest`]
//!    (its replay; tickets, scoring and the report sit lower and the dashboard reads them) and
//!    [`mod@bench`].

pub mod actors;
pub mod app;
pub mod approvals;
pub mod backtest;
pub mod bench;
pub mod bus;
pub mod calendar;
pub(crate) mod histogram;
pub(crate) mod indicators;
pub mod ingest;
pub mod judgment;
pub mod knowledge;
pub mod llm;
pub mod memory;
pub(crate) mod outbound;
pub mod proto;
pub mod response;
pub mod secret;
pub mod store;
pub mod supervisor;
pub(crate) mod task;
pub mod telemetry;
pub(crate) mod text;
pub mod tools;
pub mod webex;
