//! Local stores (SQLite through sqlx, with migrations in `migrations/`): the verdict store and
//! case memory ([`crate::memory`]), projections of `soc.audit` folded in the same transactions.
//!
//! Every role decision in the audit (an event carrying [`DecisionMeta`]) becomes one row of
//! `verdicts`, keyed by its audit entry id. A fold ([`Store::fold`], [`catch_up`]) writes the
//! rows of one or more pages and moves the projection's checkpoint in one transaction (a
//! catch-up commits every 40 pages), so a crash loses only the uncommitted pages, which the
//! next fold redoes from the checkpoint, and the keys make a repeated page a no-op anyway.
//! Rebuilding is folding the same log from the start: the result is the same table.
//!
//! Opening a store migrates it: a new file gets every migration in one transaction, an
//! existing one whatever sqlx's migrator finds missing ([`Store::open`]). A crash during a
//! new file's migration leaves it empty, and the next open starts over.

pub(crate) mod projection;

pub use projection::Timelines;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use futures_util::StreamExt;

use crate::bus::{Bus, BusError, Fields, StreamId, Topic};
use crate::knowledge::{Disposition, DispositionFacts};
use crate::proto::{DecisionMeta, Envelope, Event};

/// The store of a Redis-backed SOC, in the data directory: it projects one namespace's
/// audit, which outlives runs.
pub const FILE: &str = "soc.db";

/// The store of an in-memory run: its audit dies with the process, so the projection is reset
/// at each start and holds the last in-memory run (imported dispositions are kept).
pub const MEMORY_FILE: &str = "soc-memory.db";

/// The store file for `backend` in `data_dir`.
pub fn file_for(data_dir: &Path, backend: &str) -> std::path::PathBuf {
    data_dir.join(if backend == "redis" {
        FILE
    } else {
        MEMORY_FILE
    })
}

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be opened or migrated.
    #[error("cannot open the store {0}: {1}")]
    Open(String, #[source] sqlx::Error),
    /// A query failed.
    #[error("store query failed: {0}")]
    Query(#[from] sqlx::Error),
    /// The audit could not be read.
    #[error("reading soc.audit: {0}")]
    Bus(#[from] BusError),
    /// The store projects another log.
    #[error(
        "this store holds the projection `{found}`, not `{wanted}`: use another data directory \
         for another namespace"
    )]
    OtherProjection {
        /// In the store.
        found: String,
        /// Asked for.
        wanted: String,
    },
    /// What was read back is not what the store writes.
    #[error("reading {what} from the store: {reason}")]
    Decode {
        /// What was read.
        what: &'static str,
        /// Why it did not decode.
        reason: String,
    },
}

/// The tables a projection writes (and a rebuild empties).
pub const PROJECTED_TABLES: [&str; 6] = [
    "verdicts",
    "cases",
    "case_events",
    "indicators",
    "indicator_counts",
    "proposals",
];

/// A REAL as SQLite's `quote()` writes it: `NULL`, or digits that read back as the same
/// double.
fn quoted_real(text: &str) -> Result<Option<f64>, StoreError> {
    if text == "NULL" {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| StoreError::Decode {
        what: "a verdict's number",
        reason: format!("{text:?} is not a number"),
    })
}

/// A verdict's wall time as `quote()` writes it: never NULL (the column is NOT NULL).
fn wall_time(text: &str) -> Result<f64, StoreError> {
    quoted_real(text)?.ok_or(StoreError::Decode {
        what: "a verdict's wall time",
        reason: "it is NULL".into(),
    })
}

/// One verdict as [`Store::verdicts`]' query writes it: a JSON array in this order, the reals
/// as `quote()` text.
#[derive(serde::Deserialize)]
struct VerdictJson {
    audit_ms: i64,
    audit_seq: i64,
    ticket: String,
    site: Option<String>,
    role: String,
    kind: String,
    verdict: String,
    confidence: String,
    reasoner: String,
    wall_time_ms: String,
    tool_calls_made: i64,
    tokens_in: i64,
    tokens_out: i64,
    ground_truth: Option<String>,
    at_ms: i64,
    p_escalate: String,
}

impl VerdictJson {
    fn into_row(self) -> Result<VerdictRow, StoreError> {
        Ok(VerdictRow {
            audit_id: format!("{}-{}", self.audit_ms, self.audit_seq),
            ticket: self.ticket,
            site: self.site,
            role: self.role,
            kind: self.kind,
            verdict: self.verdict,
            confidence: quoted_real(&self.confidence)?,
            reasoner: self.reasoner,
            wall_time_ms: wall_time(&self.wall_time_ms)?,
            tool_calls_made: self.tool_calls_made,
            tokens_in: self.tokens_in,
            tokens_out: self.tokens_out,
            ground_truth: self.ground_truth,
            at_ms: self.at_ms,
            p_escalate: quoted_real(&self.p_escalate)?,
        })
    }
}

/// One decision as [`Store::decisions`]' query writes it: a JSON array in this order, the
/// reals as `quote()` text.
#[derive(serde::Deserialize)]
struct DecisionJson {
    audit_ms: i64,
    audit_seq: i64,
    ticket: String,
    role: String,
    kind: String,
    reasoner: String,
    wall_time_ms: String,
    tool_calls_made: i64,
    tokens_in: i64,
    tokens_out: i64,
    p_escalate: String,
}

impl DecisionJson {
    fn into_row(self) -> Result<DecisionRow, StoreError> {
        Ok(DecisionRow {
            ticket: self.ticket,
            role: self.role,
            kind: self.kind,
            reasoner: self.reasoner,
            wall_time_ms: wall_time(&self.wall_time_ms)?,
            tool_calls_made: self.tool_calls_made,
            tokens_in: self.tokens_in,
            tokens_out: self.tokens_out,
            p_escalate: quoted_real(&self.p_escalate)?,
        })
    }
}

/// Rows read in one query by [`Store::verdicts`] and [`Store::decisions`] (about 1.3 MB of
/// JSON for verdicts, less for decisions).
const JSON_PAGE: usize = 8_192;

/// Most rows in one multi-row statement. Each shape of a statement (its row count) is prepared
/// once per connection, at a cost that grows with its rows: at 1,024 rows the preparing took
/// 70 M of a 2,000-ticket dry run's 1,210 M instructions (181 statements), at 256 it takes
/// 37 M, and `bench memory` folds as fast (at 64, 18 M, but that fold was a tenth slower).
/// 256 rows of 15 columns stay well under SQLite's 32,766 bound parameters.
pub(crate) const BULK_ROWS: usize = 256;

/// `items` in chunks of a power of two rows, at most [`BULK_ROWS`], largest first: 1,500 rows
/// go as 5 x 256 + 128 + 64 + 16 + 8 + 4. sqlx prepares and caches a statement per SQL text,
/// and a multi-row statement's text is its row count: chunks of any length made nearly every
/// statement a new one to prepare, and filled each connection's cache of 100 with large
/// programs seldom run again (13 MB of a 9,869-ticket dry run's 58 MB heap). In powers of two,
/// each statement has 9 shapes, each prepared once.
pub(crate) fn bulk_chunks<T>(items: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        let n = bulk_len(rest.len())?;
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

/// `items` moved out in the chunks [`bulk_chunks`] makes.
pub(crate) fn bulk_chunks_owned<T>(items: Vec<T>) -> impl Iterator<Item = Vec<T>> {
    let mut rest = items.into_iter();
    std::iter::from_fn(move || {
        let n = bulk_len(rest.len())?;
        Some(rest.by_ref().take(n).collect())
    })
}

/// The next chunk's length for `remaining` rows: none when nothing remains.
fn bulk_len(remaining: usize) -> Option<usize> {
    match remaining {
        0 => None,
        n if n >= BULK_ROWS => Some(BULK_ROWS),
        n => Some(1 << n.ilog2()),
    }
}

/// Audit entries read from the bus and folded at a time.
pub(crate) const FOLD_PAGE: usize = 500;

/// Pages folded per transaction while catching up (20,000 entries): a catch-up over a backlog
/// commits every 40 pages, not every page, so an index page dirtied by many pages is written
/// to the WAL once (`bench memory` at 100,000 cases: 7.3k entries/s with a commit per page,
/// 14k with one per 40). It bounds how long the fold holds the write lock (about a second),
/// and what a crash makes the next fold redo.
pub(crate) const FOLD_TX_PAGES: usize = 40;

/// What one catch-up folded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Folded {
    /// Audit entries read.
    pub entries: u64,
    /// Verdict rows written.
    pub rows: u64,
    /// Where the projection stands now.
    #[serde(serialize_with = "display")]
    pub checkpoint: StreamId,
    /// Audit entries that could not be decoded (skipped; a rebuild fails on any).
    pub skipped: u64,
    /// Analysts' dispositions folded (and handed to the reasoner).
    pub dispositions: u64,
}

fn display<S: serde::Serializer>(id: &StreamId, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

/// The name of the projection of `bus`'s audit: one store holds one.
pub fn projection_name(bus: &Bus) -> String {
    match bus.backend_name() {
        "redis" => format!("redis:{}", bus.config().namespace),
        other => other.to_owned(),
    }
}

/// Folds `bus`'s audit into `store` from the projection's checkpoint, up to
/// 40 pages (20,000 entries) per transaction, for at most `max_pages` pages (all when `None`).
/// After each commit it tells the bus what is folded ([`Bus::audit_folded`]).
pub async fn catch_up(
    bus: &Bus,
    store: &Store,
    projection: &str,
    max_pages: Option<usize>,
) -> Result<Folded, StoreError> {
    catch_up_into(bus, store, projection, max_pages, None, Timelines::Kept).await
}

/// Pages a catch-up reads, decodes and prepares ahead of the one SQLite is writing (2,000
/// entries). The reader runs as its own task, on the other core, and makes each page's
/// statements ([`projection::Bulk`]): with the next page read only while a page was written,
/// in the same task, SQLite sat idle whenever the writer waited on the reader, during each
/// commit's flush, and while the writer bound rows. `bench memory` at 100,000 cases, store on
/// tmpfs, same loop: 40-51 k entries/s before, 56-75 k after (with the indicator lists on the
/// cases); 1 and 8 pages ahead measured alike.
pub(crate) const READ_AHEAD: usize = 4;

/// [`catch_up`], also handing each disposition folded (a `DispositionRecorded`) to
/// `knowledge`, so the reasoner learns from it without a restart, and writing the cases'
/// timelines or not as `timelines` says.
pub(crate) async fn catch_up_into(
    bus: &Bus,
    store: &Store,
    projection: &str,
    max_pages: Option<usize>,
    knowledge: Option<&crate::knowledge::Knowledge>,
    timelines: Timelines,
) -> Result<Folded, StoreError> {
    let checkpoint = store.checkpoint(projection).await?;
    // Pages after the checkpoint, up to the first error or empty page, at most `max_pages`.
    let pages = futures_util::stream::unfold(
        (bus.clone(), Some(checkpoint)),
        move |(from, after)| async move {
            let read = read_page(&from, after?, timelines).await;
            let next = match &read {
                Ok(Read {
                    last: Some(last), ..
                }) => Some(*last),
                _ => None,
            };
            Some((read, (from, next)))
        },
    )
    .take(max_pages.unwrap_or(usize::MAX));
    fold_pages(store, projection, checkpoint, pages, knowledge, |last| {
        bus.audit_folded(last);
    })
    .await
}

/// Folds `pages` (each read, decoded and prepared by a reader task that runs up to
/// [`READ_AHEAD`] pages ahead) in order, after `checkpoint`, up to the first error or empty
/// page: [`FOLD_TX_PAGES`] pages per transaction, each commit moving the projection's
/// checkpoint and then calling `folded_to` with it. The pages read ahead and not yet
/// committed live only in memory: a crash loses them with the open transaction, and the next
/// fold reads them again from the checkpoint.
pub(crate) async fn fold_pages(
    store: &Store,
    projection: &str,
    checkpoint: StreamId,
    pages: impl futures_util::Stream<Item = Result<Read, StoreError>> + Send + 'static,
    knowledge: Option<&crate::knowledge::Knowledge>,
    mut folded_to: impl FnMut(StreamId),
) -> Result<Folded, StoreError> {
    let (send, mut pages_read) = tokio::sync::mpsc::channel(READ_AHEAD);
    // Dropped with this future, the set aborts the reader.
    let mut reader = tokio::task::JoinSet::new();
    reader.spawn(async move {
        let mut pages = std::pin::pin!(pages);
        while let Some(read) = pages.next().await {
            if send.send(read).await.is_err() {
                return;
            }
            // On the in-memory bus a read never waits, so without this the reader would run
            // until the channel is full: the writer it just woke sits in this worker's LIFO
            // slot, which the other worker cannot steal, and the two took turns instead of
            // overlapping (seen in a 2,000-ticket dry run: 3 pages read, then 3 written).
            tokio::task::yield_now().await;
        }
    });
    let mut folded = Folded {
        checkpoint,
        ..Folded::default()
    };
    let mut fold: Option<Fold> = None;
    while let Some(next) = pages_read.recv().await {
        let Read {
            read,
            decoded,
            page,
            last,
        } = next?;
        let Some(last) = last else {
            break;
        };
        folded.skipped += (read - decoded) as u64;
        folded.entries += read as u64;
        let tx = match &mut fold {
            Some(open) => open,
            None => fold.insert(store.begin_fold().await?),
        };
        folded.rows += tx.write(page).await?;
        folded.checkpoint = last;
        if tx.pages() >= FOLD_TX_PAGES {
            commit(fold.take(), projection, last, knowledge, &mut folded).await?;
            folded_to(last);
        }
    }
    commit(
        fold.take(),
        projection,
        folded.checkpoint,
        knowledge,
        &mut folded,
    )
    .await?;
    // Only once committed: a retention may drop what is in the store now.
    folded_to(folded.checkpoint);
    Ok(folded)
}

/// A page of the audit as read: how many entries, how many decoded, the rows of those, and
/// the last id (`None`: nothing new).
pub(crate) struct Read {
    pub(crate) read: usize,
    pub(crate) decoded: usize,
    pub(crate) page: projection::Prepared,
    pub(crate) last: Option<StreamId>,
}

/// Reads, decodes and prepares the page of the audit after `after`.
async fn read_page(bus: &Bus, after: StreamId, timelines: Timelines) -> Result<Read, StoreError> {
    let entries = bus
        .range(Topic::Audit, after.next(), StreamId::MAX, FOLD_PAGE)
        .await?;
    // Without timelines no event is kept whole: a triage's evidence is not read.
    let decode = match timelines {
        Timelines::Kept => Fields::decode_envelope,
        Timelines::Skipped => Fields::decode_envelope_without_evidence,
    };
    let decoded: Vec<(StreamId, Envelope)> = entries
        .iter()
        .filter_map(|e| decode(&e.fields).ok().map(|env| (e.id, env)))
        .collect();
    Ok(Read {
        read: entries.len(),
        decoded: decoded.len(),
        page: projection::prepare(&decoded, timelines),
        last: entries.last().map(|e| e.id),
    })
}

/// Commits an open fold of [`catch_up_into`] at `last`, then hands the dispositions it folded
/// to `knowledge` (only once they are in the store).
async fn commit(
    fold: Option<Fold>,
    projection: &str,
    last: StreamId,
    knowledge: Option<&crate::knowledge::Knowledge>,
    folded: &mut Folded,
) -> Result<(), StoreError> {
    let Some(fold) = fold else {
        return Ok(());
    };
    let learned = fold.commit(projection, last).await?;
    if let Some(k) = knowledge
        && !learned.is_empty()
    {
        folded.dispositions += learned.len() as u64;
        k.add_dispositions(&learned);
    }
    Ok(())
}

/// A fold in progress: one transaction over any number of pages ([`Store::begin_fold`]).
/// Dropped without [`Fold::commit`], it rolls back and the checkpoint stays where it was.
pub(crate) struct Fold {
    tx: sqlx::Transaction<'static, sqlx::Sqlite>,
    pending: projection::Pending,
    /// Pages written so far.
    pages: usize,
    /// The analysts' dispositions written so far, handed back by [`Fold::commit`].
    learned: Vec<DispositionFacts>,
}

impl Fold {
    /// Folds a page of audit entries (in id order, after everything folded before) into the
    /// verdicts and case memory. Returns the verdict rows written.
    pub(crate) async fn page(&mut self, page: &[(StreamId, Envelope)]) -> Result<u64, StoreError> {
        self.write(projection::prepare(page, Timelines::Kept)).await
    }

    /// [`Fold::page`] for a page already prepared ([`projection::prepare`]), which a caller
    /// can do for the next page while this one is written.
    pub(crate) async fn write(
        &mut self,
        mut page: projection::Prepared,
    ) -> Result<u64, StoreError> {
        let tx: &mut sqlx::SqliteConnection = &mut self.tx;
        let rows = std::mem::take(&mut page.verdicts);
        let recorded = std::mem::take(&mut page.recorded);
        self.pages += 1;
        projection::write(tx, page, &mut self.pending).await?;
        for (facts, source) in &recorded {
            insert_dispositions(
                tx,
                std::slice::from_ref(facts),
                source,
                facts.known_ms,
                false,
            )
            .await?;
        }
        self.learned
            .extend(recorded.into_iter().map(|(facts, _)| facts));
        let mut written = 0;
        for insert in rows {
            written += insert.execute(&mut *tx).await?;
        }
        Ok(written)
    }

    /// Pages written so far.
    pub(crate) fn pages(&self) -> usize {
        self.pages
    }

    /// Moves `projection`'s checkpoint to `last` (the id of the last entry folded) and commits
    /// every page folded. Returns the analysts' dispositions it folded, now in the store.
    pub(crate) async fn commit(
        mut self,
        projection: &str,
        last: StreamId,
    ) -> Result<Vec<DispositionFacts>, StoreError> {
        projection::flush(&mut self.tx, &mut self.pending).await?;
        sqlx::query(
            "INSERT INTO checkpoints (projection, audit_ms, audit_seq) VALUES (?, ?, ?) \
             ON CONFLICT (projection) DO UPDATE SET audit_ms = excluded.audit_ms, \
             audit_seq = excluded.audit_seq \
             WHERE (excluded.audit_ms, excluded.audit_seq) > (checkpoints.audit_ms, checkpoints.audit_seq)",
        )
        .bind(projection)
        .bind(last.ms as i64)
        .bind(last.seq as i64)
        .execute(&mut *self.tx)
        .await?;
        self.tx.commit().await?;
        Ok(self.learned)
    }
}

/// The inserts of verdict rows (by audit id), in [`bulk_chunks`].
fn verdict_inserts(rows: Vec<(StreamId, VerdictRow)>) -> Vec<projection::Bulk> {
    let mut out = Vec::new();
    for chunk in bulk_chunks_owned(rows) {
        let mut insert = projection::Bulk::new(
            "INSERT OR IGNORE INTO verdicts (audit_ms, audit_seq, ticket, site, role, kind, \
             verdict, confidence, reasoner, wall_time_ms, tool_calls_made, tokens_in, \
             tokens_out, at_ms, p_escalate)",
            15,
            chunk.len(),
            "",
        );
        for (id, row) in chunk {
            insert
                .bind(id.ms as i64)
                .bind(id.seq as i64)
                .bind(row.ticket)
                .bind(row.site)
                .bind(row.role)
                .bind(row.kind)
                .bind(row.verdict)
                .bind(row.confidence)
                .bind(row.reasoner)
                .bind(row.wall_time_ms)
                .bind(row.tool_calls_made)
                .bind(row.tokens_in)
                .bind(row.tokens_out)
                .bind(row.at_ms)
                .bind(row.p_escalate);
        }
        out.push(insert);
    }
    out
}

/// One role decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerdictRow {
    /// The audit entry it was folded from.
    pub audit_id: String,
    /// Ticket.
    pub ticket: String,
    /// Site, if the alert had one.
    pub site: Option<String>,
    /// Deciding role.
    pub role: String,
    /// The event kind.
    pub kind: String,
    /// The verdict in the role's own terms (triage verdict, tier2 decision, severity, actor).
    pub verdict: String,
    /// Confidence, when the role gives one.
    pub confidence: Option<f64>,
    /// Which reasoner decided.
    pub reasoner: String,
    /// Wall time, ms.
    pub wall_time_ms: f64,
    /// Tool calls made.
    pub tool_calls_made: i64,
    /// Prompt tokens.
    pub tokens_in: i64,
    /// Completion tokens.
    pub tokens_out: i64,
    /// The analysts' disposition, once known (from `dispositions`, by ticket).
    pub ground_truth: Option<String>,
    /// When the decision was made, ms since the epoch.
    pub at_ms: i64,
    /// The calibrated probability of escalation a triage rested on.
    pub p_escalate: Option<f64>,
}

/// One role decision as a backtest scores it, read back by [`Store::decisions`]: who decided
/// which kind of event for which ticket, with which reasoner, at what cost.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRow {
    /// Ticket.
    pub ticket: String,
    /// Deciding role.
    pub role: String,
    /// The event kind.
    pub kind: String,
    /// Which reasoner decided.
    pub reasoner: String,
    /// Wall time, ms.
    pub wall_time_ms: f64,
    /// Tool calls made.
    pub tool_calls_made: i64,
    /// Prompt tokens.
    pub tokens_in: i64,
    /// Completion tokens.
    pub tokens_out: i64,
    /// The calibrated probability of escalation a triage rested on.
    pub p_escalate: Option<f64>,
}

#[derive(sqlx::FromRow)]
struct DispositionRow {
    ticket: String,
    ground_truth: String,
    site: String,
    rule: String,
    host: String,
    detector: String,
    known_ms: Option<i64>,
    title: String,
    first_ms: Option<i64>,
    last_ms: Option<i64>,
    alert_count: i64,
    vendor: Option<String>,
}

/// An analyst's disposition of `case`, by `by` through `origin` (`webex`, `console`), with an
/// optional reason: inside `tx`, the ticket's disposition (what the reasoner learns from;
/// `replace` lets it override an earlier one) and its `DispositionRecorded` in the outbox under
/// `dedupe_key` (relayed to the bus, kept in the audit). The facts, for the live knowledge.
#[allow(
    clippy::too_many_arguments,
    reason = "one call per channel, each field named there"
)]
pub(crate) async fn record_disposition(
    tx: &mut sqlx::SqliteConnection,
    case: &crate::proto::CaseContext,
    disposition: Disposition,
    by: &str,
    origin: &str,
    reason: Option<String>,
    replace: bool,
    dedupe_key: &str,
    now_ms: i64,
) -> Result<DispositionFacts, sqlx::Error> {
    let facts = DispositionFacts::of_case(case, disposition, now_ms);
    insert_dispositions(
        tx,
        std::slice::from_ref(&facts),
        &format!("{origin}:{by}"),
        now_ms,
        replace,
    )
    .await?;
    let envelope = Envelope::new_root(
        origin,
        &case.ticket,
        Event::DispositionRecorded(crate::proto::DispositionRecorded {
            case: case.clone(),
            disposition,
            by: by.to_owned(),
            origin: origin.to_owned(),
            known_at_ms: now_ms,
            reason,
        }),
    );
    sqlx::query("INSERT INTO outbox (dedupe_key, envelope, created_ms) VALUES (?, ?, ?)")
        .bind(dedupe_key)
        .bind(serde_json::to_string(&envelope).unwrap_or_default())
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
    Ok(facts)
}

/// Writes dispositions with their facts; `replace`: a row for a ticket replaces the earlier
/// one (an import), else the one known later wins (feedback from the bus). Returns rows
/// written.
pub(crate) async fn insert_dispositions(
    tx: &mut sqlx::SqliteConnection,
    chunk: &[DispositionFacts],
    source: &str,
    at_ms: i64,
    replace: bool,
) -> Result<u64, sqlx::Error> {
    let mut q = sqlx::QueryBuilder::new(
        "INSERT INTO dispositions (ticket, ground_truth, source, at_ms, site, rule, host, \
         detector, known_ms, title, first_ms, last_ms, alert_count, vendor) ",
    );
    q.push_values(chunk, |mut b, f| {
        b.push_bind(&f.ticket)
            .push_bind(f.disposition.label())
            .push_bind(source)
            .push_bind(at_ms)
            .push_bind(&f.site)
            .push_bind(&f.rule)
            .push_bind(&f.host)
            .push_bind(&f.detector)
            .push_bind((f.known_ms != i64::MIN).then_some(f.known_ms))
            .push_bind(&f.title)
            .push_bind(f.first_ms)
            .push_bind(f.last_ms)
            .push_bind(i64::from(f.alert_count))
            .push_bind(
                f.vendor
                    .as_ref()
                    .and_then(|v| serde_json::to_string(v).ok()),
            );
    });
    q.push(
        " ON CONFLICT (ticket) DO UPDATE SET ground_truth = excluded.ground_truth, \
         source = excluded.source, at_ms = excluded.at_ms, site = excluded.site, \
         rule = excluded.rule, host = excluded.host, detector = excluded.detector, \
         known_ms = excluded.known_ms, title = excluded.title, first_ms = excluded.first_ms, \
         last_ms = excluded.last_ms, alert_count = excluded.alert_count, \
         vendor = excluded.vendor",
    );
    if !replace {
        q.push(
            " WHERE COALESCE(excluded.known_ms, -9223372036854775808) >= \
             COALESCE(dispositions.known_ms, -9223372036854775808)",
        );
    }
    Ok(q.build().execute(&mut *tx).await?.rows_affected())
}

/// The store's schema, `migrations/` (embedded at build time).
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Migrates the store `pool` opens. A store with no migration applied yet (a new file) gets
/// them all in one transaction: sqlx's migrator gives each its own, with a commit and a
/// bookkeeping update after each (a new store took 5.8-9.5 ms through it, 4.7-6.7 ms in one
/// transaction: release build, tmpfs; a backtest makes a scratch store on every run). The
/// bookkeeping rows are sqlx's (its table, version, description and checksum, as sqlx 0.8
/// writes them), except their execution time: -1 for good, where sqlx writes -1 and then the
/// time taken. sqlx's migrator, run next, finds every migration applied and checks their
/// checksums. A store with any migration applied is left to sqlx's migrator, and is only read
/// here: opening it takes no write lock, so it does not wait on a fold's transaction.
async fn migrate(pool: &SqlitePool) -> Result<(), sqlx::migrate::MigrateError> {
    use sqlx::migrate::Migrate;
    use sqlx::{Connection, Executor};
    let up: Vec<_> = MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .collect();
    if up.iter().all(|m| !m.no_tx) {
        let mut conn = pool.acquire().await?;
        if !migrations_begun(&mut conn).await? {
            conn.ensure_migrations_table().await?;
            // Immediate, and checked again inside: a second process opening the same new file
            // waits here, then finds the migrations applied.
            let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
            if !migrations_begun(&mut tx).await? {
                for m in &up {
                    tx.execute(&*m.sql)
                        .await
                        .map_err(|e| sqlx::migrate::MigrateError::ExecuteMigration(e, m.version))?;
                    sqlx::query(
                        "INSERT INTO _sqlx_migrations (version, description, success, \
                         checksum, execution_time) VALUES (?1, ?2, TRUE, ?3, -1)",
                    )
                    .bind(m.version)
                    .bind(&*m.description)
                    .bind(&*m.checksum)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
            }
        }
    }
    MIGRATOR.run(pool).await
}

/// Whether sqlx has applied (or begun) any migration of the store `conn` is on.
async fn migrations_begun(conn: &mut sqlx::SqliteConnection) -> Result<bool, sqlx::Error> {
    let table: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' \
         AND name = '_sqlx_migrations')",
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(table
        && sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM _sqlx_migrations)")
            .fetch_one(&mut *conn)
            .await?)
}

/// The page cache per connection of a store opened for folding ([`Store::open_for_fold`]), MiB.
pub const FOLD_CACHE_MIB: u32 = 16;

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    /// The file, as given to [`Store::open`].
    path: Arc<Path>,
}

impl Store {
    /// Opens (creating and migrating) the store at `path`, for reading and light writes: up
    /// to 4 connections with SQLite's default 2 MiB page cache each.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        Self::open_with(path, 2, 4).await
    }

    /// Opens the store at `path` for folding the audit into it (the projector, `memory
    /// rebuild`): a fold touches index pages all over the store, so each of its 2 connections
    /// keeps a 16 MiB page cache. A process holds several stores (the projector's, the
    /// pages', the notifier's...), and each connection's cache fills as the store grows: only
    /// the folding one gets the large cache, so the process's memory stays bounded.
    pub async fn open_for_fold(path: &Path) -> Result<Store, StoreError> {
        Self::open_with(path, FOLD_CACHE_MIB, 2).await
    }

    async fn open_with(path: &Path, cache_mib: u32, connections: u32) -> Result<Store, StoreError> {
        let shown = path.display().to_string();
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{shown}"))
            .map_err(|e| StoreError::Open(shown.clone(), e))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            // A new store gets 8 KiB pages (an existing one keeps its size): a fold's commit
            // writes each dirty page to the WAL with its own write, and `bench memory` folded
            // about a tenth faster with half as many pages to write (16 KiB: no better, and
            // recall's tail grew).
            .page_size(8192)
            // Negative: KiB. Checkpoints every 8,192 pages of WAL (64 MiB at 8 KiB), not
            // 1,000, write a hot page once; sorts and temporary b-trees stay in memory.
            .pragma("cache_size", format!("-{}", u64::from(cache_mib) * 1024))
            .pragma("wal_autocheckpoint", "8192")
            .pragma("temp_store", "memory");
        let pool = SqlitePoolOptions::new()
            .max_connections(connections)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Open(shown.clone(), e))?;
        migrate(&pool)
            .await
            .map_err(|e| StoreError::Open(shown, e.into()))?;
        Ok(Store {
            pool,
            path: path.into(),
        })
    }

    /// The store's file, as it was opened.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes sure this store holds `projection` (or nothing yet): one store, one log.
    pub async fn bind_projection(&self, projection: &str) -> Result<(), StoreError> {
        let other = sqlx::query("SELECT projection FROM checkpoints WHERE projection != ? LIMIT 1")
            .bind(projection)
            .fetch_optional(&self.pool)
            .await?;
        match other {
            Some(row) => Err(StoreError::OtherProjection {
                found: row.get(0),
                wanted: projection.to_owned(),
            }),
            None => Ok(()),
        }
    }

    /// Where `projection` has folded up to (`StreamId::ZERO` before its first fold).
    pub async fn checkpoint(&self, projection: &str) -> Result<StreamId, StoreError> {
        let row = sqlx::query("SELECT audit_ms, audit_seq FROM checkpoints WHERE projection = ?")
            .bind(projection)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map_or(StreamId::ZERO, |r| StreamId {
            ms: r.get::<i64, _>(0) as u64,
            seq: r.get::<i64, _>(1) as u64,
        }))
    }

    /// Folds one page of audit entries (in id order, all after the checkpoint) into the
    /// verdicts and case memory, and moves the checkpoint to `last`, in one transaction.
    /// Returns the verdict rows written.
    pub async fn fold(
        &self,
        projection: &str,
        page: &[(StreamId, Envelope)],
        last: StreamId,
    ) -> Result<u64, StoreError> {
        let mut fold = self.begin_fold().await?;
        let written = fold.page(page).await?;
        fold.commit(projection, last).await?;
        Ok(written)
    }

    /// Opens a fold: pages folded into it ([`Fold::page`]) land together with the checkpoint
    /// when it commits ([`Fold::commit`]), or not at all. A fold of many pages writes each
    /// index page it touches once per commit, not once per page: a transaction per page made
    /// SQLite write every dirtied index page to the WAL again at each commit.
    pub(crate) async fn begin_fold(&self) -> Result<Fold, StoreError> {
        Ok(Fold {
            tx: self.pool.begin().await?,
            pending: projection::Pending::default(),
            pages: 0,
            learned: Vec::new(),
        })
    }

    /// Every verdict, in audit order, with the analysts' disposition of its ticket.
    pub async fn verdicts(&self) -> Result<Vec<VerdictRow>, StoreError> {
        self.verdicts_by(JSON_PAGE).await
    }

    async fn verdicts_by(&self, page: usize) -> Result<Vec<VerdictRow>, StoreError> {
        self.json_pages(
            "SELECT json_group_array(json_array(v.audit_ms, v.audit_seq, v.ticket, v.site, \
             v.role, v.kind, v.verdict, quote(v.confidence), v.reasoner, \
             quote(v.wall_time_ms), v.tool_calls_made, v.tokens_in, v.tokens_out, \
             d.ground_truth, v.at_ms, quote(v.p_escalate)) ORDER BY v.audit_ms, v.audit_seq) \
             FROM (SELECT * FROM verdicts WHERE (audit_ms, audit_seq) > (?1, ?2) \
             ORDER BY audit_ms, audit_seq LIMIT ?3) v \
             LEFT JOIN dispositions d ON d.ticket = v.ticket",
            page,
            |v: &VerdictJson| (v.audit_ms, v.audit_seq),
            VerdictJson::into_row,
        )
        .await
    }

    /// Every role decision, in audit order, with only what a backtest scores: no join for the
    /// disposition, no verdict text, site or audit id. A backtest reads every decision at its
    /// end, when the run's memory is at its peak, so [`Store::verdicts`]' larger rows were
    /// the peak.
    pub async fn decisions(&self) -> Result<Vec<DecisionRow>, StoreError> {
        self.decisions_by(JSON_PAGE).await
    }

    async fn decisions_by(&self, page: usize) -> Result<Vec<DecisionRow>, StoreError> {
        self.json_pages(
            "SELECT json_group_array(json_array(audit_ms, audit_seq, ticket, role, kind, \
             reasoner, quote(wall_time_ms), tool_calls_made, tokens_in, tokens_out, \
             quote(p_escalate)) ORDER BY audit_ms, audit_seq) \
             FROM (SELECT * FROM verdicts WHERE (audit_ms, audit_seq) > (?1, ?2) \
             ORDER BY audit_ms, audit_seq LIMIT ?3)",
            page,
            |d: &DecisionJson| (d.audit_ms, d.audit_seq),
            DecisionJson::into_row,
        )
        .await
    }

    /// Reads the verdicts table in audit order with `sql`, which aggregates the page of (at
    /// most `?3`) rows after the audit id (`?1`, `?2`) into one JSON array, in pages of `page`
    /// rows (at least one). All pages are read in one transaction, so a fold committing
    /// meanwhile cannot mix two states of the store. The rows are counted first, so the result
    /// is allocated once at its size: the read comes at a backtest's memory peak.
    ///
    /// Read as JSON arrays SQLite builds, not row by row: sqlx hands each row from its worker
    /// thread to the caller's, and that handoff was about 5 us a row (11 ms of a 2,000-ticket
    /// dry run, where the whole replay takes about 100). Pages keep each array far below
    /// SQLite's largest string (1 GB) however many rows there are. Reals go through
    /// `quote()`, which writes them exactly (SQLite's JSON keeps only 15 digits).
    async fn json_pages<J: serde::de::DeserializeOwned, R>(
        &self,
        sql: &'static str,
        page: usize,
        key: impl Fn(&J) -> (i64, i64),
        row: impl Fn(J) -> Result<R, StoreError>,
    ) -> Result<Vec<R>, StoreError> {
        let page = page.max(1);
        let mut tx = self.pool.begin().await?;
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM verdicts")
            .fetch_one(&mut *tx)
            .await?;
        let mut out = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        let mut after = (i64::MIN, i64::MIN);
        loop {
            let json: String = sqlx::query_scalar(sql)
                .bind(after.0)
                .bind(after.1)
                .bind(i64::try_from(page).unwrap_or(i64::MAX))
                .fetch_one(&mut *tx)
                .await?;
            let rows: Vec<J> = serde_json::from_str(&json).map_err(|e| StoreError::Decode {
                what: "the verdicts",
                reason: e.to_string(),
            })?;
            let full = rows.len() >= page;
            if let Some(last) = rows.last() {
                after = key(last);
            }
            for r in rows {
                out.push(row(r)?);
            }
            if !full {
                tx.commit().await?;
                return Ok(out);
            }
        }
    }

    /// Tickets whose case was escalated to the IR Lead.
    pub(crate) async fn escalated_tickets(
        &self,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let rows = sqlx::query("SELECT ticket FROM cases WHERE escalated = 1")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// When the newest case opened, ms since the epoch.
    pub async fn newest_case_ms(&self) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query("SELECT MAX(first_ms) FROM cases")
            .fetch_one(&self.pool)
            .await?
            .get(0))
    }

    /// Records what analysts decided for tickets (`escalate` or `close`), from `source`.
    /// Returns the tickets recorded; a later record for a ticket replaces an earlier one.
    pub async fn import_dispositions(
        &self,
        dispositions: &[DispositionFacts],
        source: &str,
    ) -> Result<u64, StoreError> {
        let at_ms = crate::proto::now_ms();
        let mut tx = self.pool.begin().await?;
        let mut written = 0;
        for chunk in bulk_chunks(dispositions) {
            written += insert_dispositions(&mut tx, chunk, source, at_ms, true).await?;
        }
        tx.commit().await?;
        Ok(written)
    }

    /// Queues `envelopes` in the outbox (each once, by its dedupe key): the projector of the next
    /// run relays them to the bus. Returns how many were new.
    pub async fn queue_outbox(
        &self,
        envelopes: &[(String, crate::proto::Envelope)],
    ) -> Result<u64, StoreError> {
        let now = crate::proto::now_ms();
        let mut tx = self.pool.begin().await?;
        let mut queued = 0;
        for chunk in bulk_chunks(envelopes) {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT OR IGNORE INTO outbox (dedupe_key, envelope, created_ms) ",
            );
            q.push_values(chunk, |mut b, (key, envelope)| {
                b.push_bind(key)
                    .push_bind(serde_json::to_string(envelope).unwrap_or_default())
                    .push_bind(now);
            });
            queued += q.build().execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(queued)
    }

    /// Every recorded disposition with its ticket's facts (rows without them keep empty
    /// strings; a row with an unknown label is skipped).
    pub async fn dispositions(&self) -> Result<Vec<DispositionFacts>, StoreError> {
        let rows: Vec<DispositionRow> = sqlx::query_as(
            "SELECT ticket, ground_truth, COALESCE(site, '') AS site, COALESCE(rule, '') AS rule, \
             COALESCE(host, '') AS host, COALESCE(detector, '') AS detector, known_ms, \
             COALESCE(title, '') AS title, first_ms, last_ms, COALESCE(alert_count, 1) AS \
             alert_count, vendor FROM dispositions \
             ORDER BY COALESCE(known_ms, -9223372036854775808), ticket",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(DispositionFacts {
                    disposition: Disposition::parse(&r.ground_truth)?,
                    ticket: r.ticket,
                    site: r.site,
                    rule: r.rule,
                    host: r.host,
                    detector: r.detector,
                    known_ms: r.known_ms.unwrap_or(i64::MIN),
                    title: r.title,
                    first_ms: r.first_ms,
                    last_ms: r.last_ms,
                    alert_count: u32::try_from(r.alert_count).unwrap_or(1),
                    vendor: r.vendor.and_then(|v| serde_json::from_str(&v).ok()),
                })
            })
            .collect())
    }

    /// Triage's recorded assessment of each ticket (the first triage that has one).
    pub(crate) async fn triage_assessments(
        &self,
    ) -> Result<std::collections::HashMap<String, crate::proto::Assessment>, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT ticket, body FROM case_events WHERE kind = 'AlertTriaged' \
             ORDER BY audit_ms, audit_seq",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = std::collections::HashMap::new();
        for (ticket, body) in rows {
            if let Ok(Event::AlertTriaged(t)) = serde_json::from_str::<Event>(&body)
                && let Some(a) = t.assessment
            {
                out.entry(ticket).or_insert(a);
            }
        }
        Ok(out)
    }

    /// How many cases of each rule each site has seen (the novelty baseline after a restart).
    pub(crate) async fn rules_seen(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT COALESCE(site, ''), rule, COUNT(*) FROM cases GROUP BY site, rule",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// The alerts of the cases opened in the activity window before the newest case, in time
    /// order, with the probability triage gave each, handed to `each` one at a time: what
    /// [`crate::knowledge::Knowledge`] needs to know which hosts are busy after a restart.
    /// Streamed, not collected: an hour at 150 alerts/s is over half a million alerts. Returns
    /// how many were handed over.
    pub(crate) async fn recent_alerts(
        &self,
        mut each: impl FnMut(crate::proto::Alert, f64),
    ) -> Result<u64, StoreError> {
        use futures_util::TryStreamExt as _;
        let Some(newest) = self.newest_case_ms().await? else {
            return Ok(0);
        };
        // Cases in `cases_opened` order and each case's events in key order (its unique
        // index): no sort of the window's bodies in memory.
        let mut rows = sqlx::query_as::<_, (String, Option<f64>)>(
            "SELECT e.body, (SELECT MAX(v.p_escalate) FROM verdicts v WHERE v.ticket = c.ticket \
             AND v.kind = 'AlertTriaged') FROM cases c JOIN case_events e ON e.ticket = c.ticket \
             WHERE c.first_ms >= ? AND e.kind = 'AlertReceived' \
             ORDER BY c.first_ms, c.ticket, e.audit_ms, e.audit_seq",
        )
        .bind(newest.saturating_sub(crate::knowledge::ACTIVITY_WINDOW_MS))
        .fetch(&self.pool);
        let mut n = 0;
        while let Some((body, p)) = rows.try_next().await? {
            if let Ok(Event::AlertReceived(r)) = serde_json::from_str::<Event>(&body) {
                each(r.alert, p.unwrap_or(0.0));
                n += 1;
            }
        }
        Ok(n)
    }

    /// The connection pool (for the read models' queries).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Forgets the projected rows (verdicts and case memory) and the checkpoint, before a
    /// rebuild. The store holds one projection ([`Store::bind_projection`]), so this forgets
    /// nothing of any other.
    pub async fn reset(&self, projection: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for table in PROJECTED_TABLES {
            sqlx::query(&format!("DELETE FROM {table}"))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE case_count SET n = 0")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM checkpoints WHERE projection = ?")
            .bind(projection)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Closes the pool (waits for connections to finish).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Copies the write-ahead log into the database file and empties it, so the file alone
    /// holds the store (a command whose product is the store, like `memory rebuild`, calls it
    /// before closing). Closing does it too, but only when the last connection closes alone:
    /// the pool closes an idle connection while one just used is closed by the task that
    /// returns it, and when the two close at once neither checkpoints, leaving the whole log
    /// beside an empty file.
    pub async fn checkpoint_wal(&self) -> Result<(), StoreError> {
        let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&self.pool)
            .await?;
        if busy != 0 {
            tracing::warn!("the store's log could not be copied whole: another reader holds it");
        }
        Ok(())
    }
}

/// The verdict row of a decision event (`None` for events that are not a role's decision).
pub(crate) fn verdict_of(id: StreamId, envelope: &Envelope) -> Option<VerdictRow> {
    let (meta, verdict, confidence): (&DecisionMeta, String, Option<f64>) = match &envelope.event {
        Event::AlertTriaged(e) => (&e.meta, label(&e.verdict), Some(f64::from(e.confidence))),
        Event::Tier2Analysis(e) => (&e.meta, label(&e.decision), Some(f64::from(e.confidence))),
        Event::IrPlan(e) => (&e.meta, label(&e.severity), None),
        Event::ThreatIntelReport(e) => (
            &e.meta,
            e.likely_actor
                .clone()
                .unwrap_or_else(|| "unattributed".to_owned()),
            None,
        ),
        _ => return None,
    };
    let case = envelope.event.case()?;
    Some(VerdictRow {
        audit_id: id.to_string(),
        ticket: case.ticket.clone(),
        site: case.site.clone(),
        role: envelope.produced_by.clone(),
        kind: envelope.event.kind().to_owned(),
        verdict,
        confidence,
        reasoner: label(&meta.reasoner),
        wall_time_ms: meta.wall_time_us as f64 / 1e3,
        tool_calls_made: i64::from(meta.tool_calls),
        tokens_in: i64::from(meta.tokens_in),
        tokens_out: i64::from(meta.tokens_out),
        ground_truth: None,
        at_ms: envelope.at_ms,
        p_escalate: match &envelope.event {
            Event::AlertTriaged(e) => e.assessment.as_ref().map(|a| a.probability),
            _ => None,
        },
    })
}

/// A unit enum's serde name (`true_positive`, `escalate`, `SEV-1`).
fn label<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failure should fail loudly"
    )]

    use super::*;
    use crate::bus::{Commit, Outgoing, Retention};
    use crate::proto::{Alert, AlertReceived, CaseContext};

    #[test]
    fn bulk_chunks_are_powers_of_two_largest_first_and_lose_no_row() {
        let lens = |n: usize| -> Vec<usize> {
            let items: Vec<usize> = (0..n).collect();
            let chunks: Vec<&[usize]> = bulk_chunks(&items).collect();
            assert_eq!(chunks.concat(), items, "every row once, in order");
            let owned: Vec<Vec<usize>> = bulk_chunks_owned(items.clone()).collect();
            assert_eq!(owned.concat(), items);
            chunks.iter().map(|c| c.len()).collect()
        };
        assert_eq!(lens(0), Vec::<usize>::new());
        assert_eq!(lens(1), [1]);
        assert_eq!(lens(7), [4, 2, 1]);
        assert_eq!(lens(1_500), [256, 256, 256, 256, 256, 128, 64, 16, 8, 4]);
        assert_eq!(lens(2_048), [256; 8]);
        // Each statement has at most 9 shapes, whatever the pages' sizes.
        let shapes: std::collections::HashSet<usize> = (0..3_000).flat_map(lens).collect();
        assert_eq!(shapes.len(), 9);
    }

    fn received(ticket: &str, first_seen: &str) -> Envelope {
        Envelope::new_root(
            "source:test",
            ticket,
            Event::AlertReceived(AlertReceived {
                alert: Alert {
                    ticket_id: ticket.into(),
                    source: "suricata".into(),
                    rule_id: "S-1".into(),
                    rule_name: "test".into(),
                    host: "ws-1".into(),
                    first_seen: first_seen.into(),
                    last_seen: first_seen.into(),
                    alert_count: 1,
                    ..Alert::default()
                },
                received_via: "test".into(),
            }),
        )
    }

    /// `envelopes` as a page of audit entries with ids `ms-0`, `ms-1`, ...
    fn paged(envelopes: impl IntoIterator<Item = Envelope>, ms: u64) -> Vec<(StreamId, Envelope)> {
        envelopes
            .into_iter()
            .enumerate()
            .map(|(i, e)| (StreamId { ms, seq: i as u64 }, e))
            .collect()
    }

    /// One table's rows as text, sorted: the whole table, to compare stores.
    async fn dump(store: &Store, table: &str) -> Vec<String> {
        let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?)")
            .bind(table)
            .fetch_all(store.pool())
            .await
            .unwrap();
        let row = columns
            .iter()
            .map(|c| format!("quote({c})"))
            .collect::<Vec<_>>()
            .join(" || ',' || ");
        let mut rows: Vec<String> = sqlx::query_scalar(&format!("SELECT {row} FROM {table}"))
            .fetch_all(store.pool())
            .await
            .unwrap();
        rows.sort();
        rows
    }

    /// A new store gets its migrations in one transaction ([`migrate`]): the same schema, rows
    /// and bookkeeping as sqlx's migrator makes one migration at a time, which then finds
    /// nothing to apply. Two stores opening the same new file at once both open it.
    #[tokio::test]
    async fn a_new_store_migrated_at_once_is_the_store_sqlx_makes() {
        /// The schema, every table's rows, and sqlx's bookkeeping rows (how many, apart).
        async fn contents(pool: &SqlitePool) -> (Vec<String>, Vec<String>) {
            let objects: Vec<(String, String, Option<String>)> = sqlx::query_as(
                "SELECT type, name, sql FROM sqlite_master WHERE name != '_sqlx_migrations' \
                 ORDER BY type, name",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            let mut out: Vec<String> = objects.iter().map(|o| format!("{o:?}")).collect();
            for (kind, table, _) in &objects {
                if kind == "table" && !table.starts_with("sqlite_") {
                    let columns: Vec<String> =
                        sqlx::query_scalar("SELECT name FROM pragma_table_info(?)")
                            .bind(table)
                            .fetch_all(pool)
                            .await
                            .unwrap();
                    let quoted: Vec<String> =
                        columns.iter().map(|c| format!("quote(\"{c}\")")).collect();
                    let rows: String = sqlx::query_scalar(&format!(
                        "SELECT json_group_array(json_array({})) FROM \"{table}\"",
                        quoted.join(", ")
                    ))
                    .fetch_one(pool)
                    .await
                    .unwrap();
                    out.push(format!("{table}: {rows}"));
                }
            }
            let applied: Vec<(i64, String, bool, Vec<u8>)> = sqlx::query_as(
                "SELECT version, description, success, checksum FROM _sqlx_migrations \
                 ORDER BY version",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            (out, applied.iter().map(|a| format!("{a:?}")).collect())
        }
        let dir = tempfile::tempdir().unwrap();
        let ours = Store::open(&dir.path().join("ours.db")).await.unwrap();
        let theirs = plain_pool(&dir.path().join("sqlx.db")).await;
        MIGRATOR.run(&theirs).await.unwrap();
        let made = contents(ours.pool()).await;
        assert_eq!(made, contents(&theirs).await);
        let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
            .unwrap()
            .count();
        assert_eq!(made.1.len(), files, "a bookkeeping row per migration");
        assert!(
            made.0.iter().any(|l| l.starts_with("case_count: [[")),
            "the migrations' own rows are there: {:?}",
            made.0
        );
        // Made here in one transaction, not by sqlx: its execution times stay -1.
        let unmeasured = |pool: SqlitePool| async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM _sqlx_migrations WHERE execution_time = -1",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
        };
        assert_eq!(unmeasured(ours.pool().clone()).await as usize, files);
        assert_eq!(unmeasured(theirs.clone()).await, 0);
        // sqlx's migrator accepts what it finds, and applies nothing.
        MIGRATOR.run(ours.pool()).await.unwrap();
        assert_eq!(contents(ours.pool()).await, made);
        // Opening a migrated store only reads it: it does not wait on a writer (the store's
        // busy timeout is 5 s).
        let mut writing = ours.pool().begin_with("BEGIN IMMEDIATE").await.unwrap();
        sqlx::query("UPDATE case_count SET n = n")
            .execute(&mut *writing)
            .await
            .unwrap();
        let again = tokio::time::timeout(
            Duration::from_secs(2),
            Store::open(&dir.path().join("ours.db")),
        )
        .await
        .expect("a migrated store opens while another connection writes")
        .unwrap();
        writing.rollback().await.unwrap();
        again.close().await;
        ours.close().await;
        theirs.close().await;

        // The same new file, opened twice at once: one makes it, the other waits and finds it made.
        let shared = dir.path().join("shared.db");
        let (a, b) = tokio::join!(Store::open(&shared), Store::open(&shared));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(contents(a.pool()).await, made);
        assert_eq!(contents(b.pool()).await, made);
        a.close().await;
        b.close().await;
    }

    /// A catch-up folds many pages in one transaction and writes cases and indicators at its
    /// commit: the store must be the one a transaction per page gives, and one page of it
    /// all. Cases are triaged, escalated and handed to a human pages after they opened (in
    /// pages of 4, t-7 and t-8 open after the last disposition's flush, so their later events
    /// merge into what is pending), with dispositions (of a case opened earlier in the same
    /// transaction, and of one never seen) in between.
    #[tokio::test]
    async fn a_fold_of_many_pages_in_one_transaction_equals_a_page_at_a_time() {
        let mut audit: Vec<Envelope> = Vec::new();
        let mut alerts: Vec<Envelope> = Vec::new();
        for i in 0..12 {
            let alert = received(&format!("t-{i}"), &format!("2026-03-01T0{}:00:00Z", i % 10));
            let Event::AlertReceived(r) = &alert.event else {
                unreachable!()
            };
            let case = CaseContext::from_alert(&r.alert, &alert.id.to_string());
            audit.push(alert.clone());
            alerts.push(alert.clone());
            if i >= 3 {
                // Triage of the case opened three alerts ago: on a later page.
                let earlier = alerts[i - 3].clone();
                if let Event::AlertReceived(e) = &earlier.event {
                    let mut meta = crate::proto::DecisionMeta::default();
                    if i == 11 {
                        meta.needs_human_review = Some("unsure".into());
                    }
                    audit.push(earlier.caused(
                        "sentinel",
                        Event::AlertTriaged(crate::proto::AlertTriaged {
                            case: CaseContext::from_alert(&e.alert, &earlier.id.to_string()),
                            confidence: 0.1 * i as f32,
                            rationale: format!("seen 10.0.0.{i} before"),
                            meta,
                            ..Default::default()
                        }),
                    ));
                    if i == 10 {
                        audit.push(earlier.caused(
                            "tier2",
                            Event::CaseEscalated(crate::proto::CaseEscalated {
                                case: CaseContext::from_alert(&e.alert, &earlier.id.to_string()),
                                reason: "beacon".into(),
                                ..Default::default()
                            }),
                        ));
                    }
                }
            }
            if i == 4 || i == 5 {
                let mut case = case.clone();
                if i == 5 {
                    case.ticket = "never-seen".into();
                }
                audit.push(alert.caused(
                    "analyst",
                    Event::DispositionRecorded(crate::proto::DispositionRecorded {
                        case,
                        disposition: crate::proto::Disposition::Escalate,
                        by: "analyst".into(),
                        origin: "test".into(),
                        known_at_ms: 1,
                        ..Default::default()
                    }),
                ));
            }
        }
        let page = paged(audit, 7);
        let last = page.last().unwrap().0;
        let dir = tempfile::tempdir().unwrap();
        let (per_page, one_tx, whole, untimed) = (
            Store::open(&dir.path().join("a.db")).await.unwrap(),
            Store::open(&dir.path().join("b.db")).await.unwrap(),
            Store::open(&dir.path().join("c.db")).await.unwrap(),
            Store::open(&dir.path().join("d.db")).await.unwrap(),
        );
        for chunk in page.chunks(4) {
            per_page
                .fold("test", chunk, chunk.last().unwrap().0)
                .await
                .unwrap();
        }
        let mut fold = one_tx.begin_fold().await.unwrap();
        for chunk in page.chunks(4) {
            fold.page(chunk).await.unwrap();
        }
        fold.commit("test", last).await.unwrap();
        whole.fold("test", &page, last).await.unwrap();
        // A fold without the timelines writes everything else alike.
        let mut fold = untimed.begin_fold().await.unwrap();
        for chunk in page.chunks(4) {
            fold.write(projection::prepare(chunk, Timelines::Skipped))
                .await
                .unwrap();
        }
        fold.commit("test", last).await.unwrap();
        let mut tables = PROJECTED_TABLES.to_vec();
        tables.extend(["case_count", "dispositions", "checkpoints"]);
        for table in tables {
            let expected = dump(&per_page, table).await;
            assert_eq!(dump(&one_tx, table).await, expected, "{table}");
            assert_eq!(dump(&whole, table).await, expected, "{table}");
            if table == "case_events" {
                assert!(!expected.is_empty());
                assert_eq!(dump(&untimed, table).await, Vec::<String>::new());
            } else {
                assert_eq!(
                    dump(&untimed, table).await,
                    expected,
                    "{table}, no timelines"
                );
            }
        }
        assert_eq!(dump(&per_page, "cases").await.len(), 12);
        // Each case lists on its row exactly its indicator rows, also when a later fold added
        // some (t-3's triage, three alerts later, names 10.0.0.6).
        let listed: Vec<(String, String)> =
            sqlx::query_as("SELECT ticket, indicators FROM cases ORDER BY ticket")
                .fetch_all(per_page.pool())
                .await
                .unwrap();
        for (ticket, list) in listed {
            let list: Vec<(String, String)> = serde_json::from_str(&list).unwrap();
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT kind, value FROM indicators WHERE ticket = ? ORDER BY kind, value",
            )
            .bind(&ticket)
            .fetch_all(per_page.pool())
            .await
            .unwrap();
            assert_eq!(list, rows, "{ticket}");
            if ticket == "t-3" {
                let named = ("internal_ip".to_owned(), "/10.0.0.6".to_owned());
                assert!(list.contains(&named), "{list:?}");
            }
        }
        // Triaged, escalated and handed to a human on later pages than their alerts.
        let flags: Vec<(String, i64, i64, Option<f64>)> = sqlx::query_as(
            "SELECT ticket, escalated, needs_review, confidence FROM cases \
             WHERE ticket IN ('t-7', 't-8') ORDER BY ticket",
        )
        .fetch_all(one_tx.pool())
        .await
        .unwrap();
        assert_eq!(flags.len(), 2);
        assert_eq!((flags[0].1, flags[0].2), (1, 0), "t-7 escalated");
        assert_eq!((flags[1].1, flags[1].2), (0, 1), "t-8 needs review");
        assert!(
            flags.iter().all(|f| f.3.is_some()),
            "latest confidence kept"
        );
        // The known case's disposition joined its trace; the unknown one opened nothing.
        let kinds: Vec<String> = sqlx::query_scalar(
            "SELECT ticket || ':' || kind FROM case_events WHERE kind = 'DispositionRecorded'",
        )
        .fetch_all(one_tx.pool())
        .await
        .unwrap();
        assert_eq!(kinds, ["t-4:DispositionRecorded"]);
        // Every case carries the host and the rule; each triage repeats them.
        let counted: Vec<i64> =
            sqlx::query_scalar("SELECT cases FROM indicator_counts WHERE kind IN ('host', 'rule')")
                .fetch_all(one_tx.pool())
                .await
                .unwrap();
        assert_eq!(counted, [12, 12], "a value counted once per case");
    }

    /// A catch-up reads the next page while it writes one, and commits many pages at once:
    /// a bounded catch-up stops at its page count, the next one carries on from there, an
    /// entry that does not decode is counted, and the store is the one a fold of every
    /// decoded entry on one page gives.
    #[tokio::test]
    async fn a_catch_up_in_bounded_steps_folds_what_one_page_would() {
        let bus = Bus::memory(crate::bus::BusConfig::default()).unwrap();
        let mut decoded = Vec::new();
        for i in 0..700 {
            let alert = received(&format!("t-{i}"), "2026-03-01T00:00:00Z");
            let id = bus
                .append_raw(
                    Topic::Audit,
                    crate::bus::wire::Fields::for_envelope(&alert).unwrap(),
                )
                .await
                .unwrap();
            decoded.push((id, alert));
            if i == 600 {
                bus.append_raw(
                    Topic::Audit,
                    crate::bus::wire::Fields::from_pairs([("v", "1"), ("data", "not msgpack")]),
                )
                .await
                .unwrap();
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let stepped = Store::open(&dir.path().join("a.db")).await.unwrap();
        let first = catch_up(&bus, &stepped, "test", Some(1)).await.unwrap();
        assert_eq!((first.entries, first.skipped), (FOLD_PAGE as u64, 0));
        assert_eq!(first.checkpoint, decoded[FOLD_PAGE - 1].0);
        assert_eq!(stepped.checkpoint("test").await.unwrap(), first.checkpoint);
        let rest = catch_up(&bus, &stepped, "test", None).await.unwrap();
        assert_eq!((rest.entries, rest.skipped), (201, 1));
        assert_eq!(rest.checkpoint, decoded[699].0);
        let whole = Store::open(&dir.path().join("b.db")).await.unwrap();
        whole.fold("test", &decoded, decoded[699].0).await.unwrap();
        let mut tables = PROJECTED_TABLES.to_vec();
        tables.extend(["case_count", "checkpoints"]);
        for table in tables {
            assert_eq!(
                dump(&stepped, table).await,
                dump(&whole, table).await,
                "{table}"
            );
        }
        assert_eq!(dump(&stepped, "cases").await.len(), 700);
    }

    /// On the in-memory bus, a retention on the audit drops only what the store has folded
    /// and committed, and a feed paced to the fold waits until the store has caught up.
    #[tokio::test]
    async fn the_memory_audit_drops_only_folded_entries_and_paces_the_feed() {
        let config = crate::bus::BusConfig {
            retention: [(Topic::Audit.name().to_owned(), Retention::MaxLen(0))]
                .into_iter()
                .collect(),
            max_unfolded: 10,
            ..crate::bus::BusConfig::default()
        };
        let bus = Bus::memory(config).unwrap();
        let publish = |prefix: &'static str, n: usize| {
            let bus = bus.clone();
            async move {
                let commits = (0..n)
                    .map(|i| {
                        let alert = received(&format!("{prefix}-{i}"), "2026-03-01T00:00:00Z");
                        Commit::dedupe(
                            format!("{prefix}-{i}"),
                            vec![Outgoing::event(&alert).unwrap()],
                        )
                    })
                    .collect();
                bus.submit(commits).await.unwrap();
            }
        };
        publish("a", 30).await;
        // Nothing folded yet: the retention of 0 keeps every audit entry, and a paced feed
        // waits.
        assert_eq!(bus.len(Topic::Audit).await.unwrap(), 30);
        let mut paced = std::pin::pin!(bus.pace_to_fold());
        assert!(
            tokio::time::timeout(Duration::from_millis(50), paced.as_mut())
                .await
                .is_err(),
            "30 unfolded entries, 10 allowed: the feed waits"
        );
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("soc.db")).await.unwrap();
        let folded = catch_up(&bus, &store, "test", None).await.unwrap();
        assert_eq!(folded.entries, 30);
        // Folded and committed: the wait ends without giving up.
        assert!(!paced.await);
        publish("b", 5).await;
        // The folded entries went with the next append; the 5 new ones stay until folded.
        assert_eq!(bus.len(Topic::Audit).await.unwrap(), 5);
        assert!(!bus.pace_to_fold().await, "5 unfolded: no wait");
        catch_up(&bus, &store, "test", None).await.unwrap();
        assert_eq!(dump(&store, "cases").await.len(), 35);
    }

    /// Start-up warms the judgment model with the alerts of the last hour before the newest
    /// case, oldest first, one at a time: nothing older, nothing twice.
    #[tokio::test]
    async fn recent_alerts_hands_over_the_last_hour_in_time_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("soc.db")).await.unwrap();
        let page = paged(
            [
                ("newest", "2026-03-01T02:30:00Z"),
                ("old", "2026-03-01T00:00:00Z"),
                ("inside", "2026-03-01T01:45:00Z"),
            ]
            .iter()
            .map(|(t, at)| received(t, at)),
            1,
        );
        let last = page.last().unwrap().0;
        store.fold("test", &page, last).await.unwrap();
        let mut seen = Vec::new();
        let n = store
            .recent_alerts(|alert, p| seen.push((alert.ticket_id, p)))
            .await
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(
            seen,
            [("inside".to_owned(), 0.0), ("newest".to_owned(), 0.0)]
        );
    }

    /// Only the folding store keeps the large page cache: a process opens several stores, and
    /// each connection's cache fills as the store grows.
    #[tokio::test]
    async fn only_the_folding_store_has_the_large_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("soc.db");
        let cache = |store: Store| async move {
            let kib = pragma(&store, "cache_size").await;
            (kib, store.pool().options().get_max_connections())
        };
        assert_eq!(cache(Store::open(&path).await.unwrap()).await, (-2048, 4));
        let store = Store::open(&path).await.unwrap();
        assert_eq!(
            pragma(&store, "page_size").await,
            8192,
            "a new store has 8 KiB pages"
        );
        assert_eq!(
            cache(Store::open_for_fold(&path).await.unwrap()).await,
            (-16384, 2)
        );
    }

    /// A pragma's value on one of `store`'s connections.
    async fn pragma(store: &Store, name: &str) -> i64 {
        sqlx::query_scalar(&format!("PRAGMA {name}"))
            .fetch_one(store.pool())
            .await
            .unwrap()
    }

    /// A pool on the file at `path` (created) in WAL mode, with SQLite's own page size and
    /// no migration: a store as sqlx alone makes it.
    async fn plain_pool(path: &Path) -> SqlitePool {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .unwrap()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        SqlitePoolOptions::new()
            .connect_with(options)
            .await
            .unwrap()
    }

    /// A store at `path` as the migrations numbered below `before` left it (the same files,
    /// so the same checksums), with SQLite's default page size, as older releases made it.
    async fn older_store(path: &Path, before: &str) -> SqlitePool {
        let older = path.with_extension("migrations");
        std::fs::create_dir(&older).unwrap();
        for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")).unwrap()
        {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            if name.as_str() < before {
                std::fs::copy(entry.path(), older.join(&name)).unwrap();
            }
        }
        let pool = plain_pool(path).await;
        sqlx::migrate::Migrator::new(older.as_path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        pool
    }

    /// A store made before migrations 0015 and 0016 keeps its indicators, keyed now by (kind,
    /// value, first_ms, ticket) with no index, each case's listed on its row, and its 4 KiB
    /// pages.
    #[tokio::test]
    async fn an_older_store_keeps_its_indicators_keyed_by_time_and_listed_on_its_cases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("soc.db");
        let pool = older_store(&path, "0015").await;
        let rows = [
            ("ip", "198.51.100.7", "t1", 10_i64),
            ("ip", "198.51.100.7", "t2", 5),
            ("rule", "R-1", "t1", 10),
        ];
        for (kind, value, ticket, first_ms) in rows {
            sqlx::query(
                "INSERT INTO indicators (kind, value, ticket, first_ms) VALUES (?, ?, ?, ?)",
            )
            .bind(kind)
            .bind(value)
            .bind(ticket)
            .bind(first_ms)
            .execute(&pool)
            .await
            .unwrap();
        }
        for (ticket, first_ms) in [("t1", 10_i64), ("t2", 5), ("t3", 7)] {
            sqlx::query(
                "INSERT INTO cases (ticket, site, rule, host, first_ms) VALUES (?, 's', 'R-1', \
                 'h', ?)",
            )
            .bind(ticket)
            .bind(first_ms)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;

        let store = Store::open(&path).await.unwrap();
        let kept: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT kind, value, ticket, first_ms FROM indicators \
                 ORDER BY kind, value, first_ms, ticket",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        let expected: Vec<_> = [rows[1], rows[0], rows[2]]
            .iter()
            .map(|(k, v, t, f)| ((*k).to_owned(), (*v).to_owned(), (*t).to_owned(), *f))
            .collect();
        assert_eq!(kept, expected);
        let indexes: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'indicators'",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert!(indexes.is_empty(), "{indexes:?}");
        let lists: Vec<(String, String)> =
            sqlx::query_as("SELECT ticket, indicators FROM cases ORDER BY ticket")
                .fetch_all(store.pool())
                .await
                .unwrap();
        let lists: Vec<(&str, serde_json::Value)> = lists
            .iter()
            .map(|(t, list)| (t.as_str(), serde_json::from_str(list).unwrap()))
            .collect();
        assert_eq!(
            lists,
            [
                (
                    "t1",
                    serde_json::json!([["ip", "198.51.100.7"], ["rule", "R-1"]])
                ),
                ("t2", serde_json::json!([["ip", "198.51.100.7"]])),
                ("t3", serde_json::json!([])),
            ]
        );
        // Recall's read of a value's latest cases walks the key: no sort, no other index.
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(
            "EXPLAIN QUERY PLAN SELECT ticket FROM indicators WHERE kind = 'ip' \
             AND value = '198.51.100.7' AND ticket != 't0' AND first_ms <= 20 \
             ORDER BY first_ms DESC LIMIT 5",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        let plan: Vec<&str> = plan.iter().map(|row| row.3.as_str()).collect();
        assert!(
            plan.iter().any(|step| step.contains("PRIMARY KEY"))
                && !plan.iter().any(|step| step.contains("TEMP B-TREE")),
            "{plan:?}"
        );
        assert_eq!(
            pragma(&store, "page_size").await,
            4096,
            "an existing store keeps its page size"
        );
        store.close().await;
    }

    /// Inserts an event of a triage's size (2,400 bytes of body) at audit time `i` for each `i`
    /// of `events`, on ticket `t{i % 97}`.
    async fn insert_events(pool: &SqlitePool, events: std::ops::Range<u32>) {
        let body = format!(
            "{{\"kind\":\"AlertTriaged\",\"pad\":\"{}\"}}",
            "x".repeat(2_370)
        );
        for i in events {
            sqlx::query(
                "INSERT OR IGNORE INTO case_events (ticket, audit_ms, audit_seq, kind, role, \
                 at_ms, body) VALUES (?, ?, 0, 'AlertTriaged', 'sentinel', 1, ?)",
            )
            .bind(format!("t{}", i % 97))
            .bind(i64::from(i))
            .bind(&body)
            .execute(pool)
            .await
            .unwrap();
        }
    }

    /// A store made before migration 0017 keeps its case events, in a rowid table now: a
    /// triage-sized event is stored inline (no overflow page per event), and the key (ticket,
    /// audit entry) still makes a refold's insert a no-op.
    #[tokio::test]
    async fn case_events_keep_their_key_and_store_a_triage_without_an_overflow_page() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("older.db");
        let pool = older_store(&path, "0017").await;
        insert_events(&pool, 0..50).await;
        pool.close().await;
        let store = Store::open(&path).await.unwrap();
        let read = |store: &Store| {
            let pool = store.pool().clone();
            async move {
                sqlx::query_as::<_, (String, i64, i64, String)>(
                    "SELECT ticket, audit_ms, audit_seq, kind FROM case_events \
                     ORDER BY ticket, audit_ms, audit_seq",
                )
                .fetch_all(&pool)
                .await
                .unwrap()
            }
        };
        let kept = read(&store).await;
        assert_eq!(kept.len(), 50);
        assert_eq!(kept[0], ("t0".into(), 0, 0, "AlertTriaged".into()));
        // The same events again (a refold): nothing new.
        insert_events(store.pool(), 0..50).await;
        assert_eq!(read(&store).await, kept);
        let sql: String = sqlx::query_scalar(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'case_events'",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert!(!sql.contains("WITHOUT ROWID"), "{sql}");
        store.close().await;

        // A new store (8 KiB pages): 600 triage-sized events take about 200 pages, three to a
        // page; with an overflow page each, as before, they took more than 600.
        let path = dir.path().join("new.db");
        let store = Store::open(&path).await.unwrap();
        let before = pragma(&store, "page_count").await;
        insert_events(store.pool(), 0..600).await;
        let grown = pragma(&store, "page_count").await - before;
        assert!(grown < 300, "600 events took {grown} pages");
        let by_ticket: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM case_events WHERE ticket = 't5'")
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!(by_ticket, 7, "t5, t102, ... t587: events 5 + 97k");
        store.close().await;
    }

    /// A paged read in pages of one and two rows (and of none asked, read as one) equals the
    /// whole read: none lost or repeated at a page's edge, and a read that never moves past a
    /// page fails here rather than hangs.
    async fn same_in_pages<T, F>(whole: &[T], read_by: impl Fn(usize) -> F)
    where
        T: PartialEq + std::fmt::Debug,
        F: std::future::Future<Output = Result<Vec<T>, StoreError>>,
    {
        for page in [0, 1, 2] {
            let paged = tokio::time::timeout(Duration::from_secs(10), read_by(page))
                .await
                .unwrap_or_else(|_| panic!("pages of {page}: the read did not finish"));
            assert_eq!(paged.unwrap(), whole, "pages of {page}");
        }
    }

    /// Verdicts read back whole and exact: reals of 17 digits, nulls, and text that needs
    /// escaping, in audit order, with the analysts' disposition joined, in pages of any size.
    #[tokio::test]
    async fn verdicts_read_back_exactly_in_audit_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("soc.db")).await.unwrap();
        let p = 0.1_f64 + 0.2;
        let rows = [
            (2_i64, 0_i64, "t\"2\n", Some(p), 1.0e-300, None::<f64>),
            (1, 5, "t1", None, 12.5, Some(1.0 / 3.0)),
            (1, 4, "t0", Some(0.97), 0.0, Some(2.0_f64.sqrt())),
        ];
        for (ms, seq, ticket, confidence, wall, p_escalate) in rows {
            sqlx::query(
                "INSERT INTO verdicts (audit_ms, audit_seq, ticket, site, role, kind, verdict, \
                 confidence, reasoner, wall_time_ms, tool_calls_made, tokens_in, tokens_out, \
                 at_ms, p_escalate) VALUES (?, ?, ?, NULL, 'sentinel', 'AlertTriaged', \
                 'false_positive', ?, 'rules', ?, 1, 2, 3, 7, ?)",
            )
            .bind(ms)
            .bind(seq)
            .bind(ticket)
            .bind(confidence)
            .bind(wall)
            .bind(p_escalate)
            .execute(store.pool())
            .await
            .unwrap();
        }
        sqlx::query(
            "INSERT INTO dispositions (ticket, ground_truth, source, at_ms) \
             VALUES ('t1', 'escalate', 'test', 0)",
        )
        .execute(store.pool())
        .await
        .unwrap();
        let read = store.verdicts().await.unwrap();
        same_in_pages(&read, |page| store.verdicts_by(page)).await;
        let got: Vec<_> = read
            .iter()
            .map(|v| {
                (
                    v.audit_id.as_str(),
                    v.ticket.as_str(),
                    v.confidence.map(f64::to_bits),
                    v.wall_time_ms.to_bits(),
                    v.p_escalate.map(f64::to_bits),
                    v.ground_truth.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "1-4",
                    "t0",
                    Some(0.97_f64.to_bits()),
                    0.0_f64.to_bits(),
                    Some(2.0_f64.sqrt().to_bits()),
                    None
                ),
                (
                    "1-5",
                    "t1",
                    None,
                    12.5_f64.to_bits(),
                    Some((1.0_f64 / 3.0).to_bits()),
                    Some("escalate")
                ),
                (
                    "2-0",
                    "t\"2\n",
                    Some(p.to_bits()),
                    1.0e-300_f64.to_bits(),
                    None,
                    None
                ),
            ]
        );
        assert_eq!(
            (
                read[0].site.as_deref(),
                read[0].tool_calls_made,
                read[0].tokens_in,
                read[0].tokens_out,
                read[0].at_ms
            ),
            (None, 1, 2, 3, 7)
        );
        store.close().await;
    }

    /// Decisions read back whole and exact: reals of 17 digits, nulls, and text that needs
    /// escaping, each column in its place, in audit order, in pages of any size.
    #[tokio::test]
    async fn decisions_read_back_exactly_in_audit_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("soc.db")).await.unwrap();
        let p = 0.1_f64 + 0.2;
        let rows = [
            (2_i64, 0_i64, "t\"2\n", "tier2", 1.0e-300, None::<f64>),
            (1, 5, "t1", "ir_lead", 12.5, Some(1.0 / 3.0)),
            (1, 4, "t0", "sentinel", p, Some(2.0_f64.sqrt())),
        ];
        for (i, (ms, seq, ticket, role, wall, p_escalate)) in rows.into_iter().enumerate() {
            let i = i as i64;
            sqlx::query(
                "INSERT INTO verdicts (audit_ms, audit_seq, ticket, site, role, kind, verdict, \
                 confidence, reasoner, wall_time_ms, tool_calls_made, tokens_in, tokens_out, \
                 at_ms, p_escalate) VALUES (?, ?, ?, 'site', ?, ?, 'false_positive', 0.5, ?, ?, \
                 ?, ?, ?, 7, ?)",
            )
            .bind(ms)
            .bind(seq)
            .bind(ticket)
            .bind(role)
            .bind(format!("Kind{i}"))
            .bind(format!("reasoner {i}"))
            .bind(wall)
            .bind(i)
            .bind(10 + i)
            .bind(20 + i)
            .bind(p_escalate)
            .execute(store.pool())
            .await
            .unwrap();
        }
        let read = store.decisions().await.unwrap();
        same_in_pages(&read, |page| store.decisions_by(page)).await;
        let row =
            |ticket: &str, role: &str, i: i64, wall: f64, p_escalate: Option<f64>| DecisionRow {
                ticket: ticket.into(),
                role: role.into(),
                kind: format!("Kind{i}"),
                reasoner: format!("reasoner {i}"),
                wall_time_ms: wall,
                tool_calls_made: i,
                tokens_in: 10 + i,
                tokens_out: 20 + i,
                p_escalate,
            };
        assert_eq!(
            read,
            [
                row("t0", "sentinel", 2, p, Some(2.0_f64.sqrt())),
                row("t1", "ir_lead", 1, 12.5, Some(1.0 / 3.0)),
                row("t\"2\n", "tier2", 0, 1.0e-300, None),
            ]
        );
        store.close().await;
    }

    /// `checkpoint_wal` leaves the database file holding every row, with the connections still
    /// open: the log is emptied and a copy of the file alone reads them all.
    #[tokio::test]
    async fn a_checkpoint_puts_the_whole_store_in_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("soc.db");
        let store = Store::open(&path).await.unwrap();
        insert_events(store.pool(), 0..100).await;
        let log = |dir: &Path| std::fs::metadata(dir.join("soc.db-wal")).map_or(0, |m| m.len());
        assert!(log(dir.path()) > 0, "the inserts went to the log");
        store.checkpoint_wal().await.unwrap();
        assert_eq!(log(dir.path()), 0, "the log is emptied");
        let copy = dir.path().join("copy.db");
        std::fs::copy(&path, &copy).unwrap();
        store.close().await;
        let copied = Store::open(&copy).await.unwrap();
        let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM case_events")
            .fetch_one(copied.pool())
            .await
            .unwrap();
        assert_eq!(events, 100, "the file alone holds every row");
        copied.close().await;
    }
}
