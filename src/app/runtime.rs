//! The runtime handle: builds the bus and the supervision tree from a [`Config`], and reports
//! what the run did.
//!
//! [`Runtime::start`] checks everything a user can get wrong up front (data dir, feed file,
//! Redis reachability and version, the HTTP address) and fails with a message that says what to
//! fix; after that, failures are the supervisor's business.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use ractor::{Actor, ActorRef};
use serde::Serialize;

use crate::actors::alert_source::{Feed, MalformedLine, Rejected, SourceStats};
use crate::actors::role::RoleStats;
use crate::app::config::{Backend, Config, ConfigError};
use crate::app::health::Health;
use crate::bus::bridge::{self, BridgeSnapshot};
use crate::bus::{Bus, BusError};
use crate::llm::Llm;
use crate::llm::stats::{GatewaySnapshot, GatewayStats, ModelCost, ratio};
use crate::proto::{ActionProposed, CaseEscalated, EventKind};
use crate::secret::redact_url;
use crate::supervisor::{
    self, Context, ExitReason, REACTIVE_ROLES, RuntimeOptions, RuntimeSnapshot, Supervisor,
};

/// Distinguishes runtimes started in one process (tests run several).
static INSTANCES: AtomicU64 = AtomicU64::new(0);

/// A running SOC.
pub struct Runtime {
    root: ActorRef<supervisor::Msg>,
    join: tokio::task::JoinHandle<()>,
    ctx: Arc<Context>,
}

/// Asks a runtime to drain; cheap to clone, usable after the runtime handle moved.
#[derive(Clone)]
pub struct Drainer(ActorRef<supervisor::Msg>);

impl Drainer {
    /// Starts a graceful drain (idempotent).
    pub fn drain(&self) {
        let _ = self.0.cast(supervisor::Msg::Drain(ExitReason::Requested));
    }
}

impl Runtime {
    /// Validates `config`, connects the bus and starts the supervision tree.
    pub async fn start(config: Config, options: RuntimeOptions) -> Result<Runtime, StartError> {
        config.validate()?;
        if options.timelines == crate::store::Timelines::Skipped
            && config.bus.backend == Backend::Redis
        {
            return Err(StartError::TimelinesOnRedis);
        }
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| StartError::DataDir(config.data_dir.display().to_string(), e))?;
        let feed = match &config.alerts {
            Some(path) => {
                // Only look: opening a FIFO would block until its writer appears.
                let meta = std::fs::metadata(path)
                    .map_err(|e| StartError::Feed(path.display().to_string(), e))?;
                if meta.is_dir() {
                    return Err(StartError::Feed(
                        path.display().to_string(),
                        std::io::Error::other("it is a directory"),
                    ));
                }
                Feed::File(path.clone())
            }
            None => Feed::Demo,
        };
        let (bus, bridge_queue) = match config.bus.backend {
            Backend::Memory => (Bus::memory(config.bus.settings.clone())?, None),
            Backend::Redis => {
                let (writer, queue) = bridge::queue(config.bus.settings.bridge_buffer);
                let bus = Bus::redis(&config.bus.redis_url, config.bus.settings.clone(), writer)
                    .await
                    .map_err(|e| StartError::Redis(redact_url(&config.bus.redis_url), e))?;
                (bus, Some(queue))
            }
        };
        // Checked once Redis answered (a dead server is the first thing to fix), before
        // anything is published.
        if matches!(feed, Feed::Demo)
            && config.bus.backend == Backend::Redis
            && config.supervisor.runs("source")
            && !config.xsoar.enabled()
            && config.ingest.sources.is_empty()
            && !config.demo
        {
            return Err(StartError::NoFeed);
        }
        let http = match config.http.socket_addr()? {
            None => None,
            Some(addr) => {
                let listener = std::net::TcpListener::bind(addr)
                    .map_err(|e| StartError::Http(addr.to_string(), e))?;
                listener
                    .set_nonblocking(true)
                    .map_err(|e| StartError::Http(addr.to_string(), e))?;
                let bound = listener
                    .local_addr()
                    .map_err(|e| StartError::Http(addr.to_string(), e))?;
                Some((Arc::new(Mutex::new(Some(listener))), bound))
            }
        };
        let probe_queue = bridge_queue.clone();
        let health = Arc::new(Health::new(
            bus.backend_name(),
            Box::new(move || {
                probe_queue
                    .as_ref()
                    .map_or_else(crate::app::health::BusHealth::up, |q| {
                        let bridge = q.snapshot();
                        crate::app::health::BusHealth {
                            connected: bridge.healthy(),
                            state: bridge.state(),
                            error: bridge.refusing.or(bridge.last_error),
                        }
                    })
            }),
        ));
        let store_path = crate::store::file_for(&config.data_dir, bus.backend_name());
        let projection = crate::store::projection_name(&bus);
        let knowledge = match options.knowledge.clone() {
            Some(k) => k,
            None => {
                let vendor = crate::judgment::vendor::Vendor::load(&config.rulesets)?;
                let v = vendor.summary();
                if v.wazuh_rules + v.suricata_rules > 0 {
                    tracing::info!(
                        wazuh_rules = v.wazuh_rules,
                        suricata_rules = v.suricata_rules,
                        classtypes = v.classtypes,
                        "detector rulesets loaded"
                    );
                }
                Arc::new(crate::knowledge::Knowledge::new(
                    Arc::new(vendor),
                    config.reasoning.judgment(),
                ))
            }
        };
        let store = match &options.store {
            Some(shared) if shared.path() != store_path => {
                return Err(StartError::SharedStore {
                    given: shared.path().display().to_string(),
                    wanted: store_path.display().to_string(),
                });
            }
            Some(shared) => shared.clone(),
            None => crate::store::Store::open(&store_path).await?,
        };
        let prepared = prepare_store(&store, &projection, &bus, &knowledge).await;
        let log_rewound = match prepared {
            Ok(rewound) => rewound,
            Err(e) => {
                if options.store.is_none() {
                    store.close().await;
                }
                return Err(e);
            }
        };
        if let (Some(_), Feed::File(path), true) = (&log_rewound, &feed, config.feed.follow) {
            // The saved position may be past alerts Redis lost: read the file again from its
            // start (what survived is dropped as a duplicate, what was lost is published).
            let state = crate::ingest::follow::state_path(&config.data_dir, path);
            match std::fs::remove_file(&state) {
                Ok(()) => tracing::warn!(feed = %path.display(),
                    "the followed feed is read again from its start, past the lost writes"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::error!(state = %state.display(), error = %e,
                    "cannot forget the followed feed's position: alerts Redis lost after it stay lost"),
            }
        }
        // The store stays open for the tools' case memory (`memory.recall`).
        let tools = crate::tools::Toolbox::load(
            &config.tools,
            knowledge.clone(),
            Some(store.pool().clone()),
            !options.no_site_connectors,
        )
        .await?;
        if !tools.names().is_empty() {
            tracing::info!(tools = ?tools.names(), "role tools ready");
        }
        let instance = format!("soc{}", INSTANCES.fetch_add(1, Ordering::Relaxed));
        let ctx = Arc::new(Context {
            role_stats: REACTIVE_ROLES
                .iter()
                .map(|r| (r.name, Arc::new(RoleStats::default())))
                .collect(),
            source_stats: Arc::new(SourceStats::default()),
            ingest: crate::ingest::http::Ingest::new(&config.ingest, bus.clone()),
            bridge_queue,
            log_rewound,
            http,
            health,
            llm_stats: (!config.llm.endpoints.is_empty())
                .then(|| Arc::new(GatewayStats::new(&config.llm))),
            store_path,
            projection,
            projector_stats: Arc::default(),
            http_stats: Arc::default(),
            xsoar_stats: Arc::default(),
            knowledge,
            tools: Arc::new(tools),
            exit: Mutex::new(None),
            started: std::time::Instant::now(),
            instance: instance.clone(),
            feed,
            bus,
            config,
            options,
        });
        let (root, join) = Actor::spawn(
            Some(format!("{instance}/supervisor")),
            Supervisor,
            ctx.clone(),
        )
        .await
        .map_err(|e| StartError::Supervisor(e.to_string()))?;
        Ok(Runtime { root, join, ctx })
    }

    /// The bus this runtime runs on.
    pub fn bus(&self) -> &Bus {
        &self.ctx.bus
    }

    /// The counters of `role` (they outlive its restarts), if it runs here.
    pub(crate) fn role_stats(&self, role: &str) -> Option<Arc<RoleStats>> {
        self.ctx.role_stats.get(role).cloned()
    }

    /// A handle to the LLM gateway, when endpoints are configured.
    pub fn llm(&self) -> Option<Llm> {
        self.ctx.llm()
    }

    /// The HTTP address actually bound (useful with port 0).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.ctx.http.as_ref().map(|(_, addr)| *addr)
    }

    /// A handle that can request a drain.
    pub fn drainer(&self) -> Drainer {
        Drainer(self.root.clone())
    }

    /// A live view of the runtime.
    pub async fn observe(&self) -> Option<RuntimeSnapshot> {
        match self
            .root
            .call(
                supervisor::Msg::Observe,
                Some(std::time::Duration::from_secs(5)),
            )
            .await
        {
            Ok(ractor::rpc::CallResult::Success(s)) => Some(s),
            _ => None,
        }
    }

    /// Counters so far (also valid after the runtime stopped).
    pub fn summary(&self) -> Summary {
        Summary::from_context(&self.ctx)
    }

    /// Waits until the runtime stops (drain requested, idle, or escalation) and reports.
    pub async fn wait(self) -> RunReport {
        let _ = self.join.await;
        let exit = self
            .ctx
            .exit
            .lock()
            .clone()
            .unwrap_or(ExitReason::Requested);
        let mut summary = Summary::from_context(&self.ctx);
        summary.exit = exit.clone();
        RunReport { summary, exit }
    }

    /// Drains and waits.
    pub async fn shutdown(self) -> RunReport {
        self.drainer().drain();
        self.wait().await
    }
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The counters.
    pub summary: Summary,
    /// Why it stopped.
    pub exit: ExitReason,
}

impl RunReport {
    /// Whether the run succeeded: no escalation, and the feed was read to its end.
    pub fn is_success(&self) -> bool {
        let invalid = matches!(self.exit, ExitReason::Idle)
            && self
                .summary
                .model_validation
                .as_ref()
                .is_some_and(|v| v.over_limit);
        !matches!(self.exit, ExitReason::Escalated { .. })
            && self.summary.feed_error.is_none()
            && !invalid
    }
}

/// The run summary, printed and written as JSON. Keys are stable.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Bus backend.
    pub bus: &'static str,
    /// Alerts published by this run.
    pub alerts_in: u64,
    /// Alerts already published (by an earlier run or pass) and dropped.
    pub duplicates_dropped: u64,
    /// Feed lines rejected.
    pub malformed_lines: u64,
    /// The first rejected lines, with the reason.
    pub malformed_examples: Vec<MalformedLine>,
    /// Rejected lines by reason, each with a sample.
    pub rejected: BTreeMap<String, Rejected>,
    /// Records of the feed that are no alert (Suricata flow or DNS events, ...), skipped.
    pub skipped_records: u64,
    /// Updates of cases a streaming feed opened (repeats that joined them), published.
    pub case_updates: u64,
    /// What each HTTP ingest source sent: records, cases, refusals by reason and status.
    pub ingest: BTreeMap<String, crate::ingest::http::IngestSnapshot>,
    /// Why the feed could not be read to its end, if it could not (the run then fails).
    pub feed_error: Option<String>,
    /// Per role.
    pub roles: BTreeMap<String, RoleSummary>,
    /// `CaseEscalated` events committed by this run.
    pub escalated: u64,
    /// `ActionProposed` events committed by this run.
    pub actions_proposed: u64,
    /// Entries moved to `soc.dead` by this run.
    pub dead_lettered: u64,
    /// Wall time of the run, seconds.
    pub elapsed_s: f64,
    /// The bus bridge (Redis only).
    pub bridge: Option<BridgeSnapshot>,
    /// Set when this start found the audit log behind the store (Redis lost acknowledged
    /// writes: a failover to a lagging replica, an older AOF): what was found and repaired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_rewound: Option<String>,
    /// The LLM gateway's accounting (absent when no endpoint is configured).
    pub llm: Option<GatewaySnapshot>,
    /// How the model's final answers validated, against `[llm] max_invalid_ratio` (absent
    /// when no endpoint is configured). A `--until-idle` run past the limit fails.
    pub model_validation: Option<ModelValidation>,
    /// Model calls and tokens per role, per case the role gave the model and per 1,000 alerts
    /// this run read (absent when no endpoint is configured).
    pub model_cost: BTreeMap<String, ModelCost>,
    /// The verdict store's projection of soc.audit.
    pub store: StoreSummary,
    /// Why the run stopped.
    pub exit: ExitReason,
}

/// The share of the model's final answers that failed validation.
#[derive(Debug, Clone, Serialize)]
pub struct ModelValidation {
    /// Answers that validated.
    pub valid: u64,
    /// Answers that did not (their cases went to `needs_human_review`).
    pub invalid: u64,
    /// `invalid / (valid + invalid)`; 0 with no answers.
    pub invalid_ratio: f64,
    /// `[llm] max_invalid_ratio`.
    pub limit: f64,
    /// Whether the ratio is past the limit.
    pub over_limit: bool,
}

/// Per-role model cost from the gateway's accounting and the roles' counters.
fn model_cost(
    llm: &GatewaySnapshot,
    roles: &BTreeMap<String, RoleSummary>,
    alerts: u64,
) -> BTreeMap<String, ModelCost> {
    llm.roles
        .iter()
        .map(|(name, a)| {
            let (cases, degraded) = roles
                .get(name)
                .map_or((0, 0), |r| (r.model_decisions, r.degraded));
            let cost = ModelCost {
                calls: a.answered,
                tokens_in: a.tokens_in,
                tokens_out: a.tokens_out,
                tokens_cached: a.tokens_cached,
                cases,
                degraded,
                ..ModelCost::default()
            };
            (name.clone(), cost.with_ratios(alerts))
        })
        .collect()
}

/// The local store's part of the summary.
#[derive(Debug, Clone, Serialize)]
pub struct StoreSummary {
    /// The SQLite file.
    pub path: String,
    /// The projection's checkpoint name.
    pub projection: String,
    /// What the projector folded.
    pub projected: crate::actors::projector::ProjectorSnapshot,
}

/// One role's part of the summary.
#[derive(Debug, Clone, Serialize)]
pub struct RoleSummary {
    /// Inputs decided.
    pub processed: u64,
    /// Commits applied.
    pub committed: u64,
    /// Redelivered inputs whose commit found them already acked.
    pub duplicates_skipped: u64,
    /// Commits that failed or were refused (their inputs stay pending).
    pub commit_failures: u64,
    /// Entries this role's feeder dead-lettered.
    pub dead_lettered: u64,
    /// Restarts by the supervisor.
    pub restarts: u64,
    /// Inputs decided with the model.
    pub model_decisions: u64,
    /// Times the model could not take an input yet (kept unacked, retried).
    pub deferred: u64,
    /// Inputs decided by rules because the model was down (degraded).
    pub degraded: u64,
    /// Events published, by kind.
    pub published: BTreeMap<String, u64>,
}

impl Summary {
    fn from_context(ctx: &Context) -> Summary {
        let source = ctx.source_stats.snapshot();
        let roles: BTreeMap<String, RoleSummary> = ctx
            .role_stats
            .iter()
            .map(|(name, stats)| {
                let s = stats.snapshot();
                (
                    (*name).to_owned(),
                    RoleSummary {
                        processed: s.processed,
                        committed: s.committed,
                        duplicates_skipped: s.duplicates,
                        commit_failures: s.commit_failures + s.refused,
                        dead_lettered: s.feeder.dead_lettered,
                        restarts: s.restarts,
                        model_decisions: s.model_decisions,
                        deferred: s.deferred,
                        degraded: s.degraded,
                        published: s.published,
                    },
                )
            })
            .collect();
        let total = |kind: &str| {
            ctx.role_stats
                .values()
                .map(|s| s.published_of(kind))
                .sum::<u64>()
        };
        let llm = ctx.llm_stats.as_ref().map(|s| s.snapshot());
        let model_validation = llm.as_ref().map(|g| {
            let valid: u64 = g.roles.values().map(|a| a.valid).sum();
            let invalid: u64 = g.roles.values().map(|a| a.invalid).sum();
            let invalid_ratio = ratio(invalid, valid + invalid);
            let limit = ctx.config.llm.max_invalid_ratio;
            ModelValidation {
                valid,
                invalid,
                invalid_ratio,
                limit,
                over_limit: invalid_ratio > limit,
            }
        });
        let model_cost = llm
            .as_ref()
            .map(|g| model_cost(g, &roles, source.alerts_in))
            .unwrap_or_default();
        Summary {
            model_validation,
            model_cost,
            bus: ctx.bus.backend_name(),
            alerts_in: source.alerts_in,
            duplicates_dropped: source.duplicates_dropped,
            malformed_lines: source.malformed_lines,
            malformed_examples: source.malformed_examples,
            rejected: source.rejected,
            skipped_records: source.skipped_records,
            case_updates: source.case_updates,
            ingest: ctx
                .ingest
                .as_ref()
                .map(|i| {
                    i.stats()
                        .into_iter()
                        .map(|(name, s)| (name, s.snapshot()))
                        .collect()
                })
                .unwrap_or_default(),
            feed_error: source.feed_error,
            escalated: total(CaseEscalated::KIND),
            actions_proposed: total(ActionProposed::KIND),
            dead_lettered: roles.values().map(|r| r.dead_lettered).sum(),
            roles,
            elapsed_s: ctx.started.elapsed().as_secs_f64(),
            bridge: ctx.bridge_queue.as_ref().map(|q| q.snapshot()),
            log_rewound: ctx.log_rewound.clone(),
            llm,
            store: StoreSummary {
                path: ctx.store_path.display().to_string(),
                projection: ctx.projection.clone(),
                projected: ctx.projector_stats.snapshot(),
            },
            exit: ctx.exit.lock().clone().unwrap_or(ExitReason::Requested),
        }
    }

    /// A human-readable rendering.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let exit = match &self.exit {
            ExitReason::Requested => "stopped on request".to_owned(),
            ExitReason::Idle => "idle (feed drained, nothing pending)".to_owned(),
            ExitReason::Escalated { child, error } => {
                format!("FAILED: {child} exceeded its restart intensity ({error})")
            }
        };
        if let Some(rewound) = &self.log_rewound {
            let _ = writeln!(out, "LOG REWOUND AND REPAIRED: {rewound}");
        }
        let _ = writeln!(
            out,
            "soc-runtime run summary: bus {}, {:.2} s, {exit}",
            self.bus, self.elapsed_s
        );
        let _ = writeln!(
            out,
            "  alerts in {}   duplicates dropped {}   malformed lines {}   records skipped (no \
             alert) {}",
            self.alerts_in, self.duplicates_dropped, self.malformed_lines, self.skipped_records
        );
        for (reason, r) in &self.rejected {
            let _ = writeln!(
                out,
                "    {} x {reason} (first: line {}: {})",
                r.count, r.sample.line, r.sample.error
            );
        }
        if let Some(e) = &self.feed_error {
            let _ = writeln!(out, "  FEED ERROR: {e} (the rest of the feed was not read)");
        }
        for (name, i) in &self.ingest {
            let rejected: u64 = i.rejected.values().map(|(n, _)| n).sum();
            let _ = writeln!(
                out,
                "  http ingest {name}: records {}   cases {}   updates {}   skipped {}   \
                 rejected {rejected}   refused requests {:?}",
                i.records, i.cases, i.updates, i.skipped, i.refused_requests
            );
            for (reason, (n, first)) in &i.rejected {
                let _ = writeln!(out, "    {n} x {reason} (first: {first})");
            }
        }
        let _ = writeln!(
            out,
            "  escalated {}   actions proposed {}   dead-lettered {}",
            self.escalated, self.actions_proposed, self.dead_lettered
        );
        let _ = writeln!(
            out,
            "  {:<14}{:>10}{:>10}{:>12}{:>10}{:>10}",
            "role", "processed", "committed", "duplicates", "failed", "restarts"
        );
        for (name, r) in &self.roles {
            let _ = writeln!(
                out,
                "  {name:<14}{:>10}{:>10}{:>12}{:>10}{:>10}",
                r.processed, r.committed, r.duplicates_skipped, r.commit_failures, r.restarts
            );
        }
        let _ = writeln!(
            out,
            "  verdict store: {} rows from {} audit entries ({}){}",
            self.store.projected.rows,
            self.store.projected.entries,
            self.store.path,
            if self.store.projected.errors > 0 {
                format!(", {} failed folds", self.store.projected.errors)
            } else {
                String::new()
            }
        );
        if let Some(llm) = &self.llm {
            let c = |name| llm.counter(name);
            let _ = writeln!(
                out,
                "  llm: answered {}   overloads {}   deadline exceeded {}   failovers {}   flips back {}",
                c("completed"),
                c("overloads"),
                c("deadline_exceeded"),
                c("failovers"),
                c("flips_back")
            );
            for e in &llm.endpoints {
                let _ = writeln!(
                    out,
                    "    {:<12} {:<7} answered {:>6}  failed {:>4}  tokens {}/{}  p50 {:.0} ms  ttft p50 {:.0} ms",
                    e.name,
                    format!("{:?}", e.circuit).to_lowercase(),
                    e.account.answered,
                    e.account.failed,
                    e.account.tokens_in,
                    e.account.tokens_out,
                    e.account.latency_ms.p50,
                    e.account.ttft_ms.p50
                );
            }
            if let Some(down) = llm.degraded_for_s {
                let _ = writeln!(
                    out,
                    "  DEGRADED: every model endpoint unavailable for {down} s; roles decide by rules"
                );
            }
            let _ = writeln!(
                out,
                "  {:<14}{:>7}{:>9}{:>15}{:>17}{:>8}{:>9}",
                "model cost",
                "calls",
                "per case",
                "tokens/case",
                "calls/1k alerts",
                "cached",
                "degraded"
            );
            for (role, m) in &self.model_cost {
                let _ = writeln!(
                    out,
                    "  {role:<14}{:>7}{:>9.2}{:>15}{:>17.1}{:>7.0}%{:>9}",
                    m.calls,
                    m.calls_per_case,
                    format!("{:.0}/{:.0}", m.tokens_per_case.0, m.tokens_per_case.1),
                    m.calls_per_1k_alerts,
                    m.cached_share * 100.0,
                    m.degraded
                );
            }
        }
        if let Some(v) = &self.model_validation {
            let _ = writeln!(
                out,
                "  model answers: {} valid, {} invalid ({:.0} %){}",
                v.valid,
                v.invalid,
                v.invalid_ratio * 100.0,
                if v.over_limit {
                    format!(
                        "   FAILED: more than {:.0} % of the model's answers did not validate \
                         ([llm] max_invalid_ratio); those cases await human review. Check the \
                         endpoint's profile, thinking and token budget with `soc-runtime llm check`",
                        v.limit * 100.0
                    )
                } else {
                    String::new()
                }
            );
        }
        out
    }
}

/// Binds the store to this run's projection (an in-memory run's audit is new, so its
/// projection starts over; imported dispositions stay), and loads what the reasoner knows from
/// it: the dispositions (the history the score is fitted on, unless the caller fitted one
/// already), the rules each site has seen, and the cases of the last hour.
///
/// On Redis, the store's checkpoint must not be past the audit's last entry: if it is, Redis
/// lost writes it had acknowledged (a failover to a lagging replica, a restore of an older
/// AOF), and the store holds decisions the log no longer has. Then the projection is rebuilt
/// from the log as it is (the store never disagrees with the log in silence), this is logged
/// loudly and returned for the summary; feeds that re-read their input publish what was lost
/// again (their dedupe keys went with it).
async fn prepare_store(
    store: &crate::store::Store,
    projection: &str,
    bus: &Bus,
    knowledge: &crate::knowledge::Knowledge,
) -> Result<Option<String>, StartError> {
    let mut rewound = None;
    if bus.backend_name() != "redis" {
        store.reset(projection).await?;
    } else {
        let checkpoint = store.checkpoint(projection).await?;
        let last = bus
            .last_id(crate::bus::Topic::Audit)
            .await
            .map_err(StartError::Bus)?
            .unwrap_or(crate::bus::StreamId::ZERO);
        if checkpoint > last {
            let what = format!(
                "the store had folded the audit up to {checkpoint}, but the audit now ends at \
                 {last}: Redis lost writes it had acknowledged (a failover to a lagging replica, \
                 or an older AOF restored). The projection was rebuilt from the audit as it is; \
                 alerts whose entries were lost are published again by feeds that re-read \
                 their input. Configure bus.durability (WAITAOF) or wait_replicas to prevent it"
            );
            tracing::error!("{what}");
            store.reset(projection).await?;
            rewound = Some(what);
        }
    }
    store.bind_projection(projection).await?;
    let dispositions = store.dispositions().await?;
    if knowledge.fit_report().is_none() {
        knowledge.add_history(&dispositions);
        let started = std::time::Instant::now();
        let fit = knowledge.fit();
        tracing::info!(
            sites = fit.sites,
            cases = fit.cases,
            escalated = fit.escalated,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "escalation score fitted on the history"
        );
    } else {
        knowledge.add_dispositions(&dispositions);
    }
    for (site, rule, cases) in store.rules_seen().await? {
        knowledge.saw_rule(&site, &rule, u64::try_from(cases).unwrap_or(0));
    }
    store
        .recent_alerts(|alert, p| knowledge.remember(&alert, p))
        .await?;
    Ok(rewound)
}

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The local store cannot be used.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A tool's data cannot be loaded.
    #[error(transparent)]
    Tools(#[from] crate::tools::ToolsError),
    /// A detector ruleset cannot be read.
    #[error(transparent)]
    Rulesets(#[from] crate::judgment::vendor::VendorError),
    /// The data directory cannot be created.
    #[error("cannot create data directory {0}: {1}")]
    DataDir(String, #[source] std::io::Error),
    /// The alert feed cannot be opened.
    #[error("cannot open alerts file {0}: {1}")]
    Feed(String, #[source] std::io::Error),
    /// No feed on Redis, and the demo was not asked for.
    #[error(
        "no alert feed is configured: on Redis the bundled demo alerts would be published into \
         the shared streams and containment proposals would follow. Point --alerts (or \
         SOC_ALERTS, or [xsoar]) at your alerts, or pass --demo to run the demo feed anyway"
    )]
    NoFeed,
    /// Redis is unreachable or unsuitable.
    #[error(
        "cannot use redis at {0}: {1} (is redis-server running? set --redis-url or SOC_REDIS_URL)"
    )]
    Redis(String, #[source] BusError),
    /// A bus setting is invalid.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The store handed to the runtime ([`RuntimeOptions::store`]) is another file than the
    /// one its configuration gives.
    #[error("the store handed to the runtime is {given}, not its store file {wanted}")]
    SharedStore {
        /// The handed store's file.
        given: String,
        /// The runtime's store file.
        wanted: String,
    },
    /// A store without the cases' timelines ([`crate::store::Timelines::Skipped`]) asked of a
    /// runtime on Redis, whose store outlives the run: a restart reads the timelines back.
    #[error(
        "a store without the cases' timelines is only for a backtest's scratch store on the \
         in-memory bus: on Redis the store outlives the run, and a restart reads them back"
    )]
    TimelinesOnRedis,
    /// The HTTP address cannot be bound.
    #[error("cannot listen on {0}: {1} (pick another --http address, or --http off)")]
    Http(String, #[source] std::io::Error),
    /// The supervision tree did not start.
    #[error("cannot start the supervisor: {0}")]
    Supervisor(String),
}
