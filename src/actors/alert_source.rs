//! The alert source: reads a JSONL feed and publishes one `AlertReceived` per alert.
//!
//! Inputs: a feed file (plain or gzip) or the bundled demo feed. Output: `AlertReceived` on
//! `soc.alerts` (with its audit copy), each published with the dedupe key `alert:<ticket_id>`,
//! so re-reading the same feed (after a restart of this actor or of the whole process) adds no
//! duplicate alerts. A malformed line is counted, logged with its line number and skipped.
//!
//! The feed is read on a blocking thread and published in batches; a batch the bus refuses
//! (Redis down, bridge full) is retried with backoff, never dropped. A restart re-reads the feed
//! from the top, and the dedupe keys make that harmless.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::bus::{Bus, Commit, Outcome};
use crate::ingest::follow::{FilePos, Follower, load_pos};
use crate::ingest::format::FeedConfig;
use crate::ingest::jsonl::{FeedLine, FeedReader};
use crate::task::spawn_watched;

/// Actor name (prefixed by the runtime instance).
pub(crate) const NAME: &str = "alert-source";
/// `produced_by` of the envelopes this source writes.
pub(crate) const PRODUCER: &str = "source:jsonl";
/// Malformed lines logged one by one; the rest are only counted.
const MALFORMED_LOGGED: u64 = 20;
/// Malformed-line examples kept for the summary.
const MALFORMED_KEPT: usize = 10;

/// Messages of the alert source.
pub(crate) enum Msg {
    /// Finish the batch being published, publish no more, then answer (first step of a drain).
    StopPublishing(RpcReplyPort<()>),
    /// The publishing task ended without being asked to: fail, so the supervisor restarts.
    PublisherExited,
}

/// Where alerts come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feed {
    /// A JSONL file, plain or gzip.
    File(PathBuf),
    /// The bundled demo feed.
    Demo,
}

impl Feed {
    fn open(&self, config: &FeedConfig, stop: Arc<AtomicBool>) -> std::io::Result<FeedReader> {
        match self {
            Feed::File(path) => FeedReader::open_stoppable(path, config, Some(stop)),
            Feed::Demo => Ok(FeedReader::demo()),
        }
    }

    fn label(&self) -> String {
        match self {
            Feed::File(path) => format!(
                "jsonl:{}",
                path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into_owned()
                )
            ),
            Feed::Demo => "demo".to_owned(),
        }
    }
}

/// Startup arguments.
pub(crate) struct Args {
    /// The feed.
    pub feed: Feed,
    /// What the feed holds.
    pub format: FeedConfig,
    /// Where a followed feed's position is saved (`Some` when following).
    pub state: Option<PathBuf>,
    /// The bus.
    pub bus: Bus,
    /// Counters, shared across restarts.
    pub stats: Arc<SourceStats>,
    /// Alerts per publish batch.
    pub batch: usize,
    /// Where a stream feed (pipe, FIFO) keeps what it read but could not publish before a
    /// stop (`Some` for a file feed that is not followed).
    pub spool: Option<crate::ingest::pipe::Spool>,
    /// How long a stop may spend publishing what a stream feed already read, before the rest
    /// is spooled.
    pub drain_budget: Duration,
}

/// Counters of the source.
#[derive(Debug, Default)]
pub struct SourceStats {
    lines: AtomicU64,
    alerts_in: AtomicU64,
    duplicates: AtomicU64,
    updates: AtomicU64,
    malformed: AtomicU64,
    skipped: AtomicU64,
    done: AtomicBool,
    rejected: Mutex<BTreeMap<String, Rejected>>,
    examples: Mutex<Vec<MalformedLine>>,
    feed_error: Mutex<Option<String>>,
    /// The known format the first rejected line is in, if any.
    looks_like: Mutex<Option<&'static str>>,
}

/// A rejected line.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MalformedLine {
    /// 1-based line number.
    pub line: u64,
    /// Why it was rejected.
    pub error: String,
}

/// Lines rejected for one reason.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Rejected {
    /// How many.
    pub count: u64,
    /// The first of them.
    pub sample: MalformedLine,
}

/// Serializable view of the source.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SourceSnapshot {
    /// Non-blank lines read in the latest pass over the feed.
    pub lines: u64,
    /// Alerts published (new).
    pub alerts_in: u64,
    /// Alerts dropped because they were already published.
    pub duplicates_dropped: u64,
    /// Case updates published (repeats that joined a case a streaming feed opened).
    pub case_updates: u64,
    /// Lines rejected in the latest pass.
    pub malformed_lines: u64,
    /// Records of the source that are no alert (Suricata flow or DNS events, records a
    /// mapping filters out), skipped in the latest pass.
    pub skipped_records: u64,
    /// Rejected lines by reason, each with its first line.
    pub rejected: BTreeMap<String, Rejected>,
    /// Whether the whole feed has been read and published.
    pub done: bool,
    /// The first rejected lines.
    pub malformed_examples: Vec<MalformedLine>,
    /// Why the feed could not be read to its end, if it could not.
    pub feed_error: Option<String>,
}

impl SourceStats {
    /// A snapshot.
    pub fn snapshot(&self) -> SourceSnapshot {
        SourceSnapshot {
            lines: self.lines.load(Ordering::Relaxed),
            alerts_in: self.alerts_in.load(Ordering::Relaxed),
            duplicates_dropped: self.duplicates.load(Ordering::Relaxed),
            case_updates: self.updates.load(Ordering::Relaxed),
            malformed_lines: self.malformed.load(Ordering::Relaxed),
            skipped_records: self.skipped.load(Ordering::Relaxed),
            rejected: self.rejected.lock().clone(),
            done: self.done.load(Ordering::Relaxed),
            malformed_examples: self.examples.lock().clone(),
            feed_error: self.feed_error.lock().clone(),
        }
    }

    /// Whether the whole feed has been published.
    pub(crate) fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    fn start_pass(&self) {
        self.lines.store(0, Ordering::Relaxed);
        self.malformed.store(0, Ordering::Relaxed);
        self.skipped.store(0, Ordering::Relaxed);
        self.examples.lock().clear();
        self.rejected.lock().clear();
        *self.feed_error.lock() = None;
        *self.looks_like.lock() = None;
        self.done.store(false, Ordering::Release);
    }
}

/// The alert source actor.
pub(crate) struct AlertSource;

/// State: the publishing task and the token that stops it between batches.
pub(crate) struct State {
    stop: CancellationToken,
    /// Tells the reader to read no more (a stream, at its next line boundary).
    reader_stop: Arc<AtomicBool>,
    task: Option<AbortOnDropHandle<()>>,
}

/// What a stream feed needs so that a stop loses nothing it read.
pub(crate) struct Stream {
    /// Set by the reader once it knows the feed is a stream (pipe, FIFO).
    streaming: Arc<AtomicBool>,
    /// Where what could not be published before the stop is kept.
    spool: Option<crate::ingest::pipe::Spool>,
    /// How long the stop may spend publishing before spooling the rest.
    budget: Duration,
}

/// A batch's lines as commits, with what each is and (for a stream) the cases themselves.
struct Prepared {
    commits: Vec<Commit>,
    is_update: Vec<bool>,
    cases: Vec<(crate::proto::Alert, bool)>,
}

/// Turns lines into commits, recording the rejected ones; keeps the cases when `keep`.
fn prepare(lines: Vec<FeedLine>, stats: &SourceStats, label: &str, keep: bool) -> Prepared {
    let mut out = Prepared {
        commits: Vec::with_capacity(lines.len()),
        is_update: Vec::with_capacity(lines.len()),
        cases: Vec::new(),
    };
    for line in lines {
        stats.lines.fetch_add(1, Ordering::Relaxed);
        match line.alert {
            Ok(alert) => {
                let kept = keep.then(|| alert.clone());
                match crate::ingest::case_commit(alert, line.update, label, PRODUCER) {
                    Ok(commit) => {
                        out.commits.push(commit);
                        out.is_update.push(line.update);
                        if let Some(alert) = kept {
                            out.cases.push((alert, line.update));
                        }
                    }
                    Err(e) => {
                        let reason = "not encodable as an event".to_owned();
                        record_malformed(stats, line.line_no, reason, &e.to_string());
                    }
                }
            }
            Err(error) if error.is_not_an_alert() => {
                stats.skipped.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                if let Some(format) = line.looks_like {
                    stats.looks_like.lock().get_or_insert(format);
                }
                record_malformed(stats, line.line_no, error.reason(), &error.to_string());
            }
        }
    }
    out
}

/// Counts what the bus made of a batch.
fn count(stats: &SourceStats, outcomes: Vec<Outcome>, is_update: &[bool]) {
    for (outcome, update) in outcomes.into_iter().zip(is_update) {
        match (outcome, update) {
            (Outcome::Applied, false) => stats.alerts_in.fetch_add(1, Ordering::Relaxed),
            (Outcome::Applied, true) => stats.updates.fetch_add(1, Ordering::Relaxed),
            // A repeated update (a re-read after a restart) is no lost alert.
            (_, true) => 0,
            (_, false) => stats.duplicates.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// Publishes what an earlier stop spooled, before anything new; the spool is removed once
/// the bus accepted it (dedupe keys drop what was in fact published before).
async fn publish_spooled(
    bus: &Bus,
    spool: &crate::ingest::pipe::Spool,
    label: &str,
    stats: &SourceStats,
    stop: &CancellationToken,
    grace: Duration,
) {
    let cases = match spool.load() {
        Ok(cases) => cases,
        Err(e) => {
            tracing::error!(spool = %spool.path().display(), error = %e,
                "cannot read the spool of alerts an earlier stop kept; it stays for the next start");
            return;
        }
    };
    if cases.is_empty() {
        return;
    }
    let mut commits = Vec::with_capacity(cases.len());
    let mut is_update = Vec::with_capacity(cases.len());
    for (alert, update) in cases {
        match crate::ingest::case_commit(alert, update, label, PRODUCER) {
            Ok(commit) => {
                commits.push(commit);
                is_update.push(update);
            }
            Err(e) => tracing::error!(error = %e, "a spooled alert is not encodable; skipped"),
        }
    }
    let n = commits.len();
    if let Some(outcomes) = submit_until_accepted(bus, commits, stop, grace).await {
        count(stats, outcomes, &is_update);
        match spool.clear() {
            Ok(()) => tracing::info!(feed = %label, alerts = n,
                "published the alerts an earlier stop had spooled"),
            Err(e) => tracing::warn!(error = %e,
                "cannot remove the spool; its alerts are dropped as duplicates next start"),
        }
    }
}

/// A stream feed's stop: the reader reads no further than its current line; everything it
/// handed on is published within the budget, and what the bus did not take by then (Redis
/// down, frozen, full) is spooled, so nothing read is lost.
async fn drain_stream(
    rx: &mut mpsc::Receiver<Result<Batch, FeedError>>,
    bus: &Bus,
    label: &str,
    stats: &SourceStats,
    stream: &Stream,
    mut pending: Vec<(crate::proto::Alert, bool)>,
) {
    let started = tokio::time::Instant::now();
    let deadline = started + stream.budget;
    // Once the bus has not taken a batch in time, the rest goes to the spool.
    let mut spooling = !pending.is_empty();
    loop {
        // Spooling, only the reader's last lines are awaited (it stops at a line boundary).
        let wait_until = if spooling {
            tokio::time::Instant::now() + Duration::from_secs(1)
        } else {
            deadline
        };
        let batch = match tokio::time::timeout_at(wait_until, rx.recv()).await {
            Ok(Some(Ok(batch))) => batch,
            Ok(Some(Err(e))) => {
                tracing::error!(feed = %label, error = %e, "reading the alert feed failed");
                *stats.feed_error.lock() = Some(e.to_string());
                break;
            }
            Ok(None) => break,
            Err(_) if !spooling => {
                spooling = true;
                continue;
            }
            Err(_) => {
                tracing::warn!(feed = %label,
                    "the stream's reader did not finish its last line in time; a partial line is not kept");
                break;
            }
        };
        let prepared = prepare(batch.lines, stats, label, true);
        if spooling {
            pending.extend(prepared.cases);
            continue;
        }
        match submit_by(bus, prepared.commits, deadline).await {
            Some(outcomes) => count(stats, outcomes, &prepared.is_update),
            None => {
                spooling = true;
                pending.extend(prepared.cases);
            }
        }
    }
    let Some(spool) = &stream.spool else {
        if !pending.is_empty() {
            tracing::error!(feed = %label, alerts = pending.len(),
                "alerts read from the stream could not be published before the stop, and there is no spool: lost");
        }
        return;
    };
    if pending.is_empty() {
        tracing::info!(feed = %label, elapsed_ms = started.elapsed().as_millis() as u64,
            "stream feed stopped: everything read was published");
        return;
    }
    match spool.save(&pending) {
        Ok(()) => {
            tracing::warn!(feed = %label, alerts = pending.len(), spool = %spool.path().display(),
            "the bus did not take these alerts before the stop: spooled, published first on the next start")
        }
        Err(e) => tracing::error!(feed = %label, alerts = pending.len(), error = %e,
            "cannot spool the alerts the bus did not take before the stop: lost"),
    }
}

/// [`submit_until_accepted`], giving up at `deadline`.
async fn submit_by(
    bus: &Bus,
    commits: Vec<Commit>,
    deadline: tokio::time::Instant,
) -> Option<Vec<Outcome>> {
    let stop = CancellationToken::new();
    let stopper = stop.clone();
    tokio::select! {
        outcomes = submit_until_accepted(bus, commits, &stop, Duration::ZERO) => outcomes,
        () = tokio::time::sleep_until(deadline) => {
            stopper.cancel();
            None
        }
    }
}

impl Actor for AlertSource {
    type Msg = Msg;
    type State = State;
    type Arguments = Args;

    async fn pre_start(
        &self,
        myself: ActorRef<Msg>,
        args: Args,
    ) -> Result<State, ActorProcessingErr> {
        args.stats.start_pass();
        let (tx, rx) = mpsc::channel(4);
        let batch = args.batch.max(1);
        let feed = args.feed.clone();
        let format = args.format.clone();
        let state = args.state.clone();
        let reader_stop = Arc::new(AtomicBool::new(false));
        let streaming = Arc::new(AtomicBool::new(false));
        let (stop_reading, is_stream) = (reader_stop.clone(), streaming.clone());
        // Opening happens on the blocking thread too: a FIFO or a pipe blocks in open() until
        // its writer appears, and must not hold up a runtime thread.
        #[allow(
            clippy::disallowed_methods,
            reason = "the reader thread ends when the publisher task (owned below) drops `rx`"
        )]
        tokio::task::spawn_blocking(move || {
            let opened = match (&feed, &state) {
                (Feed::File(path), Some(state)) => Follower::open(path, &format, load_pos(state))
                    .map(|f| follow_feed(f, batch, &tx)),
                _ => feed.open(&format, stop_reading).map(|reader| {
                    is_stream.store(reader.is_streaming(), Ordering::Release);
                    read_feed(reader, batch, &tx)
                }),
            };
            if let Err(e) = opened {
                let _ = tx.blocking_send(Err(FeedError::Open(e)));
            }
        });
        let stop = CancellationToken::new();
        let publisher = publish(
            rx,
            args.bus,
            args.feed.label(),
            args.stats.clone(),
            stop.clone(),
            args.state.clone(),
            Stream {
                streaming,
                spool: args.spool,
                budget: args.drain_budget,
            },
        );
        let task = spawn_watched(
            async move {
                publisher.await;
                true
            },
            move || {
                let _ = myself.cast(Msg::PublisherExited);
            },
        );
        Ok(State {
            stop,
            reader_stop,
            task: Some(task),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Msg>,
        msg: Msg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            Msg::PublisherExited => {
                return Err("alert source publisher stopped unexpectedly".into());
            }
            Msg::StopPublishing(reply) => {
                // Read no more (a stream stops at its next line boundary), then publish or
                // spool what was read.
                state.reader_stop.store(true, Ordering::Release);
                state.stop.cancel();
                if let Some(task) = state.task.take() {
                    let _ = task.await;
                }
                let _ = reply.send(());
            }
        }
        Ok(())
    }
}

/// Why the rest of a feed cannot be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FeedError {
    /// The feed could not be opened.
    #[error("cannot open the feed: {0}")]
    Open(#[source] std::io::Error),
    /// Reading broke off.
    #[error("reading the feed failed after line {line}: {source}")]
    Read {
        /// Lines read before the failure.
        line: u64,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Lines read, and (following a file) where to resume once they are published and whether
/// the reader has caught up with the file's end.
pub(crate) struct Batch {
    lines: Vec<FeedLine>,
    resume: Option<FilePos>,
    caught_up: bool,
}

impl From<Vec<FeedLine>> for Batch {
    fn from(lines: Vec<FeedLine>) -> Self {
        Batch {
            lines,
            resume: None,
            caught_up: false,
        }
    }
}

type BatchSender = mpsc::Sender<Result<Batch, FeedError>>;

/// How long a follower waits at the end of its file before looking again.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// Follows a growing file until the publisher is gone; an I/O error ends it (the run fails
/// and the supervisor restarts the source, which resumes from the saved position).
fn follow_feed(mut follower: Follower, batch: usize, tx: &BatchSender) {
    let mut was_caught_up = None;
    loop {
        if tx.is_closed() {
            return;
        }
        match follower.poll(batch) {
            Ok((lines, caught_up)) => {
                let idle = lines.is_empty();
                if !idle || was_caught_up != Some(caught_up) {
                    was_caught_up = Some(caught_up);
                    let batch = Batch {
                        lines,
                        resume: Some(follower.resume_pos()),
                        caught_up,
                    };
                    if tx.blocking_send(Ok(batch)).is_err() {
                        return;
                    }
                }
                if idle {
                    std::thread::sleep(FOLLOW_POLL);
                }
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(FeedError::Read { line: 0, source: e }));
                return;
            }
        }
    }
}

/// Reads the feed into batches of parsed lines; an I/O error ends the batch stream with it.
fn read_feed(mut reader: FeedReader, batch: usize, tx: &BatchSender) {
    // A stream's next line may be minutes away: pass each line on as it comes.
    let batch = if reader.is_streaming() { 1 } else { batch };
    let mut lines = Vec::with_capacity(batch);
    while let Some(line) = reader.next() {
        match line {
            Ok(line) => lines.push(line),
            Err(e) => {
                let _ = tx.blocking_send(Ok(std::mem::take(&mut lines).into()));
                let _ = tx.blocking_send(Err(FeedError::Read {
                    line: reader.lines_read(),
                    source: e,
                }));
                return;
            }
        }
        if lines.len() == batch
            && tx
                .blocking_send(Ok(
                    std::mem::replace(&mut lines, Vec::with_capacity(batch)).into()
                ))
                .is_err()
        {
            return;
        }
    }
    if !lines.is_empty() {
        let _ = tx.blocking_send(Ok(lines.into()));
    }
}

async fn publish(
    mut rx: mpsc::Receiver<Result<Batch, FeedError>>,
    bus: Bus,
    label: String,
    stats: Arc<SourceStats>,
    stop: CancellationToken,
    state: Option<PathBuf>,
    stream: Stream,
) {
    let mut saved: Option<FilePos> = None;
    let mut paced_out = false;
    if let Some(spool) = &stream.spool {
        publish_spooled(&bus, spool, &label, &stats, &stop, stream.budget).await;
    }
    let is_stream = || stream.streaming.load(Ordering::Acquire);
    loop {
        let batch = tokio::select! {
            batch = rx.recv() => batch,
            () = stop.cancelled() => {
                if is_stream() {
                    drain_stream(&mut rx, &bus, &label, &stats, &stream, Vec::new()).await;
                } else {
                    tracing::info!(feed = %label, "alert source stopped before the end of the feed");
                }
                return;
            }
        };
        let Some(batch) = batch else { break };
        let Batch {
            lines,
            resume,
            caught_up,
        } = match batch {
            Ok(batch) => batch,
            Err(e) => {
                // The rest of the feed cannot be read; what was read is published, and the
                // run reports the error (and fails).
                tracing::error!(feed = %label, error = %e, "reading the alert feed failed");
                *stats.feed_error.lock() = Some(e.to_string());
                break;
            }
        };
        let Prepared {
            commits,
            is_update,
            cases,
        } = prepare(lines, &stats, &label, is_stream());
        // On the in-memory bus, a store that falls behind slows the feed (when so configured).
        let gave_up = tokio::select! {
            gave_up = bus.pace_to_fold() => gave_up,
            () = stop.cancelled() => false,
        };
        if gave_up && !paced_out {
            paced_out = true;
            tracing::warn!(feed = %label, "the store has not folded the audit for a while: publishing without waiting for it");
        }
        // A batch under way completes (so it is counted); only waiting to retry is cut short:
        // a file is re-read on the next start, a stream's batch is published or spooled.
        let Some(outcomes) = submit_until_accepted(&bus, commits, &stop, stream.budget).await
        else {
            if is_stream() {
                drain_stream(&mut rx, &bus, &label, &stats, &stream, cases).await;
            }
            return;
        };
        count(&stats, outcomes, &is_update);
        // Published: a restart may resume past these lines.
        if let (Some(state), Some(pos)) = (&state, resume)
            && saved != Some(pos)
        {
            match crate::ingest::follow::save_pos(state, pos) {
                Ok(()) => saved = Some(pos),
                Err(e) => {
                    tracing::warn!(state = %state.display(), error = %e, "saving the feed position failed; a restart re-reads more (duplicates are dropped)")
                }
            }
        }
        if state.is_some() {
            stats.done.store(caught_up, Ordering::Release);
        }
    }
    let snapshot = stats.snapshot();
    // Not one line of a non-empty feed was usable: the run fails, saying what it expected.
    if snapshot.malformed_lines > 0
        && snapshot.malformed_lines + snapshot.skipped_records == snapshot.lines
        && snapshot.feed_error.is_none()
    {
        let first = snapshot
            .malformed_examples
            .first()
            .map_or_else(String::new, |m| format!(" Line {}: {}.", m.line, m.error));
        let given = match *stats.looks_like.lock() {
            Some(format) => format!(
                " It looks like {format}, which is read (and grouped into cases) from a \
                 regular file, recognised or forced with --alerts-format."
            ),
            None => String::new(),
        };
        let message = format!(
            "none of the {} lines of {label} is an alert it could use: the feed holds ticket-format \
             JSON lines (ticket_id, source, rule_id, rule_name, host, first_seen, last_seen, \
             alert_count) unless its first record is recognised as Suricata EVE, Wazuh \
             alerts.json, Elastic (ECS), OCSF or the AIT-ADS raw alert CSV, or --alerts-format \
             (or [feed] format) names one.{given}{first}",
            snapshot.lines
        );
        tracing::error!(feed = %label, "{message}");
        *stats.feed_error.lock() = Some(message);
    }
    tracing::info!(
        feed = %label,
        lines = snapshot.lines,
        alerts_in = snapshot.alerts_in,
        duplicates_dropped = snapshot.duplicates_dropped,
        malformed_lines = snapshot.malformed_lines,
        skipped_records = snapshot.skipped_records,
        "alert feed drained"
    );
    stats.done.store(true, Ordering::Release);
}

/// Submits a batch, retrying failures with backoff until the bus accepts it; `None` when
/// stopped while retrying, or when a submission under way at the stop is not answered within
/// `grace` (the batch is re-read or spooled, and deduplicated on the next start).
async fn submit_until_accepted(
    bus: &Bus,
    commits: Vec<Commit>,
    stop: &CancellationToken,
    grace: Duration,
) -> Option<Vec<Outcome>> {
    if commits.is_empty() {
        return Some(Vec::new());
    }
    let mut delay = Duration::from_millis(50);
    loop {
        // A stop also cuts short a submission Redis is not answering (frozen, full): the
        // bridge may still write it later, and its dedupe keys make a re-publish harmless.
        // A submission Redis does answer is waited for (up to `grace`), so what it took is
        // counted in this run.
        let submission = bus.submit(commits.clone());
        tokio::pin!(submission);
        let submitted = tokio::select! {
            submitted = &mut submission => submitted,
            () = stop.cancelled() => {
                return match tokio::time::timeout(grace, submission).await {
                    Ok(Ok(outcomes)) => Some(outcomes),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "publishing alerts failed as the source stopped");
                        None
                    }
                    Err(_) => {
                        tracing::warn!(alerts = commits.len(), grace_ms = grace.as_millis() as u64,
                            "the bus had not answered a batch by the stop; if it writes it later, the next start drops those alerts as duplicates");
                        None
                    }
                };
            }
        };
        match submitted {
            Ok(outcomes) => return Some(outcomes),
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "publishing alerts failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.cancelled() => return None,
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn record_malformed(stats: &SourceStats, line: u64, reason: String, error: &str) {
    stats
        .rejected
        .lock()
        .entry(reason)
        .or_insert_with(|| Rejected {
            count: 0,
            sample: MalformedLine {
                line,
                error: error.to_owned(),
            },
        })
        .count += 1;
    let n = stats.malformed.fetch_add(1, Ordering::Relaxed) + 1;
    if n <= MALFORMED_LOGGED {
        tracing::warn!(line, error, "skipping malformed alert line");
    } else if n == MALFORMED_LOGGED + 1 {
        tracing::warn!("more malformed alert lines; counting them without logging each");
    }
    let mut examples = stats.examples.lock();
    if examples.len() < MALFORMED_KEPT {
        examples.push(MalformedLine {
            line,
            error: error.to_owned(),
        });
    }
}
