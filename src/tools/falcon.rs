//! CrowdStrike Falcon, read-only: a site connector giving the roles a host's EDR alerts, its
//! device record and a process's details.
//!
//! It authenticates with an API client's id and secret (OAuth2 client credentials, `POST
//! /oauth2/token`) and asks for nothing else: Falcon grants the scopes set on the API client,
//! so give that client read scopes only (Alerts: read, Hosts: read, IOCs: read). The connector
//! itself can only reach the read endpoints in [`READ_PATHS`]; any other path is refused before
//! a request is made, so no tool can contain a host, close a detection or change anything.
//!
//! Model-written arguments go into Falcon Query Language filters, so they are checked against
//! strict patterns (host names, device and process ids) and refused otherwise: a tool call can
//! never widen its own filter. Alerts are capped at the case's last alert, like every tool.
//!
//! State: the access token, cached until a minute before it expires; a restart fetches a new
//! one.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::ToolsError;
use crate::llm::Tool;
use crate::llm::reason::{Scope, ToolError, ToolProvider};
use crate::secret::Secret;

/// Every path the connector may request (the token endpoint and read endpoints only).
pub const READ_PATHS: &[&str] = &[
    "/oauth2/token",
    "/alerts/queries/alerts/v2",
    "/alerts/entities/alerts/v2",
    "/devices/queries/devices/v1",
    "/devices/entities/devices/v2",
    "/processes/entities/processes/v1",
];

/// Most alerts one call returns.
const MAX_ALERTS: usize = 20;
/// Characters kept of long text fields (descriptions, command lines).
const TEXT_CHARS: usize = 300;

/// `[tools.falcon]`: the CrowdStrike Falcon connector. Off unless both the client id and the
/// secret are set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FalconConfig {
    /// API base URL for the cloud of the customer ID (`https://api.us-2.crowdstrike.com`, ...).
    pub base_url: String,
    /// The API client's id (`SOC_FALCON_CLIENT_ID`).
    pub client_id: String,
    /// The API client's secret: better in `SOC_FALCON_CLIENT_SECRET` than in the file.
    pub client_secret: Option<Secret>,
    /// Longest time one request may take, ms.
    pub timeout_ms: u64,
    /// The sites (tenants) whose hosts this Falcon tenant covers; cases of other sites get no
    /// Falcon tools. Empty: every site (one tenant).
    pub sites: Vec<String>,
}

impl Default for FalconConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api.crowdstrike.com".into(),
            client_id: String::new(),
            client_secret: None,
            timeout_ms: 10_000,
            sites: Vec::new(),
        }
    }
}

/// The connector.
pub struct Falcon {
    sites: Vec<String>,
    http: reqwest::Client,
    base: String,
    client_id: String,
    secret: Secret,
    token: tokio::sync::Mutex<Option<(Secret, Instant)>>,
}

impl std::fmt::Debug for Falcon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Falcon")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Falcon {
    /// The connector `config` describes; `None` when it is not configured.
    pub fn from_config(config: &FalconConfig) -> Result<Option<Self>, ToolsError> {
        let secret = config
            .client_secret
            .clone()
            .filter(|s| !s.expose().is_empty());
        let (client_id, secret) = match (config.client_id.trim(), secret) {
            ("", None) => return Ok(None),
            (id, Some(secret)) if !id.is_empty() => (id.to_owned(), secret),
            _ => {
                return Err(ToolsError::Falcon(
                    "client_id and client_secret go together (set both, or neither)".into(),
                ));
            }
        };
        let base = config.base_url.trim_end_matches('/').to_owned();
        crate::outbound::api_url("base_url", &base)?;
        // No redirects: the token must never follow one, and only READ_PATHS may be reached.
        let http = crate::outbound::api_client(config.timeout_ms)?;
        Ok(Some(Self {
            sites: config.sites.clone(),
            http,
            base,
            client_id,
            secret,
            token: tokio::sync::Mutex::new(None),
        }))
    }

    async fn token(&self, renew: bool) -> Result<Secret, ToolError> {
        let mut cached = self.token.lock().await;
        if !renew
            && let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let response = self
            .http
            .post(format!("{}/oauth2/token", self.base))
            .form(&[
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.secret.expose()),
            ])
            .send()
            .await
            .map_err(|e| {
                ToolError::Failed(format!("Falcon token request failed: {}", without_url(&e)))
            })?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(ToolError::Failed(format!(
                "Falcon refused the API client: {status} {}",
                errors(&body)
            )));
        }
        let token = body["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or(ToolError::Failed(
                "Falcon's token response holds no access_token".into(),
            ))?;
        let lifetime = body["expires_in"]
            .as_u64()
            .unwrap_or(1799)
            .saturating_sub(60);
        let token = Secret::new(token);
        *cached = Some((
            token.clone(),
            Instant::now() + Duration::from_secs(lifetime),
        ));
        Ok(token)
    }

    /// A GET (or, with `body`, a read-only POST) of one of [`READ_PATHS`]; renews the token
    /// once on 401.
    async fn read(
        &self,
        path: &'static str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> Result<Value, ToolError> {
        if !READ_PATHS.contains(&path) || path == "/oauth2/token" {
            return Err(ToolError::Failed(format!("{path} is not a read endpoint")));
        }
        for renew in [false, true] {
            let token = self.token(renew).await?;
            let url = format!("{}{path}", self.base);
            let request = match &body {
                Some(b) => self.http.post(url).json(b),
                None => self.http.get(url),
            };
            let response = request
                .query(query)
                .bearer_auth(token.expose())
                .send()
                .await
                .map_err(|e| {
                    ToolError::Failed(format!("Falcon request failed: {}", without_url(&e)))
                })?;
            let status = response.status();
            if status == reqwest::StatusCode::UNAUTHORIZED && !renew {
                continue;
            }
            let value: Value = response.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                return Err(ToolError::Failed(format!(
                    "Falcon answered {status} {}",
                    errors(&value)
                )));
            }
            return Ok(value);
        }
        Err(ToolError::Failed("Falcon refused the renewed token".into()))
    }

    async fn alerts(&self, scope: &Scope, args: &Value) -> Result<String, ToolError> {
        let host = host_arg(args)?;
        let limit = args["limit"]
            .as_u64()
            .map_or(10, |n| (n as usize).clamp(1, MAX_ALERTS));
        let until = chrono::DateTime::from_timestamp_millis(scope.until_ms)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let filter = format!("device.hostname:'{host}'+created_timestamp:<='{until}'");
        let ids = self
            .read(
                "/alerts/queries/alerts/v2",
                &[
                    ("filter", filter),
                    ("limit", limit.to_string()),
                    ("sort", "created_timestamp.desc".into()),
                ],
                None,
            )
            .await?;
        let ids: Vec<&str> = resources(&ids).filter_map(Value::as_str).collect();
        if ids.is_empty() {
            return Ok(json!({"host": host, "until": until, "alerts": []}).to_string());
        }
        let details = self
            .read(
                "/alerts/entities/alerts/v2",
                &[],
                Some(json!({ "composite_ids": ids })),
            )
            .await?;
        let alerts: Vec<Value> = resources(&details)
            .map(|a| {
                json!({
                    "id": a["composite_id"], "created": a["created_timestamp"],
                    "severity": a["severity_name"], "name": a["display_name"],
                    "tactic": a["tactic"], "technique": a["technique"],
                    "technique_id": a["technique_id"], "status": a["status"],
                    "filename": a["filename"], "cmdline": clip(&a["cmdline"]),
                    "description": clip(&a["description"]),
                })
            })
            .collect();
        Ok(json!({"host": host, "until": until, "alerts": alerts}).to_string())
    }

    async fn host(&self, args: &Value) -> Result<String, ToolError> {
        let host = host_arg(args)?;
        let ids = self
            .read(
                "/devices/queries/devices/v1",
                &[
                    ("filter", format!("hostname:'{host}'")),
                    ("limit", "5".into()),
                ],
                None,
            )
            .await?;
        let query: Vec<(&str, String)> = resources(&ids)
            .filter_map(Value::as_str)
            .map(|id| ("ids", id.to_owned()))
            .collect();
        if query.is_empty() {
            return Ok(json!({"host": host, "devices": []}).to_string());
        }
        let details = self
            .read("/devices/entities/devices/v2", &query, None)
            .await?;
        let devices: Vec<Value> = resources(&details)
            .map(|d| {
                json!({
                    "device_id": d["device_id"], "hostname": d["hostname"],
                    "platform": d["platform_name"], "os": d["os_version"],
                    "local_ip": d["local_ip"], "external_ip": d["external_ip"],
                    "last_seen": d["last_seen"], "status": d["status"],
                    "tags": d["tags"], "groups": d["groups"],
                })
            })
            .collect();
        Ok(json!({"host": host, "devices": devices}).to_string())
    }

    async fn process(&self, scope: &Scope, args: &Value) -> Result<String, ToolError> {
        let device = args["device_id"]
            .as_str()
            .filter(|d| d.len() == 32 && d.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or(ToolError::Arguments(
                "device_id must be a Falcon device id (32 hex digits)".into(),
            ))?;
        let process = match &args["process_id"] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => String::new(),
        };
        if process.is_empty() || process.len() > 20 || !process.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(ToolError::Arguments(
                "process_id must be a Falcon process id (digits)".into(),
            ));
        }
        let found = self
            .read(
                "/processes/entities/processes/v1",
                &[("ids", format!("pid:{device}:{process}"))],
                None,
            )
            .await?;
        // A process started after the case's last alert is not the case's.
        let started_by_then = |p: &&Value| {
            p["start_timestamp"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .is_none_or(|t| t.timestamp_millis() <= scope.until_ms)
        };
        let processes: Vec<Value> = resources(&found)
            .filter(started_by_then)
            .map(|p| {
                json!({
                    "process_id": p["process_id"], "file_name": p["file_name"],
                    "command_line": clip(&p["command_line"]),
                    "start": p["start_timestamp"], "stop": p["stop_timestamp"],
                })
            })
            .collect();
        Ok(json!({"device_id": device, "processes": processes}).to_string())
    }
}

impl ToolProvider for Falcon {
    fn tools(&self) -> Vec<Tool> {
        let host = json!({"type": "object", "properties": {"host": {"type": "string"}},
                          "required": ["host"]});
        vec![
            Tool::function(
                "falcon.alerts",
                "CrowdStrike Falcon alerts on a host up to the case's time, newest first.",
                json!({"type": "object", "properties": {
                    "host": {"type": "string"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_ALERTS}},
                    "required": ["host"]}),
            ),
            Tool::function(
                "falcon.host",
                "The Falcon device record of a host (platform, IPs, last seen, status).",
                host,
            ),
            Tool::function(
                "falcon.process",
                "A process on a Falcon device: file, command line, start and stop.",
                json!({"type": "object", "properties": {
                    "device_id": {"type": "string"}, "process_id": {"type": "string"}},
                    "required": ["device_id", "process_id"]}),
            ),
        ]
    }

    fn call<'a>(
        &'a self,
        scope: &'a Scope,
        name: &'a str,
        arguments: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<String, ToolError>> + Send + 'a>> {
        Box::pin(async move {
            if !self.sites.is_empty() && !self.sites.contains(&scope.site) {
                return Err(ToolError::Unavailable(format!(
                    "Falcon does not cover site {:?} (it covers {})",
                    scope.site,
                    self.sites.join(", ")
                )));
            }
            let args: Value = serde_json::from_str(arguments)
                .map_err(|e| ToolError::Arguments(format!("arguments are not JSON: {e}")))?;
            match name {
                "falcon.alerts" => self.alerts(scope, &args).await,
                "falcon.host" => self.host(&args).await,
                "falcon.process" => self.process(scope, &args).await,
                other => Err(ToolError::Unknown(other.to_owned())),
            }
        })
    }
}

/// A host name fit for an FQL filter: letters, digits, `.`, `-`, `_`.
fn host_arg(args: &Value) -> Result<&str, ToolError> {
    args["host"]
        .as_str()
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 253
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        })
        .ok_or_else(|| {
            ToolError::Arguments("host must be a host name (letters, digits, '.', '-', '_')".into())
        })
}

fn resources(v: &Value) -> impl Iterator<Item = &Value> {
    v["resources"].as_array().into_iter().flatten()
}

fn errors(body: &Value) -> String {
    let messages: Vec<&str> = body["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["message"].as_str())
        .collect();
    clip(&Value::from(messages.join("; ")))
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn clip(v: &Value) -> Value {
    match v.as_str() {
        Some(s) if s.chars().count() > TEXT_CHARS => Value::from(format!(
            "{}...",
            s.chars().take(TEXT_CHARS).collect::<String>()
        )),
        _ => v.clone(),
    }
}

/// A request error without its URL (query strings hold filters, never secrets, but keep
/// errors short).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_must_be_whole_and_https() {
        let none = FalconConfig::default();
        assert!(Falcon::from_config(&none).unwrap().is_none());
        let half = FalconConfig {
            client_id: "id".into(),
            ..FalconConfig::default()
        };
        assert!(
            Falcon::from_config(&half)
                .unwrap_err()
                .to_string()
                .contains("go together")
        );
        let plain = FalconConfig {
            client_id: "id".into(),
            client_secret: Some(Secret::new("s")),
            base_url: "http://falcon.example".into(),
            ..FalconConfig::default()
        };
        assert!(
            Falcon::from_config(&plain)
                .unwrap_err()
                .to_string()
                .contains("must be https")
        );
    }

    #[test]
    fn host_names_that_could_widen_a_filter_are_refused() {
        assert_eq!(host_arg(&json!({"host": "web-01.corp"})), Ok("web-01.corp"));
        for bad in ["x'+hostname:*", "a b", "", "x'"] {
            assert!(host_arg(&json!({ "host": bad })).is_err(), "{bad}");
        }
    }
}
