//! Scoring a replay against the analysts: confusion counts, per-site and per-role scores,
//! calibration, the cold-start curve, the summary and its CI gate.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::tickets::Ticket;
use crate::knowledge::Disposition;
use crate::store::DecisionRow;

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
    pub(super) fn of(confusion: Confusion) -> Self {
        Self {
            tickets: confusion.tp + confusion.fp + confusion.fn_ + confusion.tn,
            confusion,
            precision: round(confusion.precision()),
            recall: round(confusion.recall()),
            f1: round(confusion.f1()),
        }
    }
}

pub(super) fn round(x: f64) -> f64 {
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
    decisions: &[DecisionRow],
) -> crate::judgment::calibration::Calibration {
    let mut p_of: std::collections::HashMap<&str, f64> = std::collections::HashMap::new();
    for d in decisions {
        if d.kind == <crate::proto::AlertTriaged as crate::proto::EventKind>::KIND
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
    /// Each case decided as a streaming source first shows it: at its first alert.
    #[serde(default)]
    pub at_first_alert: bool,
    /// With `at_first_alert`: the whole case followed as an update at its last alert.
    #[serde(default)]
    pub updates: bool,
}

/// Scores the replay's audit against the labels. Pure: the tickets' labels meet the roles'
/// output here and nowhere else.
pub fn score(
    tickets: &[Ticket],
    escalated: &HashSet<String>,
    decisions: &[DecisionRow],
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
    /// Model calls and tokens per role: totals, per case given to the model and per 1,000
    /// tickets replayed (`calls_per_1k_alerts` counts the replay's alerts: one per ticket).
    #[serde(default)]
    pub model_cost: BTreeMap<String, crate::llm::stats::ModelCost>,
    /// History tickets left out because they overlap the replay of their own site (knowledge
    /// from the future), summed over the replays.
    #[serde(default)]
    pub history_dropped: u64,
    /// How each replay's score was fitted (its policy), one per replay.
    #[serde(default)]
    pub fits: Vec<String>,
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

/// Why a saved summary cannot be used as a baseline.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// The file cannot be read.
    #[error("cannot read baseline {0}: {1}")]
    Read(String, #[source] std::io::Error),
    /// The file is not a summary.
    #[error("{0} is not a backtest summary: {1}")]
    NotSummary(String, #[source] serde_json::Error),
}

/// Reads a saved summary (for `--baseline`).
pub fn load_summary(path: &PathBuf) -> Result<Summary, BaselineError> {
    let shown = || path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| BaselineError::Read(shown(), e))?;
    serde_json::from_str(&text).map_err(|e| BaselineError::NotSummary(shown(), e))
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
        for (role, m) in &self.priors.model_cost {
            writeln!(
                f,
                "  model cost {role}: {} calls ({:.2} per case, {:.1} per 1,000 tickets), tokens {}/{} ({:.0}/{:.0} per case, {:.0}/{:.0} per 1,000 tickets), {:.0} % of prompt tokens cached",
                m.calls,
                m.calls_per_case,
                m.calls_per_1k_alerts,
                m.tokens_in,
                m.tokens_out,
                m.tokens_per_case.0,
                m.tokens_per_case.1,
                m.tokens_per_1k_alerts.0,
                m.tokens_per_1k_alerts.1,
                m.cached_share * 100.0
            )?;
        }
        if self.selection.at_first_alert {
            writeln!(
                f,
                "  each case decided at its first alert, as a followed file, a stream or HTTP \
                 push first shows it{}",
                if self.selection.updates {
                    ", and re-assessed when the whole case follows as an update at its last alert"
                } else {
                    ", never re-assessed"
                }
            )?;
        }
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
