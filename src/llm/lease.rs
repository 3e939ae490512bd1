//! One admission across processes: on the Redis bus, an endpoint's `max_in_flight` slots are
//! leases in Redis, so the limit holds for every process of the deployment (three workers with
//! `max_in_flight = 1` are one stream on the GPU, not three).
//!
//! - A call takes a lease before its leg is sent (`lease_acquire.lua`): expired leases are
//!   dropped, and a slot is granted only when one is free and no more urgent (or equally
//!   urgent, earlier) waiter of any process is ahead of it; otherwise the call registers as a
//!   waiter with its priority and polls again. Priority keys are the gateway's ranks (case
//!   work by alert priority, reports last) then arrival time.
//! - While the leg runs, the lease is renewed every third of `lease_ms`; a lease found lapsed
//!   on renewal is counted and logged (the holder was stalled past its lease).
//! - On completion the lease is released (`ZREM`). A holder that dies (SIGKILL, host lost)
//!   stops renewing, and its slot returns when the lease lapses.
//! - Time is Redis's own (`TIME`), so hosts' clocks do not matter.
//!
//! A restart of the gateway (or of the process) aborts its legs and their renewals: their
//! leases are not released but lapse within `lease_ms`, and the calls' roles retry through the
//! bus. A restarted gateway takes new leases under a new holder id.
//!
//! When Redis cannot be reached the call keeps waiting for a lease until its deadline (the
//! limit is a promise to the GPU; nothing can be committed without Redis anyway), and the
//! gateway answers `DeadlineExceeded` so the role retries later.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use redis::aio::ConnectionManager;

use super::stats::GatewayStats;
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

const ACQUIRE: &str = include_str!("scripts/lease_acquire.lua");
const RENEW: &str = include_str!("scripts/lease_renew.lua");

/// How often a waiting call asks again, ms (jittered by up to half).
const POLL_MS: u64 = 20;
/// How long a waiter's registration lives without a new attempt, ms.
const WAITER_TTL_MS: u64 = 1_000;

/// Leases of the endpoints of one gateway, on one Redis.
pub struct Leases {
    conn: ConnectionManager,
    prefix: String,
    holder: String,
    seq: AtomicU64,
    acquire: redis::Script,
    renew: redis::Script,
    /// Slots held (by any process) per endpoint, as last seen.
    held: Vec<AtomicUsize>,
    /// Accounting (`lease_lost`, `lease_errors`).
    stats: Arc<GatewayStats>,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases")
            .field("prefix", &self.prefix)
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

/// A slot held for one leg; release it with [`Lease::release`] (dropped unreleased, it lapses).
pub struct Lease {
    leases: Arc<Leases>,
    key: String,
    id: String,
    endpoint: usize,
    _renewal: AbortOnDropHandle<()>,
    /// Time spent in the grant's own script call (the lease's cost when no one waits).
    pub overhead: Duration,
    /// Time from the first attempt to the grant (waiting included).
    pub waited: Duration,
}

/// Why no lease was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoLease {
    /// The caller went away.
    CallerGone,
    /// The deadline passed first.
    Deadline,
}

impl Leases {
    /// Leases under `namespace` for `endpoints` endpoints, on the bus's Redis connection.
    pub fn new(
        conn: ConnectionManager,
        namespace: &str,
        endpoints: usize,
        stats: Arc<GatewayStats>,
    ) -> Self {
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        Self {
            conn,
            prefix: format!("{namespace}soc.llm.lease:"),
            holder: format!("{host}:{}:{:08x}", std::process::id(), fastrand::u32(..)),
            seq: AtomicU64::new(0),
            acquire: redis::Script::new(ACQUIRE),
            renew: redis::Script::new(RENEW),
            held: (0..endpoints).map(|_| AtomicUsize::new(0)).collect(),
            stats,
        }
    }

    /// This process's holder prefix (lease ids start with it).
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The Redis key of `endpoint`'s leases.
    pub fn key(&self, endpoint: &str) -> String {
        format!("{}{endpoint}", self.prefix)
    }

    /// Slots of endpoint `index` held by any process, as last seen.
    pub fn held(&self, index: usize) -> usize {
        self.held
            .get(index)
            .map_or(0, |h| h.load(Ordering::Relaxed))
    }

    /// Takes a slot of endpoint `name` (index `index`, `max` slots, leases of `lease_ms`) for
    /// a call of priority key `priority`, waiting until one is free, the caller is gone
    /// (`gone` resolves) or `deadline` passes.
    #[allow(
        clippy::too_many_arguments,
        reason = "one endpoint's identity and limits plus the call's"
    )]
    pub async fn acquire(
        self: &Arc<Self>,
        index: usize,
        name: &str,
        max: usize,
        lease_ms: u64,
        priority: f64,
        deadline: Instant,
        gone: impl std::future::Future<Output = ()>,
    ) -> Result<Lease, NoLease> {
        let key = self.key(name);
        let waiters = format!("{key}:wait");
        let wexp = format!("{key}:waitexp");
        let id = format!(
            "{}:{}",
            self.holder,
            self.seq.fetch_add(1, Ordering::Relaxed)
        );
        let started = Instant::now();
        let mut gone = std::pin::pin!(gone);
        let mut warned = false;
        loop {
            let attempt = Instant::now();
            let result: Result<i64, redis::RedisError> = tokio::time::timeout_at(
                deadline,
                self.acquire
                    .key(&key)
                    .key(&waiters)
                    .key(&wexp)
                    .arg(&id)
                    .arg(max)
                    .arg(lease_ms)
                    .arg(priority)
                    .arg(WAITER_TTL_MS)
                    .invoke_async(&mut self.conn.clone()),
            )
            .await
            .map_err(|_| NoLease::Deadline)?;
            match result {
                Ok(held) if held >= 1 => {
                    let overhead = attempt.elapsed();
                    self.set_held(index, held);
                    let renewal = self.renewal(key.clone(), id.clone(), lease_ms);
                    return Ok(Lease {
                        leases: self.clone(),
                        key,
                        id,
                        endpoint: index,
                        _renewal: renewal,
                        overhead,
                        waited: started.elapsed(),
                    });
                }
                Ok(waiting) => self.set_held(index, -1 - waiting),
                Err(e) => {
                    GatewayStats::bump(&self.stats.counters.lease_errors);
                    if !warned {
                        warned = true;
                        tracing::warn!(endpoint = name, error = %e, "cannot take a model slot lease in Redis; the call waits for Redis until its deadline");
                    }
                }
            }
            let pause = Duration::from_millis(POLL_MS + fastrand::u64(0..=POLL_MS / 2));
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = tokio::time::sleep_until(deadline) => {
                    self.withdraw(&waiters, &wexp, &id).await;
                    return Err(NoLease::Deadline);
                }
                () = &mut gone => {
                    self.withdraw(&waiters, &wexp, &id).await;
                    return Err(NoLease::CallerGone);
                }
            }
        }
    }

    fn set_held(&self, index: usize, held: i64) {
        if let Some(h) = self.held.get(index) {
            h.store(usize::try_from(held).unwrap_or(0), Ordering::Relaxed);
        }
    }

    /// Removes a waiter that stopped waiting (best effort: it lapses anyway).
    async fn withdraw(&self, waiters: &str, wexp: &str, id: &str) {
        let mut pipe = redis::pipe();
        pipe.cmd("ZREM").arg(waiters).arg(id).ignore();
        pipe.cmd("ZREM").arg(wexp).arg(id).ignore();
        let result: Result<(), redis::RedisError> = pipe.query_async(&mut self.conn.clone()).await;
        if result.is_err() {
            GatewayStats::bump(&self.stats.counters.lease_errors);
        }
    }

    /// Renews `id` every third of `lease_ms` until dropped.
    fn renewal(self: &Arc<Self>, key: String, id: String, lease_ms: u64) -> AbortOnDropHandle<()> {
        let leases = self.clone();
        let every = Duration::from_millis((lease_ms / 3).max(1));
        #[allow(
            clippy::disallowed_methods,
            reason = "owned by the Lease (AbortOnDropHandle), ends with it"
        )]
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(Instant::now() + every, every);
            loop {
                tick.tick().await;
                let renewed: Result<i64, redis::RedisError> = leases
                    .renew
                    .key(&key)
                    .arg(&id)
                    .arg(lease_ms)
                    .invoke_async(&mut leases.conn.clone())
                    .await;
                match renewed {
                    Ok(1) => {}
                    Ok(_) => {
                        GatewayStats::bump(&leases.stats.counters.lease_lost);
                        tracing::warn!(lease = %id, "a model slot lease lapsed while its call ran (the holder stalled past lease_ms): the slot may be used twice for a moment");
                        return;
                    }
                    Err(e) => {
                        GatewayStats::bump(&leases.stats.counters.lease_errors);
                        tracing::warn!(lease = %id, error = %e, "cannot renew a model slot lease");
                    }
                }
            }
        });
        AbortOnDropHandle::new(task)
    }
}

impl Lease {
    /// Gives the slot back; returns the time the release took.
    pub async fn release(self) -> Duration {
        let started = Instant::now();
        let mut pipe = redis::pipe();
        pipe.cmd("ZREM").arg(&self.key).arg(&self.id).ignore();
        pipe.cmd("ZCARD").arg(&self.key);
        let result: Result<(i64,), redis::RedisError> =
            pipe.query_async(&mut self.leases.conn.clone()).await;
        match result {
            Ok((held,)) => self.leases.set_held(self.endpoint, held),
            Err(e) => {
                GatewayStats::bump(&self.leases.stats.counters.lease_errors);
                tracing::warn!(lease = %self.id, error = %e, "cannot release a model slot lease; it lapses on its own");
            }
        }
        started.elapsed()
    }
}
