//! The projector: folds `soc.audit` into the local store (the verdict store) as the SOC runs.
//!
//! Inputs: a tick every `interval` (never more than one waiting in the mailbox), and
//! [`Msg::Flush`] from the supervisor's drain. Outputs:
//! rows in SQLite, written together with the projection's checkpoint, up to 40 pages per
//! transaction ([`crate::store::catch_up`]). Nothing is published: a projection is a read model.
//!
//! It also relays the store's outbox to the bus: the `ActionDecision` of each human decision,
//! written with the decision ([`crate::approvals`]), published once and marked sent.
//!
//! A restart loses nothing: the checkpoint is in the store, and the fold resumes from it; an
//! unsent outbox row is sent by the next relay. A failed fold or relay (Redis or the disk
//! unavailable) is counted and retried on the next tick.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use tokio_util::task::AbortOnDropHandle;

use crate::bus::Bus;
use crate::store::{self, Store};

/// Actor name (prefixed by the runtime instance).
pub(crate) const NAME: &str = "projector";

/// Pages folded per tick, so a long backlog does not keep the mailbox waiting.
const PAGES_PER_TICK: usize = 16;

/// Messages of the projector.
pub(crate) enum Msg {
    /// Fold what is new (up to a bound).
    Tick,
    /// Fold everything there is, then answer (the drain's last step: the store then holds
    /// the whole audit).
    Flush(RpcReplyPort<()>),
}

/// Startup arguments.
#[derive(Clone)]
pub(crate) struct Args {
    /// The bus whose audit is folded.
    pub bus: Bus,
    /// The store file.
    pub path: PathBuf,
    /// The projection's checkpoint name ([`store::projection_name`]).
    pub projection: String,
    /// How often to fold.
    pub interval: Duration,
    /// Counters, shared across restarts.
    pub stats: Arc<ProjectorStats>,
    /// The reasoner's knowledge: the dispositions folded are handed to it.
    pub knowledge: Option<Arc<crate::knowledge::Knowledge>>,
    /// Whether the cases' timelines are written.
    pub timelines: store::Timelines,
    /// A store already open at `path`, whose owner closes it ([`RuntimeOptions::store`]);
    /// `None`: the projector opens its own for folding, and closes it.
    ///
    /// [`RuntimeOptions::store`]: crate::supervisor::RuntimeOptions::store
    pub shared: Option<Store>,
}

/// Counters of the projector; they outlive restarts.
#[derive(Debug, Default)]
pub struct ProjectorStats {
    /// Audit entries folded.
    pub entries: AtomicU64,
    /// Verdict rows written.
    pub rows: AtomicU64,
    /// Folds that failed (retried on the next tick).
    pub errors: AtomicU64,
    checkpoint: Mutex<String>,
}

/// A serializable view of the projector.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ProjectorSnapshot {
    /// Audit entries folded.
    pub entries: u64,
    /// Verdict rows written.
    pub rows: u64,
    /// Failed folds.
    pub errors: u64,
    /// The last audit entry folded.
    pub checkpoint: String,
}

impl ProjectorStats {
    /// A snapshot.
    pub fn snapshot(&self) -> ProjectorSnapshot {
        ProjectorSnapshot {
            entries: self.entries.load(Ordering::Relaxed),
            rows: self.rows.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            checkpoint: self.checkpoint.lock().clone(),
        }
    }
}

/// The projector actor.
pub(crate) struct Projector;

/// Its state.
pub(crate) struct State {
    bus: Bus,
    store: Store,
    /// Whether `store` is the projector's own, closed when it stops.
    owns_store: bool,
    projection: String,
    stats: Arc<ProjectorStats>,
    knowledge: Option<Arc<crate::knowledge::Knowledge>>,
    timelines: store::Timelines,
    /// Set while a tick waits in the mailbox (the ticker sends no other).
    tick_queued: Arc<AtomicBool>,
    _ticker: AbortOnDropHandle<()>,
}

impl Actor for Projector {
    type Msg = Msg;
    type State = State;
    type Arguments = Args;

    async fn pre_start(
        &self,
        myself: ActorRef<Msg>,
        args: Args,
    ) -> Result<State, ActorProcessingErr> {
        let (store, owns_store) = match args.shared {
            Some(shared) => (shared, false),
            None => (Store::open_for_fold(&args.path).await?, true),
        };
        // A tick is sent only when none is waiting: a fold longer than the interval would
        // otherwise queue a tick per interval, each a relay and a checkpoint read for nothing,
        // and the drain's `Flush` would wait behind them all.
        let queued = Arc::new(AtomicBool::new(false));
        let ticker = ticker(args.interval, queued.clone(), move || {
            myself.cast(Msg::Tick).is_ok()
        });
        Ok(State {
            bus: args.bus,
            store,
            owns_store,
            projection: args.projection,
            stats: args.stats,
            knowledge: args.knowledge,
            timelines: args.timelines,
            tick_queued: queued,
            _ticker: ticker,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Msg>,
        msg: Msg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            Msg::Tick => {
                state.tick_queued.store(false, Ordering::Release);
                state.relay().await;
                state.fold(Some(PAGES_PER_TICK)).await;
            }
            Msg::Flush(reply) => {
                state.relay().await;
                state.fold(None).await;
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Msg>,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        if state.owns_store {
            state.store.close().await;
        }
        Ok(())
    }
}

/// Calls `send` every `interval` while `queued` is clear, setting it first (the receiver
/// clears it when it takes the tick), until `send` returns false: at most one tick waits,
/// however long the receiver takes. Ends when the handle is dropped.
fn ticker(
    interval: Duration,
    queued: Arc<AtomicBool>,
    mut send: impl FnMut() -> bool + Send + 'static,
) -> AbortOnDropHandle<()> {
    #[allow(
        clippy::disallowed_methods,
        reason = "owned by the actor's state (AbortOnDropHandle): ends with it"
    )]
    AbortOnDropHandle::new(tokio::spawn(async move {
        let mut every = tokio::time::interval(interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if !queued.swap(true, Ordering::AcqRel) && !send() {
                return;
            }
        }
    }))
}

impl State {
    async fn relay(&mut self) {
        let executor = crate::approvals::executor::DryRun;
        if let Err(e) = crate::approvals::relay(self.store.pool(), &self.bus, 256, &executor).await
        {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "relaying decisions failed; retrying on the next tick");
        }
    }

    async fn fold(&mut self, max_pages: Option<usize>) {
        match store::catch_up_into(
            &self.bus,
            &self.store,
            &self.projection,
            max_pages,
            self.knowledge.as_deref(),
            self.timelines,
        )
        .await
        {
            Ok(folded) => {
                if folded.skipped > 0 {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        skipped = folded.skipped,
                        "audit entries that do not decode were skipped by the projection"
                    );
                }
                self.stats
                    .entries
                    .fetch_add(folded.entries, Ordering::Relaxed);
                self.stats.rows.fetch_add(folded.rows, Ordering::Relaxed);
                *self.stats.checkpoint.lock() = folded.checkpoint.to_string();
            }
            Err(e) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "projecting soc.audit failed; retrying on the next tick");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failure should fail loudly"
    )]

    use super::*;

    /// A receiver slower than the interval finds one tick waiting, not one per interval; once
    /// it takes that tick, the next comes.
    #[tokio::test]
    async fn at_most_one_tick_waits_while_the_receiver_is_busy() {
        let queued = Arc::new(AtomicBool::new(false));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let _ticker = ticker(Duration::from_millis(2), queued.clone(), move || {
            tx.send(()).is_ok()
        });
        for round in 0..2 {
            // A tick comes, then at least 50 more intervals pass while the receiver is busy.
            tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .unwrap()
                .unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(rx.try_recv().is_err(), "round {round}: a second tick waits");
            // The receiver takes it (clears the flag): a later interval sends the next.
            queued.store(false, Ordering::Release);
        }
    }
}
