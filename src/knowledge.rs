//! What the reasoner knows beyond the alert in front of it, shared by the roles of one runtime
//! (it outlives their restarts).
//!
//! - **Dispositions**: every analyst disposition known, with its case's facts. Those known when
//!   the runtime starts are the **history** the score is fitted on ([`Knowledge::fit`]); those
//!   that arrive while it runs (`DispositionRecorded` events, a backtest's feedback) count at
//!   once in their site's own priors, for every case decided after they are known, but never
//!   refit the weights (a restart does).
//! - **The judgment** ([`crate::judgment`]): the fitted model and, per site, its own priors and
//!   its recent cases (host context, novelty, volume).
//!
//! Every count is as of the case's time: a disposition counts only for cases that open after it
//! is known (strictly), and a case's own disposition never counts for it, so a backtest's result
//! does not depend on how fast the roles run.
//!
//! A restart keeps the dispositions (in the store) and refits; the sites' recent cases are
//! rebuilt from case memory (the rules seen per site, and the last hour of cases).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;

use crate::judgment::fit::{FitReport, HistoryCase, fit};
use crate::judgment::model::{Arrival, CaseIn, Model, Scored, Settings, SiteState};
use crate::judgment::priors::SiteDisposition;
use crate::judgment::vendor::Vendor;
use crate::judgment::vendor::VendorView;
use crate::proto::{Alert, Assessment, CaseContext, LinkedCase, Precedent, VendorMeta};

pub use crate::proto::Disposition;

impl Disposition {
    /// The stored label.
    pub fn label(self) -> &'static str {
        match self {
            Disposition::Escalate => "escalate",
            Disposition::Close => "close",
        }
    }

    /// Parses a stored label.
    pub fn parse(label: &str) -> Option<Self> {
        match label {
            "escalate" => Some(Disposition::Escalate),
            "close" => Some(Disposition::Close),
            _ => None,
        }
    }
}

/// One analyst disposition with the facts of its case.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DispositionFacts {
    /// Ticket id.
    pub ticket: String,
    /// What the analysts decided.
    pub disposition: Disposition,
    /// Site or tenant.
    pub site: String,
    /// Rule code.
    pub rule: String,
    /// Host.
    pub host: String,
    /// Detector family.
    pub detector: String,
    /// From when it is known, ms since the epoch (`i64::MIN`: always).
    pub known_ms: i64,
    /// The rule's title.
    pub title: String,
    /// The case's first alert, ms (`None`: unknown, as in rows imported by old releases).
    pub first_ms: Option<i64>,
    /// The case's last alert, ms.
    pub last_ms: Option<i64>,
    /// Raw alerts in the case.
    pub alert_count: u32,
    /// The vendor's fields the alert carried.
    pub vendor: Option<VendorMeta>,
}

impl DispositionFacts {
    /// The facts of `case`, disposed of as `disposition`, known from `known_ms`.
    pub(crate) fn of_case(case: &CaseContext, disposition: Disposition, known_ms: i64) -> Self {
        let ms = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.timestamp_millis())
        };
        DispositionFacts {
            ticket: case.ticket.clone(),
            disposition,
            site: case.site.clone().unwrap_or_default(),
            rule: case.rule_id.clone(),
            host: case.host.clone(),
            detector: case.source.clone(),
            known_ms,
            title: case.rule_name.clone(),
            first_ms: ms(&case.first_seen),
            last_ms: ms(&case.last_seen),
            alert_count: case.alert_count,
            vendor: case.vendor.clone(),
        }
    }
}

/// Escalated and closed counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Dispositions that escalated.
    pub escalated: u64,
    /// Dispositions that closed.
    pub closed: u64,
}

impl Counts {
    /// All dispositions counted.
    pub fn total(&self) -> u64 {
        self.escalated + self.closed
    }
}

/// The dispositions of one key, as sorted `known_ms` lists, so a count as of any time is two
/// binary searches.
#[derive(Debug, Default)]
struct Tally {
    escalated: Vec<i64>,
    closed: Vec<i64>,
}

impl Tally {
    fn add(&mut self, disposition: Disposition, known_ms: i64) {
        let list = match disposition {
            Disposition::Escalate => &mut self.escalated,
            Disposition::Close => &mut self.closed,
        };
        let at = list.partition_point(|&k| k <= known_ms);
        list.insert(at, known_ms);
    }

    fn as_of(&self, at_ms: i64) -> Counts {
        Counts {
            escalated: self.escalated.partition_point(|&k| k < at_ms) as u64,
            closed: self.closed.partition_point(|&k| k < at_ms) as u64,
        }
    }
}

/// A disposition as the precedent index keeps it.
#[derive(Debug, Clone)]
struct Known {
    known_ms: i64,
    ticket: String,
    site: String,
    host: String,
    rule: String,
    disposition: Disposition,
}

#[derive(Debug, Default)]
struct Index {
    all: Tally,
    rule: HashMap<String, Tally>,
    host: HashMap<String, Tally>,
    detector: HashMap<String, Tally>,
    /// Tickets recorded, so a disposition given twice counts once.
    tickets: HashMap<String, Disposition>,
    /// Per rule, by known time: for precedents.
    by_rule: HashMap<String, Vec<Known>>,
    /// Dispositions known when the runtime started (the fit's history).
    history: Vec<DispositionFacts>,
}

/// The dispositions of one case's keys, as of its time (for the tools and the model).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CasePriors {
    /// All dispositions.
    pub all: Counts,
    /// Of the case's rule.
    pub rule: Counts,
    /// Of the case's host.
    pub host: Counts,
    /// Of the case's detector.
    pub detector: Counts,
}

/// A recent case on a host.
#[derive(Debug, Clone, PartialEq)]
pub struct Recent {
    /// Ticket id.
    pub ticket: String,
    /// When it opened, ms since the epoch.
    pub first_ms: i64,
    /// Its rule code.
    pub rule: String,
    /// Its probability of escalation.
    pub score: f64,
}

/// The outcome of assessing one case.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Judged {
    /// Probability that the analysts would escalate it.
    pub p: f64,
    /// The threshold in force.
    pub threshold: f64,
    /// The evidence, as recorded with the decision.
    pub assessment: Assessment,
}

/// Dispositions, the fitted score and the sites' state, shared by the roles of one runtime.
#[derive(Debug)]
pub struct Knowledge {
    vendor: Arc<Vendor>,
    settings: Settings,
    model: RwLock<Arc<Model>>,
    report: Mutex<Option<FitReport>>,
    index: RwLock<Index>,
    sites: Mutex<HashMap<String, SiteState>>,
}

impl Default for Knowledge {
    fn default() -> Self {
        Knowledge::new(Arc::default(), Settings::default())
    }
}

/// How long a case counts as recent activity on its host (the judgment's window).
pub(crate) const ACTIVITY_WINDOW_MS: i64 = 3_600_000;

/// Precedents listed at most.
const PRECEDENTS: usize = 4;

impl Knowledge {
    /// Empty knowledge with the vendors' rulesets and the judgment's policy settings.
    pub fn new(vendor: Arc<Vendor>, settings: Settings) -> Knowledge {
        Knowledge {
            model: RwLock::new(Arc::new(Model::cold(settings.clone()))),
            vendor,
            settings,
            report: Mutex::new(None),
            index: RwLock::default(),
            sites: Mutex::default(),
        }
    }

    /// The vendors' knowledge.
    pub fn vendor(&self) -> &Vendor {
        &self.vendor
    }

    /// The model in force.
    pub fn model(&self) -> Arc<Model> {
        self.model.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// What the last fit found, once there was one.
    pub(crate) fn fit_report(&self) -> Option<FitReport> {
        self.report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records dispositions known before the runtime starts: the history the score is fitted
    /// on by [`Knowledge::fit`]. A ticket already recorded keeps its first disposition.
    pub(crate) fn add_history<'a>(&self, facts: impl IntoIterator<Item = &'a DispositionFacts>) {
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        for f in facts {
            if index_add(&mut index, f) {
                index.history.push(f.clone());
            }
        }
    }

    /// Fits the score on the history recorded so far, and counts the history in its sites' own
    /// priors. Returns what the fit found.
    pub fn fit(&self) -> FitReport {
        let history: Vec<DispositionFacts> = self
            .index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .history
            .clone();
        let cases: Vec<HistoryCase> = history
            .iter()
            .filter_map(|f| self.history_case(f))
            .collect();
        let (model, report) = fit(&cases, &self.settings);
        // The history of a site also counts in that site's own priors (a restarted runtime's
        // own past), its host states read from the labels.
        let mut sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        let mut per_site: HashMap<&str, Vec<&HistoryCase>> = HashMap::new();
        for c in &cases {
            per_site.entry(c.site.as_str()).or_default().push(c);
        }
        let known: HashMap<&str, i64> = history
            .iter()
            .map(|f| (f.ticket.as_str(), f.known_ms))
            .collect();
        for (site, mut list) in per_site {
            list.sort_by(|a, b| (a.first_ms, &a.ticket).cmp(&(b.first_ms, &b.ticket)));
            let hot =
                crate::judgment::fit::hot_labels(&[(site, list.clone())], self.settings.window_ms);
            let state = sites.entry(site.to_owned()).or_default();
            for (c, h) in list.iter().zip(&hot[0]) {
                let known_ms = known.get(c.ticket.as_str()).copied().unwrap_or(i64::MIN);
                state.tallies.push(c.site_disposition(*h, known_ms));
            }
        }
        drop(sites);
        tracing::info!(policy = %model.params.policy, "judgment fitted");
        *self.model.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(model);
        *self.report.lock().unwrap_or_else(|e| e.into_inner()) = Some(report.clone());
        report
    }

    fn history_case(&self, f: &DispositionFacts) -> Option<HistoryCase> {
        let first_ms = f.first_ms?;
        let alert = Alert {
            source: f.detector.clone(),
            rule_name: f.title.clone(),
            vendor: f.vendor.clone(),
            ..Alert::default()
        };
        Some(HistoryCase {
            ticket: f.ticket.clone(),
            site: f.site.clone(),
            host: f.host.clone(),
            rule: f.rule.clone(),
            source: f.detector.clone(),
            first_ms,
            last_ms: f.last_ms.unwrap_or(first_ms),
            alert_count: f.alert_count,
            vendor: self.vendor.view(&alert),
            escalated: f.disposition == Disposition::Escalate,
        })
    }

    /// Records dispositions that became known while running (feedback): each counts in its
    /// site's own priors for cases opening after its `known_ms`. A ticket already recorded
    /// keeps its first disposition.
    pub(crate) fn add_dispositions<'a>(
        &self,
        facts: impl IntoIterator<Item = &'a DispositionFacts>,
    ) {
        let mut fresh = Vec::new();
        {
            let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
            for f in facts {
                if index_add(&mut index, f) {
                    fresh.push(f.clone());
                }
            }
        }
        if fresh.is_empty() {
            return;
        }
        let window = self.settings.window_ms;
        let mut sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        for f in fresh {
            let category = self
                .vendor
                .view(&Alert {
                    source: f.detector.clone(),
                    rule_name: f.title.clone(),
                    vendor: f.vendor.clone(),
                    ..Alert::default()
                })
                .category;
            let state = sites.entry(f.site.clone()).or_default();
            // The host state the case was decided in, if this runtime decided it.
            let hot = state.hot_of(&f.host, &f.ticket, window).unwrap_or(0.0);
            state.tallies.push(SiteDisposition {
                ticket: f.ticket.clone(),
                rule: f.rule.clone(),
                category,
                host: f.host.clone(),
                escalated: f.disposition == Disposition::Escalate,
                hot,
                case_ms: f.last_ms.or(f.first_ms).unwrap_or(f.known_ms),
                known_ms: f.known_ms,
            });
        }
    }

    /// Dispositions recorded.
    pub fn dispositions(&self) -> usize {
        self.index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .tickets
            .len()
    }

    /// Dispositions of the rule, host and detector known before `at_ms`, over all sites.
    pub fn priors(&self, rule: &str, host: &str, detector: &str, at_ms: i64) -> CasePriors {
        let p = self.index.read().unwrap_or_else(|e| e.into_inner());
        let of = |map: &HashMap<String, Tally>, key: &str| {
            map.get(key).map(|t| t.as_of(at_ms)).unwrap_or_default()
        };
        CasePriors {
            all: p.all.as_of(at_ms),
            rule: of(&p.rule, rule),
            host: of(&p.host, host),
            detector: of(&p.detector, detector),
        }
    }

    /// The dispositioned cases most like `alert`, known before `before_ms`: the latest of its
    /// rule on its own site, then on its host, then one escalated and one closed of its rule
    /// elsewhere. Never the case itself.
    pub fn precedents(&self, alert: &Alert, before_ms: i64) -> Vec<Precedent> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let site = alert.site.as_deref().unwrap_or("");
        let Some(list) = index.by_rule.get(&alert.rule_id) else {
            return Vec::new();
        };
        let end = list.partition_point(|k| k.known_ms < before_ms);
        let mut out: Vec<Precedent> = Vec::new();
        let take = |k: &Known, why: &str, out: &mut Vec<Precedent>| {
            if out.len() < PRECEDENTS
                && k.ticket != alert.ticket_id
                && !out.iter().any(|p| p.ticket == k.ticket)
            {
                out.push(Precedent {
                    ticket: k.ticket.clone(),
                    site: k.site.clone(),
                    rule_id: k.rule.clone(),
                    host: k.host.clone(),
                    disposition: k.disposition,
                    similarity: why.to_owned(),
                });
            }
        };
        let recent = list[..end].iter().rev();
        for k in recent
            .clone()
            .filter(|k| k.site == site && k.host == alert.host)
            .take(1)
        {
            take(k, "same rule, same host", &mut out);
        }
        for k in recent.clone().filter(|k| k.site == site).take(2) {
            take(k, "same rule, same site", &mut out);
        }
        for d in [Disposition::Escalate, Disposition::Close] {
            if let Some(k) = recent
                .clone()
                .find(|k| k.site != site && k.disposition == d)
            {
                take(k, "same rule, another site", &mut out);
            }
        }
        out
    }

    /// The case's facts as the model sees them.
    fn case_in<'a>(
        alert: &'a Alert,
        vendor: &'a crate::judgment::vendor::VendorView,
    ) -> CaseIn<'a> {
        CaseIn {
            ticket: &alert.ticket_id,
            site: alert.site.as_deref().unwrap_or(""),
            host: &alert.host,
            rule: &alert.rule_id,
            source: &alert.source,
            first_ms: time_ms(&alert.first_seen),
            alert_count: alert.alert_count,
            vendor,
        }
    }

    /// Runs `f` with the model, `alert`'s vendor view and facts, its site's state and its
    /// arrival (the priors and signals as of its time), under the sites' lock.
    fn arrive<R>(
        &self,
        alert: &Alert,
        f: impl FnOnce(&Model, &VendorView, &CaseIn<'_>, &mut SiteState, Arrival) -> R,
    ) -> R {
        let model = self.model();
        let view = self.vendor.view(alert);
        let case = Self::case_in(alert, &view);
        let mut sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        let state = sites.entry(case.site.to_owned()).or_default();
        let a = state.arrive(&model, &case);
        f(&model, &view, &case, state, a)
    }

    /// Whether `alert`'s case escalated when last assessed here (`None`: not assessed by this
    /// process, or no longer recorded).
    pub(crate) fn escalated(&self, alert: &Alert) -> Option<bool> {
        let sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        sites
            .get(alert.site.as_deref().unwrap_or_default())?
            .escalated(&alert.host, &alert.ticket_id)
    }

    /// The probability of `alert` now, without recording it (hybrid routing asks this).
    pub(crate) fn peek(&self, alert: &Alert) -> f64 {
        self.arrive(alert, |model, _, case, state, a| {
            state.score(model, case, &a).p
        })
    }

    /// Assesses `alert` (received in envelope `alert_ref`) and records it on its site's
    /// stream. When it reaches the threshold, the earlier cases on its host that now do too are
    /// linked into its incident.
    pub(crate) fn assess(&self, alert: &Alert, alert_ref: &str) -> Judged {
        let precedents = self.precedents(alert, time_ms(&alert.first_seen));
        self.arrive(alert, |model, view, case, state, a| {
            let scored = state.score(model, case, &a);
            let escalates = scored.p >= model.params.threshold;
            let context = CaseContext::from_alert(alert, alert_ref);
            state.record(model, case, &a, scored.p, escalates, Some(context));
            let linked = if escalates {
                state
                    .link(model, &alert.ticket_id, &alert.host, case.first_ms)
                    .into_iter()
                    .filter_map(|(rec, p)| {
                        rec.case.map(|case| LinkedCase {
                            case,
                            probability: round3(p),
                        })
                    })
                    .collect()
            } else {
                Vec::new()
            };
            Judged {
                p: scored.p,
                threshold: model.params.threshold,
                assessment: assessment(model, view, &scored, precedents, linked),
            }
        })
    }

    /// Records a case decided earlier (read back from the store after a restart) on its site's
    /// stream, with the probability it had.
    pub(crate) fn remember(&self, alert: &Alert, p: f64) {
        self.arrive(alert, |model, _, case, state, a| {
            let escalated = p >= model.params.threshold;
            let context = CaseContext::from_alert(alert, "");
            state.record(model, case, &a, p, escalated, Some(context));
        });
    }

    /// Remembers that `rule` was seen `cases` times on `site` (the novelty baseline, rebuilt
    /// from case memory after a restart).
    pub(crate) fn saw_rule(&self, site: &str, rule: &str, cases: u64) {
        let mut sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        sites
            .entry(site.to_owned())
            .or_default()
            .saw_rule(rule, cases);
    }

    /// Records a case with a given probability as activity on its host (tests and tools).
    pub fn record(&self, site: &str, host: &str, recent: Recent) {
        let alert = Alert {
            ticket_id: recent.ticket,
            site: Some(site.to_owned()),
            rule_id: recent.rule,
            host: host.to_owned(),
            first_seen: rfc3339(recent.first_ms),
            last_seen: rfc3339(recent.first_ms),
            alert_count: 1,
            ..Alert::default()
        };
        self.remember(&alert, recent.score.clamp(0.0, 1.0));
    }

    /// When the latest recorded case on `(site, host)` opened.
    pub fn latest_ms(&self, site: &str, host: &str) -> Option<i64> {
        let sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        sites.get(site).and_then(|s| s.latest_ms(host))
    }

    /// The cases on `(site, host)` within the window before a case opened at `at_ms` (earlier
    /// by time, then by ticket id; the case itself excluded), oldest first.
    pub(crate) fn recent(&self, site: &str, host: &str, at_ms: i64, ticket: &str) -> Vec<Recent> {
        let sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        let Some(state) = sites.get(site) else {
            return Vec::new();
        };
        state
            .recent(
                host,
                at_ms.saturating_sub(self.settings.window_ms),
                (at_ms, ticket),
            )
            .into_iter()
            .map(|r| Recent {
                ticket: r.ticket,
                first_ms: r.first_ms,
                rule: r.rule,
                score: r.p,
            })
            .collect()
    }
}

/// Adds `f` to the index; false when its ticket was already there.
fn index_add(index: &mut Index, f: &DispositionFacts) -> bool {
    if index.tickets.contains_key(&f.ticket) {
        return false;
    }
    index.tickets.insert(f.ticket.clone(), f.disposition);
    index.all.add(f.disposition, f.known_ms);
    for (map, key) in [
        (&mut index.rule, &f.rule),
        (&mut index.host, &f.host),
        (&mut index.detector, &f.detector),
    ] {
        if !key.is_empty() {
            map.entry(key.clone())
                .or_default()
                .add(f.disposition, f.known_ms);
        }
    }
    if !f.rule.is_empty() {
        let list = index.by_rule.entry(f.rule.clone()).or_default();
        let at = list.partition_point(|k| k.known_ms <= f.known_ms);
        list.insert(
            at,
            Known {
                known_ms: f.known_ms,
                ticket: f.ticket.clone(),
                site: f.site.clone(),
                host: f.host.clone(),
                rule: f.rule.clone(),
                disposition: f.disposition,
            },
        );
    }
    true
}

fn assessment(
    model: &Model,
    view: &VendorView,
    scored: &Scored,
    precedents: Vec<Precedent>,
    linked: Vec<LinkedCase>,
) -> Assessment {
    let priors = scored.levels.clone();
    Assessment {
        probability: round3(scored.p),
        threshold: model.params.threshold,
        policy: model.params.policy.clone(),
        vendor: view.evidence(),
        priors,
        signals: scored.signals(&model.params),
        correlated: scored.correlated.clone(),
        precedents,
        linked,
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// An RFC 3339 time as ms since the epoch (0 when it does not parse).
pub(crate) fn time_ms(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .unwrap_or(0)
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(ticket: &str, d: Disposition, rule: &str, known_ms: i64) -> DispositionFacts {
        DispositionFacts {
            ticket: ticket.into(),
            disposition: d,
            site: "s".into(),
            rule: rule.into(),
            host: "h".into(),
            detector: "wazuh".into(),
            known_ms,
            ..DispositionFacts::default()
        }
    }

    #[test]
    fn priors_count_only_what_was_known_before_the_time() {
        let k = Knowledge::default();
        k.add_dispositions(&[
            facts("a", Disposition::Escalate, "R1", i64::MIN),
            facts("b", Disposition::Close, "R1", 100),
            facts("c", Disposition::Escalate, "R1", 50),
            facts("d", Disposition::Close, "R2", 10),
        ]);
        assert_eq!(
            k.priors("R1", "h", "wazuh", 0).rule,
            Counts {
                escalated: 1,
                closed: 0
            }
        );
        assert_eq!(
            k.priors("R1", "h", "wazuh", 50).rule.escalated,
            1,
            "known at 50: not at 50"
        );
        let later = k.priors("R1", "h", "wazuh", 101);
        assert_eq!(
            later.rule,
            Counts {
                escalated: 2,
                closed: 1
            }
        );
        assert_eq!(later.all.total(), 4);
        assert_eq!(later.host.total(), 4);
        assert_eq!(k.priors("R3", "x", "y", 100).rule, Counts::default());
        // A ticket given twice counts once.
        k.add_dispositions(&[facts("a", Disposition::Close, "R1", 0)]);
        assert_eq!(k.dispositions(), 4);
    }

    #[test]
    fn activity_is_per_host_windowed_and_only_what_came_before() {
        let k = Knowledge::default();
        let rec = |t: &str, ms: i64| Recent {
            ticket: t.into(),
            first_ms: ms,
            rule: "R".into(),
            score: 0.5,
        };
        k.record("s", "h", rec("t1", 0));
        k.record("s", "h", rec("t2", 1000));
        k.record("s", "other", rec("t3", 1000));
        k.record("s", "h", rec("t4", 2000));
        k.record("s", "h", rec("t2", 1000)); // redelivered: still one
        let ids = |v: Vec<Recent>| v.into_iter().map(|r| r.ticket).collect::<Vec<_>>();
        assert_eq!(ids(k.recent("s", "h", 1000, "t2")), ["t1"]);
        assert_eq!(ids(k.recent("s", "h", 2000, "t4")), ["t1", "t2"]);
        assert_eq!(
            ids(k.recent("s", "h", 3_600_000 + 1000, "t9")),
            ["t2", "t4"]
        );
        assert!(k.recent("other-site", "h", 2000, "t9").is_empty());
        assert_eq!(k.latest_ms("s", "h"), Some(2000));
    }

    #[test]
    fn precedents_are_known_before_the_case_and_never_the_case() {
        let k = Knowledge::default();
        let f = |t: &str, site: &str, d, known| {
            let mut x = facts(t, d, "R", known);
            x.site = site.into();
            x
        };
        let list = [
            f("s-1", "s", Disposition::Close, 10),
            f("s-2", "s", Disposition::Escalate, 20),
            f("o-1", "o", Disposition::Escalate, 5),
            f("o-2", "o", Disposition::Close, 6),
            f("s-3", "s", Disposition::Close, 500),
        ];
        k.add_dispositions(&list);
        let alert = Alert {
            ticket_id: "s-2".into(),
            site: Some("s".into()),
            rule_id: "R".into(),
            host: "h".into(),
            ..Alert::default()
        };
        let p = k.precedents(&alert, 100);
        let tickets: Vec<&str> = p.iter().map(|p| p.ticket.as_str()).collect();
        assert!(
            !tickets.contains(&"s-2"),
            "never the case itself: {tickets:?}"
        );
        assert!(!tickets.contains(&"s-3"), "not known yet: {tickets:?}");
        assert_eq!(tickets, ["s-1", "o-1", "o-2"]);
    }
}
