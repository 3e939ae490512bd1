//! The roles' read-only tools, and the seam for site connectors.
//!
//! [`Toolbox`] holds every tool source of a runtime and is the one [`ToolProvider`] the roles'
//! model reasoner calls; each role offers the model only its whitelist of it. Every tool answers
//! for the case in the call's [`Scope`]: nothing after the case's last alert, and the case's own
//! site unless a tool says otherwise.
//!
//! | tool | source | needs |
//! |---|---|---|
//! | `memory.host_activity` | alerts triaged on a host in the hour before | always there |
//! | `memory.rule_history` | analysts' dispositions of a rule's past tickets | always there |
//! | `memory.recall` | earlier cases sharing the case's indicators (case memory) | the store |
//! | `alerts.search` | raw alerts by host, IP, rule and time | `[tools] alerts` |
//! | `attack.lookup` | ATT&CK techniques and groups | `[tools] attack_bundle` |
//! | `ioc.lookup` | the site's indicator lists | `[tools] ioc_lists` |
//! | `falcon.*` | CrowdStrike Falcon, read-only ([`falcon`]) | `[tools.falcon]` credentials |
//!
//! Site connectors are [`ToolProvider`]s too: a new one is a type implementing it, added to
//! [`Toolbox::connectors`] at start. Nothing behind a tool may change a system.
//!
//! Input: the files `[tools]` names, loaded once at start (a bad file fails the start with its
//! line); the store, read live. Output: text for the model. State: none but what was loaded,
//! so a role restart loses nothing and a process restart reloads the files.

pub mod alerts;
pub mod attack;
pub mod falcon;
pub mod ioc;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::SqlitePool;

use crate::knowledge::Knowledge;
use crate::llm::Tool;
use crate::llm::reason::{Scope, ToolError, ToolProvider};

/// Default window of `alerts.search` before the case's last alert, seconds.
const SEARCH_WINDOW_S: i64 = 24 * 3600;
/// Most earlier cases `memory.recall` returns.
const RECALL_LIMIT: usize = 8;

/// `[tools]`: where the roles' tools find their data. Every source is optional: a tool whose
/// source is not configured is not offered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolsConfig {
    /// Raw alerts for `alerts.search`: CSV `site,time,name,ip,host,rule_id` (time in Unix
    /// seconds), plain or gzip.
    pub alerts: Option<PathBuf>,
    /// An ATT&CK STIX bundle (JSON, plain or gzip) for `attack.lookup`.
    pub attack_bundle: Option<PathBuf>,
    /// Indicator lists for `ioc.lookup` (see [`ioc`] for the format).
    pub ioc_lists: Vec<PathBuf>,
    /// The CrowdStrike Falcon connector (read-only).
    pub falcon: falcon::FalconConfig,
}

/// Why a tool's data file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("reading {0}: {1}")]
    Read(String, std::io::Error),
    /// A line of it is wrong.
    #[error("{file}:{line}: {reason}")]
    Line {
        /// The file.
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// It is not the JSON it should be.
    #[error("{0}: {1}")]
    Parse(String, serde_json::Error),
    /// It holds nothing usable.
    #[error("{0} holds {1}")]
    Empty(String, &'static str),
}

/// Why the tools could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ToolsError {
    /// `[tools] alerts`.
    #[error("[tools] alerts: {0}")]
    Alerts(LoadError),
    /// `[tools] attack_bundle`.
    #[error("[tools] attack_bundle: {0}")]
    Attack(LoadError),
    /// `[tools] ioc_lists`.
    #[error("[tools] ioc_lists: {0}")]
    Ioc(LoadError),
    /// `[tools.falcon]`.
    #[error("[tools.falcon]: {0}")]
    Falcon(String),
    /// `[tools.falcon] base_url` or its client is refused.
    #[error("[tools.falcon]: {0}")]
    FalconOutbound(#[from] crate::outbound::OutboundError),
    /// Loading was cut short.
    #[error("loading the tools: {0}")]
    Join(String),
}

/// Every tool source of one runtime.
#[derive(Default)]
pub struct Toolbox {
    knowledge: Arc<Knowledge>,
    alerts: Option<alerts::AlertIndex>,
    attack: Option<attack::Attack>,
    iocs: Option<ioc::IocLists>,
    memory: Option<SqlitePool>,
    /// Site connectors (Falcon, ...), asked for any tool the local ones do not have.
    pub connectors: Vec<Arc<dyn ToolProvider>>,
}

impl std::fmt::Debug for Toolbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Toolbox")
            .field("tools", &self.names())
            .finish_non_exhaustive()
    }
}

impl Toolbox {
    /// The tools of `knowledge` alone (`memory.host_activity`, `memory.rule_history`).
    pub fn new(knowledge: Arc<Knowledge>) -> Self {
        Self {
            knowledge,
            ..Self::default()
        }
    }

    /// Loads what `config` names (file sources on a blocking thread), with case memory from
    /// `memory` and, when `connectors` is true, the configured site connectors. A backtest
    /// passes `false`: a live EDR knows nothing of a replayed ticket's time.
    pub async fn load(
        config: &ToolsConfig,
        knowledge: Arc<Knowledge>,
        memory: Option<SqlitePool>,
        connectors: bool,
    ) -> Result<Self, ToolsError> {
        let files = config.clone();
        #[allow(
            clippy::disallowed_methods,
            reason = "awaited right here: the load ends before this function returns"
        )]
        let (alerts, attack, iocs) = tokio::task::spawn_blocking(move || {
            let alerts = files
                .alerts
                .as_deref()
                .map(alerts::AlertIndex::load)
                .transpose()
                .map_err(ToolsError::Alerts)?;
            let attack = files
                .attack_bundle
                .as_deref()
                .map(attack::Attack::load)
                .transpose()
                .map_err(ToolsError::Attack)?;
            let iocs = (!files.ioc_lists.is_empty())
                .then(|| ioc::IocLists::load(&files.ioc_lists))
                .transpose()
                .map_err(ToolsError::Ioc)?;
            Ok::<_, ToolsError>((alerts, attack, iocs))
        })
        .await
        .map_err(|e| ToolsError::Join(e.to_string()))??;
        let mut toolbox = Self {
            knowledge,
            alerts,
            attack,
            iocs,
            memory,
            connectors: Vec::new(),
        };
        if connectors && let Some(falcon) = falcon::Falcon::from_config(&config.falcon)? {
            toolbox.connectors.push(Arc::new(falcon));
        }
        Ok(toolbox)
    }

    /// The ATT&CK bundle, when configured.
    pub fn attack(&self) -> Option<&attack::Attack> {
        self.attack.as_ref()
    }

    /// The indicator lists, when configured.
    pub fn iocs(&self) -> Option<&ioc::IocLists> {
        self.iocs.as_ref()
    }

    /// The names of the tools on offer.
    pub fn names(&self) -> Vec<String> {
        self.tools().into_iter().map(|t| t.function.name).collect()
    }

    fn host_activity(&self, scope: &Scope, args: &Value) -> Result<String, ToolError> {
        let host = args["host"]
            .as_str()
            .ok_or(ToolError::Arguments("host (a string) is required".into()))?;
        let site = scope.site.as_str();
        let latest = self
            .knowledge
            .latest_ms(site, host)
            .map_or(0, |ms| ms.saturating_add(1));
        let before = time_arg(args, "before")?
            .unwrap_or(latest)
            .min(scope.until_ms.saturating_add(1));
        let recent = self.knowledge.recent(site, host, before, &scope.ticket);
        let rows: Vec<Value> = recent
            .iter()
            .rev()
            .take(25)
            .map(|r| {
                json!({"ticket": r.ticket, "rule_id": r.rule, "opened": rfc3339(r.first_ms),
                       "rules_score": (r.score * 100.0).round() / 100.0})
            })
            .collect();
        Ok(json!({"host": host, "alerts_last_hour": recent.len(), "latest": rows}).to_string())
    }

    fn rule_history(&self, scope: &Scope, args: &Value) -> Result<String, ToolError> {
        let rule = args["rule_id"].as_str().ok_or(ToolError::Arguments(
            "rule_id (a string) is required".into(),
        ))?;
        let before = time_arg(args, "before")?
            .unwrap_or(i64::MAX)
            .min(scope.until_ms);
        let p = self.knowledge.priors(rule, "", "", before);
        Ok(json!({
            "rule_id": rule,
            "rule": {"escalated": p.rule.escalated, "closed": p.rule.closed},
            "all": {"escalated": p.all.escalated, "closed": p.all.closed},
        })
        .to_string())
    }

    async fn recall(&self, scope: &Scope) -> Result<String, ToolError> {
        let pool = self.memory.as_ref().ok_or(ToolError::Unavailable(
            "case memory is not available".into(),
        ))?;
        let options = crate::memory::RecallOptions {
            limit: RECALL_LIMIT,
            ..Default::default()
        };
        let found = crate::memory::recall_as_of(
            pool,
            &scope.indicators,
            &scope.ticket,
            &scope.site,
            scope.until_ms,
            options,
        )
        .await
        .map_err(|e| ToolError::Failed(format!("case memory: {e}")))?;
        let rows: Vec<Value> = found
            .iter()
            .map(|r| {
                json!({"ticket": r.ticket, "score": r.score, "shared": r.shared,
                       "escalated": r.escalated, "analyst_disposition": r.ground_truth,
                       "opened": rfc3339(r.first_ms)})
            })
            .collect();
        Ok(json!({"similar_cases": rows}).to_string())
    }

    fn search_alerts(&self, scope: &Scope, args: &Value) -> Result<String, ToolError> {
        let index = self.alerts.as_ref().ok_or(ToolError::Unavailable(
            "no alert archive is configured".into(),
        ))?;
        let text = |k: &str| {
            args[k]
                .as_str()
                .map(str::to_owned)
                .filter(|s| !s.is_empty())
        };
        let (host, ip, rule_id) = (text("host"), text("ip"), text("rule_id"));
        if host.is_none() && ip.is_none() && rule_id.is_none() {
            return Err(ToolError::Arguments(
                "give at least one of host, ip, rule_id".into(),
            ));
        }
        let cap = scope.until_ms.div_euclid(1000);
        let until = time_arg(args, "until")?.map_or(cap, |ms| ms.div_euclid(1000).min(cap));
        let since = time_arg(args, "since")?.map_or(until - SEARCH_WINDOW_S, |ms| ms / 1000);
        let query = alerts::Query {
            // Always the case's own site (a case without one sees alerts without one).
            site: Some(scope.site.clone()),
            host,
            ip,
            rule_id,
            since,
            until,
            limit: args["limit"].as_u64().map_or(20, |n| n as usize),
        };
        let mut found = index.search(&query);
        found["searched"] = json!({"since": rfc3339(since * 1000), "until": rfc3339(until * 1000),
                                   "site": query.site});
        Ok(found.to_string())
    }

    fn attack_lookup(&self, args: &Value) -> Result<String, ToolError> {
        let attack = self.attack.as_ref().ok_or(ToolError::Unavailable(
            "no ATT&CK bundle is configured".into(),
        ))?;
        if let Some(id) = args["technique"].as_str() {
            return attack
                .technique(id)
                .map(|t| attack.technique_json(t).to_string())
                .ok_or_else(|| ToolError::Arguments(format!("no active ATT&CK technique {id:?}")));
        }
        if let Some(name) = args["group"].as_str() {
            return attack
                .group(name)
                .map(|g| attack.group_json(g).to_string())
                .ok_or_else(|| ToolError::Arguments(format!("no ATT&CK group named {name:?}")));
        }
        if let Some(text) = args["query"].as_str() {
            return Ok(attack.search(text).to_string());
        }
        Err(ToolError::Arguments(
            "give one of technique (an id such as T1110), group (a name or alias), query".into(),
        ))
    }

    fn ioc_lookup(&self, args: &Value) -> Result<String, ToolError> {
        let lists = self.iocs.as_ref().ok_or(ToolError::Unavailable(
            "no indicator lists are configured".into(),
        ))?;
        let value = args["value"]
            .as_str()
            .filter(|v| !v.trim().is_empty())
            .ok_or(ToolError::Arguments("value (a string) is required".into()))?;
        Ok(lists.lookup_json(value).to_string())
    }
}

impl ToolProvider for Toolbox {
    fn tools(&self) -> Vec<Tool> {
        let time = json!({"type": "string", "description": "RFC 3339 time"});
        let mut tools = vec![
            Tool::function(
                "memory.host_activity",
                "Alerts triaged on a host in the hour before a time, newest first.",
                json!({"type": "object", "properties": {
                    "host": {"type": "string"}, "before": time}, "required": ["host"]}),
            ),
            Tool::function(
                "memory.rule_history",
                "How analysts disposed of a detection rule's past tickets.",
                json!({"type": "object", "properties": {
                    "rule_id": {"type": "string"}, "before": time}, "required": ["rule_id"]}),
            ),
        ];
        if self.memory.is_some() {
            tools.push(Tool::function(
                "memory.recall",
                "Earlier cases sharing this case's indicators (IPs, host, rule), with what \
                 became of them.",
                json!({"type": "object", "properties": {}}),
            ));
        }
        if self.alerts.is_some() {
            tools.push(Tool::function(
                "alerts.search",
                "Raw alerts of this site by host, IP or rule, newest first, in a time range \
                 (default: the day before the case).",
                json!({"type": "object", "properties": {
                    "host": {"type": "string"}, "ip": {"type": "string"},
                    "rule_id": {"type": "string"}, "since": time, "until": time,
                    "limit": {"type": "integer", "minimum": 1, "maximum": alerts::MAX_ROWS}}}),
            ));
        }
        if self.attack.is_some() {
            tools.push(Tool::function(
                "attack.lookup",
                "MITRE ATT&CK: a technique by id, a group by name or alias, or a search of \
                 technique and group names.",
                json!({"type": "object", "properties": {
                    "technique": {"type": "string", "description": "e.g. T1110 or T1110.001"},
                    "group": {"type": "string", "description": "e.g. APT28"},
                    "query": {"type": "string", "description": "words of a name"}}}),
            ));
        }
        if self.iocs.is_some() {
            tools.push(Tool::function(
                "ioc.lookup",
                "Whether an IP, domain, URL or hash is on the site's indicator lists.",
                json!({"type": "object", "properties": {"value": {"type": "string"}},
                       "required": ["value"]}),
            ));
        }
        for connector in &self.connectors {
            tools.extend(connector.tools());
        }
        tools
    }

    fn call<'a>(
        &'a self,
        scope: &'a Scope,
        name: &'a str,
        arguments: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<String, ToolError>> + Send + 'a>> {
        Box::pin(async move {
            let args: Value = serde_json::from_str(arguments)
                .map_err(|e| ToolError::Arguments(format!("arguments are not JSON: {e}")))?;
            match name {
                "memory.host_activity" => self.host_activity(scope, &args),
                "memory.rule_history" => self.rule_history(scope, &args),
                "memory.recall" => self.recall(scope).await,
                "alerts.search" => self.search_alerts(scope, &args),
                "attack.lookup" => self.attack_lookup(&args),
                "ioc.lookup" => self.ioc_lookup(&args),
                other => {
                    for connector in &self.connectors {
                        if connector.tools().iter().any(|t| t.function.name == other) {
                            return connector.call(scope, other, arguments).await;
                        }
                    }
                    Err(ToolError::Unknown(other.to_owned()))
                }
            }
        })
    }
}

fn time_arg(args: &Value, key: &str) -> Result<Option<i64>, ToolError> {
    match args[key].as_str() {
        None | Some("") => Ok(None),
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| Some(t.timestamp_millis()))
            .map_err(|e| ToolError::Arguments(format!("{key} must be an RFC 3339 time: {e}"))),
    }
}

fn rfc3339(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}
