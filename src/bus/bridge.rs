//! The bus bridge actor: every domain message on its way to Redis Streams and `soc.audit`.
//!
//! Inputs: commits submitted by roles and sources through `WriterHandle::enqueue` into a
//! bounded queue. Output: one `EVALSHA` of the commit script per batch, so commits from every
//! role share round trips (pipelining by batching), and one callback per submission with its
//! outcomes.
//!
//! While Redis is unreachable the bridge keeps its current batch and retries with backoff;
//! new submissions wait in the queue until it is full, then are refused with
//! [`BusError::Backpressure`] instead of dropped: a refused role input stays pending in Redis
//! and is delivered again later. Retrying a batch is safe because every commit is fenced by
//! its ack or dedupe key.
//!
//! A restart loses nothing: the queue outlives the actor (it belongs to the runtime), and a
//! batch that was in flight is either applied or still pending in Redis.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::commit::{Commit, CommitCallback, Outcome};
use super::config::BusConfig;
use super::error::BusError;
use super::writer::{Maintainer, Probed, Writer};
use crate::task::spawn_watched;

/// Actor name (prefixed by the runtime instance).
pub const NAME: &str = "bus-bridge";

/// Most submissions taken from the queue per round (they are held, and retried, outside the
/// bounded queue: keep this small next to `bridge_buffer`).
const MAX_JOBS_PER_ROUND: usize = 64;
/// Most script calls pipelined at once; Redis runs them in order.
const MAX_IN_FLIGHT: usize = 8;
/// Backoff between reconnect attempts.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Messages of the bridge.
pub enum Msg {
    /// Report stats.
    Observe(RpcReplyPort<BridgeSnapshot>),
    /// Stop taking submissions, write everything queued, then answer.
    Flush(RpcReplyPort<()>),
    /// The writer task ended unexpectedly: restart.
    WriterExited(String),
}

/// Startup arguments.
pub struct Args {
    /// Redis URL.
    pub url: String,
    /// Bus settings.
    pub config: BusConfig,
    /// The queue, shared with every [`WriterHandle`].
    pub queue: Arc<WriteQueue>,
}

/// Counters of the bridge; they outlive restarts.
#[derive(Debug, Default)]
pub(crate) struct BridgeStats {
    batches: AtomicU64,
    commits: AtomicU64,
    applied: AtomicU64,
    skipped: AtomicU64,
    refused: AtomicU64,
    write_errors: AtomicU64,
    reconnects: AtomicU64,
    connected: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// Why Redis refuses writes while it answers (out of memory, read-only), if it does.
    /// Per observer (0: the writes, 1: the probe), so one does not clear what the other saw
    /// (writes not durable while the probe's write succeeds).
    refusing: Mutex<[Option<String>; 2]>,
    /// Probe rounds finished (the first tells whether Redis is there at all).
    probes: AtomicU64,
    /// Entries dropped by retention.
    trimmed: AtomicU64,
    /// Streams whose retention is held back by a group's backlog.
    held: Mutex<Vec<&'static str>>,
}

/// A serializable view of the bridge.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BridgeSnapshot {
    /// Submissions waiting in the queue.
    pub queued: usize,
    /// Capacity of the queue.
    pub capacity: usize,
    /// Script calls made.
    pub batches: u64,
    /// Commits written.
    pub commits: u64,
    /// Commits applied.
    pub applied: u64,
    /// Commits skipped by their fence (duplicates, already acked).
    pub skipped: u64,
    /// Submissions refused because the queue was full.
    pub refused: u64,
    /// Writes Redis rejected (not retried).
    pub write_errors: u64,
    /// Failed connection attempts or broken connections.
    pub reconnects: u64,
    /// Whether the last write reached Redis.
    pub connected: bool,
    /// The last connection or write error.
    pub last_error: Option<String>,
    /// Why Redis refuses writes while it answers (out of memory, read-only), if it does now.
    pub refusing: Option<String>,
    /// Probe rounds finished.
    pub probes: u64,
    /// Entries dropped by retention (never one a consumer group still needs).
    pub trimmed: u64,
    /// Streams whose retention is held back now by a consumer group's unread or unacked
    /// entries.
    pub retention_held: Vec<&'static str>,
}

impl BridgeSnapshot {
    /// Whether the bus takes writes as far as the bridge knows: reachable and not refusing
    /// (before the first probe round, assumed so).
    pub fn healthy(&self) -> bool {
        self.probes == 0 && self.reconnects == 0 || self.connected && self.refusing.is_none()
    }

    /// `connected`, `unreachable` or `refusing`.
    pub fn state(&self) -> &'static str {
        if !(self.connected || self.probes == 0 && self.reconnects == 0) {
            "unreachable"
        } else if self.refusing.is_some() {
            "refusing"
        } else {
            "connected"
        }
    }
}

/// One submission: commits plus the callback that receives their outcomes.
pub(crate) struct WriteJob {
    commits: Vec<Commit>,
    done: CommitCallback,
}

/// The receiving end of the bridge's queue; outlives bridge restarts.
pub struct WriteQueue {
    rx: tokio::sync::Mutex<mpsc::Receiver<WriteJob>>,
    /// Kept only to read the queue depth; the queue is closed through `rx`.
    depth_probe: mpsc::Sender<WriteJob>,
    stats: Arc<BridgeStats>,
}

/// The sending end: where the Redis bus puts commits.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<WriteJob>,
    stats: Arc<BridgeStats>,
}

/// A bridge queue holding at most `capacity` submissions.
pub fn queue(capacity: usize) -> (WriterHandle, Arc<WriteQueue>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let stats = Arc::new(BridgeStats::default());
    (
        WriterHandle {
            tx: tx.clone(),
            stats: stats.clone(),
        },
        Arc::new(WriteQueue {
            rx: tokio::sync::Mutex::new(rx),
            depth_probe: tx,
            stats,
        }),
    )
}

impl WriterHandle {
    /// Queues commits for writing; refuses them when the queue is full.
    pub(crate) fn enqueue(
        &self,
        commits: Vec<Commit>,
        done: CommitCallback,
    ) -> Result<(), BusError> {
        match self.tx.try_send(WriteJob { commits, done }) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                Err(BusError::Backpressure(self.tx.max_capacity()))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(BusError::Closed),
        }
    }
}

impl WriteQueue {
    /// A snapshot of the bridge's counters.
    pub fn snapshot(&self) -> BridgeSnapshot {
        let s = &self.stats;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        // Each lock taken and released on its own (never two held at once).
        let last_error = s.last_error.lock().clone();
        let refusing = {
            let [writes, probe] = s.refusing.lock().clone();
            writes.or(probe)
        };
        let retention_held = s.held.lock().clone();
        BridgeSnapshot {
            queued: self.depth_probe.max_capacity() - self.depth_probe.capacity(),
            capacity: self.depth_probe.max_capacity(),
            batches: load(&s.batches),
            commits: load(&s.commits),
            applied: load(&s.applied),
            skipped: load(&s.skipped),
            refused: load(&s.refused),
            write_errors: load(&s.write_errors),
            reconnects: load(&s.reconnects),
            connected: s.connected.load(Ordering::Relaxed),
            last_error,
            refusing,
            probes: load(&s.probes),
            trimmed: load(&s.trimmed),
            retention_held,
        }
    }
}

/// The bus bridge actor.
pub struct BusBridge;

/// The bridge's state: the writer task and the token that asks it to finish.
pub struct State {
    queue: Arc<WriteQueue>,
    closing: CancellationToken,
    writer: Option<AbortOnDropHandle<()>>,
    /// Probes Redis and trims the streams, on a connection of its own.
    _maintainer: AbortOnDropHandle<()>,
}

impl Actor for BusBridge {
    type Msg = Msg;
    type State = State;
    type Arguments = Args;

    async fn pre_start(
        &self,
        myself: ActorRef<Msg>,
        args: Args,
    ) -> Result<State, ActorProcessingErr> {
        let writer = Writer::new(&args.url, args.config.clone())?;
        let maintainer = Maintainer::new(&args.url, args.config.clone())?;
        let me = myself.clone();
        let stats = args.queue.stats.clone();
        let maintainer = spawn_watched(
            async move {
                maintain_loop(maintainer, stats).await;
                false
            },
            move || {
                let _ = me.cast(Msg::WriterExited("maintainer task stopped".into()));
            },
        );
        let closing = CancellationToken::new();
        let (queue, write_batch, stop) =
            (args.queue.clone(), args.config.write_batch, closing.clone());
        let writer = spawn_watched(
            async move {
                write_loop(writer, queue, write_batch, stop).await;
                true
            },
            move || {
                let _ = myself.cast(Msg::WriterExited("writer task stopped".into()));
            },
        );
        Ok(State {
            queue: args.queue,
            closing,
            writer: Some(writer),
            _maintainer: maintainer,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Msg>,
        msg: Msg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            Msg::Observe(reply) => {
                let _ = reply.send(state.queue.snapshot());
            }
            Msg::Flush(reply) => {
                state.closing.cancel();
                if let Some(writer) = state.writer.take() {
                    let _ = writer.await;
                }
                let _ = reply.send(());
            }
            Msg::WriterExited(reason) => {
                return Err(format!("bus bridge writer exited: {reason}").into());
            }
        }
        Ok(())
    }
}

/// How often the maintainer probes Redis and trims the streams.
const MAINTAIN_EVERY: Duration = Duration::from_millis(500);

/// Probes Redis every [`MAINTAIN_EVERY`] (a small write, on its own connection, so a frozen or
/// full server shows within seconds even while a commit hangs) and, while it takes writes,
/// trims the streams to their retention. Each change of state is logged once, with its cause.
async fn maintain_loop(mut maintainer: Maintainer, stats: Arc<BridgeStats>) {
    let mut every = tokio::time::interval(MAINTAIN_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let probed = maintainer.probe().await;
        stats.probes.fetch_add(1, Ordering::Relaxed);
        match probed {
            Probed::Ok => {
                set_connected(&stats, true, None);
                set_refusing(&stats, PROBE, None);
                maintainer.trim(&stats.trimmed).await;
                *stats.held.lock() = maintainer.held();
            }
            Probed::Unreachable(cause) => set_connected(&stats, false, Some(cause)),
            Probed::Refusing(cause) => {
                set_connected(&stats, true, None);
                set_refusing(&stats, PROBE, Some(cause));
            }
        }
    }
}

/// Records whether Redis is reachable; logs a change once.
fn set_connected(stats: &BridgeStats, connected: bool, cause: Option<String>) {
    let was = stats.connected.swap(connected, Ordering::Relaxed);
    if was != connected {
        if connected {
            tracing::info!("bus bridge connected to redis");
        } else {
            tracing::warn!(
                cause = cause.as_deref().unwrap_or("unknown"),
                "bus bridge lost redis: commits wait in the bridge's buffer and are retried"
            );
        }
    }
    if let Some(cause) = cause {
        *stats.last_error.lock() = Some(cause);
    }
}

/// Records why Redis refuses writes, if it does; logs a change once.
fn set_refusing(stats: &BridgeStats, observer: usize, cause: Option<String>) {
    // One lock at a time (the snapshot takes them one by one too): no lock order to get wrong.
    let (was, now) = {
        let mut all = stats.refusing.lock();
        let was = all.iter().any(Option::is_some);
        all[observer] = cause.clone();
        (was, all.iter().any(Option::is_some))
    };
    if was != now {
        match &cause {
            Some(cause) => tracing::warn!(%cause,
                "redis does not take writes as configured (out of memory, a read-only replica, \
                 or not durable in time): commits are retried and count as accepted only once \
                 it does; meanwhile inputs stay pending and feeds wait"),
            None => tracing::info!("redis takes writes again"),
        }
    }
    if let Some(cause) = &cause {
        *stats.last_error.lock() = Some(cause.clone());
    }
}

/// Observers of a refusal: the writes, the probe.
const WRITES: usize = 0;
const PROBE: usize = 1;

/// Writes until asked to close (then flushes what is queued and returns).
async fn write_loop(
    mut writer: Writer,
    queue: Arc<WriteQueue>,
    write_batch: usize,
    closing: CancellationToken,
) {
    let mut rx = queue.rx.lock().await;
    let stats = &queue.stats;
    let mut jobs = Vec::with_capacity(256);
    loop {
        let received = tokio::select! {
            n = rx.recv_many(&mut jobs, MAX_JOBS_PER_ROUND) => n,
            () = closing.cancelled(), if !rx.is_closed() => {
                // Stop accepting; what is queued is still written below.
                rx.close();
                continue;
            }
        };
        if received == 0 {
            return;
        }
        write_jobs(&mut writer, std::mem::take(&mut jobs), write_batch, stats).await;
    }
}

/// Writes the commits of `jobs` in chunks of `write_batch` (up to [`MAX_IN_FLIGHT`] script
/// calls pipelined at once) and calls each job's callback with its outcomes.
async fn write_jobs(
    writer: &mut Writer,
    jobs: Vec<WriteJob>,
    write_batch: usize,
    stats: &BridgeStats,
) {
    let commits: Vec<&Commit> = jobs.iter().flat_map(|j| j.commits.iter()).collect();
    let chunks: Vec<&[&Commit]> = commits.chunks(write_batch.max(1)).collect();
    // Outcome of each commit, or why its chunk failed.
    let mut outcomes: Vec<Result<Outcome, Arc<str>>> = Vec::with_capacity(commits.len());
    for window in chunks.chunks(MAX_IN_FLIGHT) {
        for (chunk, result) in window
            .iter()
            .zip(write_with_retry(writer, window, stats).await)
        {
            match result {
                Ok(o) => outcomes.extend(o.into_iter().map(Ok)),
                Err(e) => {
                    stats.write_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, commits = chunk.len(), "redis rejected a commit batch");
                    let reason: Arc<str> = Arc::from(e.to_string());
                    outcomes.extend(chunk.iter().map(|_| Err(reason.clone())));
                }
            }
        }
    }
    let mut offset = 0;
    for job in jobs {
        let n = job.commits.len();
        let result = outcomes[offset..offset + n]
            .iter()
            .cloned()
            .collect::<Result<Vec<Outcome>, Arc<str>>>()
            .map_err(|reason| BusError::Protocol(format!("commit batch failed: {reason}")));
        offset += n;
        (job.done)(result);
    }
}

/// Writes a window of chunks, retrying those whose fate is unknown (connection trouble) with
/// backoff for as long as Redis is unreachable. Returns one result per chunk.
async fn write_with_retry(
    writer: &mut Writer,
    window: &[&[&Commit]],
    stats: &BridgeStats,
) -> Vec<Result<Vec<Outcome>, BusError>> {
    let mut results: Vec<Option<Result<Vec<Outcome>, BusError>>> =
        window.iter().map(|_| None).collect();
    let mut delay = RETRY_MIN;
    loop {
        let todo: Vec<usize> = (0..window.len())
            .filter(|i| results[*i].is_none())
            .collect();
        if todo.is_empty() {
            return results.into_iter().flatten().collect();
        }
        let chunks: Vec<&[&Commit]> = todo.iter().map(|i| window[*i]).collect();
        let attempt = writer.write_many(&chunks).await;
        let mut failed: Option<BusError> = None;
        match attempt {
            Err(e) => failed = Some(e),
            Ok(replies) => {
                for (i, reply) in todo.into_iter().zip(replies) {
                    match reply {
                        Err(e) if e.is_transient() => failed = Some(e),
                        Ok(outcomes) => {
                            record(stats, &outcomes);
                            results[i] = Some(Ok(outcomes));
                        }
                        Err(e) => {
                            *stats.last_error.lock() = Some(e.to_string());
                            results[i] = Some(Err(e));
                        }
                    }
                }
            }
        }
        if let Some(e) = failed {
            if !e.is_transient() {
                // Not a connection problem: the remaining chunks fail with it.
                *stats.last_error.lock() = Some(e.to_string());
                let reason = e.to_string();
                for slot in results.iter_mut().filter(|r| r.is_none()) {
                    *slot = Some(Err(BusError::Protocol(reason.clone())));
                }
                continue;
            }
            if e.is_refusal() {
                // Redis answers but refuses writes for now (out of memory, read-only).
                set_refusing(stats, WRITES, Some(e.to_string()));
            } else if stats.connected.swap(false, Ordering::Relaxed) {
                tracing::warn!(error = %e, "bus bridge lost redis; buffering and retrying");
            }
            stats.reconnects.fetch_add(1, Ordering::Relaxed);
            *stats.last_error.lock() = Some(e.to_string());
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(RETRY_MAX);
        }
    }
}

fn record(stats: &BridgeStats, outcomes: &[Outcome]) {
    if !stats.connected.swap(true, Ordering::Relaxed) {
        tracing::info!("bus bridge connected to redis");
    }
    if stats.refusing.lock()[WRITES].is_some() {
        set_refusing(stats, WRITES, None);
    }
    let applied = outcomes.iter().filter(|o| **o == Outcome::Applied).count() as u64;
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats
        .commits
        .fetch_add(outcomes.len() as u64, Ordering::Relaxed);
    stats.applied.fetch_add(applied, Ordering::Relaxed);
    stats
        .skipped
        .fetch_add(outcomes.len() as u64 - applied, Ordering::Relaxed);
}
