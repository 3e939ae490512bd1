//! Fitting the score to the history a run is given: every parameter the score needs is chosen
//! here, by code, from the dispositions of the history's sites, each site in turn playing the
//! new site the others have never seen (so a leave-one-site-out backtest fits inside each fold).
//!
//! 1. The prior's shrinkage `k` and per-site cap: the pair whose other-sites prior best predicts
//!    each history site's dispositions (mean log-likelihood, each site weighing the same).
//! 2. The site strength `m`: the one whose site-level priors best predict each history site's
//!    dispositions once its own earlier dispositions arrive after the feedback lag (with no
//!    feedback, `m = k`).
//! 3. The signal weights: a ridge logistic regression (penalty 1 on each weight, none on the
//!    intercept) with the prior's log-odds as an offset, on every history case as it would have
//!    been scored on arrival, its host context read from the analysts' labels.
//! 4. The threshold: replaying each history site as the runtime would (its own probabilities,
//!    linking included), the one with the best F-beta, where beta is the policy's recall weight.

use std::collections::HashMap;

use super::model::{CaseIn, Model, NF, Params, Settings, SiteState, logit, sigmoid};
use super::priors::{COLD, CrossCase, CrossTallies, HOT, SiteDisposition};
use super::vendor::VendorView;

/// A labelled case of the history.
#[derive(Debug, Clone)]
pub(crate) struct HistoryCase {
    /// Ticket.
    pub ticket: String,
    /// Site.
    pub site: String,
    /// Host.
    pub host: String,
    /// Rule.
    pub rule: String,
    /// Detector family.
    pub source: String,
    /// First alert, ms.
    pub first_ms: i64,
    /// Last alert, ms.
    pub last_ms: i64,
    /// Raw alerts.
    pub alert_count: u32,
    /// The vendor's view of its rule.
    pub vendor: VendorView,
    /// Escalated by the analysts.
    pub escalated: bool,
}

impl HistoryCase {
    /// Its disposition as its own site counts it, known from `known_ms`, its host's state
    /// read from the labels (`hot`).
    pub(crate) fn site_disposition(&self, hot: bool, known_ms: i64) -> SiteDisposition {
        SiteDisposition {
            ticket: self.ticket.clone(),
            rule: self.rule.clone(),
            category: self.vendor.category.clone(),
            host: self.host.clone(),
            escalated: self.escalated,
            hot: if hot { 1.0 } else { 0.0 },
            case_ms: self.last_ms,
            known_ms,
        }
    }

    fn as_in(&self) -> CaseIn<'_> {
        CaseIn {
            ticket: &self.ticket,
            site: &self.site,
            host: &self.host,
            rule: &self.rule,
            source: &self.source,
            first_ms: self.first_ms,
            alert_count: self.alert_count,
            vendor: &self.vendor,
        }
    }
}

const GRID_K: [f64; 5] = [0.5, 1.0, 2.0, 4.0, 8.0];
const GRID_CAP: [f64; 5] = [2.0, 5.0, 10.0, 20.0, 50.0];
const GRID_M: [f64; 5] = [0.5, 1.0, 2.0, 4.0, 8.0];
const GRID_THRESHOLD: [f64; 19] = [
    0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7,
    0.8, 0.9,
];

/// What the fit chose and how the history scored with it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FitReport {
    /// History sites.
    pub sites: usize,
    /// History cases.
    pub cases: usize,
    /// Of which escalated.
    pub escalated: usize,
    /// Precision, recall and F-beta of the chosen threshold on the history replays.
    pub precision: f64,
    /// See `precision`.
    pub recall: f64,
    /// See `precision`.
    pub f_beta: f64,
}

/// Fits the score to `history` (cases of any order). With fewer than two sites or no
/// escalation there is nothing to fit on: the cold-start policy, with whatever priors the
/// history gives.
pub(crate) fn fit(history: &[HistoryCase], settings: &Settings) -> (Model, FitReport) {
    let mut by_site: HashMap<&str, Vec<&HistoryCase>> = HashMap::new();
    for c in history {
        by_site.entry(c.site.as_str()).or_default().push(c);
    }
    let mut sites: Vec<(&str, Vec<&HistoryCase>)> = by_site.into_iter().collect();
    sites.sort_by(|a, b| a.0.cmp(b.0));
    for (_, cases) in &mut sites {
        cases.sort_by(|a, b| (a.first_ms, &a.ticket).cmp(&(b.first_ms, &b.ticket)));
    }
    let hot = hot_labels(&sites, settings.window_ms);
    let cross = CrossTallies::build(history_cases(&sites, &hot));
    let escalated = history.iter().filter(|c| c.escalated).count();
    let mut report = FitReport {
        sites: sites.len(),
        cases: history.len(),
        escalated,
        ..FitReport::default()
    };
    let mut model = Model {
        cross,
        params: Params::cold(),
        settings: settings.clone(),
    };
    if sites.len() < 2 || escalated == 0 {
        if !history.is_empty() {
            model.params.policy = format!(
                "{} dispositions of {} site(s), {escalated} escalated: too few to fit on (two \
                 sites with escalations are needed); the vendors' severity and these priors \
                 decide at the cold-start threshold",
                history.len(),
                sites.len()
            );
        }
        return (model, report);
    }
    // 1. k and cap.
    let mut best = (f64::NEG_INFINITY, 1.0, 5.0);
    for k in GRID_K {
        for cap in GRID_CAP {
            let ll = mean_over_sites(&sites, |i, cases| {
                cases
                    .iter()
                    .zip(&hot[i])
                    .map(|(c, &h)| {
                        let p = model.cross.prior(
                            &c.rule,
                            &c.vendor.category,
                            c.vendor.tier,
                            model.cross.site_index(&c.site),
                            k,
                            cap,
                        );
                        loglik(p.p[usize::from(h)], c.escalated)
                    })
                    .sum::<f64>()
                    / cases.len().max(1) as f64
            });
            if ll > best.0 {
                best = (ll, k, cap);
            }
        }
    }
    model.params.k = best.1;
    model.params.cap = best.2;
    // 2. m.
    model.params.m = match settings.feedback_lag_ms {
        None => model.params.k,
        Some(lag) => {
            let mut best_m = (f64::NEG_INFINITY, model.params.k);
            for m in GRID_M {
                let mut trial = model.clone();
                trial.params.m = m;
                let ll = mean_over_sites(&sites, |i, cases| {
                    let mut state = SiteState::default();
                    feed_labels(&mut state, cases, &hot[i], lag);
                    cases
                        .iter()
                        .zip(&hot[i])
                        .map(|(c, &h)| {
                            let a = state.arrive(&trial, &c.as_in());
                            loglik(a_prior(&state, &trial, c, &a, h), c.escalated)
                        })
                        .sum::<f64>()
                        / cases.len().max(1) as f64
                });
                if ll > best_m.0 {
                    best_m = (ll, m);
                }
            }
            best_m.1
        }
    };
    // 3. Signal weights, with the context read from the labels.
    let mut rows: Vec<Vec<([f64; NF], f64, bool)>> = Vec::with_capacity(sites.len());
    for (i, (_, cases)) in sites.iter().enumerate() {
        let mut state = SiteState::default();
        if let Some(lag) = settings.feedback_lag_ms {
            feed_labels(&mut state, cases, &hot[i], lag);
        }
        let mut site_rows = Vec::with_capacity(cases.len());
        for c in cases {
            let case = c.as_in();
            let a = state.arrive(&model, &case);
            let s = state.score(&model, &case, &a);
            site_rows.push((s.x, logit(s.mixed), c.escalated));
            let label = if c.escalated { 1.0 } else { 0.0 };
            state.record(&model, &case, &a, label, c.escalated, None);
        }
        rows.push(site_rows);
    }
    let all: Vec<([f64; NF], f64, bool)> = rows.iter().flatten().copied().collect();
    let (w, b) = logistic(&all, 1.0);
    model.params.w = w;
    model.params.b = b;
    // 4. The threshold: each history site replayed as the runtime would, with weights fitted
    // on the other history sites only, so the choice sees out-of-site probabilities as the new
    // site will.
    let beta = settings.recall_weight.max(0.0);
    let folds: Vec<Model> = (0..sites.len())
        .map(|q| {
            let others: Vec<([f64; NF], f64, bool)> = rows
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != q)
                .flat_map(|(_, r)| r.iter().copied())
                .collect();
            let (w, b) = logistic(&others, 1.0);
            let mut m = model.clone();
            m.params.w = w;
            m.params.b = b;
            m
        })
        .collect();
    let mut best_t = (f64::NEG_INFINITY, model.params.threshold, 0.0, 0.0);
    for t in GRID_THRESHOLD {
        let mut per_site: Vec<(f64, f64, f64)> = Vec::with_capacity(sites.len());
        for (i, (_, cases)) in sites.iter().enumerate() {
            let mut trial = folds[i].clone();
            trial.params.threshold = t;
            let (mut tp, mut fp, mut fn_) = (0.0, 0.0, 0.0);
            for ((p, linked), c) in replay_site(&trial, cases, settings.feedback_lag_ms, &hot[i])
                .into_iter()
                .zip(cases.iter())
            {
                let esc = p >= t || linked >= t;
                match (esc, c.escalated) {
                    (true, true) => tp += 1.0,
                    (true, false) => fp += 1.0,
                    (false, true) => fn_ += 1.0,
                    _ => {}
                }
            }
            let (precision, recall, f) = f_beta(tp, fp, fn_, beta);
            per_site.push((f, precision, recall));
        }
        // The median site's F-beta: a site with one odd attack does not set the threshold
        // of every other site.
        per_site.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mid = per_site[per_site.len() / 2];
        let lower = per_site[(per_site.len() - 1) / 2];
        let f = (mid.0 + lower.0) / 2.0;
        if f > best_t.0 {
            best_t = (f, t, (mid.1 + lower.1) / 2.0, (mid.2 + lower.2) / 2.0);
        }
    }
    model.params.threshold = best_t.1;
    report.f_beta = best_t.0;
    report.precision = best_t.2;
    report.recall = best_t.3;
    model.params.policy = format!(
        "fitted on {} dispositions of {} sites ({escalated} escalated): escalate at p >= {} \
         (best median F{beta} of the history's sites replayed: precision {:.2}, recall {:.2}); prior k={} \
         cap={} m={}",
        history.len(),
        sites.len(),
        model.params.threshold,
        report.precision,
        report.recall,
        model.params.k,
        model.params.cap,
        model.params.m
    );
    (model, report)
}

/// Replays one history site as the runtime would: each case's arrival probability and, when an
/// escalation linked it, the probability it was linked with (0 otherwise).
fn replay_site(
    model: &Model,
    cases: &[&HistoryCase],
    lag: Option<i64>,
    hot: &[bool],
) -> Vec<(f64, f64)> {
    let mut state = SiteState::default();
    if let Some(lag) = lag {
        feed_labels(&mut state, cases, hot, lag);
    }
    let mut out: Vec<(f64, f64)> = vec![(0.0, 0.0); cases.len()];
    let index: HashMap<&str, usize> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| (c.ticket.as_str(), i))
        .collect();
    for (i, c) in cases.iter().enumerate() {
        let case = c.as_in();
        let a = state.arrive(model, &case);
        let s = state.score(model, &case, &a);
        let escalates = s.p >= model.params.threshold;
        state.record(model, &case, &a, s.p, escalates, None);
        out[i].0 = s.p;
        if escalates {
            for (rec, p) in state.link(model, &c.ticket, &c.host, c.first_ms) {
                if let Some(&j) = index.get(rec.ticket.as_str()) {
                    out[j].1 = out[j].1.max(p);
                }
            }
        }
    }
    out
}

/// The prior a case had in the state its labels say.
fn a_prior(
    state: &SiteState,
    model: &Model,
    c: &HistoryCase,
    a: &super::model::Arrival,
    hot: bool,
) -> f64 {
    let s = state.score(model, &c.as_in(), a);
    s.prior[if hot { HOT } else { COLD }]
}

/// Queues a site's own dispositions as feedback known `lag` after each case's last alert.
fn feed_labels(state: &mut SiteState, cases: &[&HistoryCase], hot: &[bool], lag: i64) {
    for (c, &h) in cases.iter().zip(hot) {
        state
            .tallies
            .push(c.site_disposition(h, c.last_ms.saturating_add(lag.max(1))));
    }
}

/// Per site (in its time order), whether an escalated case of another rule came before each
/// case on its host within the window (the host was in an incident, by the labels).
pub(crate) fn hot_labels(sites: &[(&str, Vec<&HistoryCase>)], window_ms: i64) -> Vec<Vec<bool>> {
    sites
        .iter()
        .map(|(_, cases)| {
            // Per host, the latest escalation of each rule.
            let mut escalated: HashMap<&str, HashMap<&str, i64>> = HashMap::new();
            cases
                .iter()
                .map(|c| {
                    let from = c.first_ms.saturating_sub(window_ms);
                    let hot = escalated.get(c.host.as_str()).is_some_and(|rules| {
                        rules
                            .iter()
                            .any(|(rule, &ms)| *rule != c.rule.as_str() && ms >= from)
                    });
                    if c.escalated {
                        escalated
                            .entry(&c.host)
                            .or_default()
                            .insert(&c.rule, c.first_ms);
                    }
                    hot
                })
                .collect()
        })
        .collect()
}

fn history_cases<'a>(
    sites: &'a [(&'a str, Vec<&'a HistoryCase>)],
    hot: &'a [Vec<bool>],
) -> impl Iterator<Item = CrossCase<'a>> + 'a {
    sites.iter().enumerate().flat_map(move |(i, (_, cases))| {
        cases.iter().zip(&hot[i]).map(|(c, &h)| CrossCase {
            site: &c.site,
            rule: &c.rule,
            category: &c.vendor.category,
            tier: c.vendor.tier,
            escalated: c.escalated,
            hot: h,
            log_count: f64::from(c.alert_count.max(1)).ln_1p(),
        })
    })
}

fn mean_over_sites(
    sites: &[(&str, Vec<&HistoryCase>)],
    mut per_site: impl FnMut(usize, &[&HistoryCase]) -> f64,
) -> f64 {
    let total: f64 = sites
        .iter()
        .enumerate()
        .map(|(i, (_, cases))| per_site(i, cases))
        .sum();
    total / sites.len().max(1) as f64
}

/// Precision, recall and F-beta of a confusion matrix.
fn f_beta(tp: f64, fp: f64, fn_: f64, beta: f64) -> (f64, f64, f64) {
    let precision = if tp + fp > 0.0 { tp / (tp + fp) } else { 0.0 };
    let recall = if tp + fn_ > 0.0 { tp / (tp + fn_) } else { 0.0 };
    let b2 = beta * beta;
    let f = if precision + recall > 0.0 {
        (1.0 + b2) * precision * recall / (b2 * precision + recall)
    } else {
        0.0
    };
    (precision, recall, f)
}

fn loglik(p: f64, escalated: bool) -> f64 {
    let p = p.clamp(1e-4, 1.0 - 1e-4);
    if escalated { p.ln() } else { (1.0 - p).ln() }
}

/// Ridge logistic regression with an offset: minimizes
/// `sum(log(1 + e^z) - y z) + lambda/2 |w|^2`, `z = offset + w.x + b`, by Newton's method with
/// step halving. Returns the weights and the intercept.
pub(crate) fn logistic(rows: &[([f64; NF], f64, bool)], lambda: f64) -> ([f64; NF], f64) {
    const D: usize = NF + 1;
    let mut beta = [0.0; D];
    let loss = |beta: &[f64; D]| -> f64 {
        let mut l = 0.0;
        for (x, off, y) in rows {
            let z = off + beta[NF] + (0..NF).map(|j| beta[j] * x[j]).sum::<f64>();
            l += softplus(z) - if *y { z } else { 0.0 };
        }
        l + 0.5 * lambda * (0..NF).map(|j| beta[j] * beta[j]).sum::<f64>()
    };
    let mut current = loss(&beta);
    for _ in 0..100 {
        let mut g = [0.0; D];
        let mut h = [[0.0; D]; D];
        for (x, off, y) in rows {
            let mut xb = [1.0; D];
            xb[..NF].copy_from_slice(x);
            let z = off + (0..D).map(|j| beta[j] * xb[j]).sum::<f64>();
            let p = sigmoid(z);
            let r = p - if *y { 1.0 } else { 0.0 };
            let wgt = p * (1.0 - p);
            for a in 0..D {
                g[a] += r * xb[a];
                for b in 0..D {
                    h[a][b] += wgt * xb[a] * xb[b];
                }
            }
        }
        for j in 0..NF {
            g[j] += lambda * beta[j];
            h[j][j] += lambda;
        }
        for (j, row) in h.iter_mut().enumerate() {
            row[j] += 1e-9;
        }
        let Some(step) = solve(h, g) else { break };
        let mut t = 1.0;
        let mut improved = false;
        while t > 1e-8 {
            let mut trial = beta;
            for j in 0..D {
                trial[j] -= t * step[j];
            }
            let l = loss(&trial);
            if l <= current {
                let gain = current - l;
                beta = trial;
                current = l;
                improved = gain > 1e-10;
                break;
            }
            t /= 2.0;
        }
        if !improved {
            break;
        }
    }
    let mut w = [0.0; NF];
    w.copy_from_slice(&beta[..NF]);
    (w, beta[NF])
}

fn softplus(z: f64) -> f64 {
    if z > 30.0 { z } else { z.exp().ln_1p() }
}

/// Solves `a x = b` by Gaussian elimination with partial pivoting.
fn solve<const D: usize>(mut a: [[f64; D]; D], mut b: [f64; D]) -> Option<[f64; D]> {
    for col in 0..D {
        let pivot = (col..D).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-300 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let pivot_row = a[col];
        for row in col + 1..D {
            let f = a[row][col] / pivot_row[col];
            for (x, p) in a[row].iter_mut().zip(pivot_row.iter()).skip(col) {
                *x -= f * p;
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = [0.0; D];
    for row in (0..D).rev() {
        let s: f64 = (row + 1..D).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logistic_regression_recovers_a_known_weight() {
        // y ~ Bernoulli(sigmoid(2 x0 - 1)), deterministic pseudo-random draws.
        let mut rng = fastrand::Rng::with_seed(7);
        let rows: Vec<([f64; NF], f64, bool)> = (0..20_000)
            .map(|_| {
                let x0 = rng.f64() * 4.0 - 2.0;
                let mut x = [0.0; NF];
                x[0] = x0;
                x[1] = rng.f64();
                (x, 0.0, rng.f64() < sigmoid(2.0 * x0 - 1.0))
            })
            .collect();
        let (w, b) = logistic(&rows, 1.0);
        assert!((w[0] - 2.0).abs() < 0.15, "{w:?}");
        assert!(w[1].abs() < 0.2, "{w:?}");
        assert!((b + 1.0).abs() < 0.2, "{b}");
    }

    #[test]
    fn the_solver_solves() {
        let x = solve([[2.0, 1.0], [1.0, 3.0]], [3.0, 5.0]).unwrap();
        assert!((x[0] - 0.8).abs() < 1e-12 && (x[1] - 1.4).abs() < 1e-12);
        assert!(solve([[0.0, 0.0], [0.0, 0.0]], [1.0, 1.0]).is_none());
    }
}
