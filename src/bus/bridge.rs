//! The bus bridge actor: every domain message on its way to Redis Streams and `soc.audit`.
//!
//! Inputs: commits submitted by roles and sources through [`WriterHandle::enqueue`] into a
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

use super::redis::Writer;
use super::{BusConfig, BusError, Commit, CommitCallback, Outcome};

/// Actor name (prefixed by the runtime instance).
pub const NAME: &str = "bus-bridge";

/// Most submissions taken from the queue per round.
const MAX_JOBS_PER_ROUND: usize = 4096;
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
pub struct BridgeStats {
    batches: AtomicU64,
    commits: AtomicU64,
    applied: AtomicU64,
    skipped: AtomicU64,
    refused: AtomicU64,
    write_errors: AtomicU64,
    reconnects: AtomicU64,
    connected: AtomicBool,
    last_error: Mutex<Option<String>>,
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
}

/// One submission: commits plus the callback that receives their outcomes.
pub struct WriteJob {
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
    pub fn enqueue(&self, commits: Vec<Commit>, done: CommitCallback) -> Result<(), BusError> {
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
            last_error: s.last_error.lock().clone(),
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
        let closing = CancellationToken::new();
        #[allow(clippy::disallowed_methods, reason = "owned by this actor's state")]
        let task = tokio::spawn(write_loop(
            writer,
            args.queue.clone(),
            args.config.write_batch,
            closing.clone(),
            ExitNotice {
                bridge: myself,
                closing: closing.clone(),
            },
        ));
        Ok(State {
            queue: args.queue,
            closing,
            writer: Some(AbortOnDropHandle::new(task)),
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

/// Tells the bridge when its writer task ends without being asked to (including by panic).
struct ExitNotice {
    bridge: ActorRef<Msg>,
    closing: CancellationToken,
}

impl Drop for ExitNotice {
    fn drop(&mut self) {
        if !self.closing.is_cancelled() {
            let _ = self
                .bridge
                .cast(Msg::WriterExited("writer task stopped".into()));
        }
    }
}

async fn write_loop(
    mut writer: Writer,
    queue: Arc<WriteQueue>,
    write_batch: usize,
    closing: CancellationToken,
    _exit_notice: ExitNotice,
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

/// Writes the commits of `jobs` in batches and calls each job's callback with its outcomes.
async fn write_jobs(
    writer: &mut Writer,
    jobs: Vec<WriteJob>,
    write_batch: usize,
    stats: &BridgeStats,
) {
    let commits: Vec<&Commit> = jobs.iter().flat_map(|j| j.commits.iter()).collect();
    let mut outcomes = Vec::with_capacity(commits.len());
    let mut failure = None;
    for chunk in commits.chunks(write_batch.max(1)) {
        match write_with_retry(writer, chunk, stats).await {
            Ok(o) => outcomes.extend(o),
            Err(e) => {
                stats.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, commits = chunk.len(), "redis rejected a commit batch");
                failure = Some(e.to_string());
                break;
            }
        }
    }
    let mut offset = 0;
    for job in jobs {
        let n = job.commits.len();
        let result = match outcomes.get(offset..offset + n) {
            Some(slice) => Ok(slice.to_vec()),
            None => Err(BusError::Protocol(format!(
                "commit batch failed: {}",
                failure.as_deref().unwrap_or("unknown error")
            ))),
        };
        offset += n;
        (job.done)(result);
    }
}

/// Writes one batch, reconnecting and retrying for as long as Redis is unreachable.
async fn write_with_retry(
    writer: &mut Writer,
    chunk: &[&Commit],
    stats: &BridgeStats,
) -> Result<Vec<Outcome>, BusError> {
    let mut delay = RETRY_MIN;
    loop {
        match writer.write(chunk).await {
            Ok(outcomes) => {
                if !stats.connected.swap(true, Ordering::Relaxed) {
                    tracing::info!("bus bridge connected to redis");
                }
                stats.batches.fetch_add(1, Ordering::Relaxed);
                stats
                    .commits
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                let applied = outcomes.iter().filter(|o| **o == Outcome::Applied).count() as u64;
                stats.applied.fetch_add(applied, Ordering::Relaxed);
                stats
                    .skipped
                    .fetch_add(chunk.len() as u64 - applied, Ordering::Relaxed);
                return Ok(outcomes);
            }
            Err(e @ BusError::Unavailable(_)) => {
                if stats.connected.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "bus bridge lost redis; buffering and retrying");
                }
                stats.reconnects.fetch_add(1, Ordering::Relaxed);
                *stats.last_error.lock() = Some(e.to_string());
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RETRY_MAX);
            }
            Err(e) => {
                *stats.last_error.lock() = Some(e.to_string());
                return Err(e);
            }
        }
    }
}
