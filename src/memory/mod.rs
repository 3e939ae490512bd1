//! Case memory: a read model of `soc.audit`, folded into the store with the verdicts (same
//! transaction, same checkpoint), so it is exactly-once and rebuildable like them.
//!
//! - [`why`]: the recorded trace of a ticket (every event, verdict and decision, in audit
//!   order), read back as written, never re-derived.
//! - [`recall`]: earlier cases sharing typed indicators (`crate::indicators`) with a ticket, scored
//!   by rarity (inverse case frequency; a value in half the cases or more counts for nothing),
//!   recency and confidence, with the shared indicators listed so a human sees why.
//! - [`campaigns`]: cases tied by enough shared rare strong indicators inside a window. Only
//!   rare values link cases, so one ubiquitous value (a CDN, an update server) cannot chain
//!   unrelated cases together. A campaign's id is derived from its earliest case, so it stays
//!   the same as the campaign grows.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use sqlx::{QueryBuilder, Row, SqlitePool};

use crate::indicators;

pub mod case_view;
use crate::store::StoreError;

/// One event of a ticket's trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceStep {
    /// The audit entry.
    pub audit_id: String,
    /// Event kind.
    pub kind: String,
    /// Who produced it.
    pub role: String,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// The event as recorded.
    pub event: serde_json::Value,
}

/// The recorded trace of `ticket`, in audit order.
pub async fn why(pool: &SqlitePool, ticket: &str) -> Result<Vec<TraceStep>, StoreError> {
    let rows = sqlx::query(
        "SELECT audit_ms, audit_seq, kind, role, at_ms, body FROM case_events WHERE ticket = ? \
         ORDER BY audit_ms, audit_seq",
    )
    .bind(ticket)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| TraceStep {
            audit_id: format!("{}-{}", r.get::<i64, _>(0), r.get::<i64, _>(1)),
            kind: r.get(2),
            role: r.get(3),
            at_ms: r.get(4),
            event: serde_json::from_str(r.get::<&str, _>(5)).unwrap_or_default(),
        })
        .collect())
}

/// A prior case recall found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recalled {
    /// The prior case.
    pub ticket: String,
    /// Its score (higher is closer).
    pub score: f64,
    /// What it shares with the asked ticket, rarest first: `kind:value`.
    pub shared: Vec<String>,
    /// Whether it was escalated.
    pub escalated: bool,
    /// The analysts' disposition, if known.
    pub ground_truth: Option<String>,
    /// When it opened, ms since the epoch.
    pub first_ms: i64,
}

/// How recall weighs.
#[derive(Debug, Clone, Copy)]
pub struct RecallOptions {
    /// Most results.
    pub limit: usize,
    /// Cases examined per shared value (the most recent first).
    pub per_value: usize,
    /// Half-life of the recency weight, days.
    pub half_life_days: f64,
}

impl Default for RecallOptions {
    fn default() -> Self {
        Self {
            limit: 10,
            per_value: 200,
            half_life_days: 30.0,
        }
    }
}

/// Shared values and what each weighs.
type Reasons = Vec<(f64, String)>;

/// Earlier cases sharing indicators with `ticket`, best first.
pub async fn recall(
    pool: &SqlitePool,
    ticket: &str,
    options: RecallOptions,
) -> Result<Vec<Recalled>, StoreError> {
    let Some(me) = sqlx::query("SELECT first_ms, indicators FROM cases WHERE ticket = ?")
        .bind(ticket)
        .fetch_optional(pool)
        .await?
    else {
        return Ok(Vec::new());
    };
    let my_first: i64 = me.get(0);
    let my_indicators: &str = me.get(1);
    let total: i64 = sqlx::query("SELECT n FROM case_count WHERE id = 0")
        .fetch_one(pool)
        .await?
        .get(0);
    // The case's own list, in (kind, value) order, each value with its case count.
    let mine = sqlx::query(
        "SELECT c.kind, c.value, c.cases FROM json_each(?) j JOIN indicator_counts c \
         ON c.kind = j.value ->> 0 AND c.value = j.value ->> 1 ORDER BY j.key",
    )
    .bind(my_indicators)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|row| (row.get(0), row.get(1), row.get(2)))
    .collect();
    rank(pool, mine, total, ticket, my_first, i64::MAX, None, options).await
}

/// Earlier cases sharing `indicators` (a case's, which memory may not have folded yet) with
/// the case `ticket` opened at `at_ms`, counting and showing only what was known at `at_ms`:
/// rarity among the cases opened by then, analysts' dispositions known by then. This is what
/// a role's `memory.recall` tool sees, so a replayed ticket never sees its future. Only cases
/// of `site` are returned (a tenant never sees another's).
pub(crate) async fn recall_as_of(
    pool: &SqlitePool,
    indicators: &BTreeSet<indicators::Indicator>,
    ticket: &str,
    site: &str,
    at_ms: i64,
    options: RecallOptions,
) -> Result<Vec<Recalled>, StoreError> {
    let total: i64 = sqlx::query("SELECT COUNT(*) FROM cases WHERE first_ms <= ?")
        .bind(at_ms)
        .fetch_one(pool)
        .await?
        .get(0);
    let counts = indicators.iter().map(|(kind, value)| async move {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM indicators WHERE kind = ? AND value = ? AND first_ms <= ? \
             AND ticket != ?",
        )
        .bind(kind.as_str())
        .bind(value)
        .bind(at_ms)
        .bind(ticket)
        .fetch_one(pool)
        .await?;
        // The case itself counts as one carrier, as in `recall`.
        Ok::<_, sqlx::Error>((
            kind.as_str().to_owned(),
            value.clone(),
            row.get::<i64, _>(0) + 1,
        ))
    });
    let mine = futures_util::future::try_join_all(counts).await?;
    rank(
        pool,
        mine,
        total + 1,
        ticket,
        at_ms,
        at_ms,
        Some(site),
        options,
    )
    .await
}

/// Ranks the cases opened by `my_first` that share values of `mine` (kind, value, cases
/// carrying it among `total`); dispositions count when known by `known_by`; only cases of
/// `site` when given.
#[allow(
    clippy::too_many_arguments,
    reason = "one private ranking shared by two public entry points"
)]
async fn rank(
    pool: &SqlitePool,
    mine: Vec<(String, String, i64)>,
    total: i64,
    ticket: &str,
    my_first: i64,
    known_by: i64,
    site: Option<&str>,
    options: RecallOptions,
) -> Result<Vec<Recalled>, StoreError> {
    let mut scores: HashMap<String, (f64, Reasons)> = HashMap::new();
    // One query per shared value, run concurrently on the pool's connections.
    let lookups = mine.into_iter().filter_map(|(kind, value, count)| {
        // Alone, or in half the cases or more: says nothing.
        if count < 2 || count * 2 >= total {
            return None;
        }
        let weight = indicators::Kind::weight(&kind) * ((total as f64) / (count as f64)).ln();
        Some(async move {
            let others = sqlx::query(
                "SELECT ticket FROM indicators WHERE kind = ? AND value = ? AND ticket != ? \
                 AND first_ms <= ? ORDER BY first_ms DESC LIMIT ?",
            )
            .bind(&kind)
            .bind(&value)
            .bind(ticket)
            .bind(my_first)
            .bind(options.per_value as i64)
            .fetch_all(pool)
            .await?;
            Ok::<_, sqlx::Error>((format!("{kind}:{value}"), weight, others))
        })
    });
    for (label, weight, others) in futures_util::future::try_join_all(lookups).await? {
        for other in others {
            let entry = scores.entry(other.get(0)).or_default();
            entry.0 += weight;
            entry.1.push((weight, label.clone()));
        }
    }
    let mut ranked: Vec<(String, f64, Reasons)> = scores
        .into_iter()
        .map(|(t, (s, why))| (t, s, why))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ranked.truncate(options.limit.clamp(1, 1_000) * 4);
    let mut lookup = QueryBuilder::new(
        "SELECT c.ticket, c.first_ms, c.escalated, c.confidence, d.ground_truth FROM cases c \
         LEFT JOIN dispositions d ON d.ticket = c.ticket \
         AND COALESCE(d.known_ms, -9223372036854775808) <= ",
    );
    lookup.push_bind(known_by);
    lookup.push(" WHERE ");
    if let Some(site) = site {
        lookup.push("COALESCE(c.site, '') = ");
        lookup.push_bind(site.to_owned());
        lookup.push(" AND ");
    }
    lookup.push("c.ticket IN (");
    let mut list = lookup.separated(", ");
    for (ticket, _, _) in &ranked {
        list.push_bind(ticket);
    }
    lookup.push(")");
    let rows: HashMap<String, sqlx::sqlite::SqliteRow> = if ranked.is_empty() {
        HashMap::new()
    } else {
        lookup
            .build()
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|r| (r.get::<String, _>(0), r))
            .collect()
    };
    let mut out = Vec::with_capacity(ranked.len());
    for (other, raw, mut shared) in ranked {
        let Some(row) = rows.get(&other) else {
            continue;
        };
        let first_ms: i64 = row.get(1);
        let confidence: Option<f64> = row.get(3);
        let age_days = (my_first - first_ms).max(0) as f64 / 86_400_000.0;
        let recency = 0.5f64.powf(age_days / options.half_life_days);
        let score = raw * (0.5 + 0.5 * recency) * (0.5 + 0.5 * confidence.unwrap_or(0.5));
        shared.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        out.push(Recalled {
            ticket: other,
            score: (score * 1000.0).round() / 1000.0,
            shared: shared.into_iter().map(|(_, s)| s).collect(),
            escalated: row.get::<i64, _>(2) != 0,
            ground_truth: row.get(4),
            first_ms,
        });
    }
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.ticket.cmp(&b.ticket))
    });
    out.truncate(options.limit);
    Ok(out)
}

/// A cluster of cases tied by shared rare infrastructure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Campaign {
    /// Stable id (from the earliest case).
    pub id: String,
    /// Its cases, earliest first.
    pub cases: Vec<String>,
    /// Strong indicators shared by two or more of its cases: `kind:value`.
    pub shared: Vec<String>,
    /// First case opened, ms.
    pub first_ms: i64,
    /// Last case opened, ms.
    pub last_ms: i64,
}

/// How campaigns are found.
#[derive(Debug, Clone, Copy)]
pub struct CampaignOptions {
    /// Cases opened in `[from_ms, to_ms]`.
    pub from_ms: i64,
    /// End of the window.
    pub to_ms: i64,
    /// A value counts as rare when at most this share of the window's cases carry it...
    pub max_share: f64,
    /// ...and at most this many cases: campaign infrastructure is shared by a handful of
    /// cases, and pairing the cases of a common value costs its count squared.
    pub max_value_cases: usize,
    /// Rare values two cases must share to be tied.
    pub min_shared: usize,
    /// Fewest cases that make a campaign.
    pub min_cases: usize,
}

impl Default for CampaignOptions {
    fn default() -> Self {
        Self {
            from_ms: 0,
            to_ms: i64::MAX,
            max_share: 0.05,
            max_value_cases: 50,
            min_shared: 2,
            min_cases: 3,
        }
    }
}

impl CampaignOptions {
    /// The most cases a value may be carried by and still tie cases, among `cases` cases.
    pub(crate) fn rare_limit(&self, cases: usize) -> usize {
        ((cases.max(1) as f64 * self.max_share).floor() as usize)
            .max(self.min_cases)
            .clamp(2, self.max_value_cases.max(2))
    }
}

/// Campaigns among the cases opened inside the window.
pub async fn campaigns(
    pool: &SqlitePool,
    options: CampaignOptions,
) -> Result<Vec<Campaign>, StoreError> {
    let cases_in_window: i64 =
        sqlx::query("SELECT COUNT(*) FROM cases WHERE first_ms BETWEEN ? AND ?")
            .bind(options.from_ms)
            .bind(options.to_ms)
            .fetch_one(pool)
            .await?
            .get(0);
    let rare_limit = options.rare_limit(cases_in_window.max(0) as usize);
    // Only strong values carried by few cases inside the window can tie cases: read just
    // those, counted inside the window.
    let rows = sqlx::query(
        "SELECT i.kind, i.value, i.ticket, i.first_ms FROM indicators i JOIN ( \
           SELECT kind, value FROM indicators \
           WHERE kind IN ('actor', 'hash', 'domain', 'ip', 'cve') AND first_ms BETWEEN ?1 AND ?2 \
           GROUP BY kind, value HAVING COUNT(*) BETWEEN 2 AND ?3 \
         ) r ON r.kind = i.kind AND r.value = i.value \
         WHERE i.first_ms BETWEEN ?1 AND ?2",
    )
    .bind(options.from_ms)
    .bind(options.to_ms)
    .bind(rare_limit as i64)
    .fetch_all(pool)
    .await?;
    Ok(cluster(
        rows.iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))),
        rare_limit,
        &options,
    ))
}

/// Campaigns among cases, from their strong indicators as `(kind, value, ticket, first_ms)`
/// (each at most once): cases tied by at least `min_shared` values that at most `rare_limit`
/// cases carry ([`CampaignOptions::rare_limit`]), in groups of at least `min_cases`.
pub(crate) fn cluster(
    rows: impl IntoIterator<Item = (String, String, String, i64)>,
    rare_limit: usize,
    options: &CampaignOptions,
) -> Vec<Campaign> {
    let mut first: HashMap<String, i64> = HashMap::new();
    let mut by_value: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (kind, value, ticket, first_ms) in rows {
        first.insert(ticket.clone(), first_ms);
        by_value.entry((kind, value)).or_default().push(ticket);
    }
    // Pairs of cases and the rare values they share.
    let mut pair_shared: HashMap<(String, String), usize> = HashMap::new();
    let mut rare_values: Vec<(&(String, String), &Vec<String>)> = Vec::new();
    for (value, tickets) in &by_value {
        if tickets.len() < 2 || tickets.len() > rare_limit {
            continue;
        }
        rare_values.push((value, tickets));
        for (i, a) in tickets.iter().enumerate() {
            for b in &tickets[i + 1..] {
                let key = if a < b {
                    (a.clone(), b.clone())
                } else {
                    (b.clone(), a.clone())
                };
                *pair_shared.entry(key).or_default() += 1;
            }
        }
    }
    let mut sets = UnionFind::default();
    for ((a, b), n) in &pair_shared {
        if *n >= options.min_shared {
            sets.union(a, b);
        }
    }
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for ticket in sets.members() {
        let root = sets.find(&ticket);
        groups.entry(root).or_default().push(ticket);
    }
    let mut out = Vec::new();
    for mut cases in groups.into_values() {
        if cases.len() < options.min_cases {
            continue;
        }
        cases.sort_by(|a, b| (first[a], a).cmp(&(first[b], b)));
        let shared: Vec<String> = rare_values
            .iter()
            .filter(|(_, tickets)| tickets.iter().filter(|t| cases.contains(t)).count() >= 2)
            .map(|((kind, value), _)| format!("{kind}:{value}"))
            .collect();
        out.push(Campaign {
            id: format!("campaign-{:016x}", fnv1a(&cases[0])),
            first_ms: first[&cases[0]],
            last_ms: cases.iter().map(|c| first[c]).max().unwrap_or_default(),
            cases,
            shared,
        });
    }
    out.sort_by(|a, b| (a.first_ms, &a.id).cmp(&(b.first_ms, &b.id)));
    out
}

/// FNV-1a of `s`: a stable short digest (campaign ids, publish keys), not a security hash.
pub(crate) fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[derive(Default)]
struct UnionFind {
    parent: HashMap<String, String>,
}

impl UnionFind {
    fn find(&mut self, x: &str) -> String {
        let mut root = x.to_owned();
        while let Some(p) = self.parent.get(&root).filter(|p| **p != root) {
            root = p.clone();
        }
        // Path compression.
        let mut node = x.to_owned();
        while let Some(p) = self.parent.get(&node).cloned().filter(|p| *p != root) {
            self.parent.insert(node, root.clone());
            node = p;
        }
        self.parent
            .entry(x.to_owned())
            .or_insert_with(|| root.clone());
        root
    }

    fn union(&mut self, a: &str, b: &str) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            // The smaller name becomes the root: deterministic.
            let (root, child) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.parent.insert(child, root);
        }
    }

    fn members(&self) -> Vec<String> {
        self.parent.keys().cloned().collect()
    }
}

/// One role's record over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoleTrend {
    /// The role.
    pub role: String,
    /// Decisions.
    pub decisions: u64,
    /// Mean confidence, where the role gives one.
    pub mean_confidence: Option<f64>,
    /// Tool calls made.
    pub tool_calls: u64,
    /// Mean wall time per decision, ms.
    pub mean_wall_ms: f64,
    /// Prompt tokens.
    pub tokens_in: u64,
    /// Completion tokens.
    pub tokens_out: u64,
    /// Decisions on tickets whose disposition is known, on the role's own question.
    pub judged: u64,
    /// Of those, how many agreed with the analysts.
    pub agreed: u64,
    /// `agreed / judged`, when anything was judged.
    pub accuracy: Option<f64>,
}

/// Per-role trends for decisions made in `[from_ms, to_ms]`. Accuracy is scored only on each
/// role's own question about escalation: sentinel's (`true_positive` or not) and tier2's
/// (`escalate` or not) against the analysts' escalate/close. Other roles are not judged.
pub async fn trends(
    pool: &SqlitePool,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<RoleTrend>, StoreError> {
    let rows = sqlx::query(
        "SELECT v.role, COUNT(*), AVG(v.confidence), SUM(v.tool_calls_made), \
         AVG(v.wall_time_ms), SUM(v.tokens_in), SUM(v.tokens_out), \
         SUM(CASE WHEN d.ground_truth IS NOT NULL \
             AND v.kind IN ('AlertTriaged', 'Tier2Analysis') THEN 1 ELSE 0 END), \
         SUM(CASE WHEN d.ground_truth IS NULL THEN 0 \
             WHEN v.kind = 'AlertTriaged' \
               AND (v.verdict = 'true_positive') = (d.ground_truth = 'escalate') THEN 1 \
             WHEN v.kind = 'Tier2Analysis' \
               AND (v.verdict = 'escalate') = (d.ground_truth = 'escalate') THEN 1 \
             ELSE 0 END) \
         FROM verdicts v LEFT JOIN dispositions d ON d.ticket = v.ticket \
         WHERE v.at_ms BETWEEN ? AND ? GROUP BY v.role ORDER BY v.role",
    )
    .bind(from_ms)
    .bind(to_ms)
    .fetch_all(pool)
    .await?;
    let count = |r: &sqlx::sqlite::SqliteRow, i: usize| r.get::<i64, _>(i).max(0) as u64;
    Ok(rows
        .iter()
        .map(|r| {
            let (judged, agreed) = (count(r, 7), count(r, 8));
            RoleTrend {
                role: r.get(0),
                decisions: count(r, 1),
                mean_confidence: r.get(2),
                tool_calls: count(r, 3),
                mean_wall_ms: r.get(4),
                tokens_in: count(r, 5),
                tokens_out: count(r, 6),
                judged,
                agreed,
                accuracy: (judged > 0).then(|| agreed as f64 / judged as f64),
            }
        })
        .collect())
}
