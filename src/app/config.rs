//! Configuration: a strict TOML file (unknown keys are errors), `SOC_*` environment overrides
//! (applied in [`Config::apply_env`], the one place that reads them), then command-line flags.
//! Every field has exactly one default, in the `Default` impls below.
//!
//! Secrets (the Redis URL may carry a password, an LLM endpoint an API key) come only from the
//! file or the environment and are never logged: use [`crate::secret::redact_url`] to show
//! a URL; API keys are [`crate::secret::Secret`]s, which do not print.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::actors::reasoning::{ReasoningConfig, ReasoningMode};
use crate::bus::{BusConfig, BusError};
use crate::calendar::CalendarConfig;
use crate::llm::LlmConfig;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where local state lives (SQLite stores in later releases; the last run's summary now).
    pub data_dir: PathBuf,
    /// The alert feed (JSONL, plain or gzip); the bundled demo feed when unset, on the
    /// in-memory bus only unless `demo` is set.
    pub alerts: Option<PathBuf>,
    /// Run the bundled demo feed where it needs asking for: on Redis (whose streams are
    /// production's), or beside a real source such as XSOAR. Off by default.
    pub demo: bool,
    /// What the alert feed holds: its format (recognised by default), the site of records
    /// that name none, a field mapping for any other JSON source.
    pub feed: crate::ingest::format::FeedConfig,
    /// Which bus backend, and where Redis is.
    pub bus: BusSection,
    /// The HTTP server.
    pub http: HttpConfig,
    /// Restart policy and shutdown.
    pub supervisor: SupervisorConfig,
    /// The LLM gateway and its model endpoints (none: rules reasoners only).
    pub llm: LlmConfig,
    /// Which reasoner decides what.
    pub reasoning: ReasoningConfig,
    /// The calendar roles.
    pub calendar: CalendarConfig,
    /// The roles' tools and site connectors.
    pub tools: crate::tools::ToolsConfig,
    /// Human approval of proposed actions.
    pub approvals: crate::approvals::ApprovalsConfig,
    /// Webex cards and card feedback.
    pub webex: crate::webex::WebexConfig,
    /// Sources that push alerts over HTTP (`POST /ingest/<source>`).
    pub ingest: crate::ingest::http::IngestConfig,
    /// Cortex XSOAR as an alert source.
    pub xsoar: crate::ingest::xsoar::XsoarConfig,
    /// Where traces go.
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// The detector vendors' rulesets (rule levels, classtypes, ATT&CK ids).
    pub rulesets: crate::judgment::vendor::RulesetsConfig,
    /// What the organisation's own networks are, for proportionate proposals.
    pub response: crate::response::ResponseConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./soc-data"),
            alerts: None,
            demo: false,
            feed: crate::ingest::format::FeedConfig::default(),
            bus: BusSection::default(),
            http: HttpConfig::default(),
            supervisor: SupervisorConfig::default(),
            llm: LlmConfig::default(),
            reasoning: ReasoningConfig::default(),
            calendar: CalendarConfig::default(),
            tools: crate::tools::ToolsConfig::default(),
            approvals: crate::approvals::ApprovalsConfig::default(),
            webex: crate::webex::WebexConfig::default(),
            ingest: crate::ingest::http::IngestConfig::default(),
            xsoar: crate::ingest::xsoar::XsoarConfig::default(),
            telemetry: crate::telemetry::TelemetryConfig::default(),
            rulesets: crate::judgment::vendor::RulesetsConfig::default(),
            response: crate::response::ResponseConfig::default(),
        }
    }
}

/// `[bus]`: backend choice plus the bus settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusSection {
    /// `memory` (embedded, nothing survives the process) or `redis` (durable).
    pub backend: Backend,
    /// Redis URL (`redis://[:password@]host:port[/db]`).
    pub redis_url: String,
    /// Bus semantics and limits.
    pub settings: BusConfig,
}

impl Default for BusSection {
    fn default() -> Self {
        Self {
            backend: Backend::Memory,
            redis_url: "redis://127.0.0.1:6379".to_owned(),
            settings: BusConfig::default(),
        }
    }
}

/// Bus backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// In-process; the embedded default.
    Memory,
    /// Redis Streams.
    Redis,
}

/// `[http]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address (`127.0.0.1:8080`), or `off`.
    pub addr: String,
    /// Bearer token `/metrics` asks of scrapers (`SOC_METRICS_TOKEN`). Set, it is always
    /// required; unset, `/metrics` is open only while nobody can sign in (no approvers, no
    /// SSO), else it needs a signed-in session.
    pub metrics_token: Option<crate::secret::Secret>,
    /// Longest wait for a request's head, ms; also how long an idle kept-alive connection
    /// stays open (hyper times the wait for the next head the same way). At most 60 s.
    pub header_read_timeout_ms: u64,
    /// Longest a request may take, its body included, ms (then 408).
    pub request_timeout_ms: u64,
    /// Most connections open at once; more are closed at once and counted.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:8080".to_owned(),
            metrics_token: None,
            header_read_timeout_ms: 10_000,
            request_timeout_ms: 30_000,
            max_connections: 512,
        }
    }
}

impl HttpConfig {
    /// Checks the limits.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !(100..=60_000).contains(&self.header_read_timeout_ms) {
            return Err(ConfigError::Invalid(format!(
                "http.header_read_timeout_ms must be 100 to 60000, not {}",
                self.header_read_timeout_ms
            )));
        }
        if self.request_timeout_ms < 1_000 {
            return Err(ConfigError::Invalid(
                "http.request_timeout_ms must be at least 1000".into(),
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "http.max_connections must be at least 1".into(),
            ));
        }
        if self
            .metrics_token
            .as_ref()
            .is_some_and(|t| t.expose().len() < 16)
        {
            return Err(ConfigError::Invalid(
                "http.metrics_token must be at least 16 characters".into(),
            ));
        }
        self.socket_addr().map(|_| ())
    }

    /// The server's limits.
    pub(crate) fn limits(&self) -> crate::app::serve::Limits {
        crate::app::serve::Limits {
            header_read_timeout: std::time::Duration::from_millis(self.header_read_timeout_ms),
            request_timeout: std::time::Duration::from_millis(self.request_timeout_ms),
            max_connections: self.max_connections,
        }
    }

    /// The parsed address; `None` when HTTP is off.
    pub(crate) fn socket_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        if self.addr.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        self.addr.parse().map(Some).map_err(|_| {
            ConfigError::Invalid(format!(
                "http.addr `{}` is not an address like 127.0.0.1:8080 (or `off`)",
                self.addr
            ))
        })
    }
}

/// `[supervisor]`: restart policy and drain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupervisorConfig {
    /// Failures of one child tolerated within `restart_window_s`; one more escalates (the
    /// runtime drains and exits with an error).
    pub max_restarts: u32,
    /// The restart-intensity window, seconds.
    pub restart_window_s: u64,
    /// First restart delay, ms; doubles with each failure in the window.
    pub backoff_initial_ms: u64,
    /// Longest restart delay, ms.
    pub backoff_max_ms: u64,
    /// Longest the whole drain may take, seconds: each step (the feed, the roles, the bridge,
    /// the projector) gets what is left, then is killed; a stream feed gets a third to publish
    /// what it read and spools the rest. Keep it below the service manager's stop timeout
    /// (`TimeoutStopSec=90` in `ops/systemd`).
    pub drain_timeout_s: u64,
    /// How often `--until-idle` checks for idleness, ms.
    pub idle_poll_ms: u64,
    /// Alerts published per batch by the alert source.
    pub source_batch: usize,
    /// What this process runs, for scale-out (`PARTS`); empty: everything. Processes on
    /// one Redis share each role's work (consumer groups), and a killed one's pending entries
    /// go to the others.
    pub roles: Vec<String>,
}

/// What `supervisor.roles` (`--roles`, `SOC_ROLES`) can name: the reactive roles, the alert
/// source, the calendar roles, and `approvals` (the dashboard, the approval pages, the Webex
/// webhook and the Webex cards: run it in exactly one process, whose store holds the
/// decisions).
pub(crate) const PARTS: [&str; 7] = [
    "sentinel",
    "tier2",
    "ir_lead",
    "threat_intel",
    "source",
    "calendar",
    "approvals",
];

impl SupervisorConfig {
    /// Whether this process runs `part` (one of `PARTS`).
    pub fn runs(&self, part: &str) -> bool {
        self.roles.is_empty() || self.roles.iter().any(|r| r == part)
    }

    /// Parses a comma-separated list of parts (`tier2,ir_lead`).
    pub fn parse_roles(list: &str) -> Result<Vec<String>, ConfigError> {
        let roles: Vec<String> = list
            .split(',')
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty())
            .collect();
        if roles.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "--roles: no role named (one or more of {})",
                PARTS.join(", ")
            )));
        }
        Ok(roles)
    }
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            max_restarts: 10,
            restart_window_s: 60,
            backoff_initial_ms: 100,
            backoff_max_ms: 30_000,
            drain_timeout_s: 60,
            idle_poll_ms: 100,
            source_batch: 256,
            roles: Vec::new(),
        }
    }
}

impl Config {
    /// Reads a config file (strict), or the defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read(path.display().to_string(), e))?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse(path.display().to_string(), e))
    }

    /// Applies `SOC_*` overrides read through `var` (the process environment in `main`).
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = var("SOC_BUS") {
            self.bus.backend = match v.to_ascii_lowercase().as_str() {
                "memory" => Backend::Memory,
                "redis" => Backend::Redis,
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "SOC_BUS must be `memory` or `redis`, not `{v}`"
                    )));
                }
            };
        }
        if let Some(v) = var("SOC_REDIS_URL") {
            self.bus.redis_url = v;
        }
        if let Some(v) = var("SOC_BUS_NAMESPACE") {
            self.bus.settings.namespace = v;
        }
        if let Some(v) = var("SOC_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = var("SOC_ALERTS") {
            self.alerts = Some(PathBuf::from(v));
        }
        if let Some(v) = var("SOC_ROLES") {
            self.supervisor.roles = SupervisorConfig::parse_roles(&v)?;
        }
        if let Some(v) = var("SOC_METRICS_TOKEN") {
            self.http.metrics_token = Some(crate::secret::Secret::new(v));
        }
        if let Some(v) = var("SOC_HTTP_ADDR") {
            self.http.addr = v;
        }
        self.llm.apply_env(&var);
        self.ingest.apply_env(&var);
        if let Some(v) = var("SOC_FALCON_CLIENT_ID") {
            self.tools.falcon.client_id = v;
        }
        if let Some(v) = var("SOC_APPROVALS_SESSION_KEY") {
            self.approvals.session_key = Some(crate::secret::Secret::new(v));
        }
        if let Some(v) = var("SOC_WEBEX_BOT_TOKEN") {
            self.webex.bot_token = Some(crate::secret::Secret::new(v));
        }
        if let Some(v) = var("SOC_WEBEX_WEBHOOK_SECRET") {
            self.webex.webhook_secret = Some(crate::secret::Secret::new(v));
        }
        if let Some(v) = var("SOC_XSOAR_URL") {
            self.xsoar.url = v;
        }
        if let Some(v) = var("SOC_XSOAR_API_KEY") {
            self.xsoar.api_key = Some(crate::secret::Secret::new(v));
        }
        if let Some(v) = var("SOC_XSOAR_API_KEY_ID") {
            self.xsoar.api_key_id = Some(v);
        }
        if let Some(v) = var("SOC_FALCON_CLIENT_SECRET") {
            self.tools.falcon.client_secret = Some(crate::secret::Secret::new(v));
        }
        Ok(())
    }

    /// Checks the whole configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.bus.settings.validate().map_err(ConfigError::Bus)?;
        self.http.validate()?;
        self.feed.validate().map_err(ConfigError::Invalid)?;
        self.ingest.validate().map_err(ConfigError::Invalid)?;
        if self.feed.follow && self.alerts.is_none() {
            return Err(ConfigError::Invalid(
                "feed.follow (--follow) needs a feed file to follow (--alerts FILE)".to_owned(),
            ));
        }
        self.llm.validate()?;
        crate::response::Networks::parse(&self.response)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if self.calendar.tz.parse::<chrono_tz::Tz>().is_err() {
            return Err(ConfigError::Invalid(format!(
                "calendar.tz: unknown time zone {:?} (an IANA name such as America/New_York)",
                self.calendar.tz
            )));
        }
        self.approvals.validate()?;
        self.webex.validate()?;
        self.xsoar.validate()?;
        if let Some(addr) = self.http.socket_addr()?
            && !addr.ip().is_loopback()
            && self.approvals.approvers.is_empty()
            && self.approvals.sso_header.is_empty()
        {
            return Err(ConfigError::Invalid(format!(
                "http.addr {addr} is reachable from other hosts, but nobody can sign in: the \
                 dashboard would be open to anyone. Configure [[approvals.approvers]] or an SSO \
                 proxy (approvals.sso_header), or listen on loopback"
            )));
        }
        if self.webex.sends_cards()
            && self.webex.approvals_url.is_empty()
            && self
                .http
                .socket_addr()?
                .is_none_or(|addr| addr.ip().is_unspecified())
        {
            return Err(ConfigError::Invalid(
                "webex.approvals_url: cards link to the approval pages, and http.addr does not \
                 say where approvers reach them: set the URL their browsers use"
                    .into(),
            ));
        }
        let r = &self.reasoning;
        if !(0.0..=1.0).contains(&r.hybrid_llm_from) {
            return Err(ConfigError::Invalid(format!(
                "reasoning.hybrid_llm_from is {}: it is a probability of escalation, 0 to 1 \
                 (0.1 by default)",
                r.hybrid_llm_from
            )));
        }
        if !(r.recall_weight.is_finite() && r.recall_weight > 0.0 && r.recall_weight <= 10.0) {
            return Err(ConfigError::Invalid(
                "reasoning.recall_weight must be above 0 and at most 10 (2 by default)".into(),
            ));
        }
        if !(r.half_life_days.is_finite() && r.half_life_days > 0.0) {
            return Err(ConfigError::Invalid(
                "reasoning.half_life_days must be a positive number of days (30 by default)".into(),
            ));
        }
        let lag = r.feedback_lag.trim();
        if lag != "off" && humantime::parse_duration(lag).map_or(true, |d| d.is_zero()) {
            return Err(ConfigError::Invalid(format!(
                "reasoning.feedback_lag {:?}: a positive duration such as \"4h\", or \"off\"",
                r.feedback_lag
            )));
        }
        let s = &self.supervisor;
        if s.restart_window_s == 0 || s.backoff_initial_ms == 0 || s.idle_poll_ms == 0 {
            return Err(ConfigError::Invalid(
                "supervisor.restart_window_s, backoff_initial_ms and idle_poll_ms must be at least 1"
                    .into(),
            ));
        }
        if s.backoff_max_ms < s.backoff_initial_ms {
            return Err(ConfigError::Invalid(
                "supervisor.backoff_max_ms must not be below backoff_initial_ms".into(),
            ));
        }
        if let Some(unknown) = s.roles.iter().find(|r| !PARTS.contains(&r.as_str())) {
            return Err(ConfigError::Invalid(format!(
                "supervisor.roles: unknown role {unknown:?} (one or more of {})",
                PARTS.join(", ")
            )));
        }
        if !s.roles.is_empty() && self.bus.backend == Backend::Memory {
            return Err(ConfigError::Invalid(
                "supervisor.roles (--roles) splits the work between processes on one Redis: \
                 use --bus redis"
                    .into(),
            ));
        }
        if s.source_batch == 0 {
            return Err(ConfigError::Invalid(
                "supervisor.source_batch must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Configuration errors.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {0}: {1}")]
    Read(String, #[source] std::io::Error),
    /// The file is not valid TOML for this configuration.
    #[error("invalid config file {0}: {1}")]
    Parse(String, #[source] toml::de::Error),
    /// A value is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// A bus setting is out of range.
    #[error(transparent)]
    Bus(BusError),
    /// `[webex]` is refused.
    #[error("invalid configuration: {0}")]
    Webex(#[from] crate::webex::WebexError),
    /// `[llm]` is refused.
    #[error("invalid configuration: {0}")]
    Llm(#[from] crate::llm::LlmError),
    /// `[approvals]` is refused.
    #[error("invalid configuration: {0}")]
    Approvals(#[from] crate::approvals::ApprovalsError),
    /// `[xsoar]` is refused.
    #[error("invalid configuration: {0}")]
    Xsoar(#[from] crate::ingest::xsoar::XsoarError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_embedded() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.bus.backend, Backend::Memory);
        assert_eq!(
            c.http.socket_addr().unwrap(),
            Some("127.0.0.1:8080".parse().unwrap())
        );
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let err = toml::from_str::<Config>("[bus]\nbakend = \"redis\"\n").unwrap_err();
        assert!(err.to_string().contains("bakend"), "{err}");
        let err = toml::from_str::<Config>("[bus.settings]\ncredit = 3\n").unwrap_err();
        assert!(err.to_string().contains("credit"), "{err}");
    }

    #[test]
    fn a_full_file_parses() {
        let c: Config = toml::from_str(
            r#"
            data_dir = "/var/lib/soc"
            alerts = "feed.jsonl.gz"
            [bus]
            backend = "redis"
            redis_url = "redis://10.0.0.1:6379"
            [bus.settings]
            credits = 64
            retention = { "soc.alerts" = { max_len = 1000 }, "soc.dead" = { max_age_secs = 86400 } }
            [http]
            addr = "off"
            [supervisor]
            max_restarts = 3
            [llm]
            queue_capacity = 8
            [[llm.endpoints]]
            name = "primary"
            url = "http://gpu-box:8000/v1"
            model = "qwen"
            api_key = "sk-secret"
            max_in_flight = 4
            tool_prefill = "<tool_call>\n"
            tool_stop = ["</tool_call>"]
            tool_choice = "required"
            extra_body = { top_k = 40 }
            [[llm.endpoints]]
            name = "secondary"
            url = "http://cpu-box:8081/v1"
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.llm.endpoints.len(), 2);
        assert_eq!(c.llm.endpoints[0].max_in_flight, 4);
        assert_eq!(
            c.llm.endpoints[1].max_in_flight, 1,
            "defaults apply per endpoint"
        );
        assert!(
            !format!("{c:?}").contains("sk-secret"),
            "api keys never print"
        );
        assert_eq!(c.bus.settings.credits, 64);
        assert_eq!(c.http.socket_addr().unwrap(), None);
        assert_eq!(
            c.bus.settings.retention_of(crate::bus::Topic::Alerts),
            crate::bus::Retention::MaxLen(1000)
        );
    }

    #[test]
    fn the_example_config_documents_the_defaults() {
        let example: Config = toml::from_str(include_str!("../../ops/soc.example.toml")).unwrap();
        assert_eq!(example, Config::default());
    }

    #[test]
    fn env_overrides_apply_and_bad_values_are_explained() {
        let mut c = Config::default();
        c.apply_env(|k| match k {
            "SOC_BUS" => Some("redis".into()),
            "SOC_REDIS_URL" => Some("redis://h:1".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.bus.backend, Backend::Redis);
        assert_eq!(c.bus.redis_url, "redis://h:1");
        let err = c
            .apply_env(|k| (k == "SOC_BUS").then(|| "kafka".into()))
            .unwrap_err();
        assert!(err.to_string().contains("kafka"));
        c.http.addr = "localhost".into();
        assert!(c.validate().unwrap_err().to_string().contains("http.addr"));
    }

    #[test]
    fn llm_env_creates_endpoints_and_bad_ones_are_named() {
        let mut c = Config::default();
        c.apply_env(|k| match k {
            "SOC_LLM_PRIMARY_URL" => Some("http://127.0.0.1:8081/v1".into()),
            "SOC_LLM_SECONDARY_URL" => Some("http://127.0.0.1:8082/v1".into()),
            "SOC_LLM_MODEL" => Some("smollm2".into()),
            "SOC_LLM_API_KEY" => Some("k".into()),
            _ => None,
        })
        .unwrap();
        c.validate().unwrap();
        let names: Vec<_> = c.llm.endpoints.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["primary", "secondary"]);
        assert!(c.llm.endpoints.iter().all(|e| e.model == "smollm2"));
        assert_eq!(c.llm.endpoints[1].api_key.as_ref().unwrap().expose(), "k");

        c.llm.endpoints[1].url = "ftp://x".into();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("llm.endpoints[1].url"), "{err}");
        c.llm.endpoints[1].url = crate::llm::canned::IN_PROCESS_URL.into();
        c.validate().unwrap();
        c.llm.endpoints[1].url = "not a url".into();
        assert!(c.validate().unwrap_err().to_string().contains("not a URL"));
        c.llm.endpoints[1] = c.llm.endpoints[0].clone();
        assert!(c.validate().unwrap_err().to_string().contains("used twice"));
        c.llm.endpoints.truncate(1);
        c.llm.endpoints[0].max_in_flight = 0;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("max_in_flight")
        );
    }
}
