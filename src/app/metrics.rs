//! `GET /metrics`: the runtime's health in the Prometheus text format (version 0.0.4).
//!
//! Read at scrape time from the counters the actors keep anyway (they outlive restarts), the
//! bus (per role group: pending, lag) and the store (approvals pending and decided). Nothing
//! here is on a hot path: a scrape costs one bus round trip and two small queries.
//!
//! Families (all prefixed `soc_`): per role `role_processed_total`, `role_failed_total`
//! (failed and refused commits), `role_restarts_total`, `role_published_total{kind}`,
//! `role_latency_seconds` (histogram: input published to decision); per group
//! `stream_pending`, `stream_lag`; `dead_letters`; the alert source's counters; the gateway's
//! `llm_queue_depth`, `llm_in_flight`, `llm_failovers_total`, `llm_overloads_total`,
//! `llm_tokens_total{direction}` and the rest of its counters; `approvals_pending`,
//! `approvals_decided_total` (in the process running the `approvals` part); the XSOAR
//! poller's counters; the projector's folded entries and errors. A process reports only the
//! roles it runs, so the scrapes of several processes add up.
//!
//! Counters live in the actors' shared stats and survive their restarts; a process restart
//! starts them from zero (a counter reset, which Prometheus's `rate` handles).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::actors::alert_source::SourceStats;
use crate::actors::projector::ProjectorStats;
use crate::actors::role::RoleStats;
use crate::bus::{Bus, Topic};
use crate::llm::stats::GatewayStats;
use crate::proto::Event;
use names::*;

/// How long a scrape waits for each of its bus reads (the groups' backlog, the dead letters).
/// A frozen Redis answers nothing, and the bus's own query timeout (10 s) would make the scrape
/// outlast Prometheus's default timeout (10 s): the scrape that should say the bridge is down
/// would fail whole.
const SCRAPE_BUS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// The metric family names, one constant each (the text format repeats them per sample).
pub(crate) mod names {
    /// `soc_approvals_decided_total`.
    pub(crate) const APPROVALS_DECIDED_TOTAL: &str = "soc_approvals_decided_total";
    /// `soc_approvals_pending`.
    pub(crate) const APPROVALS_PENDING: &str = "soc_approvals_pending";
    /// `soc_dead_letters`.
    pub(crate) const DEAD_LETTERS: &str = "soc_dead_letters";
    /// `soc_llm_in_flight`.
    pub(crate) const LLM_IN_FLIGHT: &str = "soc_llm_in_flight";
    /// `soc_llm_queue_depth`.
    pub(crate) const LLM_QUEUE_DEPTH: &str = "soc_llm_queue_depth";
    /// `soc_llm_tokens_total`.
    pub(crate) const LLM_TOKENS_TOTAL: &str = "soc_llm_tokens_total";
    /// `soc_projector_entries_total`.
    pub(crate) const PROJECTOR_ENTRIES_TOTAL: &str = "soc_projector_entries_total";
    /// `soc_projector_errors_total`.
    pub(crate) const PROJECTOR_ERRORS_TOTAL: &str = "soc_projector_errors_total";
    /// `soc_role_failed_total`.
    pub(crate) const ROLE_FAILED_TOTAL: &str = "soc_role_failed_total";
    /// `soc_role_latency_seconds`.
    pub(crate) const ROLE_LATENCY_SECONDS: &str = "soc_role_latency_seconds";
    /// `soc_role_model_decisions_total`.
    pub(crate) const ROLE_MODEL_DECISIONS_TOTAL: &str = "soc_role_model_decisions_total";
    /// `soc_role_processed_total`.
    pub(crate) const ROLE_PROCESSED_TOTAL: &str = "soc_role_processed_total";
    /// `soc_role_published_total`.
    pub(crate) const ROLE_PUBLISHED_TOTAL: &str = "soc_role_published_total";
    /// `soc_role_restarts_total`.
    pub(crate) const ROLE_RESTARTS_TOTAL: &str = "soc_role_restarts_total";
    /// `soc_scrape_errors`.
    pub(crate) const SCRAPE_ERRORS: &str = "soc_scrape_errors";
    /// `soc_source_alerts_total`.
    pub(crate) const SOURCE_ALERTS_TOTAL: &str = "soc_source_alerts_total";
    /// `soc_source_duplicates_total`.
    pub(crate) const SOURCE_DUPLICATES_TOTAL: &str = "soc_source_duplicates_total";
    /// `soc_source_malformed_lines`.
    pub(crate) const SOURCE_MALFORMED_LINES: &str = "soc_source_malformed_lines";
    /// `soc_stream_lag`.
    pub(crate) const STREAM_LAG: &str = "soc_stream_lag";
    /// `soc_stream_pending`.
    pub(crate) const STREAM_PENDING: &str = "soc_stream_pending";
    /// `soc_xsoar_closures_unmapped_total`.
    pub(crate) const XSOAR_CLOSURES_UNMAPPED_TOTAL: &str = "soc_xsoar_closures_unmapped_total";
    /// `soc_xsoar_dispositions_total`.
    pub(crate) const XSOAR_DISPOSITIONS_TOTAL: &str = "soc_xsoar_dispositions_total";
    /// `soc_xsoar_duplicates_total`.
    pub(crate) const XSOAR_DUPLICATES_TOTAL: &str = "soc_xsoar_duplicates_total";
    /// `soc_xsoar_errors_total`.
    pub(crate) const XSOAR_ERRORS_TOTAL: &str = "soc_xsoar_errors_total";
    /// `soc_source_skipped_records`.
    pub(crate) const SOURCE_SKIPPED_RECORDS: &str = "soc_source_skipped_records";
    /// `soc_source_rejected_lines`.
    pub(crate) const SOURCE_REJECTED_LINES: &str = "soc_source_rejected_lines";
    /// `soc_ingest_records_total`.
    pub(crate) const INGEST_RECORDS_TOTAL: &str = "soc_ingest_records_total";
    /// `soc_ingest_rejected_total`.
    pub(crate) const INGEST_REJECTED_TOTAL: &str = "soc_ingest_rejected_total";
    /// `soc_ingest_refused_requests_total`.
    pub(crate) const INGEST_REFUSED_REQUESTS_TOTAL: &str = "soc_ingest_refused_requests_total";
    /// `soc_xsoar_malformed_total`.
    pub(crate) const XSOAR_MALFORMED_TOTAL: &str = "soc_xsoar_malformed_total";
    /// `soc_xsoar_notes_total`.
    pub(crate) const XSOAR_NOTES_TOTAL: &str = "soc_xsoar_notes_total";
    /// `soc_xsoar_published_total`.
    pub(crate) const XSOAR_PUBLISHED_TOTAL: &str = "soc_xsoar_published_total";
}

/// What a scrape reads.
#[derive(Clone)]
pub(crate) struct Sources {
    /// Each reactive role's counters, by name, with its input topic.
    pub roles: BTreeMap<&'static str, (Topic, Arc<RoleStats>)>,
    /// The alert source.
    pub source: Arc<SourceStats>,
    /// HTTP ingest's sources, by name.
    pub ingest: BTreeMap<String, Arc<crate::ingest::http::IngestStats>>,
    /// The LLM gateway, when it runs.
    pub llm: Option<Arc<GatewayStats>>,
    /// The projector.
    pub projector: Arc<ProjectorStats>,
    /// The bus (group states, dead letters).
    pub bus: Bus,
    /// The store (approvals), in the process running the `approvals` part.
    pub pool: Option<sqlx::SqlitePool>,
    /// The XSOAR poller, when it runs.
    pub xsoar: Option<Arc<crate::actors::xsoar::XsoarStats>>,
    /// The HTTP server's connections.
    pub http: Arc<crate::app::serve::ConnStats>,
    /// The bus bridge (Redis only).
    pub bridge: Option<Arc<crate::bus::bridge::WriteQueue>>,
    /// The approval pages' sign-ins, in the process serving them.
    pub sign_ins: Option<Arc<crate::approvals::web::Web>>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("roles", &self.roles.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Text of a label value, escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A label value as the exposition format writes it (backslash, quote and newline escaped).
fn label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

impl Sources {
    /// The bus bridge: whether Redis takes writes, its queue, refusals, errors and retention.
    fn render_bridge(&self, out: &mut String) {
        let Some(queue) = &self.bridge else {
            return;
        };
        let b = queue.snapshot();
        family(
            out,
            "soc_bus_bridge_up",
            "gauge",
            "1 while Redis takes the bridge's writes (reachable and not refusing), else 0.",
        );
        let _ = writeln!(out, "soc_bus_bridge_up {}", u8::from(b.healthy()));
        family(
            out,
            "soc_bus_bridge_state",
            "gauge",
            "The bridge's state: connected, unreachable (no answer within 2 s) or refusing (Redis answers but refuses writes: out of memory, read-only).",
        );
        for state in ["connected", "unreachable", "refusing"] {
            let _ = writeln!(
                out,
                "soc_bus_bridge_state{{state=\"{state}\"}} {}",
                u8::from(b.state() == state)
            );
        }
        family(
            out,
            "soc_bus_bridge_queue_depth",
            "gauge",
            "Submissions waiting in the bridge's buffer.",
        );
        let _ = writeln!(out, "soc_bus_bridge_queue_depth {}", b.queued);
        family(
            out,
            "soc_bus_bridge_queue_capacity",
            "gauge",
            "Capacity of the bridge's buffer (bus.bridge_buffer).",
        );
        let _ = writeln!(out, "soc_bus_bridge_queue_capacity {}", b.capacity);
        for (name, help, value) in [
            (
                "soc_bus_bridge_refused_total",
                "Submissions refused because the bridge's buffer was full (their inputs stay pending).",
                b.refused,
            ),
            (
                "soc_bus_bridge_write_errors_total",
                "Commit batches Redis rejected.",
                b.write_errors,
            ),
            (
                "soc_bus_bridge_reconnects_total",
                "Failed connection attempts or broken connections of the writer.",
                b.reconnects,
            ),
            (
                "soc_bus_bridge_commits_total",
                "Commits written.",
                b.commits,
            ),
            (
                "soc_bus_retention_trimmed_total",
                "Entries dropped by retention (never one a consumer group still needs).",
                b.trimmed,
            ),
        ] {
            family(out, name, "counter", help);
            let _ = writeln!(out, "{name} {value}");
        }
        family(
            out,
            "soc_bus_retention_held",
            "gauge",
            "1 for a stream whose retention is held back by a consumer group's unread or unacked entries.",
        );
        for stream in &b.retention_held {
            let _ = writeln!(out, "soc_bus_retention_held{{stream=\"{stream}\"}} 1");
        }
        if let Some(error) = &b.last_error {
            family(
                out,
                "soc_bus_bridge_last_error_info",
                "gauge",
                "The bridge's last error, as a label.",
            );
            let error: String = error.chars().take(200).collect();
            let _ = writeln!(
                out,
                "soc_bus_bridge_last_error_info{{error=\"{}\"}} 1",
                label(&error)
            );
        }
    }

    /// The HTTP server's connections and the sign-ins.
    fn render_http(&self, out: &mut String) {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let h = &self.http;
        family(
            out,
            "soc_http_connections_open",
            "gauge",
            "HTTP connections open now.",
        );
        let _ = writeln!(out, "soc_http_connections_open {}", l(&h.open));
        family(
            out,
            "soc_http_connections_total",
            "counter",
            "HTTP connections by outcome: accepted, or refused (closed at once at http.max_connections).",
        );
        let _ = writeln!(
            out,
            "soc_http_connections_total{{outcome=\"accepted\"}} {}",
            l(&h.accepted)
        );
        let _ = writeln!(
            out,
            "soc_http_connections_total{{outcome=\"refused\"}} {}",
            l(&h.refused)
        );
        family(
            out,
            "soc_http_request_timeouts_total",
            "counter",
            "Requests answered 408 for taking longer than http.request_timeout_ms.",
        );
        let _ = writeln!(out, "soc_http_request_timeouts_total {}", l(&h.timed_out));
        if let Some(web) = &self.sign_ins {
            let s = &web.sign_ins;
            family(
                out,
                "soc_sign_ins_total",
                "counter",
                "Sign-ins on the approval pages by outcome: ok, failed (wrong name or password), locked (refused unchecked while throttled).",
            );
            for (outcome, n) in [("ok", &s.ok), ("failed", &s.failed), ("locked", &s.locked)] {
                let _ = writeln!(out, "soc_sign_ins_total{{outcome=\"{outcome}\"}} {}", l(n));
            }
            family(
                out,
                "soc_sessions_revoked_total",
                "counter",
                "Sessions revoked on the server by a sign-out.",
            );
            let _ = writeln!(out, "soc_sessions_revoked_total {}", l(&s.revoked));
        }
    }

    /// The exposition text. A part that cannot be read (the bus down, or not answering within
    /// [`SCRAPE_BUS_TIMEOUT`]) is left out and reported in `soc_scrape_errors`.
    pub(crate) async fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let mut errors = 0u64;
        self.render_http(&mut out);
        self.render_bridge(&mut out);
        let roles: Vec<_> = self.roles.iter().collect();
        let counter =
            |out: &mut String, name: &str, help: &str, get: &dyn Fn(&RoleStats) -> u64| {
                family(out, name, "counter", help);
                for (role, (_, stats)) in &roles {
                    let _ = writeln!(out, "{name}{{role=\"{role}\"}} {}", get(stats));
                }
            };
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        counter(
            &mut out,
            ROLE_PROCESSED_TOTAL,
            "Inputs a role decided.",
            &|s| l(&s.processed),
        );
        counter(
            &mut out,
            ROLE_FAILED_TOTAL,
            "Commits that failed or were refused (the input stays pending and comes back).",
            &|s| l(&s.commit_failures) + l(&s.refused),
        );
        counter(
            &mut out,
            ROLE_RESTARTS_TOTAL,
            "Times the supervisor restarted a role.",
            &|s| l(&s.restarts),
        );
        counter(
            &mut out,
            ROLE_MODEL_DECISIONS_TOTAL,
            "Inputs a role decided with the model.",
            &|s| l(&s.model_decisions),
        );
        counter(
            &mut out,
            "soc_role_degraded_total",
            "Inputs a role would give the model, decided by rules because every model endpoint was unavailable past the grace.",
            &|s| l(&s.degraded),
        );
        family(
            &mut out,
            ROLE_PUBLISHED_TOTAL,
            "counter",
            "Events a role published, by kind.",
        );
        for (role, (_, stats)) in &roles {
            for (i, kind) in Event::KINDS.iter().enumerate() {
                let n = l(&stats.published[i]);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "{ROLE_PUBLISHED_TOTAL}{{role=\"{role}\",kind=\"{kind}\"}} {n}"
                    );
                }
            }
        }
        family(
            &mut out,
            ROLE_LATENCY_SECONDS,
            "histogram",
            "Time from an input's publication to the role's decision.",
        );
        for (role, (_, stats)) in &roles {
            stats
                .latency
                .write(&mut out, ROLE_LATENCY_SECONDS, &format!("role=\"{role}\""));
        }

        let groups: Vec<(Topic, &str)> = roles.iter().map(|(r, (t, _))| (*t, **r)).collect();
        let group_states = tokio::time::timeout(SCRAPE_BUS_TIMEOUT, self.bus.group_states(&groups));
        match group_states.await {
            Ok(Ok(states)) => {
                family(
                    &mut out,
                    STREAM_PENDING,
                    "gauge",
                    "Entries a role's group has read and not yet committed.",
                );
                for s in &states {
                    let _ = writeln!(
                        out,
                        "{STREAM_PENDING}{{stream=\"{}\",group=\"{}\"}} {}",
                        s.topic.name(),
                        label(&s.group),
                        s.pending
                    );
                }
                family(
                    &mut out,
                    STREAM_LAG,
                    "gauge",
                    "Entries of a stream a role's group has not read yet.",
                );
                for s in &states {
                    if let Some(lag) = s.lag {
                        let _ = writeln!(
                            out,
                            "{STREAM_LAG}{{stream=\"{}\",group=\"{}\"}} {lag}",
                            s.topic.name(),
                            label(&s.group)
                        );
                    }
                }
            }
            Ok(Err(e)) => {
                errors += 1;
                tracing::debug!(error = %e, "metrics: group states unavailable");
            }
            Err(_) => {
                errors += 1;
                tracing::debug!("metrics: group states took too long");
            }
        }
        let dead = tokio::time::timeout(SCRAPE_BUS_TIMEOUT, self.bus.len(Topic::Dead));
        match dead.await {
            Ok(Ok(n)) => {
                family(
                    &mut out,
                    DEAD_LETTERS,
                    "gauge",
                    "Entries in the dead-letter stream.",
                );
                let _ = writeln!(out, "{DEAD_LETTERS} {n}");
            }
            Ok(Err(_)) | Err(_) => errors += 1,
        }

        let source = self.source.snapshot();
        for (name, help, value) in [
            (
                SOURCE_ALERTS_TOTAL,
                "Alerts the source published.",
                source.alerts_in,
            ),
            (
                SOURCE_DUPLICATES_TOTAL,
                "Alerts dropped as already published.",
                source.duplicates_dropped,
            ),
            (
                SOURCE_MALFORMED_LINES,
                "Lines rejected in the latest pass over the feed.",
                source.malformed_lines,
            ),
        ] {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            family(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }

        family(
            &mut out,
            SOURCE_SKIPPED_RECORDS,
            "gauge",
            "Records of the feed that are no alert (skipped) in the latest pass.",
        );
        let _ = writeln!(out, "{SOURCE_SKIPPED_RECORDS} {}", source.skipped_records);
        family(
            &mut out,
            SOURCE_REJECTED_LINES,
            "gauge",
            "Lines rejected in the latest pass over the feed, by reason.",
        );
        for (reason, rejected) in &source.rejected {
            let _ = writeln!(
                out,
                "{SOURCE_REJECTED_LINES}{{reason=\"{}\"}} {}",
                label_value(reason),
                rejected.count
            );
        }

        if !self.ingest.is_empty() {
            family(
                &mut out,
                INGEST_RECORDS_TOTAL,
                "counter",
                "Records HTTP ingest took, by source and outcome.",
            );
            let snapshots: Vec<_> = self.ingest.iter().map(|(n, s)| (n, s.snapshot())).collect();
            for (name, s) in &snapshots {
                let rejected: u64 = s.rejected.values().map(|(n, _)| n).sum();
                for (outcome, n) in [
                    ("received", s.records),
                    ("case_opened", s.cases),
                    ("case_updated", s.updates),
                    ("duplicate", s.duplicates),
                    ("skipped", s.skipped),
                    ("rejected", rejected),
                ] {
                    let _ = writeln!(
                        out,
                        "{INGEST_RECORDS_TOTAL}{{source=\"{}\",outcome=\"{outcome}\"}} {n}",
                        label_value(name)
                    );
                }
            }
            family(
                &mut out,
                INGEST_REJECTED_TOTAL,
                "counter",
                "Records HTTP ingest refused, by source and reason.",
            );
            for (name, s) in &snapshots {
                for (reason, (n, _)) in &s.rejected {
                    let _ = writeln!(
                        out,
                        "{INGEST_REJECTED_TOTAL}{{source=\"{}\",reason=\"{}\"}} {n}",
                        label_value(name),
                        label_value(reason)
                    );
                }
            }
            family(
                &mut out,
                INGEST_REFUSED_REQUESTS_TOTAL,
                "counter",
                "Requests HTTP ingest refused, by source and status.",
            );
            for (name, s) in &snapshots {
                for (status, n) in &s.refused_requests {
                    let _ = writeln!(
                        out,
                        "{INGEST_REFUSED_REQUESTS_TOTAL}{{source=\"{}\",status=\"{status}\"}} {n}",
                        label_value(name)
                    );
                }
            }
        }

        if let Some(x) = &self.xsoar {
            for (name, help, value) in [
                (
                    XSOAR_PUBLISHED_TOTAL,
                    "XSOAR incidents published as alerts.",
                    &x.published,
                ),
                (
                    XSOAR_DUPLICATES_TOTAL,
                    "XSOAR incidents seen again.",
                    &x.duplicates,
                ),
                (
                    XSOAR_MALFORMED_TOTAL,
                    "XSOAR incidents that could not be mapped.",
                    &x.malformed,
                ),
                (XSOAR_ERRORS_TOTAL, "XSOAR polls that failed.", &x.errors),
                (
                    XSOAR_NOTES_TOTAL,
                    "War-room notes written to XSOAR.",
                    &x.notes,
                ),
                (
                    XSOAR_DISPOSITIONS_TOTAL,
                    "XSOAR closures published as analysts' dispositions.",
                    &x.dispositions,
                ),
                (
                    XSOAR_CLOSURES_UNMAPPED_TOTAL,
                    "XSOAR closures whose close reason teaches nothing.",
                    &x.closures_unmapped,
                ),
            ] {
                family(&mut out, name, "counter", help);
                let _ = writeln!(out, "{name} {}", l(value));
            }
        }
        if let Some(llm) = &self.llm {
            let g = llm.snapshot();
            family(
                &mut out,
                LLM_QUEUE_DEPTH,
                "gauge",
                "Requests waiting for the model.",
            );
            let _ = writeln!(out, "{LLM_QUEUE_DEPTH} {}", g.queued);
            family(
                &mut out,
                LLM_IN_FLIGHT,
                "gauge",
                "Requests at an endpoint now.",
            );
            for e in &g.endpoints {
                let _ = writeln!(
                    out,
                    "{LLM_IN_FLIGHT}{{endpoint=\"{}\"}} {}",
                    label(&e.name),
                    e.in_flight
                );
            }
            for (counter, value) in &g.counters {
                let name = format!("soc_llm_{counter}_total");
                family(
                    &mut out,
                    &name,
                    "counter",
                    &format!("Gateway requests: {}.", counter.replace('_', " ")),
                );
                let _ = writeln!(out, "{name} {value}");
            }
            family(
                &mut out,
                "soc_llm_degraded",
                "gauge",
                "1 while every model endpoint has been unavailable past [llm] degrade_after_ms (roles decide by rules, marked degraded).",
            );
            let _ = writeln!(
                out,
                "soc_llm_degraded {}",
                u8::from(g.degraded_for_s.is_some())
            );
            family(
                &mut out,
                "soc_llm_role_calls_total",
                "counter",
                "Model answers a role received.",
            );
            for (role, a) in &g.roles {
                let _ = writeln!(
                    out,
                    "soc_llm_role_calls_total{{role=\"{}\"}} {}",
                    label(role),
                    a.answered
                );
            }
            family(
                &mut out,
                "soc_llm_role_tokens_total",
                "counter",
                "Tokens a role spent: in (prompt), out (completion), cached (prompt tokens from the server's prefix cache, where it says), reasoning (where the server counts them).",
            );
            for (role, a) in &g.roles {
                for (direction, n) in [
                    ("in", a.tokens_in),
                    ("out", a.tokens_out),
                    ("cached", a.tokens_cached),
                    ("reasoning", a.tokens_reasoning),
                ] {
                    let _ = writeln!(
                        out,
                        "soc_llm_role_tokens_total{{role=\"{}\",direction=\"{direction}\"}} {n}",
                        label(role)
                    );
                }
            }
            family(
                &mut out,
                "soc_llm_answers_total",
                "counter",
                "Final model answers (after any repair), by role, endpoint and whether they validated.",
            );
            for (role, a) in &g.roles {
                for (outcome, n) in [("valid", a.valid), ("invalid", a.invalid)] {
                    let _ = writeln!(
                        out,
                        "soc_llm_answers_total{{role=\"{}\",outcome=\"{outcome}\"}} {n}",
                        label(role)
                    );
                }
            }
            for e in &g.endpoints {
                for (outcome, n) in [("valid", e.account.valid), ("invalid", e.account.invalid)] {
                    let _ = writeln!(
                        out,
                        "soc_llm_answers_total{{endpoint=\"{}\",outcome=\"{outcome}\"}} {n}",
                        label(&e.name)
                    );
                }
            }
            family(
                &mut out,
                "soc_llm_reasoned_total",
                "counter",
                "Model answers that carried reasoning (kept out of the parsed answer), by endpoint.",
            );
            for e in &g.endpoints {
                let _ = writeln!(
                    out,
                    "soc_llm_reasoned_total{{endpoint=\"{}\"}} {}",
                    label(&e.name),
                    e.account.reasoned
                );
            }
            family(
                &mut out,
                LLM_TOKENS_TOTAL,
                "counter",
                "Tokens spent, by endpoint and direction.",
            );
            for e in &g.endpoints {
                let _ = writeln!(
                    out,
                    "{LLM_TOKENS_TOTAL}{{endpoint=\"{}\",direction=\"in\"}} {}",
                    label(&e.name),
                    e.account.tokens_in
                );
                let _ = writeln!(
                    out,
                    "{LLM_TOKENS_TOTAL}{{endpoint=\"{}\",direction=\"out\"}} {}",
                    label(&e.name),
                    e.account.tokens_out
                );
            }
        }

        if let Some(pool) = &self.pool {
            let counts: Result<(i64, i64), _> = sqlx::query_as(
                "SELECT (SELECT COUNT(*) FROM proposals p WHERE NOT EXISTS \
                 (SELECT 1 FROM decisions d WHERE d.action_id = p.action_id)), \
                 (SELECT COUNT(*) FROM decisions)",
            )
            .fetch_one(pool)
            .await;
            match counts {
                Ok((pending, decided)) => {
                    family(
                        &mut out,
                        APPROVALS_PENDING,
                        "gauge",
                        "Proposed actions waiting for a human decision (expired ones included).",
                    );
                    let _ = writeln!(out, "{APPROVALS_PENDING} {pending}");
                    family(
                        &mut out,
                        APPROVALS_DECIDED_TOTAL,
                        "counter",
                        "Human decisions recorded.",
                    );
                    let _ = writeln!(out, "{APPROVALS_DECIDED_TOTAL} {decided}");
                }
                Err(e) => {
                    errors += 1;
                    tracing::debug!(error = %e, "metrics: approvals unavailable");
                }
            }
        }

        let p = self.projector.snapshot();
        family(
            &mut out,
            PROJECTOR_ENTRIES_TOTAL,
            "counter",
            "Audit entries folded into the store.",
        );
        let _ = writeln!(out, "{PROJECTOR_ENTRIES_TOTAL} {}", p.entries);
        family(
            &mut out,
            PROJECTOR_ERRORS_TOTAL,
            "counter",
            "Folds and relays that failed (retried).",
        );
        let _ = writeln!(out, "{PROJECTOR_ERRORS_TOTAL} {}", p.errors);
        family(
            &mut out,
            SCRAPE_ERRORS,
            "gauge",
            "Parts of this scrape that could not be read (the bus or the store down).",
        );
        let _ = writeln!(out, "{SCRAPE_ERRORS} {errors}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_gateway_and_xsoar_families_carry_their_counters() {
        let llm = crate::llm::LlmConfig {
            endpoints: vec![crate::llm::EndpointConfig {
                name: "primary".into(),
                url: "http://127.0.0.1:9/v1".into(),
                ..crate::llm::EndpointConfig::default()
            }],
            ..crate::llm::LlmConfig::default()
        };
        let gateway = Arc::new(GatewayStats::new(&llm));
        gateway.set_queue_depth(3);
        gateway.set_endpoint(0, 1, crate::llm::breaker::Circuit::Closed);
        let usage = crate::llm::Usage {
            prompt_tokens: 100,
            completion_tokens: 20,
            ..crate::llm::Usage::default()
        };
        let ms = std::time::Duration::from_millis(5);
        gateway.answered(
            "sentinel",
            0,
            crate::llm::stats::Answered {
                usage,
                reasoned: false,
                latency: ms,
                leg: ms,
                ttft: ms,
            },
        );
        GatewayStats::bump(&gateway.counters.failovers);
        GatewayStats::bump(&gateway.counters.overloads);
        let xsoar = Arc::new(crate::actors::xsoar::XsoarStats::default());
        xsoar.published.fetch_add(7, Ordering::Relaxed);
        let sources = Sources {
            roles: BTreeMap::new(),
            source: Arc::default(),
            llm: Some(gateway),
            projector: Arc::default(),
            bus: Bus::memory(crate::bus::BusConfig::default()).unwrap(),
            pool: None,
            xsoar: Some(xsoar),
            ingest: BTreeMap::new(),
            http: Arc::default(),
            bridge: None,
            sign_ins: None,
        };
        let text = sources.render().await;
        for line in [
            "soc_llm_queue_depth 3",
            "soc_llm_in_flight{endpoint=\"primary\"} 1",
            "soc_llm_failovers_total 1",
            "soc_llm_overloads_total 1",
            "soc_llm_completed_total 1",
            "soc_llm_tokens_total{endpoint=\"primary\",direction=\"in\"} 100",
            "soc_llm_tokens_total{endpoint=\"primary\",direction=\"out\"} 20",
            "soc_xsoar_published_total 7",
            "soc_scrape_errors 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing in:\n{text}"
            );
        }
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
