//! The projection of `soc.audit` into case memory: cases, their events, typed indicators and
//! their case counts, proposals, queued Webex cards and XSOAR notes. Run inside the store's
//! fold transaction ([`super::Fold`]), so it is exactly-once and rebuildable with the
//! verdicts; [`crate::memory`] reads what it writes.
//!
//! A page goes through three steps: [`prepare`] turns decoded audit entries into rows and the
//! statements that insert them ([`Bulk`]) without the store (the catch-up's reader task does
//! it, ahead of SQLite), [`write`] runs those keyed in audit order and gathers cases and
//! indicators into [`Pending`], and [`flush`] writes those in key order before the transaction
//! commits: each case's row with the list of its indicators, and the indicator rows and counts
//! that are new to it. Nothing outlives the transaction: a crash drops what is pending with
//! the uncommitted rows and the pages read ahead, and the next fold redoes those pages from
//! the checkpoint.
//!
//! A backtest's scratch store folds without the cases' events ([`Timelines::Skipped`]): a
//! store nothing reads them from, which no runtime starts on again.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sqlx::sqlite::SqliteArguments;
use sqlx::{QueryBuilder, Row, SqliteConnection};

use super::{bulk_chunks, bulk_chunks_owned};
use crate::bus::StreamId;
use crate::indicators;
use crate::knowledge::DispositionFacts;
use crate::proto::{CaseContext, Envelope, Event};

/// A case's row as one page changes it.
struct CaseFold {
    site: Option<String>,
    rule: String,
    host: String,
    first_ms: i64,
    escalated: bool,
    confidence: Option<f64>,
    /// Whether a role handed it to a human (`needs_human_review`).
    needs_review: bool,
}

impl CaseFold {
    /// Folds `later` (the same case, from a later page) into this one, as the events would
    /// have been folded one after another: what opened the case stays, the latest confidence
    /// wins, escalation and review stick.
    fn merge(&mut self, later: CaseFold) {
        self.escalated |= later.escalated;
        self.needs_review |= later.needs_review;
        if later.confidence.is_some() {
            self.confidence = later.confidence;
        }
    }
}

/// What a fold has gathered for the keyed tables (cases, indicators and their counts) and not
/// written yet. Their keys are scattered over their b-trees, so inserting a page's rows at a
/// time touched about a page of each b-tree per row; [`flush`] writes a whole transaction's
/// rows in key order, which visits each b-tree page once.
#[derive(Default)]
pub(crate) struct Pending {
    cases: BTreeMap<String, CaseFold>,
    found: BTreeSet<(&'static str, String, String)>,
}

/// One row of `case_events`.
struct CaseEvent {
    ticket: String,
    id: StreamId,
    kind: &'static str,
    role: String,
    at_ms: i64,
    /// The event as JSON.
    body: String,
}

impl CaseEvent {
    fn of(ticket: String, id: StreamId, envelope: &Envelope) -> Self {
        Self {
            ticket,
            id,
            kind: envelope.event.kind(),
            role: envelope.produced_by.clone(),
            at_ms: envelope.at_ms,
            body: serde_json::to_string(&envelope.event).unwrap_or_default(),
        }
    }
}

/// A multi-row statement made off the store, by [`prepare`] on the reader's task: its SQL and
/// its arguments, moved in, not copied. The writer only hands it to SQLite, which no longer
/// waits while the writer binds a page's rows.
pub(crate) struct Bulk {
    sql: String,
    args: SqliteArguments<'static>,
    /// The first value that could not be bound (none of the types bound here can fail).
    failed: Option<sqlx::error::BoxDynError>,
}

impl Bulk {
    /// `{head} VALUES (?, ...), ... {tail}` for `rows` rows of `columns` values each, bound by
    /// [`Bulk::bind`] in row order.
    pub(crate) fn new(head: &str, columns: usize, rows: usize, tail: &str) -> Self {
        let row = format!("({})", vec!["?"; columns].join(", "));
        let mut sql = String::with_capacity(head.len() + tail.len() + rows * (row.len() + 2) + 8);
        sql.push_str(head);
        sql.push_str(" VALUES ");
        for i in 0..rows {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&row);
        }
        sql.push_str(tail);
        let mut args = SqliteArguments::default();
        sqlx::Arguments::reserve(&mut args, rows * columns, 0);
        Self {
            sql,
            args,
            failed: None,
        }
    }

    /// Binds the next value.
    pub(crate) fn bind<
        T: sqlx::Encode<'static, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite> + 'static,
    >(
        &mut self,
        value: T,
    ) -> &mut Self {
        if let Err(e) = sqlx::Arguments::add(&mut self.args, value)
            && self.failed.is_none()
        {
            self.failed = Some(e);
        }
        self
    }

    /// Runs the statement in `tx`; the rows it changed.
    pub(crate) async fn execute(self, tx: &mut SqliteConnection) -> Result<u64, sqlx::Error> {
        if let Some(e) = self.failed {
            return Err(sqlx::Error::Encode(e));
        }
        Ok(sqlx::query_with(&self.sql, self.args)
            .execute(tx)
            .await?
            .rows_affected())
    }
}

/// A page of audit entries turned into the rows it folds into ([`prepare`]): the work that
/// needs no store (JSON bodies, indicators, verdict rows), so it can run while SQLite writes
/// the page before.
pub(crate) struct Prepared {
    /// The verdict rows' inserts.
    pub(crate) verdicts: Vec<Bulk>,
    /// Analysts' dispositions, with where they came from (`origin:by`).
    pub(crate) recorded: Vec<(DispositionFacts, String)>,
    /// `proposals` rows: action, ticket, approver role, proposer, at, expires, body.
    proposals: Vec<(String, String, String, String, i64, i64, String)>,
    /// `cards` rows: plan, ticket, plan as JSON, at.
    cards: Vec<(String, String, String, i64)>,
    /// `xsoar_notes` rows: (note, incident, body), at.
    notes: Vec<((String, String, String), i64)>,
    cases: BTreeMap<String, CaseFold>,
    found: BTreeSet<(&'static str, String, String)>,
    /// The `case_events` rows' inserts.
    events: Vec<Bulk>,
    /// Dispositions' events, which join a case's trace only if the case is stored.
    dispositions: Vec<CaseEvent>,
}

/// Whether a fold writes the cases' timelines: `case_events`, each event of a case as JSON.
/// The console (its trace, queue severity and dashboard), the approval page, `case why`, the
/// shift report and a backtest's `--decisions` read them, and so does a runtime that starts
/// on a store it folded before (`recent_alerts`: the reasoner's recent host activity). The
/// tools the roles call while they decide (recall, a host's and a rule's history) read cases,
/// indicators and dispositions only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Timelines {
    /// Every case event is written (the store equals a rebuild of its audit).
    #[default]
    Kept,
    /// No case event is written: only for a store no runtime starts on again and nothing else
    /// reads, a backtest's scratch store, scored and deleted. The events' JSON was most of what
    /// such a fold wrote (a triage's event is about 2.4 KB). A runtime on Redis refuses it.
    Skipped,
}

/// Turns a page of audit entries (in id order) into the rows it folds into.
pub(crate) fn prepare(page: &[(StreamId, Envelope)], timelines: Timelines) -> Prepared {
    let mut out = Prepared {
        verdicts: super::verdict_inserts(
            page.iter()
                .filter_map(|(id, envelope)| super::verdict_of(*id, envelope).map(|row| (*id, row)))
                .collect(),
        ),
        recorded: Vec::new(),
        proposals: Vec::new(),
        cards: Vec::new(),
        notes: Vec::new(),
        cases: BTreeMap::new(),
        found: BTreeSet::new(),
        events: Vec::new(),
        dispositions: Vec::new(),
    };
    let mut events = Vec::new();
    for (id, envelope) in page {
        if let Some(note) = crate::ingest::xsoar::note_of(&envelope.event) {
            out.notes.push((note, envelope.at_ms));
        }
        match &envelope.event {
            Event::ActionProposed(p) => out.proposals.push((
                p.action_id.clone(),
                p.case.ticket.clone(),
                p.approver_role.clone(),
                envelope.produced_by.clone(),
                envelope.at_ms,
                p.expires_at_ms,
                serde_json::to_string(p).unwrap_or_default(),
            )),
            // Each plan queues its Webex card (sent, if Webex is configured, by the
            // notifier). Not a projection: a refold finds the card queued or sent already.
            Event::IrPlan(p) => out.cards.push((
                p.plan_id.clone(),
                p.case.ticket.clone(),
                serde_json::to_string(p).unwrap_or_default(),
                envelope.at_ms,
            )),
            // An analyst's disposition joins its case's trace when the case is this SOC's
            // own; it opens no case (imported history is other tickets). Dispositions are
            // not a projection (a rebuild keeps them): the one known last wins.
            Event::DispositionRecorded(d) => {
                out.recorded.push((
                    DispositionFacts::of_case(&d.case, d.disposition, d.known_at_ms),
                    format!("{}:{}", d.origin, d.by),
                ));
                if timelines == Timelines::Kept {
                    out.dispositions
                        .push(CaseEvent::of(d.case.ticket.clone(), *id, envelope));
                }
                continue;
            }
            _ => {}
        }
        let case = match &envelope.event {
            Event::AlertReceived(e) => CaseContext::from_alert(&e.alert, &envelope.id.to_string()),
            Event::CaseUpdated(e) => CaseContext::from_alert(&e.alert, &envelope.id.to_string()),
            other => match other.case() {
                Some(case) => case.clone(),
                None => continue,
            },
        };
        let entry = out
            .cases
            .entry(case.ticket.clone())
            .or_insert_with(|| CaseFold {
                site: case.site.clone(),
                rule: case.rule_id.clone(),
                host: case.host.clone(),
                first_ms: chrono::DateTime::parse_from_rfc3339(&case.first_seen)
                    .map_or(envelope.at_ms, |t| t.timestamp_millis()),
                escalated: false,
                confidence: None,
                needs_review: false,
            });
        let review = match &envelope.event {
            Event::AlertTriaged(e) => e.meta.needs_human_review.is_some(),
            Event::Tier2Analysis(e) => e.meta.needs_human_review.is_some(),
            Event::IrPlan(e) => e.meta.needs_human_review.is_some(),
            Event::ThreatIntelReport(e) => e.meta.needs_human_review.is_some(),
            _ => false,
        };
        entry.needs_review |= review;
        match &envelope.event {
            Event::CaseEscalated(_) => entry.escalated = true,
            Event::AlertTriaged(e) => entry.confidence = Some(f64::from(e.confidence)),
            Event::Tier2Analysis(e) => entry.confidence = Some(f64::from(e.confidence)),
            _ => {}
        }
        for (kind, value) in indicators::of_event(&envelope.event) {
            out.found
                .insert((kind.as_str(), value, case.ticket.clone()));
        }
        if timelines == Timelines::Kept {
            events.push(CaseEvent::of(case.ticket, *id, envelope));
        }
    }
    out.events = event_inserts(events);
    out
}

/// The `case_events` inserts of `events`, in [`bulk_chunks`].
fn event_inserts(events: Vec<CaseEvent>) -> Vec<Bulk> {
    let mut out = Vec::new();
    for chunk in bulk_chunks_owned(events) {
        let mut q = Bulk::new(
            "INSERT OR IGNORE INTO case_events (ticket, audit_ms, audit_seq, kind, role, at_ms, \
             body)",
            7,
            chunk.len(),
            "",
        );
        for e in chunk {
            q.bind(e.ticket)
                .bind(e.id.ms as i64)
                .bind(e.id.seq as i64)
                .bind(e.kind)
                .bind(e.role)
                .bind(e.at_ms)
                .bind(e.body);
        }
        out.push(q);
    }
    out
}

/// Folds a prepared page into case memory, inside the caller's transaction: a few multi-row
/// statements per page, not a statement per event. Cases and indicators are gathered into
/// `pending`, written by [`flush`] before the transaction commits.
pub(crate) async fn write(
    tx: &mut SqliteConnection,
    page: Prepared,
    pending: &mut Pending,
) -> Result<(), sqlx::Error> {
    for (ticket, case) in page.cases {
        match pending.cases.entry(ticket) {
            std::collections::btree_map::Entry::Occupied(mut earlier) => {
                earlier.get_mut().merge(case);
            }
            std::collections::btree_map::Entry::Vacant(new) => {
                new.insert(case);
            }
        }
    }
    pending.found.extend(page.found);
    for chunk in bulk_chunks(&page.proposals) {
        let mut q = QueryBuilder::new(
            "INSERT OR IGNORE INTO proposals (action_id, ticket, approver_role, proposed_by, \
             proposed_at_ms, expires_at_ms, body) ",
        );
        q.push_values(chunk, |mut b, p| {
            b.push_bind(&p.0)
                .push_bind(&p.1)
                .push_bind(&p.2)
                .push_bind(&p.3)
                .push_bind(p.4)
                .push_bind(p.5)
                .push_bind(&p.6);
        });
        q.build().execute(&mut *tx).await?;
    }
    for chunk in bulk_chunks(&page.cards) {
        let mut q = QueryBuilder::new(
            "INSERT OR IGNORE INTO cards (plan_id, ticket, plan, created_ms, next_attempt_ms) ",
        );
        q.push_values(chunk, |mut b, (plan_id, ticket, plan, at_ms)| {
            b.push_bind(plan_id)
                .push_bind(ticket)
                .push_bind(plan)
                .push_bind(*at_ms)
                .push_bind(*at_ms);
        });
        q.build().execute(&mut *tx).await?;
    }
    // Notes for XSOAR incidents' war rooms (written when `[xsoar] write_notes` is on).
    for chunk in bulk_chunks(&page.notes) {
        let mut q = QueryBuilder::new(
            "INSERT OR IGNORE INTO xsoar_notes (note_id, incident, body, created_ms, \
             next_attempt_ms) ",
        );
        q.push_values(chunk, |mut b, ((note_id, incident, body), at_ms)| {
            b.push_bind(note_id)
                .push_bind(incident)
                .push_bind(body)
                .push_bind(*at_ms)
                .push_bind(*at_ms);
        });
        q.build().execute(&mut *tx).await?;
    }
    for insert in page.events {
        insert.execute(&mut *tx).await?;
    }
    // A disposition joins its case's trace only if the case is stored: write what is pending.
    if !page.dispositions.is_empty() {
        flush(tx, pending).await?;
    }
    for e in &page.dispositions {
        sqlx::query(
            "INSERT OR IGNORE INTO case_events (ticket, audit_ms, audit_seq, kind, role, at_ms, \
             body) SELECT ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM cases WHERE ticket = ?)",
        )
        .bind(&e.ticket)
        .bind(e.id.ms as i64)
        .bind(e.id.seq as i64)
        .bind(e.kind)
        .bind(&e.role)
        .bind(e.at_ms)
        .bind(&e.body)
        .bind(&e.ticket)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Writes what `pending` holds: new and changed cases, then their indicators and the
/// counts of the values new to a case, each in key order.
pub(crate) async fn flush(
    tx: &mut SqliteConnection,
    pending: &mut Pending,
) -> Result<(), sqlx::Error> {
    let cases: Vec<_> = std::mem::take(&mut pending.cases).into_iter().collect();
    let found: Vec<_> = std::mem::take(&mut pending.found).into_iter().collect();
    // The stored cases, as stored: the opening time their first fold decided (indicators carry
    // it, so every fold agrees, however the audit was paged) and their indicators, sorted. A
    // case not stored yet opens at this page's time and has no indicators; those are the new
    // cases, counted in `case_count`.
    let mut stored: HashMap<String, (i64, Vec<(String, String)>)> = HashMap::new();
    for chunk in bulk_chunks(&cases) {
        let mut q =
            QueryBuilder::new("SELECT ticket, first_ms, indicators FROM cases WHERE ticket IN (");
        let mut list = q.separated(", ");
        for (ticket, _) in chunk {
            list.push_bind(ticket);
        }
        q.push(")");
        for row in q.build().fetch_all(&mut *tx).await? {
            let mut has: Vec<(String, String)> =
                serde_json::from_str(row.get(2)).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            has.sort_unstable();
            stored.insert(row.get(0), (row.get(1), has));
        }
    }
    let new_cases = cases.len() - stored.len();
    if new_cases > 0 {
        sqlx::query("UPDATE case_count SET n = n + ? WHERE id = 0")
            .bind(new_cases as i64)
            .execute(&mut *tx)
            .await?;
    }
    // A value counts once per case: only the rows a stored case does not have yet are new.
    let found: Vec<_> = found
        .into_iter()
        .filter(|(kind, value, ticket)| {
            stored.get(ticket).is_none_or(|(_, has)| {
                has.binary_search_by(|(k, v)| (k.as_str(), v.as_str()).cmp(&(*kind, value)))
                    .is_err()
            })
        })
        .collect();
    // Each case's list: what it had, and what is new.
    let mut lists: HashMap<&str, Vec<(&str, &str)>> = HashMap::new();
    for (kind, value, ticket) in &found {
        lists
            .entry(ticket.as_str())
            .or_default()
            .push((*kind, value.as_str()));
    }
    let lists = cases
        .iter()
        .map(|(ticket, _)| {
            let mut list = lists.remove(ticket.as_str()).unwrap_or_default();
            if let Some((_, has)) = stored.get(ticket) {
                list.extend(has.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            }
            list.sort_unstable();
            serde_json::to_string(&list).map_err(|e| sqlx::Error::Encode(Box::new(e)))
        })
        .collect::<Result<Vec<String>, _>>()?;
    let rows: Vec<_> = cases.iter().zip(&lists).collect();
    for chunk in bulk_chunks(&rows) {
        let mut q = QueryBuilder::new(
            "INSERT INTO cases (ticket, site, rule, host, first_ms, escalated, confidence, \
             needs_review, indicators) ",
        );
        q.push_values(chunk, |mut b, ((ticket, c), list)| {
            b.push_bind(ticket)
                .push_bind(&c.site)
                .push_bind(&c.rule)
                .push_bind(&c.host)
                .push_bind(c.first_ms)
                .push_bind(i64::from(c.escalated))
                .push_bind(c.confidence)
                .push_bind(i64::from(c.needs_review))
                .push_bind(list.as_str());
        });
        q.push(
            " ON CONFLICT (ticket) DO UPDATE SET escalated = MAX(cases.escalated, \
             excluded.escalated), confidence = COALESCE(excluded.confidence, cases.confidence), \
             needs_review = MAX(cases.needs_review, excluded.needs_review), \
             indicators = excluded.indicators",
        );
        q.build().execute(&mut *tx).await?;
    }
    let opened: HashMap<&str, i64> = cases
        .iter()
        .map(|(ticket, c)| {
            let first_ms = stored.get(ticket).map_or(c.first_ms, |(first, _)| *first);
            (ticket.as_str(), first_ms)
        })
        .collect();
    for chunk in bulk_chunks(&found) {
        let mut q = QueryBuilder::new("INSERT INTO indicators (kind, value, ticket, first_ms) ");
        q.push_values(chunk, |mut b, (kind, value, ticket)| {
            let first_ms = opened.get(ticket.as_str()).copied().unwrap_or_default();
            b.push_bind(*kind)
                .push_bind(value)
                .push_bind(ticket)
                .push_bind(first_ms);
        });
        q.build().execute(&mut *tx).await?;
    }
    let mut new_counts: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for (kind, value, _) in &found {
        *new_counts.entry((*kind, value.as_str())).or_default() += 1;
    }
    let new_counts: Vec<_> = new_counts.into_iter().collect();
    for chunk in bulk_chunks(&new_counts) {
        let mut q = QueryBuilder::new("INSERT INTO indicator_counts (kind, value, cases) ");
        q.push_values(chunk, |mut b, ((kind, value), n)| {
            b.push_bind(*kind).push_bind(*value).push_bind(*n);
        });
        q.push(
            " ON CONFLICT (kind, value) DO UPDATE SET cases = indicator_counts.cases + \
             excluded.cases",
        );
        q.build().execute(&mut *tx).await?;
    }
    Ok(())
}
