//! A role's feeder: reads its consumer group and hands decoded envelopes to the role actor.
//!
//! Backpressure is credit-based: the feeder holds at most `credits` unacked entries. Each
//! [`Delivery`] carries one [`Credit`]; the credit comes back when the delivery is dropped,
//! which the role does once its commit has completed (or failed). With no credit left the
//! feeder stops reading and the backlog waits, durably, in the stream.
//!
//! On start it first takes over entries of dead consumers of this host, then re-reads its own
//! pending entries, then reads new ones; every `claim_interval` it claims entries idle for
//! `claim_idle` on any consumer (including its own entries whose commit failed).
//!
//! What the role never sees: entries of kinds it does not consume (acked), entries that were
//! trimmed while pending (acked), and poison: entries delivered more than `max_deliveries`
//! times, without a known `kind`, or whose `data` does not decode go to `soc.dead` with the
//! reason.
//!
//! The feeder is a task owned by its role actor and aborted with it; a restart loses only
//! deliveries not yet handled, and those are still pending in the bus. A graceful stop (drain)
//! goes through `Feeder::stop_token` instead, so no read is cut in half.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{AckRef, Bus, BusConfig, BusError, Commit, Consumer, Delivered, F_KIND, StreamId};
use crate::proto::{Envelope, Event};

/// Backoff bounds after a failed read.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// A decoded entry handed to a role, with the credit it holds.
#[derive(Debug)]
pub struct Delivery {
    /// What acks the entry.
    pub ack: AckRef,
    /// The decoded envelope.
    pub envelope: Envelope,
    /// How many times the entry has been delivered (1 on first delivery).
    pub deliveries: u32,
    /// The credit; drop it once the entry's commit has completed.
    pub credit: Credit,
}

/// One unit of a role's credit. Returned (and the entry forgotten as in flight) on drop.
#[derive(Debug)]
pub struct Credit {
    _permit: OwnedSemaphorePermit,
    in_flight: Arc<Mutex<HashSet<StreamId>>>,
    id: StreamId,
}

impl Drop for Credit {
    fn drop(&mut self) {
        self.in_flight.lock().remove(&self.id);
    }
}

/// Counters of a feeder; they outlive role restarts.
#[derive(Debug, Default)]
pub struct FeederStats {
    /// Entries read (new, own pending, claimed).
    pub read: AtomicU64,
    /// Entries handed to the role.
    pub delivered: AtomicU64,
    /// Entries re-read from this consumer's own pending list.
    pub redelivered: AtomicU64,
    /// Entries claimed from idle or dead consumers.
    pub claimed: AtomicU64,
    /// Entries of kinds the role does not consume, acked without handling.
    pub skipped: AtomicU64,
    /// Entries moved to `soc.dead`.
    pub dead_lettered: AtomicU64,
    /// Failed reads (connection trouble).
    pub read_errors: AtomicU64,
}

/// Serializable view of [`FeederStats`].
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct FeederSnapshot {
    /// Entries read.
    pub read: u64,
    /// Entries handed to the role.
    pub delivered: u64,
    /// Entries re-read from own pending list.
    pub redelivered: u64,
    /// Entries claimed.
    pub claimed: u64,
    /// Entries skipped (kind not consumed).
    pub skipped: u64,
    /// Entries dead-lettered.
    pub dead_lettered: u64,
    /// Failed reads.
    pub read_errors: u64,
}

impl FeederStats {
    /// A snapshot.
    pub fn snapshot(&self) -> FeederSnapshot {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FeederSnapshot {
            read: l(&self.read),
            delivered: l(&self.delivered),
            redelivered: l(&self.redelivered),
            claimed: l(&self.claimed),
            skipped: l(&self.skipped),
            dead_lettered: l(&self.dead_lettered),
            read_errors: l(&self.read_errors),
        }
    }
}

/// The feeder's settings, from [`BusConfig`].
#[derive(Debug, Clone)]
pub struct FeederConfig {
    /// Most unacked entries held.
    pub credits: u32,
    /// Most entries per read.
    pub read_batch: u32,
    /// Blocking-read timeout.
    pub block: Duration,
    /// Idle time after which entries are claimed.
    pub claim_idle: Duration,
    /// How often to claim.
    pub claim_interval: Duration,
    /// Deliveries after which an entry is dead-lettered.
    pub max_deliveries: u32,
}

impl From<&BusConfig> for FeederConfig {
    fn from(c: &BusConfig) -> Self {
        Self {
            credits: c.credits,
            read_batch: c.read_batch.min(c.credits),
            block: c.block(),
            claim_idle: Duration::from_millis(c.claim_idle_ms),
            claim_interval: Duration::from_millis(c.claim_interval_ms),
            max_deliveries: c.max_deliveries,
        }
    }
}

/// Where the deliveries of one read go; returns `false` when the receiver is gone (the
/// feeder then stops).
pub(crate) type Sink = Box<dyn Fn(Vec<Delivery>) -> bool + Send + Sync>;

/// Which event kinds the role consumes.
pub(crate) type Accepts = fn(&str) -> bool;

/// The running state of one feeder.
pub struct Feeder {
    consumer: Consumer,
    bus: Bus,
    config: FeederConfig,
    accepts: Accepts,
    sink: Sink,
    stats: Arc<FeederStats>,
    credits: Arc<Semaphore>,
    in_flight: Arc<Mutex<HashSet<StreamId>>>,
    stop: CancellationToken,
}

/// The feeder stopped: asked to, or its role is gone.
enum Stop {
    Stopped,
}

impl Feeder {
    /// A feeder over `consumer`, delivering to `sink`.
    pub fn new(
        consumer: Consumer,
        bus: Bus,
        config: FeederConfig,
        accepts: Accepts,
        sink: Sink,
        stats: Arc<FeederStats>,
    ) -> Self {
        Self {
            credits: Arc::new(Semaphore::new(config.credits as usize)),
            consumer,
            bus,
            config,
            accepts,
            sink,
            stats,
            in_flight: Arc::default(),
            stop: CancellationToken::new(),
        }
    }

    /// Cancelling this token stops the feeder between reads: a read in progress completes and
    /// its entries are still delivered, so nothing is left pending on a consumer that stops.
    pub(crate) fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Credits currently held by deliveries.
    pub fn credits_in_use(credits: &Semaphore, total: u32) -> u32 {
        total.saturating_sub(u32::try_from(credits.available_permits()).unwrap_or(u32::MAX))
    }

    /// The semaphore of this feeder's credits (for observing how many are in use).
    pub fn credits(&self) -> Arc<Semaphore> {
        self.credits.clone()
    }

    /// Runs until stopped or the sink closes.
    pub async fn run(mut self) {
        if let Err(Stop::Stopped) = self.recover().await {
            return;
        }
        let mut cursor = StreamId::ZERO;
        let mut next_claim = Instant::now() + self.config.claim_interval;
        // Well inside claim_idle, so work in progress never looks idle.
        let touch_every = (self.config.claim_idle / 3).max(Duration::from_millis(10));
        let mut next_touch = Instant::now() + touch_every;
        let mut delay = RETRY_MIN;
        loop {
            if self.stop.is_cancelled() {
                return;
            }
            if Instant::now() >= next_touch {
                self.touch_in_flight().await;
                next_touch = Instant::now() + touch_every;
            }
            if Instant::now() >= next_claim {
                self.touch_in_flight().await;
                match self.claim_idle(&mut cursor).await {
                    Ok(()) => {}
                    Err(Stop::Stopped) => return,
                }
                next_claim = Instant::now() + self.config.claim_interval;
            }
            let wake = next_claim.min(next_touch);
            let Ok(acquired) =
                tokio::time::timeout_at(wake, self.take_credits(self.config.read_batch)).await
            else {
                continue;
            };
            let Some(permits) = acquired else { return };
            let block = self
                .config
                .block
                .min(wake.saturating_duration_since(Instant::now()))
                .max(Duration::from_millis(1));
            match self
                .consumer
                .read_new_or_stop(permits.num_permits(), block, &self.stop)
                .await
            {
                Ok(entries) => {
                    delay = RETRY_MIN;
                    if let Err(Stop::Stopped) = self.dispatch(entries, permits).await {
                        return;
                    }
                }
                Err(e) => {
                    drop(permits);
                    delay = self.read_failed(e, delay).await;
                }
            }
        }
    }

    /// Re-reads this consumer's own pending entries, then takes over dead consumers' entries.
    async fn recover(&mut self) -> Result<(), Stop> {
        // Own pending entries first: reaped entries become "own" too, and must not be read
        // twice.
        let mut delay = RETRY_MIN;
        let mut after = StreamId::ZERO;
        loop {
            let Some(permits) = self.take_credits(self.config.read_batch).await else {
                return Err(Stop::Stopped);
            };
            match self
                .consumer
                .read_own_pending(after, permits.num_permits())
                .await
            {
                Ok(entries) if entries.is_empty() => break,
                Ok(entries) => {
                    delay = RETRY_MIN;
                    after = entries.iter().map(|e| e.id).max().unwrap_or(after);
                    self.stats
                        .redelivered
                        .fetch_add(entries.len() as u64, Ordering::Relaxed);
                    self.dispatch(entries, permits).await?;
                }
                Err(e) => {
                    drop(permits);
                    delay = self.read_failed(e, delay).await;
                }
            }
        }
        let reaped = loop {
            if self.stop.is_cancelled() {
                return Err(Stop::Stopped);
            }
            match self.consumer.reap_dead_consumers().await {
                Ok(reaped) => break reaped,
                Err(e) => delay = self.read_failed(e, delay).await,
            }
        };
        if !reaped.is_empty() {
            tracing::info!(
                stream = %self.consumer.topic(),
                group = %self.consumer.group(),
                entries = reaped.len(),
                "took over entries of dead consumers"
            );
            self.stats
                .claimed
                .fetch_add(reaped.len() as u64, Ordering::Relaxed);
            for page in reaped.chunks(self.config.read_batch as usize) {
                let Some(permits) = self.take_credits(page.len() as u32).await else {
                    return Err(Stop::Stopped);
                };
                self.dispatch(page.to_vec(), permits).await?;
            }
        }
        Ok(())
    }

    /// Resets the idle time of the entries this feeder has handed out and not yet seen
    /// committed, without counting a delivery, so neither this feeder's own claims nor another
    /// consumer's take slow work away or inflate its delivery count.
    async fn touch_in_flight(&mut self) {
        let ids: Vec<StreamId> = self.in_flight.lock().iter().copied().collect();
        if ids.is_empty() {
            return;
        }
        if let Err(e) = self.consumer.touch(&ids).await {
            tracing::debug!(error = %e, "refreshing in-flight entries failed; will retry");
        }
    }

    /// Claims entries idle on any consumer; one pass over the pending list per call at most.
    async fn claim_idle(&mut self, cursor: &mut StreamId) -> Result<(), Stop> {
        loop {
            let Some(permits) = self.take_credits(self.config.read_batch).await else {
                return Err(Stop::Stopped);
            };
            let claimed = self
                .consumer
                .autoclaim(self.config.claim_idle, *cursor, permits.num_permits())
                .await;
            match claimed {
                Ok((next, entries)) => {
                    *cursor = next;
                    self.stats
                        .claimed
                        .fetch_add(entries.len() as u64, Ordering::Relaxed);
                    self.dispatch(entries, permits).await?;
                    if next == StreamId::ZERO {
                        return Ok(());
                    }
                }
                Err(e) => {
                    self.stats.read_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, stream = %self.consumer.topic(), "claiming idle entries failed");
                    return Ok(());
                }
            }
        }
    }

    /// Waits for at least one credit, then takes up to `want` without waiting more.
    /// `None` when the semaphore is closed.
    async fn take_credits(&self, want: u32) -> Option<OwnedSemaphorePermit> {
        if self.stop.is_cancelled() {
            return None;
        }
        let mut permits = tokio::select! {
            permit = self.credits.clone().acquire_owned() => permit.ok()?,
            () = self.stop.cancelled() => return None,
        };
        let more = (want.saturating_sub(1) as usize).min(self.credits.available_permits());
        if more > 0
            && let Ok(extra) = self
                .credits
                .clone()
                .try_acquire_many_owned(u32::try_from(more).unwrap_or(0))
        {
            permits.merge(extra);
        }
        Some(permits)
    }

    async fn read_failed(&mut self, error: BusError, delay: Duration) -> Duration {
        self.stats.read_errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            error = %error,
            stream = %self.consumer.topic(),
            group = %self.consumer.group(),
            retry_in_ms = delay.as_millis() as u64,
            "reading the bus failed"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = self.stop.cancelled() => return delay,
        }
        if let Err(e) = self.consumer.reconnect().await {
            tracing::debug!(error = %e, "reconnect failed; will retry");
        }
        (delay * 2).min(RETRY_MAX)
    }

    /// Sorts entries into deliveries, skips and dead letters; one credit per entry.
    async fn dispatch(
        &mut self,
        entries: Vec<Delivered>,
        mut permits: OwnedSemaphorePermit,
    ) -> Result<(), Stop> {
        self.stats
            .read
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        let mut settle = Vec::new();
        let mut dead = 0u64;
        let mut skipped = 0u64;
        let mut batch = Vec::with_capacity(entries.len());
        for entry in entries {
            let Some(permit) = permits.split(1) else {
                // More entries than credits cannot happen (reads ask for at most the credits
                // held); if it does, the entry stays pending and is re-read later.
                break;
            };
            if self.in_flight.lock().contains(&entry.id) {
                // Already handed to the role (a claim or re-read found it again).
                continue;
            }
            let ack = self.consumer.ack_ref(entry.id);
            match self.classify(&entry) {
                Verdict::Deliver(envelope) => {
                    self.in_flight.lock().insert(entry.id);
                    batch.push(Delivery {
                        ack,
                        envelope: *envelope,
                        deliveries: entry.deliveries,
                        credit: Credit {
                            _permit: permit,
                            in_flight: self.in_flight.clone(),
                            id: entry.id,
                        },
                    });
                }
                Verdict::Skip => {
                    skipped += 1;
                    settle.push(Commit::ack(ack, Vec::new()));
                }
                Verdict::Dead(reason) => {
                    dead += 1;
                    tracing::warn!(
                        stream = %self.consumer.topic(),
                        group = %self.consumer.group(),
                        id = %entry.id,
                        reason = %reason,
                        "dead-lettering entry"
                    );
                    settle.push(Commit::dead_letter(ack, &entry, &reason));
                }
            }
        }
        if !batch.is_empty() {
            let n = batch.len() as u64;
            if !(self.sink)(batch) {
                return Err(Stop::Stopped);
            }
            self.stats.delivered.fetch_add(n, Ordering::Relaxed);
        }
        if !settle.is_empty() {
            // Settled entries hold no credit, and settling never blocks the feeder (a stop
            // must not wait for a bus that cannot take the write). A failure or a refusal
            // leaves them pending, to be claimed again.
            let stats = self.stats.clone();
            let submitted = self.bus.submit_with(
                settle,
                Box::new(move |result| match result {
                    Ok(_) => {
                        stats.skipped.fetch_add(skipped, Ordering::Relaxed);
                        stats.dead_lettered.fetch_add(dead, Ordering::Relaxed);
                    }
                    Err(e) => tracing::warn!(error = %e, "settling skipped or dead entries failed"),
                }),
            );
            if let Err(e) = submitted {
                tracing::warn!(error = %e, "settling skipped or dead entries was refused");
            }
        }
        Ok(())
    }

    fn classify(&self, entry: &Delivered) -> Verdict {
        let Some(fields) = &entry.fields else {
            // Trimmed away while pending: nothing left to process.
            return Verdict::Skip;
        };
        if entry.deliveries > self.config.max_deliveries {
            return Verdict::Dead(format!(
                "delivered {} times, more than max_deliveries ({})",
                entry.deliveries, self.config.max_deliveries
            ));
        }
        let Some(kind) = fields.get_str(F_KIND) else {
            return Verdict::Dead("entry has no `kind` field".into());
        };
        if !Event::KINDS.contains(&kind) {
            return Verdict::Dead(format!(
                "unknown event kind `{}`",
                kind.chars().take(64).collect::<String>()
            ));
        }
        if !(self.accepts)(kind) {
            return Verdict::Skip;
        }
        match fields.decode_envelope() {
            Ok(envelope) => Verdict::Deliver(Box::new(envelope)),
            Err(reason) => Verdict::Dead(reason.to_string()),
        }
    }
}

enum Verdict {
    Deliver(Box<Envelope>),
    Skip,
    Dead(String),
}
