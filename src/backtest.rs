//! `soc-runtime backtest`: replays recorded tickets through the real role actors and scores
//! "escalated to the IR Lead" against what human analysts decided.
//!
//! The harness reads the tickets file twice over, in two roles that never meet:
//! - the **feed**: each selected ticket, with `ground_truth` removed, written in time order to
//!   a scratch file that a real [`Runtime`] reads (in-memory bus, HTTP off, a scratch data
//!   directory: nothing leaves the process, nothing persists);
//! - the **scorer**: the labels, kept here, compared with the cases the run escalated, as its
//!   own store (the projection of its `soc.audit`, complete once the runtime has drained)
//!   records them.
//!
//! So no role can read the answer: it is not in the bytes they are given. Sampling may look at
//! labels (`--stratify` draws escalate and close tickets 50/50, as the seed harness does); it
//! decides which tickets are replayed, never what a role sees of them.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::config::{Backend, Config};
use crate::ingest::jsonl::parse_line;
use crate::knowledge::{DispositionFacts, Knowledge};
use crate::store::{Store, StoreError, VerdictRow};

use crate::runtime::{Runtime, StartError};
use crate::supervisor::{ExitReason, RuntimeOptions};

pub use crate::knowledge::Disposition;

/// One labelled ticket.
#[derive(Debug, Clone)]
pub struct Ticket {
    /// Ticket id.
    pub id: String,
    /// Site (scenario).
    pub site: String,
    /// First alert, ms since the epoch: replay order.
    pub first_ms: i64,
    /// Last alert, ms since the epoch: when the ticket could be closed.
    pub last_ms: i64,
    /// Rule code.
    pub rule: String,
    /// Host.
    pub host: String,
    /// Detector family.
    pub detector: String,
    /// The rule's title.
    pub title: String,
    /// Raw alerts grouped in the ticket.
    pub alert_count: u32,
    /// The vendor's fields the ticket carries.
    pub vendor: Option<crate::proto::VendorMeta>,
    /// The analysts' answer: read by the scorer only.
    pub ground_truth: Disposition,
    /// The ticket as the feed carries it, without its label.
    feed_line: String,
}

impl Ticket {
    /// The ticket as a feed carries it: without its label.
    pub fn feed_line(&self) -> &str {
        &self.feed_line
    }

    /// The ticket's disposition as prior knowledge, known from `known_ms`.
    pub fn disposition(&self, known_ms: i64) -> DispositionFacts {
        DispositionFacts {
            ticket: self.id.clone(),
            disposition: self.ground_truth,
            site: self.site.clone(),
            rule: self.rule.clone(),
            host: self.host.clone(),
            detector: self.detector.clone(),
            known_ms,
            title: self.title.clone(),
            first_ms: Some(self.first_ms),
            last_ms: Some(self.last_ms),
            alert_count: self.alert_count,
            vendor: self.vendor.clone(),
        }
    }
}

/// Which tickets to replay.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only these sites (all when empty).
    pub sites: Vec<String>,
    /// At most this many tickets.
    pub sample: Option<usize>,
    /// Draw escalate and close tickets 50/50 (needs `sample`).
    pub stratify: bool,
    /// Seed of the draw.
    pub seed: u64,
}

/// Backtest errors.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    /// The tickets file cannot be read.
    #[error("cannot read tickets file {0}: {1}")]
    Read(String, #[source] std::io::Error),
    /// A feedback delay that would let a ticket see its own disposition.
    #[error(
        "--feedback-delay must be longer than zero: a ticket's disposition becomes known only \
         after its last alert, and its own decision must never see it"
    )]
    ZeroDelay,
    /// The rulesets could not be read.
    #[error(transparent)]
    Rulesets(#[from] crate::judgment::vendor::VendorError),
    /// A line is not a labelled ticket.
    #[error("{file} line {line}: {reason}")]
    Ticket {
        /// File.
        file: String,
        /// Line number.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// Nothing to replay.
    #[error("no tickets selected (check --sites and the file)")]
    Empty,
    /// The scratch area failed.
    #[error("backtest scratch directory: {0}")]
    Scratch(#[source] std::io::Error),
    /// The runtime did not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The runtime failed during the replay.
    #[error("the replay did not finish cleanly: {0}")]
    Replay(String),
    /// The run's store could not be read.
    #[error("reading the replay's store: {0}")]
    Store(#[from] StoreError),
}

/// Reads a labelled tickets file (JSONL, plain or gzip).
pub fn load_tickets(path: &Path) -> Result<Vec<Ticket>, BacktestError> {
    let file_name = path.display().to_string();
    let read_err = |e| BacktestError::Read(file_name.clone(), e);
    let reader = crate::ingest::open_text(path).map_err(read_err)?;
    let mut tickets = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(read_err)?;
        if line.trim().is_empty() {
            continue;
        }
        let at = |reason: String| BacktestError::Ticket {
            file: file_name.clone(),
            line: i as u64 + 1,
            reason,
        };
        tickets.push(ticket_of(&line).map_err(at)?);
    }
    Ok(tickets)
}

fn ticket_of(line: &str) -> Result<Ticket, String> {
    let mut object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(line).map_err(|e| format!("not a JSON object: {e}"))?;
    let label = object
        .remove("ground_truth")
        .ok_or("no ground_truth: a backtest needs labelled tickets")?;
    let ground_truth: Disposition = serde_json::from_value(label)
        .map_err(|_| "ground_truth must be \"escalate\" or \"close\"".to_owned())?;
    let feed_line = serde_json::to_string(&object).map_err(|e| e.to_string())?;
    let alert = parse_line(feed_line.as_bytes())?;
    let time = |field: &str, value: &str| {
        chrono::DateTime::parse_from_rfc3339(value)
            .map(|t| t.timestamp_millis())
            .map_err(|e| format!("{field}: {e}"))
    };
    Ok(Ticket {
        first_ms: time("first_seen", &alert.first_seen)?,
        last_ms: time("last_seen", &alert.last_seen)?,
        id: alert.ticket_id,
        site: alert.site.unwrap_or_default(),
        rule: alert.rule_id,
        host: alert.host,
        detector: alert.source,
        title: alert.rule_name,
        alert_count: alert.alert_count,
        vendor: alert.vendor,
        ground_truth,
        feed_line,
    })
}

/// The tickets to replay, in replay (time) order.
pub fn select(tickets: Vec<Ticket>, selection: &Selection) -> Vec<Ticket> {
    let mut pool: Vec<Ticket> = tickets
        .into_iter()
        .filter(|t| selection.sites.is_empty() || selection.sites.contains(&t.site))
        .collect();
    if let Some(n) = selection.sample {
        let mut rng = fastrand::Rng::with_seed(selection.seed);
        if selection.stratify {
            let (mut esc, mut close): (Vec<_>, Vec<_>) = pool
                .into_iter()
                .partition(|t| t.ground_truth == Disposition::Escalate);
            rng.shuffle(&mut esc);
            rng.shuffle(&mut close);
            let half = n / 2;
            let take_esc = half.min(esc.len());
            let take_close = (n - take_esc).min(close.len());
            esc.truncate(take_esc);
            close.truncate(take_close);
            pool = esc;
            pool.extend(close);
        } else {
            rng.shuffle(&mut pool);
            pool.truncate(n);
        }
    }
    pool.sort_by(|a, b| (a.first_ms, &a.id).cmp(&(b.first_ms, &b.id)));
    pool
}

/// Counts of one confusion matrix ("escalated" is the positive class).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    /// Escalated, and the analysts escalated.
    pub tp: u64,
    /// Escalated, but the analysts closed it.
    pub fp: u64,
    /// Not escalated, but the analysts escalated.
    #[serde(rename = "fn")]
    pub fn_: u64,
    /// Not escalated, and the analysts closed it.
    pub tn: u64,
}

impl Confusion {
    fn add(&mut self, escalated: bool, truth: Disposition) {
        match (escalated, truth) {
            (true, Disposition::Escalate) => self.tp += 1,
            (true, Disposition::Close) => self.fp += 1,
            (false, Disposition::Escalate) => self.fn_ += 1,
            (false, Disposition::Close) => self.tn += 1,
        }
    }

    /// tp / (tp + fp); 0 when nothing was escalated.
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }

    /// tp / (tp + fn); 0 when nothing should have been.
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }

    /// Harmonic mean of precision and recall.
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Scores of a set of tickets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Scores {
    /// Tickets scored.
    pub tickets: u64,
    /// The confusion matrix.
    pub confusion: Confusion,
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F1.
    pub f1: f64,
}

impl Scores {
    fn of(confusion: Confusion) -> Self {
        Self {
            tickets: confusion.tp + confusion.fp + confusion.fn_ + confusion.tn,
            confusion,
            precision: round(confusion.precision()),
            recall: round(confusion.recall()),
            f1: round(confusion.f1()),
        }
    }
}

fn round(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// What one role did over the replay.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RoleScore {
    /// Tickets the role decided on.
    pub engaged: u64,
    /// Decision wall time, median, ms.
    pub wall_ms_p50: f64,
    /// Decision wall time, 95th percentile, ms.
    pub wall_ms_p95: f64,
    /// Tool calls made.
    pub tool_calls: u64,
    /// Prompt tokens.
    pub tokens_in: u64,
    /// Completion tokens.
    pub tokens_out: u64,
    /// Decisions by reasoner (`rules`, `llm`, ...).
    pub reasoners: BTreeMap<String, u64>,
}

/// The backtest's result. Keys are stable: CI gates and dashboards read them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// Tickets replayed and scored.
    pub tickets: u64,
    /// Overall confusion matrix.
    pub confusion: Confusion,
    /// Overall precision.
    pub precision: f64,
    /// Overall recall.
    pub recall: f64,
    /// Overall F1.
    pub f1: f64,
    /// The same, per site.
    pub per_site: BTreeMap<String, Scores>,
    /// Per role.
    pub roles: BTreeMap<String, RoleScore>,
    /// Wall time of the replay and scoring, seconds.
    pub elapsed_s: f64,
    /// How the tickets were chosen.
    pub selection: SelectionSummary,
    /// The history and feedback the replay ran with.
    #[serde(default)]
    pub priors: PriorsSummary,
    /// Tickets the runtime rejected as malformed (not scored).
    pub malformed: u64,
    /// How well triage's probabilities match the analysts' answers.
    #[serde(default)]
    pub calibration: crate::judgment::calibration::Calibration,
    /// F1 over the first 250, 500 and 1,000 tickets of each site and over all of them (pooled
    /// over the sites): how fast the SOC learns a new site.
    #[serde(default)]
    pub cold_start: Vec<ColdStart>,
    /// Every ticket's outcome (`--decisions`), not part of the summary's JSON.
    #[serde(skip)]
    pub decisions: Vec<TicketOutcome>,
}

/// One ticket's outcome, for `--decisions`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TicketOutcome {
    /// Ticket.
    pub ticket: String,
    /// Site.
    pub site: String,
    /// Rule.
    pub rule: String,
    /// Host.
    pub host: String,
    /// Triage's probability of escalation.
    pub p: Option<f64>,
    /// Escalated to the IR Lead (itself or linked into an incident).
    pub escalated: bool,
    /// What the analysts decided.
    pub analysts: Disposition,
    /// Triage's recorded assessment (with `--decisions`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assessment: Option<crate::proto::Assessment>,
}

/// The scores over the first tickets of each site.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ColdStart {
    /// Tickets per site counted (`None`: all).
    pub first: Option<u64>,
    /// Tickets scored.
    pub tickets: u64,
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F1.
    pub f1: f64,
}

/// The cold-start curve of `tickets` (in replay order within each site).
pub fn cold_start(tickets: &[Ticket], escalated: &HashSet<String>) -> Vec<ColdStart> {
    let mut by_site: BTreeMap<&str, Vec<&Ticket>> = BTreeMap::new();
    for t in tickets {
        by_site.entry(t.site.as_str()).or_default().push(t);
    }
    for list in by_site.values_mut() {
        list.sort_by(|a, b| (a.first_ms, &a.id).cmp(&(b.first_ms, &b.id)));
    }
    [Some(250usize), Some(500), Some(1000), None]
        .into_iter()
        .map(|first| {
            let mut c = Confusion::default();
            for list in by_site.values() {
                let n = first.map_or(list.len(), |f| f.min(list.len()));
                for t in &list[..n] {
                    c.add(escalated.contains(&t.id), t.ground_truth);
                }
            }
            let s = Scores::of(c);
            ColdStart {
                first: first.map(|f| f as u64),
                tickets: s.tickets,
                precision: s.precision,
                recall: s.recall,
                f1: s.f1,
            }
        })
        .collect()
}

/// The calibration of triage's probabilities against the labels (the first triage of each
/// ticket that carries one).
pub fn calibration(
    tickets: &[Ticket],
    decisions: &[VerdictRow],
) -> crate::judgment::calibration::Calibration {
    let mut p_of: std::collections::HashMap<&str, f64> = std::collections::HashMap::new();
    for d in decisions {
        if d.kind == "AlertTriaged"
            && let Some(p) = d.p_escalate
        {
            p_of.entry(d.ticket.as_str()).or_insert(p);
        }
    }
    let pairs: Vec<(f64, bool)> = tickets
        .iter()
        .filter_map(|t| {
            p_of.get(t.id.as_str())
                .map(|p| (*p, t.ground_truth == Disposition::Escalate))
        })
        .collect();
    crate::judgment::calibration::Calibration::of(&pairs)
}

/// The selection, as run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SelectionSummary {
    /// The tickets file.
    pub file: String,
    /// Sites replayed (empty: all).
    pub sites: Vec<String>,
    /// Sample size, if sampled.
    pub sample: Option<usize>,
    /// Whether the sample was stratified.
    pub stratify: bool,
    /// Seed.
    pub seed: u64,
    /// Each site replayed with the other sites as history.
    #[serde(default)]
    pub leave_one_site_out: bool,
}

/// Scores the replay's audit against the labels. Pure: the tickets' labels meet the roles'
/// output here and nowhere else.
pub fn score(
    tickets: &[Ticket],
    escalated: &HashSet<String>,
    decisions: &[VerdictRow],
) -> (
    Confusion,
    BTreeMap<String, Scores>,
    BTreeMap<String, RoleScore>,
) {
    let mut walls: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut roles: BTreeMap<String, RoleScore> = BTreeMap::new();
    for d in decisions {
        let role = roles.entry(d.role.clone()).or_default();
        role.engaged += 1;
        role.tool_calls += d.tool_calls_made.max(0) as u64;
        role.tokens_in += d.tokens_in.max(0) as u64;
        role.tokens_out += d.tokens_out.max(0) as u64;
        *role.reasoners.entry(d.reasoner.clone()).or_default() += 1;
        walls.entry(&d.role).or_default().push(d.wall_time_ms);
    }
    for (role, mut w) in walls {
        w.sort_by(f64::total_cmp);
        let at = |q: f64| w[((w.len() - 1) as f64 * q).round() as usize];
        if let Some(r) = roles.get_mut(role) {
            r.wall_ms_p50 = round(at(0.5));
            r.wall_ms_p95 = round(at(0.95));
        }
    }
    let mut all = Confusion::default();
    let mut sites: BTreeMap<String, Confusion> = BTreeMap::new();
    for t in tickets {
        let e = escalated.contains(&t.id);
        all.add(e, t.ground_truth);
        sites
            .entry(t.site.clone())
            .or_default()
            .add(e, t.ground_truth);
    }
    let per_site = sites.into_iter().map(|(k, c)| (k, Scores::of(c))).collect();
    (all, per_site, roles)
}

/// What a replay knows before it starts, what it learns as it goes, and its model.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// Tickets whose dispositions are known before the replay (`--history`). A ticket that is
    /// also replayed is left out of the history.
    pub history: Vec<Ticket>,
    /// Where the history came from, for the summary.
    pub history_source: Option<String>,
    /// `--feedback-delay`: each replayed ticket's disposition becomes known this long (ms)
    /// after its last alert, the way analysts close tickets. Off when `None`.
    pub feedback_delay_ms: Option<i64>,
    /// `--dry-run`: the roles' model is the canned-answer server ([`crate::llm::canned`]),
    /// so the model path runs end to end without a model; hybrid reasoning.
    pub dry_run: bool,
    /// The model endpoints and reasoning settings (`--config`); no endpoints: rules only.
    pub model: (crate::llm::LlmConfig, crate::config::ReasoningConfig),
    /// The roles' tools (`--config`'s `[tools]`); site connectors are always left out.
    pub tools: crate::tools::ToolsConfig,
    /// The detector vendors' rulesets (`--config`'s `[rulesets]`).
    pub vendor: Arc<crate::judgment::vendor::Vendor>,
    /// Keep each ticket's recorded assessment for `--decisions`.
    pub keep_assessments: bool,
}

/// The history and feedback a replay ran with, as reported.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PriorsSummary {
    /// Where the history came from (`None`: no history).
    pub history: Option<String>,
    /// Dispositions imported as history (summed over the replays).
    pub history_tickets: u64,
    /// Replays run (one per site when leaving one site out).
    #[serde(default)]
    pub replays: u64,
    /// Sites of the history.
    pub history_sites: Vec<String>,
    /// The feedback delay, seconds (`None`: no feedback).
    pub feedback_delay_s: Option<f64>,
    /// The model the roles had: `none`, or `canned (dry run)`.
    #[serde(default)]
    pub model: String,
    /// Chat requests the model answered (summed over the replays).
    #[serde(default)]
    pub model_requests: u64,
    /// History tickets left out because they overlap the replay of their own site (knowledge
    /// from the future), summed over the replays.
    #[serde(default)]
    pub history_dropped: u64,
    /// How each replay's score was fitted (its policy), one per replay.
    #[serde(default)]
    pub fits: Vec<String>,
}

/// One replay's raw result, before scoring.
struct Replayed {
    assessments: std::collections::HashMap<String, crate::proto::Assessment>,
    escalated: HashSet<String>,
    decisions: Vec<VerdictRow>,
    malformed: u64,
    history_tickets: u64,
    history_dropped: u64,
    model_requests: u64,
    fit: String,
}

/// Replays `tickets` (in the given order) through the SOC and scores the result.
pub async fn run(
    tickets: Vec<Ticket>,
    selection: SelectionSummary,
    priors: &Setup,
) -> Result<Summary, BacktestError> {
    if tickets.is_empty() {
        return Err(BacktestError::Empty);
    }
    let started = Instant::now();
    let replayed = replay(&tickets, priors).await?;
    let mut summary = priors_summary(priors, &priors.history, replayed.history_tickets, 1);
    summary.model_requests = replayed.model_requests;
    summary.history_dropped = replayed.history_dropped;
    summary.fits = vec![replayed.fit];
    let mut out = summarize(
        &tickets,
        &replayed.escalated,
        &replayed.decisions,
        replayed.malformed,
        started,
        selection,
        summary,
    );
    attach(&mut out, replayed.assessments);
    Ok(out)
}

/// Leave-one-site-out: replays each site's tickets with the dispositions of every *other*
/// site of the history (`priors.history`, or the tickets themselves when it is empty) as prior
/// knowledge, and scores all the replays together (`per_site` holds each site as replayed).
pub async fn leave_one_site_out(
    tickets: Vec<Ticket>,
    mut selection: SelectionSummary,
    priors: &Setup,
) -> Result<Summary, BacktestError> {
    if tickets.is_empty() {
        return Err(BacktestError::Empty);
    }
    let started = Instant::now();
    let pool = if priors.history.is_empty() {
        &tickets
    } else {
        &priors.history
    };
    let sites: std::collections::BTreeSet<&str> = tickets.iter().map(|t| t.site.as_str()).collect();
    let mut escalated = HashSet::new();
    let mut decisions = Vec::new();
    let mut assessments = std::collections::HashMap::new();
    let mut malformed = 0;
    let mut imported = 0;
    let mut model_requests = 0;
    let mut dropped = 0;
    let mut fits = Vec::new();
    for site in &sites {
        let fold: Vec<Ticket> = tickets
            .iter()
            .filter(|t| t.site == *site)
            .cloned()
            .collect();
        let fold_priors = Setup {
            history: pool.iter().filter(|t| t.site != *site).cloned().collect(),
            ..priors.clone()
        };
        let r = replay(&fold, &fold_priors).await?;
        escalated.extend(r.escalated);
        decisions.extend(r.decisions);
        assessments.extend(r.assessments);
        malformed += r.malformed;
        imported += r.history_tickets;
        model_requests += r.model_requests;
        dropped += r.history_dropped;
        fits.push(format!("{site}: {}", r.fit));
    }
    selection.leave_one_site_out = true;
    let mut summary = priors_summary(priors, pool, imported, sites.len() as u64);
    summary.model_requests = model_requests;
    summary.history_dropped = dropped;
    summary.fits = fits;
    summary.history = Some(format!(
        "for each site, the other sites of {}",
        priors.history_source.as_deref().unwrap_or(&selection.file)
    ));
    let mut out = summarize(
        &tickets, &escalated, &decisions, malformed, started, selection, summary,
    );
    attach(&mut out, assessments);
    Ok(out)
}

fn priors_summary(
    priors: &Setup,
    history: &[Ticket],
    imported: u64,
    replays: u64,
) -> PriorsSummary {
    let sites: std::collections::BTreeSet<&str> = history.iter().map(|t| t.site.as_str()).collect();
    PriorsSummary {
        history: priors.history_source.clone(),
        history_tickets: imported,
        replays,
        history_sites: sites.into_iter().map(str::to_owned).collect(),
        feedback_delay_s: priors.feedback_delay_ms.map(|ms| ms as f64 / 1000.0),
        model: if priors.dry_run {
            "canned (dry run)".into()
        } else if let Some(e) = priors.model.0.endpoints.first() {
            format!(
                "{} at {} ({:?} reasoning{})",
                e.model,
                crate::bus::redis::redact_url(&e.url),
                priors.model.1.mode,
                if priors.model.1.precedent {
                    ", precedent on"
                } else {
                    ""
                }
            )
        } else {
            "none".into()
        },
        model_requests: 0,
        history_dropped: 0,
        fits: Vec::new(),
    }
}

fn attach(
    summary: &mut Summary,
    mut assessments: std::collections::HashMap<String, crate::proto::Assessment>,
) {
    for d in &mut summary.decisions {
        d.assessment = assessments.remove(&d.ticket);
    }
}

fn summarize(
    tickets: &[Ticket],
    escalated: &HashSet<String>,
    decisions: &[VerdictRow],
    malformed: u64,
    started: Instant,
    selection: SelectionSummary,
    priors: PriorsSummary,
) -> Summary {
    let (confusion, per_site, roles) = score(tickets, escalated, decisions);
    let overall = Scores::of(confusion);
    let calibration = calibration(tickets, decisions);
    let cold_start = cold_start(tickets, escalated);
    let mut p_of: std::collections::HashMap<&str, f64> = std::collections::HashMap::new();
    for d in decisions {
        if let Some(p) = d.p_escalate {
            p_of.entry(d.ticket.as_str()).or_insert(p);
        }
    }
    let outcomes = tickets
        .iter()
        .map(|t| TicketOutcome {
            ticket: t.id.clone(),
            site: t.site.clone(),
            rule: t.rule.clone(),
            host: t.host.clone(),
            p: p_of.get(t.id.as_str()).copied(),
            escalated: escalated.contains(&t.id),
            analysts: t.ground_truth,
            assessment: None,
        })
        .collect();
    Summary {
        tickets: overall.tickets,
        confusion,
        precision: overall.precision,
        recall: overall.recall,
        f1: overall.f1,
        per_site,
        roles,
        elapsed_s: round(started.elapsed().as_secs_f64()),
        selection,
        priors,
        malformed,
        calibration,
        cold_start,
        decisions: outcomes,
    }
}

/// Runs one replay: a real runtime over a scratch feed, with the history (and feedback) as
/// its knowledge; returns what its store recorded.
async fn replay(tickets: &[Ticket], priors: &Setup) -> Result<Replayed, BacktestError> {
    let scratch = tempfile::tempdir().map_err(BacktestError::Scratch)?;
    let feed = scratch.path().join("feed.jsonl");
    write_feed(&feed, tickets).map_err(BacktestError::Scratch)?;
    let mut config = Config {
        data_dir: scratch.path().join("data"),
        alerts: Some(feed),
        ..Config::default()
    };
    config.bus.backend = Backend::Memory;
    config.http.addr = "off".into();
    // Reports are not scored, and their windows are wall-clock time, not ticket time.
    config.calendar.enabled = false;
    (config.llm, config.reasoning) = priors.model.clone();
    config.tools = priors.tools.clone();
    let canned = if priors.dry_run {
        let model = crate::llm::canned::start()
            .await
            .map_err(BacktestError::Scratch)?;
        config.llm.endpoints = vec![crate::llm::EndpointConfig {
            name: "canned".into(),
            url: model.url.clone(),
            model: "canned".into(),
            ..crate::llm::EndpointConfig::default()
        }];
        Some(model)
    } else {
        None
    };
    let (history, dropped) = history_for(tickets, &priors.history);
    let settings = crate::judgment::model::Settings {
        // The fit assumes the feedback this replay gives, and none without it.
        feedback_lag_ms: priors.feedback_delay_ms,
        ..priors.model.1.judgment()
    };
    let knowledge = Arc::new(Knowledge::new(priors.vendor.clone(), settings));
    knowledge.add_history(&history);
    // Every parameter of the score is chosen here, from this replay's history only.
    knowledge.fit();
    let fit = knowledge.model().params.policy.clone();
    // Feedback: the third reader of the labels, off by default. Each disposition is stamped
    // with the ticket time from which it is known, and the reasoner counts a disposition only
    // for cases that open after that time (strictly, and never a case's own), so adding them
    // all now leaks nothing. They are also published as `DispositionRecorded` events, as
    // analysts' closings would be, so the replay's audit holds them.
    let feedback: Vec<DispositionFacts> = match priors.feedback_delay_ms {
        Some(delay) if delay <= 0 => return Err(BacktestError::ZeroDelay),
        Some(delay) => tickets
            .iter()
            .map(|t| t.disposition(t.last_ms.saturating_add(delay)))
            .collect(),
        None => Vec::new(),
    };
    knowledge.add_dispositions(&feedback);
    let options = RuntimeOptions {
        until_idle: true,
        knowledge: Some(knowledge),
        no_site_connectors: true,
        ..RuntimeOptions::default()
    };
    let runtime = Runtime::start(config, options).await?;
    publish_feedback(runtime.bus(), tickets, &feedback).await?;
    // A progress bar on stderr while the replay runs (hidden when stderr is not a terminal).
    let bar = indicatif::ProgressBar::new(tickets.len() as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} replaying [{bar:40}] {pos}/{len} tickets triaged (eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let triage = runtime.role_stats("sentinel");
    let progress = async {
        loop {
            if let Some(stats) = &triage {
                bar.set_position(stats.processed.load(std::sync::atomic::Ordering::Relaxed));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    let report = tokio::select! {
        report = runtime.wait() => report,
        () = progress => unreachable!("the progress loop never ends"),
    };
    bar.finish_and_clear();
    if report.exit != ExitReason::Idle {
        return Err(BacktestError::Replay(format!("{:?}", report.exit)));
    }
    if let Some(e) = &report.summary.feed_error {
        return Err(BacktestError::Replay(e.clone()));
    }
    // Scored from the run's own store: the projection of its audit, complete after the drain.
    if report.summary.store.projected.errors > 0 {
        return Err(BacktestError::Replay(
            "the verdict store missed part of the audit".into(),
        ));
    }
    let store = Store::open(Path::new(&report.summary.store.path)).await?;
    let escalated = store.escalated_tickets().await?;
    let decisions = store.verdicts().await?;
    let assessments = if priors.keep_assessments {
        store.triage_assessments().await?
    } else {
        Default::default()
    };
    store.close().await;
    // Every alert the run took in has its triage in the store, or the store is incomplete.
    let triaged = decisions
        .iter()
        .filter(|d| d.kind == "AlertTriaged")
        .count() as u64;
    if triaged != report.summary.alerts_in {
        return Err(BacktestError::Replay(format!(
            "the store holds {triaged} triage verdicts for {} alerts: it is incomplete",
            report.summary.alerts_in
        )));
    }
    Ok(Replayed {
        assessments,
        escalated,
        decisions,
        malformed: report.summary.malformed_lines,
        history_tickets: history.len() as u64,
        history_dropped: dropped,
        fit,
        model_requests: canned.map_or(0, |m| m.requests.load(std::sync::atomic::Ordering::Relaxed)),
    })
}

/// The history a replay of `tickets` may know: never a replayed ticket, and of a replayed
/// site only what ended before the replay of that site starts (anything later is knowledge
/// from the future). Returns it and how many tickets were left out for overlapping.
pub fn history_for(tickets: &[Ticket], history: &[Ticket]) -> (Vec<DispositionFacts>, u64) {
    let replayed: HashSet<&str> = tickets.iter().map(|t| t.id.as_str()).collect();
    let mut starts: BTreeMap<&str, i64> = BTreeMap::new();
    for t in tickets {
        let start = starts.entry(t.site.as_str()).or_insert(t.first_ms);
        *start = (*start).min(t.first_ms);
    }
    let mut dropped = 0;
    let kept = history
        .iter()
        .filter(|t| !replayed.contains(t.id.as_str()))
        .filter(|t| match starts.get(t.site.as_str()) {
            Some(&start) if t.last_ms >= start => {
                dropped += 1;
                false
            }
            _ => true,
        })
        .map(|t| t.disposition(i64::MIN))
        .collect();
    (kept, dropped)
}

/// Publishes the feedback as the analysts' `DispositionRecorded` events (each stamped with
/// the ticket time it becomes known).
async fn publish_feedback(
    bus: &crate::bus::Bus,
    tickets: &[Ticket],
    feedback: &[DispositionFacts],
) -> Result<(), BacktestError> {
    let by_id: std::collections::HashMap<&str, &Ticket> =
        tickets.iter().map(|t| (t.id.as_str(), t)).collect();
    for chunk in feedback.chunks(256) {
        let mut commits = Vec::with_capacity(chunk.len());
        for f in chunk {
            let Some(t) = by_id.get(f.ticket.as_str()) else {
                continue;
            };
            let Ok(alert) = crate::ingest::jsonl::parse_line(t.feed_line.as_bytes()) else {
                continue;
            };
            let envelope = crate::proto::Envelope::new_root(
                "backtest",
                &f.ticket,
                crate::proto::Event::DispositionRecorded(crate::proto::DispositionRecorded {
                    case: crate::proto::CaseContext::from_alert(&alert, ""),
                    disposition: f.disposition,
                    by: "analysts (recorded labels)".into(),
                    origin: "backtest_feedback".into(),
                    known_at_ms: f.known_ms,
                    reason: None,
                }),
            );
            let outgoing = crate::bus::Outgoing::event(&envelope)
                .map_err(|e| BacktestError::Replay(e.to_string()))?;
            commits.push(crate::bus::Commit::dedupe(
                format!("disposition:{}", f.ticket),
                vec![outgoing],
            ));
        }
        bus.submit(commits)
            .await
            .map_err(|e| BacktestError::Replay(format!("publishing feedback: {e}")))?;
    }
    Ok(())
}

fn write_feed(path: &Path, tickets: &[Ticket]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for t in tickets {
        out.write_all(t.feed_line.as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// A CI gate: the metrics of `current` that fell more than `max_drop` below `baseline`.
pub fn regressions(current: &Summary, baseline: &Summary, max_drop: f64) -> Vec<String> {
    [
        ("f1", current.f1, baseline.f1),
        ("recall", current.recall, baseline.recall),
    ]
    .into_iter()
    .filter(|(_, now, before)| *now < before - max_drop)
    .map(|(name, now, before)| {
        format!("{name} fell from {before:.4} to {now:.4} (allowed drop {max_drop})")
    })
    .collect()
}

/// Reads a saved summary (for `--baseline`).
pub fn load_summary(path: &PathBuf) -> Result<Summary, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read baseline {}: {e}", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a backtest summary: {e}", path.display()))
}

impl std::fmt::Display for PriorsSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.history {
            Some(h) => write!(
                f,
                "history: {h} ({} dispositions{}; sites {})",
                self.history_tickets,
                if self.replays > 1 {
                    format!(" over {} replays", self.replays)
                } else {
                    String::new()
                },
                self.history_sites.join(", ")
            )?,
            None => f.write_str("history: none")?,
        }
        match self.feedback_delay_s {
            Some(s) => write!(
                f,
                "; feedback after {}",
                humantime::format_duration(std::time::Duration::from_secs_f64(s))
            )?,
            None => f.write_str("; no feedback")?,
        }
        write!(f, "; model: {}", self.model)?;
        if self.model_requests > 0 {
            write!(f, " ({} requests)", self.model_requests)?;
        }
        Ok(())
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.confusion;
        writeln!(
            f,
            "backtest: {} tickets in {:.2} s: precision {:.3}  recall {:.3}  F1 {:.3}  (tp {} fp {} fn {} tn {})",
            self.tickets,
            self.elapsed_s,
            self.precision,
            self.recall,
            self.f1,
            c.tp,
            c.fp,
            c.fn_,
            c.tn
        )?;
        writeln!(f, "  {}", self.priors)?;
        writeln!(
            f,
            "  {:<16}{:>8}{:>11}{:>8}{:>8}{:>6}{:>6}{:>6}{:>7}",
            "site", "tickets", "precision", "recall", "F1", "tp", "fp", "fn", "tn"
        )?;
        for (site, s) in &self.per_site {
            let c = &s.confusion;
            writeln!(
                f,
                "  {site:<16}{:>8}{:>11.3}{:>8.3}{:>8.3}{:>6}{:>6}{:>6}{:>7}",
                s.tickets, s.precision, s.recall, s.f1, c.tp, c.fp, c.fn_, c.tn
            )?;
        }
        writeln!(
            f,
            "  {:<16}{:>8}{:>12}{:>12}{:>11}{:>16}",
            "role", "engaged", "wall p50 ms", "wall p95 ms", "tool calls", "tokens in/out"
        )?;
        for (role, r) in &self.roles {
            writeln!(
                f,
                "  {role:<16}{:>8}{:>12.3}{:>12.3}{:>11}{:>16}",
                r.engaged,
                r.wall_ms_p50,
                r.wall_ms_p95,
                r.tool_calls,
                format!("{}/{}", r.tokens_in, r.tokens_out)
            )?;
        }
        Ok(())
    }
}

/// Precision, recall and F1 per site as an inline SVG bar chart (no external assets).
pub fn site_chart_svg(summary: &Summary) -> String {
    use std::fmt::Write;
    const BAR: usize = 16;
    const GAP: usize = 48;
    const HEIGHT: f64 = 120.0;
    let group = 3 * BAR + GAP;
    let width = 40 + group * summary.per_site.len().max(1);
    let mut svg = format!(
        "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" \
         height=\"170\" role=\"img\" aria-label=\"precision, recall and F1 per site\">\
         <line x1=\"30\" y1=\"130\" x2=\"{width}\" y2=\"130\" stroke=\"#8c959f\"/>\
         <text x=\"0\" y=\"14\" font-size=\"10\">1.0</text>\
         <text x=\"0\" y=\"130\" font-size=\"10\">0</text>"
    );
    for (i, (site, s)) in summary.per_site.iter().enumerate() {
        let x0 = 36 + i * group;
        for (j, (value, color)) in [
            (s.precision, "#54aeff"),
            (s.recall, "#4ac26b"),
            (s.f1, "#d4a72c"),
        ]
        .into_iter()
        .enumerate()
        {
            let h = (value.clamp(0.0, 1.0) * HEIGHT).round();
            let _ = write!(
                svg,
                "<rect x=\"{}\" y=\"{}\" width=\"{BAR}\" height=\"{h}\" fill=\"{color}\">\
                 <title>{value:.3}</title></rect>",
                x0 + j * BAR,
                130.0 - h
            );
        }
        let short: String = site.chars().take(14).collect();
        let _ = write!(
            svg,
            "<text x=\"{x0}\" y=\"146\" font-size=\"11\"><title>{}</title>{}</text>",
            escape(site),
            escape(&short)
        );
    }
    svg.push_str(
        "<text x=\"36\" y=\"166\" font-size=\"11\"><tspan fill=\"#0969da\">■ precision</tspan> \
         <tspan fill=\"#1a7f37\">■ recall</tspan> <tspan fill=\"#9a6700\">■ F1</tspan></text></svg>",
    );
    svg
}

/// The summary as a self-contained HTML page (no external assets): the headline figures, the
/// confusion matrix, per-site bars and per-role latency.
pub fn report_html(summary: &Summary) -> String {
    use std::fmt::Write;
    let c = &summary.confusion;
    let bar = |value: f64, class: &str| {
        format!(
            "<div class=\"bar\"><span class=\"{class}\" style=\"width:{:.1}%\"></span><em>{value:.3}</em></div>",
            (value * 100.0).clamp(0.0, 100.0)
        )
    };
    let mut sites = String::new();
    for (site, s) in &summary.per_site {
        let _ = write!(
            sites,
            "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(site),
            s.tickets,
            s.confusion.tp + s.confusion.fn_,
            s.confusion.tp + s.confusion.fp,
            bar(s.precision, "p"),
            bar(s.recall, "r"),
            bar(s.f1, "f"),
            s.confusion.fp
        );
    }
    let mut roles = String::new();
    for (role, r) in &summary.roles {
        let reasoners = r
            .reasoners
            .iter()
            .map(|(k, n)| format!("{} {n}", escape(k)))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(
            roles,
            "<tr><th>{}</th><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td><td>{}/{}</td><td>{reasoners}</td></tr>",
            escape(role),
            r.engaged,
            r.wall_ms_p50,
            r.wall_ms_p95,
            r.tool_calls,
            r.tokens_in,
            r.tokens_out
        );
    }
    let sel = &summary.selection;
    let scope = format!(
        "{} tickets from {}{}{}{}. {}",
        summary.tickets,
        escape(&sel.file),
        if sel.sites.is_empty() {
            String::new()
        } else {
            format!(", sites {}", escape(&sel.sites.join(", ")))
        },
        match sel.sample {
            Some(n) => format!(
                ", sample of {n}{} (seed {})",
                if sel.stratify {
                    " stratified 50/50"
                } else {
                    ""
                },
                sel.seed
            ),
            None => String::new(),
        },
        if sel.leave_one_site_out {
            ", each site replayed with the other sites as history"
        } else {
            ""
        },
        escape(&summary.priors.to_string())
    );
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>soc-runtime backtest</title>
<style>
body{{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#1b1f24;max-width:70em}}
h1{{font-size:1.5em;margin-bottom:.2em}} .scope{{color:#57606a;margin-top:0}}
.kpis{{display:flex;gap:1em;margin:1.5em 0}} .kpi{{border:1px solid #d0d7de;border-radius:6px;padding:.8em 1.2em}}
.kpi b{{display:block;font-size:1.8em}} table{{border-collapse:collapse;margin:1em 0 2em}}
th,td{{border-bottom:1px solid #d0d7de;padding:.35em .8em;text-align:right}} th{{text-align:left}}
.matrix td{{font-size:1.3em;min-width:5em;text-align:center}} .tp,.tn{{background:#dafbe1}} .fp,.fn{{background:#ffebe9}}
.bar{{position:relative;width:12em;height:1.2em;background:#f6f8fa;text-align:left}} .bar span{{position:absolute;left:0;top:0;bottom:0}}
.bar .p{{background:#54aeff}} .bar .r{{background:#4ac26b}} .bar .f{{background:#d4a72c}}
.bar em{{position:relative;font-style:normal;padding-left:.3em}}
</style></head><body>
<h1>Backtest: escalation to the IR Lead against the analysts</h1>
<p class="scope">{scope}; replayed and scored in {elapsed:.2} s</p>
<div class="kpis"><div class="kpi">precision<b>{precision:.3}</b></div><div class="kpi">recall<b>{recall:.3}</b></div><div class="kpi">F1<b>{f1:.3}</b></div><div class="kpi">tickets<b>{tickets}</b></div></div>
<h2>Confusion matrix</h2>
<table class="matrix"><tr><th></th><th>analysts escalated</th><th>analysts closed</th></tr>
<tr><th>SOC escalated</th><td class="tp">{tp}</td><td class="fp">{fp}</td></tr>
<tr><th>SOC did not</th><td class="fn">{fn_}</td><td class="tn">{tn}</td></tr></table>
<h2>Per site</h2>
<table><tr><th>site</th><th>tickets</th><th>should escalate</th><th>escalated</th><th>precision</th><th>recall</th><th>F1</th><th>false alarms</th></tr>{sites}</table>
<h2>Per role</h2>
<table><tr><th>role</th><th>engaged</th><th>wall p50 ms</th><th>wall p95 ms</th><th>tool calls</th><th>tokens in/out</th><th>reasoners</th></tr>{roles}</table>
</body></html>
"#,
        elapsed = summary.elapsed_s,
        precision = summary.precision,
        recall = summary.recall,
        f1 = summary.f1,
        tickets = summary.tickets,
        tp = c.tp,
        fp = c.fp,
        fn_ = c.fn_,
        tn = c.tn,
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(id: &str, site: &str, truth: Disposition) -> Ticket {
        let line = format!(
            r#"{{"ticket_id":"{id}","site":"{site}","source":"wazuh","rule_id":"R","rule_name":"r","host":"h","src_ips":[],"first_seen":"2022-01-15T00:00:0{}Z","last_seen":"2022-01-15T00:00:09Z","alert_count":1,"ground_truth":"{}"}}"#,
            id.len() % 10,
            if truth == Disposition::Escalate {
                "escalate"
            } else {
                "close"
            }
        );
        ticket_of(&line).unwrap()
    }

    #[test]
    fn the_feed_line_carries_no_label() {
        let t = ticket("fox-1", "fox", Disposition::Escalate);
        assert!(!t.feed_line.contains("ground_truth"));
        assert!(!t.feed_line.contains("escalate"));
        assert_eq!(t.ground_truth, Disposition::Escalate);
        let err = ticket_of(r#"{"ticket_id":"x"}"#).unwrap_err();
        assert!(err.contains("ground_truth"), "{err}");
        let err = ticket_of(r#"{"ticket_id":"x","ground_truth":"maybe"}"#).unwrap_err();
        assert!(err.contains("escalate"), "{err}");
    }

    #[test]
    fn scores_count_escalations_per_ticket_and_site() {
        let tickets = vec![
            ticket("a-1", "a", Disposition::Escalate),
            ticket("a-2", "a", Disposition::Close),
            ticket("b-1", "b", Disposition::Escalate),
            ticket("b-2", "b", Disposition::Close),
        ];
        // b-2 is a false positive, b-1 is missed; an unknown ticket is ignored.
        let escalated: HashSet<String> = ["a-1", "b-2", "zz-9"].map(String::from).into();
        let decision = |role: &str, wall_time_ms: f64| VerdictRow {
            audit_id: String::new(),
            ticket: "a-1".into(),
            site: None,
            role: role.into(),
            kind: "AlertTriaged".into(),
            verdict: "true_positive".into(),
            confidence: Some(0.9),
            reasoner: "rules".into(),
            wall_time_ms,
            tool_calls_made: 2,
            tokens_in: 10,
            tokens_out: 5,
            ground_truth: None,
            at_ms: 0,
            p_escalate: None,
        };
        let decisions = [
            decision("sentinel", 1.0),
            decision("sentinel", 3.0),
            decision("tier2", 2.0),
        ];
        let (all, sites, roles) = score(&tickets, &escalated, &decisions);
        assert_eq!(roles["sentinel"].engaged, 2);
        assert_eq!(roles["sentinel"].tool_calls, 4);
        assert_eq!(roles["sentinel"].wall_ms_p95, 3.0);
        assert_eq!(roles["tier2"].reasoners["rules"], 1);
        assert_eq!(
            all,
            Confusion {
                tp: 1,
                fp: 1,
                fn_: 1,
                tn: 1
            }
        );
        assert_eq!(all.precision(), 0.5);
        assert_eq!(all.recall(), 0.5);
        assert_eq!(
            sites["a"].confusion,
            Confusion {
                tp: 1,
                fp: 0,
                fn_: 0,
                tn: 1
            }
        );
        assert_eq!(sites["b"].f1, 0.0);
        assert_eq!(Confusion::default().f1(), 0.0);
    }

    #[test]
    fn stratified_samples_are_balanced_seeded_and_in_time_order() {
        let mut tickets = Vec::new();
        for i in 0..100 {
            let truth = if i % 10 == 0 {
                Disposition::Escalate
            } else {
                Disposition::Close
            };
            tickets.push(ticket(&format!("s-{i:03}"), "s", truth));
        }
        let selection = Selection {
            sample: Some(12),
            stratify: true,
            seed: 7,
            ..Selection::default()
        };
        let a = select(tickets.clone(), &selection);
        let b = select(tickets.clone(), &selection);
        assert_eq!(a.len(), 12);
        let esc = a
            .iter()
            .filter(|t| t.ground_truth == Disposition::Escalate)
            .count();
        assert_eq!(esc, 6);
        let ids = |v: &[Ticket]| v.iter().map(|t| t.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&a), ids(&b), "same seed, same sample");
        assert!(
            a.windows(2)
                .all(|w| (w[0].first_ms, &w[0].id) <= (w[1].first_ms, &w[1].id))
        );
        let other = select(
            tickets,
            &Selection {
                seed: 8,
                ..selection
            },
        );
        assert_ne!(ids(&a), ids(&other));
    }

    #[test]
    fn the_gate_names_what_fell() {
        let base = Summary {
            tickets: 1,
            confusion: Confusion::default(),
            precision: 0.5,
            recall: 0.8,
            f1: 0.6,
            per_site: BTreeMap::new(),
            roles: BTreeMap::new(),
            elapsed_s: 0.0,
            selection: SelectionSummary {
                file: String::new(),
                sites: Vec::new(),
                sample: None,
                stratify: false,
                seed: 0,
                leave_one_site_out: false,
            },
            priors: PriorsSummary::default(),
            malformed: 0,
            calibration: Default::default(),
            cold_start: Vec::new(),
            decisions: Vec::new(),
        };
        let worse = Summary {
            recall: 0.7,
            f1: 0.58,
            ..base.clone()
        };
        let fell = regressions(&worse, &base, 0.05);
        assert_eq!(fell.len(), 1);
        assert!(fell[0].starts_with("recall"), "{fell:?}");
        assert!(regressions(&base, &base, 0.0).is_empty());
    }
}
