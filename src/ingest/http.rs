//! HTTP ingest: `POST /ingest/<source>`, for SIEMs and shippers that push (a Logstash or
//! Vector `http` output, a Splunk HEC forwarder, a SOAR webhook).
//!
//! A body holds one record, NDJSON (one record a line), or Splunk-HEC-style envelopes
//! (`{"event": <record>, ...}`, one a line or back to back); a record is JSON in the source's
//! format (or, in an envelope, the record's own text: a CSV row). Each source names its format,
//! its site and its token in `[ingest.sources.<name>]`; the token comes as `Authorization:
//! Bearer <token>` (or HEC's `Authorization: Splunk <token>`), compared through a hash so its
//! timing tells nothing. Unknown sources and wrong tokens get the same 401.
//!
//! Raw alerts are grouped as they arrive, like a followed file's: a case is published at its
//! first alert, its repeats as `CaseUpdated` each second. The request is answered once the
//! bus has taken its cases (200 with counts and each refused record's reason; 400 when not one
//! record was usable); 413 past `max_body_bytes` or `records_per_s` records in one request,
//! 429 (with `Retry-After`) past the source's rate, 503 when the bus refuses (nothing of the
//! request counts as taken: send it again).
//!
//! What a restart loses: the counts of open cases (the cases were published; later repeats
//! update them from a smaller count, which readers ignore as they keep the largest).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::format::{Decoder, FeedFormat};
use super::group::{CSV_HEADER, StreamGrouper};
use super::jsonl::{FeedLine, LineError, grouped_line, ticket_line};
use super::mapping::Mapping;
use crate::bus::{Bus, Outcome};
use crate::secret::Secret;

/// `produced_by` of the envelopes HTTP ingest writes.
const PRODUCER: &str = "source:http";
/// Refused records described in one answer.
const ERRORS_SHOWN: usize = 20;

/// `[ingest]`: sources that push alerts over HTTP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Largest request body, bytes (413 past it).
    pub max_body_bytes: usize,
    /// The sources allowed to post, by name (`POST /ingest/<name>`).
    pub sources: BTreeMap<String, HttpSource>,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            sources: BTreeMap::new(),
        }
    }
}

/// `[ingest.sources.<name>]`: one pushing source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSource {
    /// What it posts, as `[feed] format` (`auto`: recognised from each request's first record).
    pub format: FeedFormat,
    /// The site or tenant of records that name none.
    pub site: Option<String>,
    /// Where the fields are, for format `mapped`.
    pub mapping: Option<Mapping>,
    /// The token it presents; better set as `SOC_INGEST_TOKEN_<NAME>` (the name upper-cased,
    /// `-` as `_`) than written here.
    pub token: Option<Secret>,
    /// Records per second it may send: a bucket of as many, refilled continuously; also the
    /// most records one request may hold.
    pub records_per_s: u32,
    /// Hours of feed time a case stays open past its window.
    pub keep_open_hours: u32,
    /// How raw alerts fold into cases.
    pub grouping: super::group::GroupingConfig,
    /// The host of a Suricata EVE alert: `flow` or `sensor`.
    pub eve_host: super::format::EveHost,
}

impl Default for HttpSource {
    fn default() -> Self {
        Self {
            format: FeedFormat::Auto,
            site: None,
            mapping: None,
            token: None,
            records_per_s: 1000,
            keep_open_hours: 24,
            grouping: super::group::GroupingConfig::default(),
            eve_host: super::format::EveHost::Flow,
        }
    }
}

impl IngestConfig {
    /// The environment variable a source's token may come from.
    pub fn token_var(name: &str) -> String {
        let name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        format!("SOC_INGEST_TOKEN_{name}")
    }

    /// Takes each source's token from the environment when it is set there.
    pub fn apply_env(&mut self, var: &impl Fn(&str) -> Option<String>) {
        for (name, source) in &mut self.sources {
            if let Some(token) = var(&Self::token_var(name)) {
                source.token = Some(Secret::new(token));
            }
        }
    }

    /// Checks the section.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_body_bytes == 0 {
            return Err("ingest.max_body_bytes must be above 0".to_owned());
        }
        for (name, source) in &self.sources {
            let at = format!("ingest.sources.{name}");
            if name.is_empty()
                || name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!(
                    "{at}: a source name is 1 to 64 letters, digits, - or _"
                ));
            }
            match &source.token {
                Some(t) if t.expose().len() >= 16 => {}
                Some(_) => return Err(format!("{at}: the token must be at least 16 characters")),
                None => {
                    return Err(format!(
                        "{at} has no token: set {} (or token in the file)",
                        Self::token_var(name)
                    ));
                }
            }
            if source.records_per_s == 0 {
                return Err(format!("{at}.records_per_s must be above 0"));
            }
            super::format::FeedConfig {
                format: source.format,
                site: source.site.clone(),
                mapping: source.mapping.clone(),
                grouping: source.grouping.clone(),
                ..super::format::FeedConfig::default()
            }
            .validate()
            .map_err(|e| format!("{at}: {e}"))?;
        }
        Ok(())
    }
}

/// Counters of one source.
#[derive(Debug, Default)]
pub struct IngestStats {
    records: AtomicU64,
    cases: AtomicU64,
    updates: AtomicU64,
    duplicates: AtomicU64,
    skipped: AtomicU64,
    rejected: Mutex<BTreeMap<String, (u64, String)>>,
    refused: Mutex<BTreeMap<u16, u64>>,
}

/// What one source has sent, for the summary and `/metrics`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct IngestSnapshot {
    /// Records received in accepted requests.
    pub records: u64,
    /// Cases opened (published).
    pub cases: u64,
    /// Case updates published.
    pub updates: u64,
    /// Cases already published (a repeat after a restart, a ticket sent twice).
    pub duplicates: u64,
    /// Records that are no alert (skipped).
    pub skipped: u64,
    /// Refused records by reason: how many, and the first one's error.
    pub rejected: BTreeMap<String, (u64, String)>,
    /// Refused requests by HTTP status.
    pub refused_requests: BTreeMap<u16, u64>,
}

impl IngestStats {
    /// A snapshot.
    pub fn snapshot(&self) -> IngestSnapshot {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        IngestSnapshot {
            records: l(&self.records),
            cases: l(&self.cases),
            updates: l(&self.updates),
            duplicates: l(&self.duplicates),
            skipped: l(&self.skipped),
            rejected: self.rejected.lock().clone(),
            refused_requests: self.refused.lock().clone(),
        }
    }

    fn refuse(&self, status: StatusCode) {
        *self.refused.lock().entry(status.as_u16()).or_insert(0) += 1;
    }
}

/// A token bucket.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// One configured source's state.
struct Source {
    name: String,
    token_hash: [u8; 32],
    config: HttpSource,
    stats: Arc<IngestStats>,
    state: tokio::sync::Mutex<Grouping>,
    bucket: Mutex<Bucket>,
}

struct Grouping {
    grouper: Option<(StreamGrouper, Decoder)>,
    last_updates: Instant,
}

/// The HTTP ingest state; it outlives restarts of the HTTP server.
pub struct Ingest {
    bus: Bus,
    sources: HashMap<String, Arc<Source>>,
    max_body: usize,
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Ingest {
    /// The state of the configured sources (`None` when none is).
    pub fn new(config: &IngestConfig, bus: Bus) -> Option<Arc<Ingest>> {
        if config.sources.is_empty() {
            return None;
        }
        let sources = config
            .sources
            .iter()
            .map(|(name, source)| {
                let source = Source {
                    name: name.clone(),
                    token_hash: hash(source.token.as_ref().map_or("", |t| t.expose())),
                    config: source.clone(),
                    stats: Arc::default(),
                    state: tokio::sync::Mutex::new(Grouping {
                        grouper: None,
                        last_updates: Instant::now(),
                    }),
                    bucket: Mutex::new(Bucket {
                        tokens: f64::from(source.records_per_s),
                        at: Instant::now(),
                    }),
                };
                (name.clone(), Arc::new(source))
            })
            .collect();
        Some(Arc::new(Ingest {
            bus,
            sources,
            max_body: config.max_body_bytes,
        }))
    }

    /// Each source's counters, by name.
    pub fn stats(&self) -> BTreeMap<String, Arc<IngestStats>> {
        self.sources
            .iter()
            .map(|(name, s)| (name.clone(), s.stats.clone()))
            .collect()
    }

    /// Publishes the updates of every source's open cases that gained alerts; the HTTP server
    /// calls it each second, so a quiet source's last repeats are not held back.
    pub(crate) async fn tick(&self) {
        for source in self.sources.values() {
            let mut state = source.state.lock().await;
            if state.last_updates.elapsed() < Duration::from_secs(1) {
                continue;
            }
            let lines = state.updates();
            if !lines.is_empty()
                && let Err(status) = self.publish(source, &mut state, lines).await
            {
                tracing::warn!(source = %source.name, status = %status, "publishing case updates failed; the open cases restart");
            }
        }
    }

    async fn publish(
        &self,
        source: &Source,
        state: &mut Grouping,
        lines: Vec<FeedLine>,
    ) -> Result<Counts, StatusCode> {
        let mut commits = Vec::new();
        let mut kinds = Vec::new();
        let via = format!("http:{}", source.name);
        for line in lines {
            let Ok(alert) = line.alert else { continue };
            match super::case_commit(alert, line.update, &via, PRODUCER) {
                Ok(commit) => {
                    commits.push(commit);
                    kinds.push(line.update);
                }
                Err(e) => tracing::warn!(error = %e, "a case could not be encoded; dropped"),
            }
        }
        let mut counts = Counts::default();
        if commits.is_empty() {
            return Ok(counts);
        }
        match self.bus.submit(commits).await {
            Ok(outcomes) => {
                for (outcome, update) in outcomes.into_iter().zip(kinds) {
                    match (outcome, update) {
                        (Outcome::Applied, false) => counts.cases += 1,
                        (Outcome::Applied, true) => counts.updates += 1,
                        (_, true) => {}
                        (_, false) => counts.duplicates += 1,
                    }
                }
                let s = &source.stats;
                s.cases.fetch_add(counts.cases, Ordering::Relaxed);
                s.updates.fetch_add(counts.updates, Ordering::Relaxed);
                s.duplicates.fetch_add(counts.duplicates, Ordering::Relaxed);
                Ok(counts)
            }
            Err(e) => {
                // The grouper counted alerts the bus did not take: it starts again, so a resent
                // request opens its cases again (dropped as duplicates if they were published).
                tracing::warn!(source = %source.name, error = %e, "the bus refused ingested alerts");
                state.grouper = None;
                Err(StatusCode::SERVICE_UNAVAILABLE)
            }
        }
    }
}

impl Grouping {
    fn updates(&mut self) -> Vec<FeedLine> {
        self.last_updates = Instant::now();
        match &mut self.grouper {
            Some((grouper, _)) => grouper
                .updates()
                .into_iter()
                .map(|g| grouped_line(0, g))
                .collect(),
            None => Vec::new(),
        }
    }
}

#[derive(Debug, Default, Serialize)]
struct Counts {
    cases: u64,
    updates: u64,
    duplicates: u64,
}

/// The answer to a post.
#[derive(Debug, Serialize)]
struct Answer {
    records: u64,
    cases_opened: u64,
    case_updates: u64,
    duplicates: u64,
    skipped: u64,
    rejected: u64,
    /// The first refused records: their position in the request (from 1) and why.
    errors: Vec<RecordError>,
}

#[derive(Debug, Serialize)]
struct RecordError {
    record: u64,
    error: String,
}

fn message(status: StatusCode, text: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": text.into() }))).into_response()
}

/// The ingest routes.
pub(crate) fn routes(ingest: Arc<Ingest>) -> axum::Router {
    let limit = ingest.max_body;
    axum::Router::new()
        .route("/ingest/{source}", post(receive))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(ingest)
}

/// The token of an `Authorization: Bearer <token>` or `Authorization: Splunk <token>` header.
fn presented(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("splunk"))
        .then(|| token.trim())
}

async fn receive(
    State(ingest): State<Arc<Ingest>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    // One answer for an unknown source and a wrong token: names cannot be probed.
    let source = ingest.sources.get(&name);
    let authorized = source
        .zip(presented(&headers))
        .is_some_and(|(s, token)| hash(token) == s.token_hash);
    let Some(source) = source.filter(|_| authorized) else {
        if let Some(s) = source {
            s.stats.refuse(StatusCode::UNAUTHORIZED);
        }
        let mut response = message(
            StatusCode::UNAUTHORIZED,
            "unknown source or wrong token (Authorization: Bearer <token>)",
        );
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            source.stats.refuse(status);
            let text = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!(
                    "the body is past {} bytes (ingest.max_body_bytes)",
                    ingest.max_body
                )
            } else {
                rejection.body_text()
            };
            return message(status, text);
        }
    };
    let records = split_body(&body, source.config.format);
    let n = records.len() as u64;
    if n == 0 {
        source.stats.refuse(StatusCode::BAD_REQUEST);
        return message(StatusCode::BAD_REQUEST, "the body holds no record");
    }
    let rate = f64::from(source.config.records_per_s);
    if n as f64 > rate {
        source.stats.refuse(StatusCode::PAYLOAD_TOO_LARGE);
        return message(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{n} records in one request; this source may send at most {} a request",
                source.config.records_per_s
            ),
        );
    }
    {
        let mut bucket = source.bucket.lock();
        let now = Instant::now();
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(rate);
        bucket.at = now;
        if bucket.tokens < n as f64 {
            let wait = ((n as f64 - bucket.tokens) / rate).ceil().max(1.0);
            drop(bucket);
            source.stats.refuse(StatusCode::TOO_MANY_REQUESTS);
            let mut response = message(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "past this source's rate of {} records a second: send again later",
                    source.config.records_per_s
                ),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("{wait}")) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return response;
        }
        bucket.tokens -= n as f64;
    }

    let mut state = source.state.lock().await;
    let mut answer = Answer {
        records: n,
        cases_opened: 0,
        case_updates: 0,
        duplicates: 0,
        skipped: 0,
        rejected: 0,
        errors: Vec::new(),
    };
    let mut out = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let index = i as u64 + 1;
        let line = match record {
            Ok(bytes) => state.line(&source.config, index, bytes),
            Err(e) => Some(FeedLine {
                line_no: index,
                alert: Err(LineError::Row(super::group::RowError::Field {
                    field: "record",
                    problem: e,
                })),
                looks_like: None,
                update: false,
            }),
        };
        match line {
            Some(FeedLine { alert: Err(e), .. }) if e.is_not_an_alert() => answer.skipped += 1,
            Some(FeedLine { alert: Err(e), .. }) => {
                answer.rejected += 1;
                let error = e.to_string();
                source
                    .stats
                    .rejected
                    .lock()
                    .entry(e.reason())
                    .or_insert((0, error.clone()))
                    .0 += 1;
                if answer.errors.len() < ERRORS_SHOWN {
                    answer.errors.push(RecordError {
                        record: index,
                        error,
                    });
                }
            }
            Some(line) => out.push(line),
            None => {}
        }
    }
    if state.last_updates.elapsed() >= Duration::from_secs(1) {
        out.extend(state.updates());
    }
    match ingest.publish(source, &mut state, out).await {
        Ok(counts) => {
            answer.cases_opened = counts.cases;
            answer.case_updates = counts.updates;
            answer.duplicates = counts.duplicates;
        }
        Err(status) => {
            source.stats.refuse(status);
            let mut response =
                message(status, "the bus could not take the alerts: send them again");
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        }
    }
    source.stats.records.fetch_add(n, Ordering::Relaxed);
    source
        .stats
        .skipped
        .fetch_add(answer.skipped, Ordering::Relaxed);
    let status = if answer.rejected == n {
        source.stats.refuse(StatusCode::BAD_REQUEST);
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    (status, Json(answer)).into_response()
}

impl Grouping {
    /// One record: a case (or update) to publish, a refusal, or nothing (a repeat that joined
    /// an open case, a CSV header).
    fn line(&mut self, config: &HttpSource, index: u64, record: &[u8]) -> Option<FeedLine> {
        let refused = |e: LineError| FeedLine {
            line_no: index,
            alert: Err(e),
            looks_like: None,
            update: false,
        };
        if self.grouper.is_none() {
            let format = config.format.resolve(record);
            if let Some(decoder) = Decoder::of(format, config.mapping.as_ref(), config.eve_host) {
                let keep = i64::from(config.keep_open_hours) * 3600;
                let grouping = config.grouping.clone();
                self.grouper = Some((StreamGrouper::new(grouping, keep), decoder));
            }
        }
        match &mut self.grouper {
            Some((grouper, decoder)) => {
                if matches!(decoder, Decoder::Csv) && record.starts_with(CSV_HEADER.as_bytes()) {
                    return None;
                }
                match decoder.parse_in(record, config.site.as_ref()) {
                    Ok(raw) => grouper
                        .push(raw, index, record)
                        .map(|g| grouped_line(index, g)),
                    Err(e) => Some(refused(LineError::Row(e))),
                }
            }
            None => Some(ticket_line(index, record, config.site.as_ref())),
        }
    }
}

/// The records of a body: CSV rows for a CSV source, else JSON values a line (several back to
/// back allowed, as HEC sends them), each unwrapped from a HEC envelope (`{"event": ...}`).
pub(crate) fn split_body(body: &[u8], format: FeedFormat) -> Vec<Result<Vec<u8>, &'static str>> {
    let mut out = Vec::new();
    for line in body.split(|&b| b == b'\n') {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        if format == FeedFormat::AitCsv && !line.starts_with(b"{") {
            out.push(Ok(line.to_vec()));
            continue;
        }
        for value in serde_json::Deserializer::from_slice(line).into_iter::<serde_json::Value>() {
            match value {
                Ok(serde_json::Value::Object(mut map))
                    if map.contains_key("event") && !map.contains_key("event_type") =>
                {
                    match map.remove("event") {
                        Some(serde_json::Value::String(text)) => out.push(Ok(text.into_bytes())),
                        Some(event) => out
                            .push(serde_json::to_vec(&event).map_err(|_| "is not encodable JSON")),
                        None => {}
                    }
                }
                Ok(value) => {
                    out.push(serde_json::to_vec(&value).map_err(|_| "is not encodable JSON"))
                }
                Err(_) => {
                    out.push(Err("is not JSON (one record, or one a line)"));
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_split_into_records_whatever_their_framing() {
        let r = |body: &str| {
            split_body(body.as_bytes(), FeedFormat::Auto)
                .into_iter()
                .map(|r| r.map(|b| String::from_utf8(b).unwrap()))
                .collect::<Vec<_>>()
        };
        assert_eq!(r(r#"{"a":1}"#), [Ok(r#"{"a":1}"#.to_owned())]);
        assert_eq!(r("{\"a\":1}\n\n{\"a\":2}\n").len(), 2);
        // HEC: envelopes back to back, the record inside.
        assert_eq!(
            r(r#"{"event":{"a":1},"sourcetype":"x"}{"event":"fox,1,n,1.2.3.4,h,W-X"}"#),
            [
                Ok(r#"{"a":1}"#.to_owned()),
                Ok("fox,1,n,1.2.3.4,h,W-X".to_owned())
            ]
        );
        // A broken line is one refusal; the next line is read.
        let got = r("{broken\n{\"a\":2}");
        assert!(got[0].is_err());
        assert_eq!(got[1], Ok(r#"{"a":2}"#.to_owned()));
        assert_eq!(
            split_body(
                b"site,time,name,ip,host,rule_id\nfox,1,n,1.2.3.4,h,W-X",
                FeedFormat::AitCsv
            )
            .len(),
            2
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

        /// Bodies are untrusted: any bytes split into records or refusals, never a panic.
        #[test]
        fn any_body_splits(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = split_body(&bytes, FeedFormat::Auto);
            let _ = split_body(&bytes, FeedFormat::AitCsv);
        }
    }

    #[test]
    fn sources_need_a_long_token_and_a_plain_name() {
        let mut config = IngestConfig::default();
        config.sources.insert("edr".into(), HttpSource::default());
        let e = config.validate().unwrap_err();
        assert!(e.contains("SOC_INGEST_TOKEN_EDR"), "{e}");
        config.apply_env(&|k: &str| (k == "SOC_INGEST_TOKEN_EDR").then(|| "short".to_owned()));
        assert!(config.validate().unwrap_err().contains("16"));
        config.apply_env(&|_: &str| Some("a-token-of-some-length".to_owned()));
        config.validate().unwrap();
        config
            .sources
            .insert("bad name".into(), config.sources["edr"].clone());
        assert!(config.validate().is_err());
    }
}
