//! The app shell, the top layer: it assembles the parts below and nothing below imports it.
//!
//! - [`config`]: the file, `SOC_*` overrides and validation; each section's type belongs to
//!   the module it configures.
//! - [`runtime`]: one SOC process (bus, stores, knowledge, the supervision tree).
//! - [`crate::supervisor`]: the supervision tree (at the crate root, where the project's layout
//!   asks for it; it is part of this layer).
//! - `http`, `dashboard`, `console` (case pages, queues, dispositions), `metrics`, `health`:
//!   what the process serves.

pub(crate) mod children;
pub mod config;
pub(crate) mod console;
pub(crate) mod context;
pub(crate) mod dashboard;
pub(crate) mod health;
pub(crate) mod http;
pub(crate) mod metrics;
pub mod runtime;
pub(crate) mod serve;
