//! The score: the probability that the site's analysts would escalate a case.
//!
//! `logit P = logit(prior) + w . signals + b`, where
//! - the **prior** mixes the case's rule prior in the hot and cold host states
//!   ([`super::priors`]) by the belief that its host is in an incident: the highest probability
//!   among the other cases on the host in the window before (its latest 1,024 at most: a bound
//!   on memory, not a fitted parameter);
//! - the **signals** are observed without labels on the case's own site:
//!   - `novelty`: the surprise (`-ln p_new`, with `p_new` the site's rate of first-seen rules
//!     so far) of the rules first seen on the site in the window, summed;
//!   - `volume`: `ln(1 + alert_count)` against the rule's usual count on other sites (or on
//!     this one), a burst against its own baseline;
//!   - `convergence`: how many other detector families fired on the host in the window;
//!   - `stages`: how many distinct ATT&CK techniques the host's cases in the window carry;
//!   - `host`: the log-odds of the host's own dispositions on this site against the site's;
//! - `w` and `b` are fitted on the history ([`super::fit`]), never set by hand.
//!
//! One case is decided once, at its arrival, with what came before it. When it escalates, the
//! earlier cases on its host in the window are assessed again with the incident in view, and
//! those that now reach the threshold are linked into its incident (a SOAR groups the alerts of
//! one incident the same way). A re-assessment keeps the priors the case had at its arrival, so
//! no disposition known later can reach it.

use std::collections::{HashMap, HashSet, VecDeque};

use super::priors::{COLD, Count2, CrossTallies, HOT, Prior, SiteTallies, SiteView, shrink};
use super::vendor::VendorView;
use crate::proto::{CaseContext, CorrelatedCase, PriorEvidence, SignalEvidence};

/// The signals, in weight order.
pub(crate) const FEATURES: [&str; 5] = ["novelty", "volume", "convergence", "stages", "host"];
/// Number of signals.
pub(crate) const NF: usize = FEATURES.len();

/// The parameters of the score: chosen by [`super::fit`] from the history, or the cold-start
/// policy when there is none.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Pseudo-cases shrinking each level of the other sites' prior towards its parent.
    pub k: f64,
    /// Most cases one history site adds per key.
    pub cap: f64,
    /// Pseudo-cases shrinking this site's own counts towards the other sites' prior.
    pub m: f64,
    /// Signal weights.
    pub w: [f64; NF],
    /// Intercept.
    pub b: f64,
    /// Escalate at or above this probability.
    pub threshold: f64,
    /// How these were chosen (for the evidence and the run's log).
    pub policy: String,
}

impl Params {
    /// The cold-start policy: vendor tiers decide (see [`super::priors::cold_default`]).
    pub fn cold() -> Params {
        Params {
            k: 1.0,
            cap: 5.0,
            m: 2.0,
            w: [0.0; NF],
            b: 0.0,
            threshold: super::priors::COLD_THRESHOLD,
            policy: "cold start: no dispositions yet, the vendors' severity decides (high and \
                     critical escalate)"
                .to_owned(),
        }
    }
}

/// Settings of the judgment that are policy, not fit (`[reasoning]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The window in which cases on one host belong together, ms.
    pub window_ms: i64,
    /// Half-life of a site's own dispositions, in alert time, ms.
    pub half_life_ms: f64,
    /// How much the threshold policy weighs recall against precision (F-beta's beta).
    pub recall_weight: f64,
    /// The feedback lag assumed when fitting (how long after a case's last alert its
    /// disposition arrives); `None`: no feedback.
    pub feedback_lag_ms: Option<i64>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            window_ms: 3_600_000,
            half_life_ms: 30.0 * 86_400_000.0,
            recall_weight: 2.0,
            feedback_lag_ms: Some(4 * 3_600_000),
        }
    }
}

/// A case to score.
#[derive(Debug, Clone)]
pub(crate) struct CaseIn<'a> {
    /// Ticket.
    pub ticket: &'a str,
    /// Site.
    pub site: &'a str,
    /// Host.
    pub host: &'a str,
    /// Rule.
    pub rule: &'a str,
    /// Detector family.
    pub source: &'a str,
    /// First alert, ms.
    pub first_ms: i64,
    /// Raw alerts.
    pub alert_count: u32,
    /// The vendor's view.
    pub vendor: &'a VendorView,
}

/// What the model needs of the other sites: their tallies and the parameters.
#[derive(Debug, Clone)]
pub struct Model {
    /// The other sites' dispositions.
    pub cross: CrossTallies,
    /// The score's parameters.
    pub params: Params,
    /// Policy settings.
    pub settings: Settings,
}

impl Model {
    /// The cold-start model.
    pub fn cold(settings: Settings) -> Model {
        Model {
            cross: CrossTallies::default(),
            params: Params::cold(),
            settings,
        }
    }
}

/// A case recorded on its site's stream.
#[derive(Debug, Clone)]
pub(crate) struct CaseRec {
    /// Ticket.
    pub ticket: String,
    /// First alert, ms.
    pub first_ms: i64,
    /// Rule.
    pub rule: String,
    /// Detector family.
    pub source: String,
    /// Host.
    pub host: String,
    /// ATT&CK techniques.
    pub attack: Vec<String>,
    /// Novelty surprise of its rule on the site when it arrived (0 if the rule was known).
    pub surprise: f64,
    /// Volume signal.
    pub volume: f64,
    /// The rule prior per host state, as of its arrival.
    pub prior: [f64; 2],
    /// Host log-odds, as of its arrival.
    pub host_lo: f64,
    /// Its probability (the latest assessment).
    pub p: f64,
    /// Escalation-grade itself, or linked into an escalating case's incident.
    pub escalated: bool,
    /// The case's context, for linking.
    pub case: Option<CaseContext>,
}

/// The most cases one host's window keeps (the latest): a bound on memory (a case's record
/// with its context is over a kilobyte) and on the work of an arrival, which scans its host's
/// list. An engineering bound, not fitted: on the AIT-ADS dev tickets no host comes near it
/// (at most 27 cases in an hour), so it changes no decision there.
const MAX_HOST_CASES: usize = 1_024;

/// One site's state: its own dispositions and its recent cases.
#[derive(Debug, Default)]
pub(crate) struct SiteState {
    /// The site's dispositions.
    pub tallies: SiteTallies,
    hosts: HashMap<String, VecDeque<CaseRec>>,
    window: VecDeque<(i64, f64)>,
    rules_seen: HashSet<String>,
    cases: u64,
    new_rules: u64,
    volumes: HashMap<String, VecDeque<f64>>,
    newest_ms: i64,
    recorded: u64,
}

/// The result of one assessment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scored {
    /// Probability of escalation.
    pub p: f64,
    /// Belief that the host is in an incident.
    pub p_hot: f64,
    /// The rule prior in the cold and hot states.
    pub prior: [f64; 2],
    /// The mixed prior.
    pub mixed: f64,
    /// Signal values.
    pub x: [f64; NF],
    /// The levels of the prior, most specific first.
    pub levels: Vec<PriorEvidence>,
    /// The other cases on the host in the window.
    pub correlated: Vec<CorrelatedCase>,
}

impl Scored {
    /// The signals as evidence.
    pub(crate) fn signals(&self, params: &Params) -> Vec<SignalEvidence> {
        const DETAIL: [&str; NF] = [
            "surprise of the rules first seen on this site in the window",
            "ln(1 + alerts) against the rule's usual count",
            "other detector families on the host in the window",
            "distinct ATT&CK techniques on the host in the window",
            "log-odds of the host's own dispositions against the site's",
        ];
        (0..NF)
            .map(|i| SignalEvidence {
                name: FEATURES[i].to_owned(),
                value: round3(self.x[i]),
                contribution: round3(self.x[i] * params.w[i]),
                detail: DETAIL[i].to_owned(),
            })
            .collect()
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `ln(p / (1 - p))`, clamped.
pub(crate) fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-4, 1.0 - 1e-4);
    (p / (1.0 - p)).ln()
}

/// The logistic function.
pub(crate) fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z.clamp(-40.0, 40.0)).exp())
}

/// The arrival-time facts of a case: priors and signals that do not depend on later cases.
#[derive(Debug, Clone)]
pub(crate) struct Arrival {
    prior: Prior,
    site: SiteView,
    p_rule: [f64; 2],
    host_lo: f64,
    surprise: f64,
    volume: f64,
}

impl SiteState {
    /// The priors and arrival signals of `case`: site dispositions known before its time.
    pub(crate) fn arrive(&mut self, model: &Model, case: &CaseIn<'_>) -> Arrival {
        let params = &model.params;
        let exclude = model.cross.site_index(case.site);
        let prior = model.cross.prior(
            case.rule,
            &case.vendor.category,
            case.vendor.tier,
            exclude,
            params.k,
            params.cap,
        );
        let site = self.tallies.view(
            case.rule,
            &case.vendor.category,
            case.host,
            case.first_ms,
            model.settings.half_life_ms,
        );
        let mut p_rule = [0.0; 2];
        for s in [COLD, HOT] {
            // The rule's parent at this site: the other sites' rule prior when they know the
            // rule, else this site's category (itself shrunk to the other sites' category).
            let parent = if prior.rule_known {
                prior.p[s]
            } else {
                // The site's other rules of the category (not this rule's cases again).
                let e = (site.category.e[s] - site.rule.e[s]).max(0.0);
                let n = (site.category.n[s] - site.rule.n[s]).max(0.0);
                shrink(e, n, params.m, prior.p[s])
            };
            p_rule[s] = shrink(site.rule.e[s], site.rule.n[s], params.m, parent);
        }
        let base_all = |c: Count2| (c.e[0] + c.e[1], c.n[0] + c.n[1]);
        let (be, bn) = base_all(site.base);
        let (he, hn) = base_all(site.host);
        let site_rate = shrink(be, bn, params.m, prior.p[COLD]);
        let host_lo = logit(shrink(he, hn, params.m, site_rate)) - logit(site_rate);
        let surprise = if self.rules_seen.contains(case.rule) {
            0.0
        } else {
            let p_new = (self.new_rules as f64 + 1.0) / (self.cases as f64 + 2.0);
            -p_new.ln()
        };
        let log_count = f64::from(case.alert_count.max(1)).ln_1p();
        let norm = model
            .cross
            .volume_norm(case.rule, exclude)
            .or_else(|| {
                self.volumes
                    .get(case.rule)
                    .and_then(|v| super::priors::median(&v.iter().copied().collect::<Vec<_>>()))
            })
            .unwrap_or(log_count);
        Arrival {
            prior,
            site,
            p_rule,
            host_lo,
            surprise,
            volume: log_count - norm,
        }
    }

    /// Scores `case` with its arrival facts and the host's context now.
    pub(crate) fn score(&self, model: &Model, case: &CaseIn<'_>, a: &Arrival) -> Scored {
        self.score_parts(
            model,
            case.ticket,
            case.rule,
            case.host,
            case.source,
            case.first_ms,
            &case.vendor.attack,
            a.surprise,
            a.volume,
            a.p_rule,
            a.host_lo,
            Some(a),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn score_parts(
        &self,
        model: &Model,
        ticket: &str,
        rule: &str,
        host: &str,
        source: &str,
        first_ms: i64,
        attack: &[String],
        surprise: f64,
        volume: f64,
        p_rule: [f64; 2],
        host_lo: f64,
        arrival: Option<&Arrival>,
    ) -> Scored {
        let window = model.settings.window_ms;
        let from = first_ms.saturating_sub(window);
        let ctx: Vec<&CaseRec> = self
            .hosts
            .get(host)
            .map(|list| {
                list.iter()
                    .filter(|r| r.first_ms >= from && r.ticket != ticket)
                    .collect()
            })
            .unwrap_or_default();
        // The host is in an incident when another rule's case on it is escalation-grade: a rule
        // repeating (an exfiltration stream, a noisy job) is its own context, not an incident.
        let p_hot = ctx
            .iter()
            .filter(|r| r.rule != rule)
            .map(|r| r.p)
            .fold(0.0, f64::max);
        let mixed = p_hot * p_rule[HOT] + (1.0 - p_hot) * p_rule[COLD];
        // On arrival the case is not on the stream yet; re-assessed, it is.
        let own = if arrival.is_some() { surprise } else { 0.0 };
        let novelty: f64 = own
            + self
                .window
                .iter()
                .filter(|(ms, _)| *ms >= from)
                .map(|(_, s)| *s)
                .sum::<f64>();
        let sources: HashSet<&str> = ctx
            .iter()
            .map(|r| r.source.as_str())
            .filter(|s| *s != source)
            .collect();
        let mut techniques: HashSet<&str> = attack.iter().map(String::as_str).collect();
        for r in &ctx {
            techniques.extend(r.attack.iter().map(String::as_str));
        }
        let x = [
            novelty,
            volume,
            sources.len() as f64,
            techniques.len() as f64,
            host_lo,
        ];
        let params = &model.params;
        let z = logit(mixed)
            + params.b
            + x.iter()
                .zip(params.w.iter())
                .map(|(x, w)| x * w)
                .sum::<f64>();
        let mut levels = Vec::new();
        if let Some(a) = arrival {
            let site = &a.site;
            levels.push(PriorEvidence {
                level: "rule@site".into(),
                key: rule.to_owned(),
                escalated: round3(site.rule.e[COLD] + site.rule.e[HOT]),
                closed: round3(
                    site.rule.n[COLD] + site.rule.n[HOT] - site.rule.e[COLD] - site.rule.e[HOT],
                ),
                rate: round3(mixed),
            });
            for l in &a.prior.levels {
                levels.push(PriorEvidence {
                    level: l.level.to_owned(),
                    key: l.key.clone(),
                    escalated: round3(l.escalated),
                    closed: round3(l.total - l.escalated),
                    rate: round3(l.rate),
                });
            }
            let (he, hn) = (
                site.host.e[COLD] + site.host.e[HOT],
                site.host.n[COLD] + site.host.n[HOT],
            );
            levels.push(PriorEvidence {
                level: "host@site".into(),
                key: host.to_owned(),
                escalated: round3(he),
                closed: round3(hn - he),
                rate: round3(sigmoid(host_lo)),
            });
        }
        let mut correlated: Vec<CorrelatedCase> = ctx
            .iter()
            .map(|r| CorrelatedCase {
                ticket: r.ticket.clone(),
                rule_id: r.rule.clone(),
                source: r.source.clone(),
                probability: round3(r.p),
            })
            .collect();
        correlated.sort_by(|a, b| b.probability.total_cmp(&a.probability));
        correlated.truncate(10);
        Scored {
            p: sigmoid(z),
            p_hot,
            prior: p_rule,
            mixed,
            x,
            levels,
            correlated,
        }
    }

    /// Records `case` (scored `p`) on the stream. A ticket recorded again replaces itself.
    pub(crate) fn record(
        &mut self,
        model: &Model,
        case: &CaseIn<'_>,
        a: &Arrival,
        p: f64,
        escalated: bool,
        context: Option<CaseContext>,
    ) {
        let window = model.settings.window_ms;
        self.newest_ms = self.newest_ms.max(case.first_ms);
        let horizon = self.newest_ms.saturating_sub(window);
        let list = self.hosts.entry(case.host.to_owned()).or_default();
        let again = list.iter().any(|r| r.ticket == case.ticket);
        list.retain(|r| r.ticket != case.ticket && r.first_ms >= horizon);
        list.push_back(CaseRec {
            ticket: case.ticket.to_owned(),
            first_ms: case.first_ms,
            rule: case.rule.to_owned(),
            source: case.source.to_owned(),
            host: case.host.to_owned(),
            attack: case.vendor.attack.clone(),
            surprise: a.surprise,
            volume: a.volume,
            prior: a.p_rule,
            host_lo: a.host_lo,
            p,
            escalated,
            case: context,
        });
        // A host's window holds its latest cases, at most MAX_HOST_CASES: at a steady 150
        // alerts/s on a few hosts an hour of cases would be gigabytes (and each arrival scans
        // its host's list).
        if list.len() > MAX_HOST_CASES {
            list.pop_front();
        }
        if again {
            return;
        }
        while self.window.front().is_some_and(|(ms, _)| *ms < horizon) {
            self.window.pop_front();
        }
        self.window.push_back((case.first_ms, a.surprise));
        if self.rules_seen.insert(case.rule.to_owned()) {
            self.new_rules += 1;
        }
        self.cases += 1;
        let v = self.volumes.entry(case.rule.to_owned()).or_default();
        v.push_back(f64::from(case.alert_count.max(1)).ln_1p());
        if v.len() > 64 {
            v.pop_front();
        }
        self.recorded += 1;
        if self.recorded.is_multiple_of(4096) {
            self.hosts.retain(|_, list| {
                list.retain(|r| r.first_ms >= horizon);
                !list.is_empty()
            });
        }
    }

    /// Remembers a rule as seen on this site (rebuilding the novelty baseline after a restart).
    pub(crate) fn saw_rule(&mut self, rule: &str, cases: u64) {
        if self.rules_seen.insert(rule.to_owned()) {
            self.new_rules += 1;
        }
        self.cases += cases;
    }

    /// After `ticket` (on `host`, opened `first_ms`) escalated: the earlier cases on its host
    /// in the window that, assessed again now, reach the threshold. They are marked linked and
    /// returned with their new probability.
    pub(crate) fn link(
        &mut self,
        model: &Model,
        ticket: &str,
        host: &str,
        first_ms: i64,
    ) -> Vec<(CaseRec, f64)> {
        let from = first_ms.saturating_sub(model.settings.window_ms);
        let candidates: Vec<CaseRec> = self
            .hosts
            .get(host)
            .map(|list| {
                list.iter()
                    .filter(|r| !r.escalated && r.ticket != ticket && r.first_ms >= from)
                    .filter(|r| (r.first_ms, r.ticket.as_str()) <= (first_ms, ticket))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let mut linked = Vec::new();
        for r in candidates {
            let s = self.score_parts(
                model, &r.ticket, &r.rule, &r.host, &r.source, r.first_ms, &r.attack, r.surprise,
                r.volume, r.prior, r.host_lo, None,
            );
            if s.p >= model.params.threshold {
                linked.push((r.clone(), s.p));
            }
        }
        if let Some(list) = self.hosts.get_mut(host) {
            for rec in list.iter_mut() {
                if let Some((_, p)) = linked.iter().find(|(l, _)| l.ticket == rec.ticket) {
                    rec.escalated = true;
                    rec.p = rec.p.max(*p);
                }
            }
        }
        linked
    }

    /// The recorded cases on `host` opened in `[from, before)`, oldest first.
    pub(crate) fn recent(&self, host: &str, from: i64, before: (i64, &str)) -> Vec<CaseRec> {
        let mut out: Vec<CaseRec> = self
            .hosts
            .get(host)
            .map(|l| {
                l.iter()
                    .filter(|r| r.first_ms >= from && (r.first_ms, r.ticket.as_str()) < before)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| (a.first_ms, &a.ticket).cmp(&(b.first_ms, &b.ticket)));
        out
    }

    /// When the latest recorded case on `host` opened.
    pub(crate) fn latest_ms(&self, host: &str) -> Option<i64> {
        self.hosts
            .get(host)
            .and_then(|l| l.iter().map(|r| r.first_ms).max())
    }

    /// Whether the case `ticket` on `host` escalated when last assessed, if it is still
    /// recorded.
    pub(crate) fn escalated(&self, host: &str, ticket: &str) -> Option<bool> {
        self.hosts
            .get(host)?
            .iter()
            .find(|r| r.ticket == ticket)
            .map(|r| r.escalated)
    }

    /// The host state a case had when it was decided (its `p_hot`: the likeliest case of
    /// another rule on its host in the window before), if it is still recorded.
    pub(crate) fn hot_of(&self, host: &str, ticket: &str, window_ms: i64) -> Option<f64> {
        let list = self.hosts.get(host)?;
        let me = list.iter().find(|r| r.ticket == ticket)?;
        let from = me.first_ms.saturating_sub(window_ms);
        Some(
            list.iter()
                .filter(|r| {
                    r.first_ms >= from
                        && r.rule != me.rule
                        && (r.first_ms, r.ticket.as_str()) < (me.first_ms, me.ticket.as_str())
                })
                .map(|r| r.p)
                .fold(0.0, f64::max),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judgment::vendor::Tier;

    #[test]
    fn a_host_window_keeps_only_its_latest_cases() {
        let model = Model::cold(Settings::default());
        let vendor = VendorView {
            category: "wazuh:authentication_failed".into(),
            tier: Tier::Low,
            attack: Vec::new(),
            classtype: None,
            level: Some(5),
            source: "test".into(),
        };
        let mut state = SiteState::default();
        let n = MAX_HOST_CASES + 100;
        let tickets: Vec<String> = (0..n).map(|i| format!("t-{i:05}")).collect();
        // All within a second: the time window alone would keep every one of them.
        for (i, ticket) in tickets.iter().enumerate() {
            let case = CaseIn {
                ticket,
                site: "s",
                host: "h",
                rule: "5710",
                source: "wazuh",
                first_ms: 1_700_000_000_000 + i as i64,
                alert_count: 1,
                vendor: &vendor,
            };
            let arrival = state.arrive(&model, &case);
            state.record(&model, &case, &arrival, 0.1, false, None);
        }
        let list = &state.hosts["h"];
        assert_eq!(list.len(), MAX_HOST_CASES);
        assert_eq!(
            list.front().map(|r| r.ticket.as_str()),
            Some(tickets[100].as_str())
        );
        assert_eq!(
            list.back().map(|r| r.ticket.as_str()),
            tickets.last().map(String::as_str)
        );
        // Every case still counts for the site, only the host's list is bounded.
        assert_eq!(state.cases, n as u64);
    }
}
