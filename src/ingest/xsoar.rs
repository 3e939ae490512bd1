//! Cortex XSOAR as an alert source: the incident search API, and incidents mapped to alerts.
//!
//! `POST <url>/incidents/search` with `{"filter": {"query", "fromDate", "page", "size",
//! "sort": created ascending}}` returns `{"total", "data": [incident]}`. XSOAR 6 takes the API
//! key in `Authorization`; XSOAR 8 (and XSIAM) also needs the key's id in `x-xdr-auth-id`
//! (`api_key_id`), and its `url` includes the `/xsoar/public/v1` prefix.
//!
//! Every incident field is untrusted: a malformed incident is counted and skipped, never a
//! crash; text is kept as data for the roles to quote.
//!
//! Stateless: the poller (`crate::actors::xsoar`) keeps the cursor and the note queue.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::proto::Alert;
use crate::secret::Secret;

/// XSOAR errors: a refused setting, the API unreachable or answering badly, an incident that
/// is not an alert.
#[derive(Debug, thiserror::Error)]
pub enum XsoarError {
    /// A setting is refused.
    #[error("{0}")]
    Config(String),
    /// The API address or client is refused.
    #[error(transparent)]
    Outbound(#[from] crate::outbound::OutboundError),
    /// The request did not get an answer.
    #[error("XSOAR unreachable: {0}")]
    Unreachable(#[source] reqwest::Error),
    /// The answer broke off.
    #[error("reading XSOAR's answer: {0}")]
    Read(#[source] reqwest::Error),
    /// The answer is larger than the bound.
    #[error("XSOAR's answer is larger than {0} bytes: refused")]
    TooLarge(usize),
    /// The API refused the request.
    #[error("XSOAR answered {status}: {excerpt}")]
    Status {
        /// HTTP status.
        status: reqwest::StatusCode,
        /// The start of the answer.
        excerpt: String,
    },
    /// The answer is not JSON.
    #[error("XSOAR answered unreadable JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// An incident that cannot become an alert.
    #[error("{0}")]
    Incident(String),
}

/// `[xsoar]`: where incidents come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct XsoarConfig {
    /// Base URL of the API (XSOAR 8: `https://api-<tenant>/xsoar/public/v1`); empty: off.
    pub url: String,
    /// API key (`SOC_XSOAR_API_KEY`).
    pub api_key: Option<Secret>,
    /// XSOAR 8 API key id, sent as `x-xdr-auth-id` (`SOC_XSOAR_API_KEY_ID`); unset: XSOAR 6.
    pub api_key_id: Option<String>,
    /// Incident query (XSOAR query language).
    pub query: String,
    /// Seconds between polls.
    pub poll_s: u64,
    /// Incidents per page.
    pub page_size: u32,
    /// Where the first poll starts (RFC 3339), before any cursor is stored; empty: now.
    pub start: String,
    /// The site (tenant) these incidents belong to.
    pub site: Option<String>,
    /// Timeout of each request, ms.
    pub timeout_ms: u64,
    /// Write the triage and the IR plan of each XSOAR incident to its war room
    /// (`POST /entry`). Off by default.
    pub write_notes: bool,
    /// Learn from the analysts' closures: each incident closed with one of the close reasons
    /// below becomes a `DispositionRecorded` (known at its close time) that every process's
    /// reasoner learns from. Off by default.
    pub learn_closures: bool,
    /// Close reasons that mean "an attack: escalated" (as this SOC names them).
    pub escalate_close_reasons: Vec<String>,
    /// Close reasons that mean "closed: benign or a false alarm". Other reasons teach nothing
    /// (counted and logged).
    pub benign_close_reasons: Vec<String>,
}

impl Default for XsoarConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            api_key: None,
            api_key_id: None,
            query: "-status:closed".into(),
            poll_s: 30,
            page_size: 100,
            start: String::new(),
            site: None,
            timeout_ms: 15_000,
            write_notes: false,
            learn_closures: false,
            escalate_close_reasons: vec!["True Positive".into()],
            benign_close_reasons: vec![
                "False Positive".into(),
                "Benign True Positive".into(),
                "Benign".into(),
                "Duplicate".into(),
            ],
        }
    }
}

impl XsoarConfig {
    /// Whether XSOAR is polled.
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }

    /// Checks the URL, the key and the numbers.
    pub fn validate(&self) -> Result<(), XsoarError> {
        if !self.enabled() {
            return Ok(());
        }
        crate::outbound::api_url("xsoar.url", &self.url)?;
        if self.api_key.as_ref().is_none_or(|k| k.expose().is_empty()) {
            return Err(XsoarError::Config(
                "xsoar.url is set but there is no API key (SOC_XSOAR_API_KEY)".into(),
            ));
        }
        if self.poll_s == 0 || self.page_size == 0 || self.page_size > 1000 {
            return Err(XsoarError::Config(
                "xsoar.poll_s must be at least 1, page_size 1 to 1000".into(),
            ));
        }
        if !self.start.is_empty() && chrono::DateTime::parse_from_rfc3339(&self.start).is_err() {
            return Err(XsoarError::Config(format!(
                "xsoar.start {:?} is not an RFC 3339 time",
                self.start
            )));
        }
        Ok(())
    }
}

/// Largest search answer read, bytes (a page of 1,000 large incidents fits).
const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// The body, refused past `max` bytes.
async fn read_capped(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, XsoarError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(XsoarError::Read)? {
        if body.len() + chunk.len() > max {
            return Err(XsoarError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An XSOAR API client.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    key: Secret,
    key_id: Option<String>,
}

impl Client {
    /// A client of `config`'s API (`None` when XSOAR is off).
    pub fn new(config: &XsoarConfig) -> Result<Option<Self>, XsoarError> {
        let Some(key) = config.api_key.clone().filter(|_| config.enabled()) else {
            return Ok(None);
        };
        let http = crate::outbound::api_client(config.timeout_ms)?;
        Ok(Some(Self {
            http,
            base: config.url.trim_end_matches('/').to_owned(),
            key,
            key_id: config.api_key_id.clone(),
        }))
    }

    /// One page of incidents closed at or after `from` (RFC 3339), earliest closed first.
    pub(crate) async fn search_closed(
        &self,
        from: &str,
        page: u32,
        size: u32,
    ) -> Result<Vec<Value>, XsoarError> {
        self.search_by(json!({
            "query": "status:closed", "fromClosedDate": from, "page": page, "size": size,
            "sort": [{"field": "closed", "asc": true}]
        }))
        .await
    }

    /// One page of incidents created at or after `from` (RFC 3339), oldest first.
    pub async fn search(
        &self,
        query: &str,
        from: &str,
        page: u32,
        size: u32,
    ) -> Result<Vec<Value>, XsoarError> {
        self.search_by(json!({
            "query": query, "fromDate": from, "page": page, "size": size,
            "sort": [{"field": "created", "asc": true}]
        }))
        .await
    }

    /// `POST /incidents/search` with `filter`: the incidents of the page.
    async fn search_by(&self, filter: Value) -> Result<Vec<Value>, XsoarError> {
        let body = self
            .post("incidents/search", &json!({ "filter": filter }))
            .await?;
        let mut answer: Value = serde_json::from_slice(&body).map_err(XsoarError::Json)?;
        Ok(match answer.get_mut("data").map(Value::take) {
            Some(Value::Array(data)) => data,
            // No incidents: XSOAR sends `"data": null`.
            _ => Vec::new(),
        })
    }
}

impl Client {
    /// Adds a markdown note to `incident`'s war room (`POST /entry`).
    pub(crate) async fn add_entry(&self, incident: &str, markdown: &str) -> Result<(), XsoarError> {
        let body = json!({"id": incident, "investigationId": incident, "data": markdown,
                          "markdown": true});
        self.post("entry", &body).await.map(drop)
    }

    /// `POST <url>/<path>` with the API key (and its id, XSOAR 8); the answer's body, at most
    /// [`MAX_RESPONSE`] bytes, or the error with the start of XSOAR's answer.
    async fn post(&self, path: &str, body: &Value) -> Result<Vec<u8>, XsoarError> {
        let mut request = self
            .http
            .post(format!("{}/{path}", self.base))
            .header("Authorization", self.key.expose())
            .header("Accept", "application/json")
            .json(body);
        if let Some(id) = &self.key_id {
            request = request.header("x-xdr-auth-id", id);
        }
        let response = request.send().await.map_err(XsoarError::Unreachable)?;
        let status = response.status();
        let body = read_capped(response, MAX_RESPONSE).await?;
        if !status.is_success() {
            let excerpt: String = String::from_utf8_lossy(&body).chars().take(300).collect();
            return Err(XsoarError::Status { status, excerpt });
        }
        Ok(body)
    }
}

/// The XSOAR incident of a SOC ticket (`xsoar-<id>`), if it came from XSOAR.
pub(crate) fn incident_of(ticket: &str) -> Option<&str> {
    ticket.strip_prefix("xsoar-").filter(|id| {
        !id.is_empty()
            && id.len() <= 64
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

/// The war-room note of an event, for tickets that came from XSOAR: `(note id, incident,
/// markdown)` for a triage or an IR plan, `None` for anything else. Alert text is escaped and
/// defanged: a note cannot carry an attacker's link or formatting.
pub(crate) fn note_of(event: &crate::proto::Event) -> Option<(String, String, String)> {
    use crate::proto::Event;
    use crate::text::md;
    match event {
        Event::AlertTriaged(t) => {
            let incident = incident_of(&t.case.ticket)?;
            let mut note = format!(
                "**soc-runtime triage** ({}): {:?}, confidence {:.2}, priority {}\n\n{}",
                if t.meta.reasoner == crate::proto::ReasonerKind::Llm {
                    "model"
                } else {
                    "rules"
                },
                t.verdict,
                t.confidence,
                t.priority,
                md(&t.rationale)
            );
            if let Some(why) = &t.meta.needs_human_review {
                note.push_str(&format!("\n\nNeeds human review: {}", md(why)));
            }
            Some((
                format!("{}/triage", t.case.ticket),
                incident.to_owned(),
                note,
            ))
        }
        Event::IrPlan(p) => {
            let incident = incident_of(&p.case.ticket)?;
            let mut note = format!(
                "**soc-runtime IR plan** ({:?}): {}\n\nContainment (proposed; each waits for \
                 a human decision):",
                p.severity,
                md(&p.summary)
            );
            for step in &p.containment {
                note.push_str(&format!(
                    "\n- {} on {}: {}",
                    md(&step.action),
                    md(&step.target),
                    md(&step.description)
                ));
            }
            if p.containment.is_empty() {
                note.push_str(" none");
            }
            Some((format!("{}/plan", p.case.ticket), incident.to_owned(), note))
        }
        _ => None,
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The first value of `incident`'s labels of any of `types`, or of its custom fields `keys`.
fn field(incident: &Value, types: &[&str], keys: &[&str]) -> Option<String> {
    let custom = incident.get("CustomFields");
    keys.iter()
        .find_map(|k| text(custom.and_then(|c| c.get(*k))))
        .or_else(|| {
            incident
                .get("labels")
                .and_then(Value::as_array)?
                .iter()
                .find(|l| {
                    l.get("type")
                        .and_then(Value::as_str)
                        .is_some_and(|t| types.iter().any(|x| x.eq_ignore_ascii_case(t)))
                })
                .and_then(|l| text(l.get("value")))
        })
}

fn rfc3339(v: Option<&Value>) -> Option<String> {
    let t = chrono::DateTime::parse_from_rfc3339(v?.as_str()?).ok()?;
    Some(
        t.with_timezone(&chrono::Utc)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

/// What a closed incident says the analysts decided, by `closeReason` and the configured
/// reasons (compared case-insensitively): `None` for a reason that teaches nothing.
pub(crate) fn disposition_of(
    incident: &Value,
    config: &XsoarConfig,
) -> Option<crate::proto::Disposition> {
    let reason = text(incident.get("closeReason"))?;
    let is = |list: &[String]| list.iter().any(|r| r.trim().eq_ignore_ascii_case(&reason));
    if is(&config.escalate_close_reasons) {
        Some(crate::proto::Disposition::Escalate)
    } else if is(&config.benign_close_reasons) {
        Some(crate::proto::Disposition::Close)
    } else {
        None
    }
}

/// When `incident` was closed (RFC 3339, UTC, ms), if it says.
pub(crate) fn closed_at(incident: &Value) -> Option<String> {
    rfc3339(incident.get("closed"))
}

/// The incident's ticket id in the SOC: `xsoar-<id>`.
pub(crate) fn ticket_of(id: &str) -> String {
    format!("xsoar-{id}")
}

/// Maps an incident to an alert, or says why it cannot be.
pub(crate) fn to_alert(incident: &Value, site: Option<&str>) -> Result<Alert, XsoarError> {
    let id = text(incident.get("id"))
        .ok_or_else(|| XsoarError::Incident("incident without an id".into()))?;
    if id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(XsoarError::Incident(format!(
            "incident id {id:?} is not an XSOAR id"
        )));
    }
    let created = rfc3339(incident.get("created")).ok_or_else(|| {
        XsoarError::Incident(format!("incident {id}: no RFC 3339 `created` time"))
    })?;
    let occurred = rfc3339(incident.get("occurred")).unwrap_or_else(|| created.clone());
    let modified = rfc3339(incident.get("modified")).unwrap_or_else(|| created.clone());
    let src_ips: Vec<String> = field(incident, &["SourceIP", "src_ip", "srcip"], &["sourceip"])
        .into_iter()
        .flat_map(|v| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| s.parse::<std::net::IpAddr>().is_ok())
                .collect::<Vec<_>>()
        })
        .take(10)
        .collect();
    // XSOAR's own severity scale: 0 unknown, 1 informational, 2 low, 3 medium, 4 high,
    // 5 critical.
    let severity = incident
        .get("severity")
        .and_then(Value::as_f64)
        .and_then(|s| match s as i64 {
            1 => Some("informational"),
            2 => Some("low"),
            3 => Some("medium"),
            4 => Some("high"),
            5 => Some("critical"),
            _ => None,
        });
    Ok(Alert {
        vendor: severity.map(|s| crate::proto::VendorMeta {
            severity: Some(s.to_owned()),
            ..crate::proto::VendorMeta::default()
        }),
        ticket_id: ticket_of(&id),
        site: site.map(str::to_owned),
        source: text(incident.get("sourceBrand")).map_or_else(
            || "xsoar".to_owned(),
            |b| b.to_ascii_lowercase().replace(' ', "_"),
        ),
        rule_id: text(incident.get("type")).unwrap_or_else(|| "Unclassified".into()),
        rule_name: text(incident.get("name")).unwrap_or_else(|| format!("XSOAR incident {id}")),
        host: field(incident, &["Host", "hostname"], &["hostname", "devicename"])
            .unwrap_or_else(|| "unknown".into()),
        user: field(
            incident,
            &["User", "username"],
            &["username", "accountname"],
        ),
        src_ips,
        first_seen: occurred.min(created.clone()),
        last_seen: modified.max(created),
        alert_count: 1,
        ..Alert::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incidents_map_to_alerts_and_bad_ones_are_refused() {
        let incident = json!({
            "id": "1042", "name": "Brute force on web-1", "type": "Authentication",
            "created": "2026-11-20T10:00:00.123+02:00", "occurred": "2026-11-20T07:59:00Z",
            "modified": "2026-11-20T08:10:00Z", "sourceBrand": "Splunk Py",
            "labels": [{"type": "SourceIP", "value": "203.0.113.9, not-an-ip"},
                       {"type": "User", "value": "alice"}],
            "CustomFields": {"hostname": "web-1"}
        });
        let a = to_alert(&incident, Some("hq")).unwrap();
        assert_eq!(a.ticket_id, "xsoar-1042");
        assert_eq!(
            (a.host.as_str(), a.user.as_deref()),
            ("web-1", Some("alice"))
        );
        assert_eq!(a.src_ips, ["203.0.113.9"]);
        assert_eq!(a.source, "splunk_py");
        assert_eq!(a.first_seen, "2026-11-20T07:59:00.000Z");
        assert_eq!(a.last_seen, "2026-11-20T08:10:00.000Z");
        assert_eq!(a.site.as_deref(), Some("hq"));
        for bad in [
            json!({"name": "no id", "created": "2026-11-20T10:00:00Z"}),
            json!({"id": "../x", "created": "2026-11-20T10:00:00Z"}),
            json!({"id": "7", "created": "yesterday"}),
            json!("not an object"),
        ] {
            assert!(to_alert(&bad, None).is_err(), "{bad}");
        }
    }
}
