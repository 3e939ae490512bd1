//! Hierarchical priors: how often analysts escalated cases like this one.
//!
//! Two layers, both counted in two states of the case's host: **cold** (no escalation-grade
//! case on the host in the window before) and **hot** (one there), because the same rule means
//! different things inside an attack and outside one (a web server's 400 errors are noise on a
//! quiet day and part of the attack during a scan).
//!
//! - **Other sites** ([`CrossTallies`], from the history a run is given): rule -> detector
//!   category -> vendor tier -> base rate, each shrunk towards its parent by `k` pseudo-cases.
//!   A site is the unit of evidence: each site adds at most `cap` cases' worth per key, so one
//!   site that escalated a rule a hundred times does not make it an attack everywhere. A
//!   vendor tier with no history shrinks towards its cold-start default ([`cold_default`]).
//! - **This site** ([`SiteTallies`], from every disposition of the site known by the case's
//!   time, history and online feedback alike): rule@site and category@site shrunk towards the
//!   other sites' estimate by `m` pseudo-cases, and host@site; each disposition decays with
//!   alert time (half-life), so the site's own analysts outweigh any built-in or borrowed prior
//!   as their closings and escalations accumulate.

use std::collections::HashMap;

use super::vendor::Tier;

/// The two host states a prior is counted in.
pub(crate) const COLD: usize = 0;
/// See [`COLD`].
pub(crate) const HOT: usize = 1;

/// Cold-start prior of a vendor tier: the probability of escalation assumed when no
/// disposition says otherwise. A written policy, not a fit: high and critical vendor severities
/// are escalated on a cold start ([`COLD_THRESHOLD`]), medium ones reach suspicious, the rest
/// stay below.
pub(crate) fn cold_default(tier: Tier) -> f64 {
    match tier {
        Tier::Critical => 0.9,
        Tier::High => 0.6,
        Tier::Medium => 0.15,
        Tier::Low => 0.04,
        Tier::Info => 0.01,
        Tier::Unknown => 0.03,
    }
}

/// The escalation threshold on a cold start (no dispositions to fit one on).
pub(crate) const COLD_THRESHOLD: f64 = 0.5;

/// Escalated and total counts in the cold and hot states.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Count2 {
    /// Escalated, per state.
    pub e: [f64; 2],
    /// All, per state.
    pub n: [f64; 2],
}

impl Count2 {
    /// Adds one case: `hot` is the weight of the hot state (soft when the state was a belief).
    pub(crate) fn add(&mut self, escalated: bool, hot: f64) {
        let hot = hot.clamp(0.0, 1.0);
        for (state, w) in [(COLD, 1.0 - hot), (HOT, hot)] {
            self.n[state] += w;
            if escalated {
                self.e[state] += w;
            }
        }
    }

    fn scaled(self, by: f64) -> Count2 {
        Count2 {
            e: [self.e[0] * by, self.e[1] * by],
            n: [self.n[0] * by, self.n[1] * by],
        }
    }

    fn minus(self, o: Count2) -> Count2 {
        Count2 {
            e: [(self.e[0] - o.e[0]).max(0.0), (self.e[1] - o.e[1]).max(0.0)],
            n: [(self.n[0] - o.n[0]).max(0.0), (self.n[1] - o.n[1]).max(0.0)],
        }
    }

    fn plus(self, o: Count2) -> Count2 {
        Count2 {
            e: [self.e[0] + o.e[0], self.e[1] + o.e[1]],
            n: [self.n[0] + o.n[0], self.n[1] + o.n[1]],
        }
    }

    /// At most `cap` cases' worth per state, keeping the rate.
    fn capped(self, cap: f64) -> Count2 {
        let mut out = self;
        for s in [COLD, HOT] {
            if self.n[s] > cap {
                out.e[s] = self.e[s] * cap / self.n[s];
                out.n[s] = cap;
            }
        }
        out
    }
}

/// `(e + strength * parent) / (n + strength)`.
pub(crate) fn shrink(e: f64, n: f64, strength: f64, parent: f64) -> f64 {
    if n + strength <= 0.0 {
        return parent;
    }
    ((e + strength * parent) / (n + strength)).clamp(1e-4, 1.0 - 1e-4)
}

/// Per-site counts of one key (index = history site).
type PerSite = Vec<(u16, Count2)>;

/// The history's dispositions, per site: what other sites' analysts decided.
#[derive(Debug, Clone, Default)]
pub struct CrossTallies {
    /// History sites, by index.
    pub sites: Vec<String>,
    rule: HashMap<String, PerSite>,
    category: HashMap<String, PerSite>,
    tier: HashMap<Tier, PerSite>,
    base: Vec<Count2>,
    /// Per rule, per site, the median log alert count of its cases (for the volume norm).
    volume: HashMap<String, Vec<(u16, f64)>>,
}

/// One history case, as the tallies count it.
#[derive(Debug, Clone)]
pub struct CrossCase<'a> {
    /// Site.
    pub site: &'a str,
    /// Rule.
    pub rule: &'a str,
    /// Detector category.
    pub category: &'a str,
    /// Vendor tier.
    pub tier: Tier,
    /// Escalated by the analysts.
    pub escalated: bool,
    /// Whether its host was hot (an escalated case there in the window before).
    pub hot: bool,
    /// `ln(1 + alert_count)`.
    pub log_count: f64,
}

/// One level of a prior, for the evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Level {
    /// `rule@other-sites`, `category@other-sites`, ...
    pub level: &'static str,
    /// The key.
    pub key: String,
    /// Counts used (capped), in the state asked.
    pub escalated: f64,
    /// Cases counted.
    pub total: f64,
    /// The shrunk rate.
    pub rate: f64,
}

/// A prior for both states, with the levels it went through.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prior {
    /// Probability of escalation in the cold and hot states.
    pub p: [f64; 2],
    /// Whether the rule itself has history (else its category stood in).
    pub rule_known: bool,
    /// The levels, most specific first (the cold state's counts and the hot state's rate).
    pub levels: Vec<Level>,
}

impl CrossTallies {
    /// Counts `cases`.
    pub fn build<'a>(cases: impl IntoIterator<Item = CrossCase<'a>>) -> CrossTallies {
        let mut t = CrossTallies::default();
        let mut index: HashMap<String, u16> = HashMap::new();
        let mut volume: HashMap<String, HashMap<u16, Vec<f64>>> = HashMap::new();
        for c in cases {
            let site = match index.get(c.site) {
                Some(i) => *i,
                None => {
                    let i = u16::try_from(t.sites.len()).unwrap_or(u16::MAX);
                    t.sites.push(c.site.to_owned());
                    t.base.push(Count2::default());
                    index.insert(c.site.to_owned(), i);
                    i
                }
            };
            let hot = if c.hot { 1.0 } else { 0.0 };
            add(
                t.rule.entry(c.rule.to_owned()).or_default(),
                site,
                c.escalated,
                hot,
            );
            add(
                t.category.entry(c.category.to_owned()).or_default(),
                site,
                c.escalated,
                hot,
            );
            add(t.tier.entry(c.tier).or_default(), site, c.escalated, hot);
            t.base[usize::from(site)].add(c.escalated, hot);
            volume
                .entry(c.rule.to_owned())
                .or_default()
                .entry(site)
                .or_default()
                .push(c.log_count);
        }
        t.volume = volume
            .into_iter()
            .map(|(rule, sites)| {
                let medians = sites
                    .into_iter()
                    .filter_map(|(site, v)| median(&v).map(|m| (site, m)))
                    .collect();
                (rule, medians)
            })
            .collect();
        t
    }

    /// Whether any history was counted.
    pub fn is_empty(&self) -> bool {
        self.sites.is_empty()
    }

    /// The index of `site` among the history sites.
    pub(crate) fn site_index(&self, site: &str) -> Option<u16> {
        self.sites
            .iter()
            .position(|s| s == site)
            .and_then(|i| u16::try_from(i).ok())
    }

    /// The base rate, both states: the mean of the sites' own rates (a site is the unit).
    fn base_rate(&self, exclude: Option<u16>) -> f64 {
        let rates: Vec<f64> = self
            .base
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i as u16) != exclude)
            .map(|(_, c)| (c.e[COLD] + c.e[HOT], c.n[COLD] + c.n[HOT]))
            .filter(|(_, n)| *n > 0.0)
            .map(|(e, n)| e / n)
            .collect();
        if rates.is_empty() {
            f64::NAN
        } else {
            rates.iter().sum::<f64>() / rates.len() as f64
        }
    }

    /// The base rate per state: the mean of the sites' own rates (a site is the unit).
    fn base(&self, exclude: Option<u16>) -> [f64; 2] {
        let mut out = [0.0; 2];
        for s in [COLD, HOT] {
            let rates: Vec<f64> = self
                .base
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i as u16) != exclude)
                .filter(|(_, c)| c.n[s] > 0.0)
                .map(|(_, c)| c.e[s] / c.n[s])
                .collect();
            out[s] = if rates.is_empty() {
                f64::NAN
            } else {
                rates.iter().sum::<f64>() / rates.len() as f64
            };
        }
        out
    }

    /// The other sites' prior for a case of `rule` (`category`, `tier`), leaving out the
    /// history site `exclude` (the case's own, when its site is in the history).
    pub fn prior(
        &self,
        rule: &str,
        category: &str,
        tier: Tier,
        exclude: Option<u16>,
        k: f64,
        cap: f64,
    ) -> Prior {
        let base = self.base(exclude);
        let default = cold_default(tier);
        let sum = |per: Option<&PerSite>| -> Count2 {
            per.map_or(Count2::default(), |per| {
                per.iter()
                    .filter(|(site, _)| Some(*site) != exclude)
                    .fold(Count2::default(), |acc, (_, c)| acc.plus(c.capped(cap)))
            })
        };
        // A level's parent is estimated from the level's siblings, not from its own cases
        // again: per site, the category's cases without this rule's, the tier's without this
        // category's, each then capped.
        let without = |parent: Option<&PerSite>, child: Option<&PerSite>| -> Count2 {
            parent.map_or(Count2::default(), |per| {
                per.iter().filter(|(site, _)| Some(*site) != exclude).fold(
                    Count2::default(),
                    |acc, (site, c)| {
                        let own = child
                            .and_then(|ch| ch.iter().find(|(s, _)| s == site))
                            .map_or(Count2::default(), |(_, c)| *c);
                        acc.plus(c.minus(own).capped(cap))
                    },
                )
            })
        };
        let tier_c = without(self.tier.get(&tier), self.category.get(category));
        let cat_c = without(self.category.get(category), self.rule.get(rule));
        let rule_c = sum(self.rule.get(rule));
        // Tier, category and rule pool both host states; only the rule splits them, each state
        // shrunk towards the rule's pooled rate (a rule seen only inside incidents keeps its
        // own rate outside them until the site says otherwise).
        let pooled = |c: Count2| (c.e[COLD] + c.e[HOT], c.n[COLD] + c.n[HOT]);
        let base_all = {
            let finite: Vec<f64> = base.iter().copied().filter(|b| b.is_finite()).collect();
            if finite.is_empty() {
                f64::NAN
            } else {
                self.base_rate(exclude)
            }
        };
        // A tier without history (or no history at all) keeps its cold-start default; the
        // unknown tier borrows the history's base rate.
        let anchor = if tier == Tier::Unknown && base_all.is_finite() {
            base_all
        } else {
            default
        };
        let (te, tn) = pooled(tier_c);
        let (ce, cn) = pooled(cat_c);
        let (re, rn) = pooled(rule_c);
        let p_tier = shrink(te, tn, k, anchor);
        let p_cat = shrink(ce, cn, k, p_tier);
        let p_rule = shrink(re, rn, k, p_cat);
        let p = [
            shrink(rule_c.e[COLD], rule_c.n[COLD], k, p_rule),
            shrink(rule_c.e[HOT], rule_c.n[HOT], k, p_rule),
        ];
        let levels = vec![
            level("rule@other-sites", rule, re, rn, p_rule),
            level("category@other-sites", category, ce, cn, p_cat),
            level("tier@other-sites", tier.label(), te, tn, p_tier),
        ];
        Prior {
            p,
            rule_known: rn > 0.0,
            levels,
        }
    }

    /// The rule's usual `ln(1 + alert_count)` on other sites: the median of the sites' medians.
    pub(crate) fn volume_norm(&self, rule: &str, exclude: Option<u16>) -> Option<f64> {
        let per = self.volume.get(rule)?;
        let mut medians: Vec<f64> = per
            .iter()
            .filter(|(site, _)| Some(*site) != exclude)
            .map(|(_, m)| *m)
            .collect();
        median_mut(&mut medians)
    }
}

fn add(per: &mut PerSite, site: u16, escalated: bool, hot: f64) {
    match per.iter_mut().find(|(s, _)| *s == site) {
        Some((_, c)) => c.add(escalated, hot),
        None => {
            let mut c = Count2::default();
            c.add(escalated, hot);
            per.push((site, c));
        }
    }
}

fn level(name: &'static str, key: &str, escalated: f64, total: f64, rate: f64) -> Level {
    Level {
        level: name,
        key: key.to_owned(),
        escalated,
        total,
        rate,
    }
}

/// The median of `v` (None when empty).
pub(crate) fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    median_mut(&mut v)
}

fn median_mut(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// A count that decays with alert time.
#[derive(Debug, Clone, Copy, Default)]
struct Decayed {
    c: Count2,
    at_ms: i64,
}

impl Decayed {
    fn at(&self, now_ms: i64, half_life_ms: f64) -> Count2 {
        if self.at_ms == 0 || now_ms <= self.at_ms || !half_life_ms.is_finite() {
            return self.c;
        }
        self.c
            .scaled((-(now_ms - self.at_ms) as f64 / half_life_ms).exp2())
    }

    fn add(&mut self, escalated: bool, hot: f64, weight: f64, now_ms: i64, half_life_ms: f64) {
        self.c = self.at(now_ms, half_life_ms);
        self.at_ms = self.at_ms.max(now_ms);
        let mut one = Count2::default();
        one.add(escalated, hot);
        self.c = self.c.plus(one.scaled(weight));
    }
}

/// A disposition of this site, waiting until the time it is known.
#[derive(Debug, Clone)]
pub(crate) struct SiteDisposition {
    /// Ticket.
    pub ticket: String,
    /// Rule.
    pub rule: String,
    /// Detector category.
    pub category: String,
    /// Host.
    pub host: String,
    /// Escalated.
    pub escalated: bool,
    /// Weight of the hot state (the host's state when the case was decided).
    pub hot: f64,
    /// Alert time of the case (its last alert), ms: decay runs from here.
    pub case_ms: i64,
    /// From when it is known, ms.
    pub known_ms: i64,
}

/// One site's own dispositions, decayed with alert time.
#[derive(Debug, Default)]
pub(crate) struct SiteTallies {
    rule: HashMap<String, Decayed>,
    category: HashMap<String, Decayed>,
    host: HashMap<String, Decayed>,
    base: Decayed,
    /// Not yet known, by known time (latest last, so the next to fold is popped).
    pending: Vec<SiteDisposition>,
    sorted: bool,
    folded: usize,
}

/// What the site's own analysts said of a case's keys, as of its time.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SiteView {
    /// rule@site counts.
    pub rule: Count2,
    /// category@site counts.
    pub category: Count2,
    /// host@site counts.
    pub host: Count2,
    /// All of the site.
    pub base: Count2,
}

impl SiteTallies {
    /// Queues a disposition; it counts for cases decided after it is known.
    pub(crate) fn push(&mut self, d: SiteDisposition) {
        self.pending.push(d);
        self.sorted = false;
    }

    /// Folds what is known before `now_ms`, then reads the counts of the case's keys, decayed
    /// to `now_ms`. Strictly before: a disposition known at the case's own time does not count.
    pub(crate) fn view(
        &mut self,
        rule: &str,
        category: &str,
        host: &str,
        now_ms: i64,
        half_life_ms: f64,
    ) -> SiteView {
        if !self.sorted {
            self.pending
                .sort_by(|a, b| (b.known_ms, &b.ticket).cmp(&(a.known_ms, &a.ticket)));
            self.sorted = true;
        }
        while self.pending.last().is_some_and(|d| d.known_ms < now_ms) {
            let Some(d) = self.pending.pop() else { break };
            let weight = (-((now_ms - d.case_ms).max(0)) as f64 / half_life_ms).exp2();
            let weight = if weight.is_finite() { weight } else { 1.0 };
            for decayed in [
                self.rule.entry(d.rule).or_default(),
                self.category.entry(d.category).or_default(),
                self.host.entry(d.host).or_default(),
            ] {
                decayed.add(d.escalated, d.hot, weight, now_ms, half_life_ms);
            }
            self.base
                .add(d.escalated, d.hot, weight, now_ms, half_life_ms);
            self.folded += 1;
        }
        let read = |m: &HashMap<String, Decayed>, key: &str| {
            m.get(key)
                .map_or(Count2::default(), |d| d.at(now_ms, half_life_ms))
        };
        SiteView {
            rule: read(&self.rule, rule),
            category: read(&self.category, category),
            host: read(&self.host, host),
            base: self.base.at(now_ms, half_life_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case<'a>(site: &'a str, rule: &'a str, escalated: bool) -> CrossCase<'a> {
        CrossCase {
            site,
            rule,
            category: "cat",
            tier: Tier::Low,
            escalated,
            hot: false,
            log_count: 1.0,
        }
    }

    #[test]
    fn a_site_counts_at_most_cap_cases_per_key() {
        let mut cases = Vec::new();
        for _ in 0..100 {
            cases.push(case("a", "R", true));
        }
        for _ in 0..3 {
            cases.push(case("b", "R", false));
            cases.push(case("c", "R", false));
        }
        let t = CrossTallies::build(cases);
        let capped = t.prior("R", "cat", Tier::Low, None, 1.0, 3.0);
        let uncapped = t.prior("R", "cat", Tier::Low, None, 1.0, 1e9);
        assert!(capped.p[COLD] < 0.45, "{capped:?}");
        assert!(uncapped.p[COLD] > 0.9, "{uncapped:?}");
        // Leaving the escalating site out leaves a rule the others always close.
        let others = t.prior("R", "cat", Tier::Low, t.site_index("a"), 1.0, 3.0);
        assert!(others.p[COLD] < 0.1, "{others:?}");
        assert!(others.rule_known);
    }

    #[test]
    fn an_unseen_rule_falls_back_to_its_category_then_tier() {
        let t = CrossTallies::build(vec![case("a", "R", true), case("b", "R", true)]);
        let sibling = t.prior("R2", "cat", Tier::Low, None, 1.0, 5.0);
        assert!(!sibling.rule_known);
        assert!(sibling.p[COLD] > 0.5, "{sibling:?}");
        let stranger = t.prior("X", "other", Tier::Critical, None, 1.0, 5.0);
        assert!((stranger.p[COLD] - cold_default(Tier::Critical)).abs() < 1e-9);
        let empty = CrossTallies::default();
        assert!(
            (empty.prior("X", "y", Tier::High, None, 1.0, 5.0).p[HOT] - cold_default(Tier::High))
                .abs()
                < 1e-9
        );
    }

    #[test]
    fn site_dispositions_count_only_once_known_and_decay() {
        let mut s = SiteTallies::default();
        let d = |ticket: &str, known_ms: i64, escalated: bool| SiteDisposition {
            ticket: ticket.into(),
            rule: "R".into(),
            category: "c".into(),
            host: "h".into(),
            escalated,
            hot: 0.0,
            case_ms: known_ms - 10,
            known_ms,
        };
        s.push(d("a", 100, true));
        s.push(d("b", 200, false));
        let hl = 1e12;
        assert_eq!(
            s.view("R", "c", "h", 100, hl).rule.n[COLD],
            0.0,
            "known at 100: not at 100"
        );
        let v = s.view("R", "c", "h", 101, hl);
        assert!((v.rule.e[COLD] - 1.0).abs() < 1e-6 && (v.rule.n[COLD] - 1.0).abs() < 1e-6);
        let v = s.view("R", "c", "h", 201, hl);
        assert!((v.rule.n[COLD] - 2.0).abs() < 1e-6);
        // A half-life later, half the weight.
        let mut s2 = SiteTallies::default();
        s2.push(d("a", 100, true));
        let v = s2.view("R", "c", "h", 1_000_090, 1_000_000.0);
        assert!((v.rule.e[COLD] - 0.5).abs() < 1e-6, "{v:?}");
    }
}
