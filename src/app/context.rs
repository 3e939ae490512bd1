//! What the supervisor and the runtime handle share ([`Context`]), how a run ends
//! ([`RuntimeOptions`], [`ExitReason`]). Built once per process by the runtime: the counters
//! and knowledge in it outlive every child's restart, and a process restart starts them anew
//! (the knowledge is refitted from the store).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

use crate::actors::alert_source::{Feed, SourceStats};
use crate::actors::projector::ProjectorStats;
use crate::actors::role::{PanicSchedule, RoleStats};
use crate::actors::xsoar;
use crate::app::config::Config;
use crate::app::health::Health;
use crate::bus::Bus;
use crate::bus::bridge::WriteQueue;
use crate::knowledge::Knowledge;
use crate::llm::Llm;
use crate::llm::gateway;
use crate::llm::stats::GatewayStats;

/// Why the runtime stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum ExitReason {
    /// A drain was requested (signal or API).
    Requested,
    /// `--until-idle`: the feed was drained and no work was pending.
    Idle,
    /// A child failed more often than the restart intensity allows.
    Escalated {
        /// The child.
        child: String,
        /// Its last error.
        error: String,
    },
}

/// Options that are not configuration: how this run ends, and test-only fault injection.
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// Exit once the feed is drained and nothing is pending.
    pub until_idle: bool,
    /// Fault injection for crash tests.
    pub faults: Option<Arc<PanicSchedule>>,
    /// Knowledge to start from instead of a fresh one (a backtest's history and feedback);
    /// the store's dispositions are added to it.
    pub knowledge: Option<Arc<Knowledge>>,
    /// Leave out the tools that reach live systems (site connectors such as Falcon): a
    /// backtest's tickets are history, and a live EDR knows nothing of their time.
    pub no_site_connectors: bool,
    /// Whether the projector writes the cases' timelines ([`crate::store::Timelines`]): a
    /// backtest's scratch store skips them unless its `--decisions` reads the assessments.
    pub timelines: crate::store::Timelines,
    /// A store already open at this runtime's store file (a backtest's scratch store): the
    /// runtime and its projector use its connections instead of opening pools of their own
    /// (each a connection thread, the store's PRAGMAs and its migration check), and leave
    /// closing it to its owner. A backtest's scratch store is small and lives in the OS page
    /// cache, so its connections keep SQLite's own 2 MiB page cache, not the fold's 16.
    pub store: Option<crate::store::Store>,
}

/// Everything the supervisor and the runtime handle share.
pub struct Context {
    /// Configuration.
    pub config: Config,
    /// Run options.
    pub options: RuntimeOptions,
    /// The bus.
    pub bus: Bus,
    /// Prefix of actor names, unique per runtime in this process.
    pub instance: String,
    /// The feed the alert source reads.
    pub feed: Feed,
    /// Counters of each role, by name.
    pub role_stats: BTreeMap<&'static str, Arc<RoleStats>>,
    /// Counters of the alert source.
    pub source_stats: Arc<SourceStats>,
    /// HTTP ingest (`POST /ingest/<source>`), when sources are configured; outlives restarts
    /// of the HTTP server.
    pub ingest: Option<Arc<crate::ingest::http::Ingest>>,
    /// The bridge queue (Redis only).
    pub bridge_queue: Option<Arc<WriteQueue>>,
    /// The HTTP listener bound at startup (taken by the first HTTP actor) and its address.
    pub http: Option<(Arc<Mutex<Option<std::net::TcpListener>>>, SocketAddr)>,
    /// Shared health.
    pub health: Arc<Health>,
    /// The LLM gateway's accounting, when endpoints are configured.
    pub llm_stats: Option<Arc<GatewayStats>>,
    /// The store file the projector folds into.
    pub store_path: std::path::PathBuf,
    /// The projection's checkpoint name.
    pub projection: String,
    /// The projector's counters.
    pub projector_stats: Arc<ProjectorStats>,
    /// The HTTP server's connection counts (kept across its restarts).
    pub(crate) http_stats: Arc<crate::app::serve::ConnStats>,
    /// What this start found and repaired when the audit was behind the store.
    pub log_rewound: Option<String>,
    /// The XSOAR poller's counters.
    pub xsoar_stats: Arc<xsoar::XsoarStats>,
    /// What the rules reasoner knows (dispositions, activity); outlives role restarts.
    pub knowledge: Arc<Knowledge>,
    /// The roles' tools (over the same knowledge).
    pub tools: Arc<crate::tools::Toolbox>,
    /// Why the runtime stopped, once it has.
    pub exit: Mutex<Option<ExitReason>>,
    /// When the runtime started.
    pub started: std::time::Instant,
}

impl Context {
    pub(crate) fn consumer_name(&self, role: &str) -> String {
        crate::bus::consumer_name(role)
    }

    /// How long a proposal may be decided, ms.
    pub(crate) fn proposal_ttl_ms(&self) -> i64 {
        i64::try_from(self.config.approvals.proposal_ttl_s)
            .unwrap_or(i64::MAX / 2_000)
            .saturating_mul(1000)
    }

    /// Where approvers' browsers reach the approval pages: `webex.approvals_url`, else this
    /// runtime's HTTP address.
    pub(crate) fn approvals_url(&self) -> String {
        if !self.config.webex.approvals_url.is_empty() {
            return self.config.webex.approvals_url.clone();
        }
        match &self.http {
            Some((_, addr)) => format!("http://{addr}"),
            None => format!("http://{}", self.config.http.addr),
        }
    }

    /// A handle to this runtime's LLM gateway, when endpoints are configured.
    pub fn llm(&self) -> Option<Llm> {
        self.llm_stats
            .as_ref()
            .map(|_| {
                Llm::new(
                    format!("{}/{}", self.instance, gateway::NAME),
                    Duration::from_millis(self.config.llm.deadline_ms),
                )
            })
            .zip(self.llm_stats.clone())
            .map(|(llm, stats)| llm.with_stats(stats))
    }
}
