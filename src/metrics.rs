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

/// Upper bounds of the latency histograms, seconds.
pub const BUCKETS_S: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// A lock-free latency histogram with fixed buckets ([`BUCKETS_S`]).
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; BUCKETS_S.len() + 1],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, seconds: f64) {
        let seconds = if seconds.is_finite() {
            seconds.max(0.0)
        } else {
            0.0
        };
        let at = BUCKETS_S.partition_point(|&b| b < seconds);
        self.buckets[at].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, bound) in BUCKETS_S.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.buckets[BUCKETS_S.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// What a scrape reads.
#[derive(Clone)]
pub struct Sources {
    /// Each reactive role's counters, by name, with its input topic.
    pub roles: BTreeMap<&'static str, (Topic, Arc<RoleStats>)>,
    /// The alert source.
    pub source: Arc<SourceStats>,
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

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

impl Sources {
    /// The exposition text. A part that cannot be read (the bus down) is left out and
    /// reported in `soc_scrape_errors`.
    pub async fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let mut errors = 0u64;
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
            "soc_role_processed_total",
            "Inputs a role decided.",
            &|s| l(&s.processed),
        );
        counter(
            &mut out,
            "soc_role_failed_total",
            "Commits that failed or were refused (the input stays pending and comes back).",
            &|s| l(&s.commit_failures) + l(&s.refused),
        );
        counter(
            &mut out,
            "soc_role_restarts_total",
            "Times the supervisor restarted a role.",
            &|s| l(&s.restarts),
        );
        counter(
            &mut out,
            "soc_role_model_decisions_total",
            "Inputs a role decided with the model.",
            &|s| l(&s.model_decisions),
        );
        family(
            &mut out,
            "soc_role_published_total",
            "counter",
            "Events a role published, by kind.",
        );
        for (role, (_, stats)) in &roles {
            for (i, kind) in Event::KINDS.iter().enumerate() {
                let n = l(&stats.published[i]);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "soc_role_published_total{{role=\"{role}\",kind=\"{kind}\"}} {n}"
                    );
                }
            }
        }
        family(
            &mut out,
            "soc_role_latency_seconds",
            "histogram",
            "Time from an input's publication to the role's decision.",
        );
        for (role, (_, stats)) in &roles {
            stats.latency.write(
                &mut out,
                "soc_role_latency_seconds",
                &format!("role=\"{role}\""),
            );
        }

        let groups: Vec<(Topic, &str)> = roles.iter().map(|(r, (t, _))| (*t, **r)).collect();
        match self.bus.group_states(&groups).await {
            Ok(states) => {
                family(
                    &mut out,
                    "soc_stream_pending",
                    "gauge",
                    "Entries a role's group has read and not yet committed.",
                );
                for s in &states {
                    let _ = writeln!(
                        out,
                        "soc_stream_pending{{stream=\"{}\",group=\"{}\"}} {}",
                        s.topic.name(),
                        label(&s.group),
                        s.pending
                    );
                }
                family(
                    &mut out,
                    "soc_stream_lag",
                    "gauge",
                    "Entries of a stream a role's group has not read yet.",
                );
                for s in &states {
                    if let Some(lag) = s.lag {
                        let _ = writeln!(
                            out,
                            "soc_stream_lag{{stream=\"{}\",group=\"{}\"}} {lag}",
                            s.topic.name(),
                            label(&s.group)
                        );
                    }
                }
            }
            Err(e) => {
                errors += 1;
                tracing::debug!(error = %e, "metrics: group states unavailable");
            }
        }
        match self.bus.len(Topic::Dead).await {
            Ok(n) => {
                family(
                    &mut out,
                    "soc_dead_letters",
                    "gauge",
                    "Entries in the dead-letter stream.",
                );
                let _ = writeln!(out, "soc_dead_letters {n}");
            }
            Err(_) => errors += 1,
        }

        let source = self.source.snapshot();
        for (name, help, value) in [
            (
                "soc_source_alerts_total",
                "Alerts the source published.",
                source.alerts_in,
            ),
            (
                "soc_source_duplicates_total",
                "Alerts dropped as already published.",
                source.duplicates_dropped,
            ),
            (
                "soc_source_malformed_lines",
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

        if let Some(x) = &self.xsoar {
            for (name, help, value) in [
                (
                    "soc_xsoar_published_total",
                    "XSOAR incidents published as alerts.",
                    &x.published,
                ),
                (
                    "soc_xsoar_duplicates_total",
                    "XSOAR incidents seen again.",
                    &x.duplicates,
                ),
                (
                    "soc_xsoar_malformed_total",
                    "XSOAR incidents that could not be mapped.",
                    &x.malformed,
                ),
                (
                    "soc_xsoar_errors_total",
                    "XSOAR polls that failed.",
                    &x.errors,
                ),
                (
                    "soc_xsoar_notes_total",
                    "War-room notes written to XSOAR.",
                    &x.notes,
                ),
                (
                    "soc_xsoar_dispositions_total",
                    "XSOAR closures published as analysts' dispositions.",
                    &x.dispositions,
                ),
                (
                    "soc_xsoar_closures_unmapped_total",
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
                "soc_llm_queue_depth",
                "gauge",
                "Requests waiting for the model.",
            );
            let _ = writeln!(out, "soc_llm_queue_depth {}", g.queued);
            family(
                &mut out,
                "soc_llm_in_flight",
                "gauge",
                "Requests at an endpoint now.",
            );
            for e in &g.endpoints {
                let _ = writeln!(
                    out,
                    "soc_llm_in_flight{{endpoint=\"{}\"}} {}",
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
                "soc_llm_tokens_total",
                "counter",
                "Tokens spent, by endpoint and direction.",
            );
            for e in &g.endpoints {
                let _ = writeln!(
                    out,
                    "soc_llm_tokens_total{{endpoint=\"{}\",direction=\"in\"}} {}",
                    label(&e.name),
                    e.account.tokens_in
                );
                let _ = writeln!(
                    out,
                    "soc_llm_tokens_total{{endpoint=\"{}\",direction=\"out\"}} {}",
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
                        "soc_approvals_pending",
                        "gauge",
                        "Proposed actions waiting for a human decision (expired ones included).",
                    );
                    let _ = writeln!(out, "soc_approvals_pending {pending}");
                    family(
                        &mut out,
                        "soc_approvals_decided_total",
                        "counter",
                        "Human decisions recorded.",
                    );
                    let _ = writeln!(out, "soc_approvals_decided_total {decided}");
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
            "soc_projector_entries_total",
            "counter",
            "Audit entries folded into the store.",
        );
        let _ = writeln!(out, "soc_projector_entries_total {}", p.entries);
        family(
            &mut out,
            "soc_projector_errors_total",
            "counter",
            "Folds and relays that failed (retried).",
        );
        let _ = writeln!(out, "soc_projector_errors_total {}", p.errors);
        family(
            &mut out,
            "soc_scrape_errors",
            "gauge",
            "Parts of this scrape that could not be read (the bus or the store down).",
        );
        let _ = writeln!(out, "soc_scrape_errors {errors}");
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
        };
        let ms = std::time::Duration::from_millis(5);
        gateway.answered("sentinel", 0, usage, ms, ms, ms);
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
    fn the_histogram_is_cumulative_and_counts_everything() {
        let h = Histogram::default();
        for s in [0.001, 0.02, 0.02, 7.0, 1e9, f64::NAN] {
            h.observe(s);
        }
        let mut out = String::new();
        h.write(&mut out, "x", "role=\"r\"");
        assert!(out.contains("x_bucket{role=\"r\",le=\"0.005\"} 2"), "{out}");
        assert!(out.contains("x_bucket{role=\"r\",le=\"0.025\"} 4"));
        assert!(out.contains("x_bucket{role=\"r\",le=\"10\"} 5"));
        assert!(out.contains("x_bucket{role=\"r\",le=\"+Inf\"} 6"));
        assert!(out.contains("x_count{role=\"r\"} 6"));
        assert_eq!(h.count(), 6);
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
