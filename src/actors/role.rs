//! The role actor: runs any [`Role`] against the bus.
//!
//! Inputs: [`Delivery`]s from the role's feeder (a task this actor owns). Outputs: for each
//! delivery, one [`Commit`] that acks the input and publishes the role's events with their
//! audit copies, atomically. The commit is submitted without waiting, so a role keeps deciding
//! while the bus bridge batches its writes; the delivery's credit returns when the commit
//! completes.
//!
//! A role that decides an input with the model ([`Role::wants_model`], with the LLM gateway
//! running) does so on a task of its own, so the actor keeps taking deliveries; the answer
//! comes back as [`Msg::Modeled`] and is committed like any decision. When the gateway says
//! "not now" (`Overloaded`, a deadline, no endpoint), the delivery is kept, with its credit,
//! and retried after a backoff ([`Msg::Retry`]): the input stays unacked, the feeder stops
//! reading once the credits are spent, and the backlog waits in the bus.
//!
//! A restart loses the deliveries queued in the mailbox, those waiting for the model or for a
//! retry, and the feeder's position: all are still pending in the bus, and the new feeder
//! re-reads them first. A commit already submitted
//! completes on its own; if its input is re-read and decided again, the second commit finds the
//! input acked and writes nothing.

use std::collections::BTreeMap;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::{Role, RoleEnv, RoleInput};
use crate::bus::feeder::{Credit, Delivery, Feeder, FeederConfig, FeederSnapshot, FeederStats};
use crate::bus::{AckRef, Bus, Commit, Outcome, Outgoing, Topic};
use crate::llm::{Llm, LlmError};
use crate::proto::{Envelope, Event};
use crate::task::spawn_watched;

/// Messages of a role actor.
pub enum Msg {
    /// Handle the deliveries of one feeder read.
    Deliver(Vec<Delivery>),
    /// Stop the feeder gracefully (first step of a drain); answers once it has stopped.
    StopFeeding(RpcReplyPort<()>),
    /// Report stats.
    Observe(RpcReplyPort<RoleSnapshot>),
    /// The feeder task ended without being asked to: fail, so the supervisor restarts.
    FeederExited,
    /// The model's decision on a delivery (or why there is none yet).
    Modeled(Box<Modeled>),
    /// Try the model again for a delivery it could not take earlier.
    Retry(Box<Delivery>, u32),
}

/// A model decision coming back to the role actor.
pub struct Modeled {
    delivery: Delivery,
    result: Result<Vec<Event>, LlmError>,
    attempt: u32,
    /// The handling span the model call ran in; the commit is made in it.
    span: tracing::Span,
}

/// The span of a role's handling of `input`: a child of the span that published it (its
/// `traceparent`), so one incident is one trace across roles and processes.
fn handling_span<R: Role>(input: &Envelope) -> tracing::Span {
    let span = tracing::info_span!(
        "handle",
        otel.name = R::NAME,
        role = R::NAME,
        ticket = %input.correlation_id,
        event_kind = input.event.kind(),
    );
    crate::telemetry::with_parent(&span, input.traceparent.as_deref());
    span
}

/// Startup arguments of a role actor.
#[derive(Clone)]
pub struct Args {
    /// The bus.
    pub bus: Bus,
    /// Consumer name (`host:pid:role`).
    pub consumer: String,
    /// Counters, shared across restarts.
    pub stats: Arc<RoleStats>,
    /// Injected faults (tests only).
    pub faults: Option<Arc<PanicSchedule>>,
    /// The LLM gateway, when one runs.
    pub llm: Option<Llm>,
    /// What roles are built with.
    pub env: RoleEnv,
}

/// Counters of a role; they outlive restarts.
#[derive(Debug, Default)]
pub struct RoleStats {
    /// Inputs decided.
    pub processed: AtomicU64,
    /// Commits applied.
    pub committed: AtomicU64,
    /// Commits skipped because the input was already acked (a redelivered duplicate).
    pub duplicates: AtomicU64,
    /// Commits that failed (the input stays pending and comes back).
    pub commit_failures: AtomicU64,
    /// Commits refused by bus backpressure (the input stays pending and comes back).
    pub refused: AtomicU64,
    /// Times the supervisor restarted the role.
    pub restarts: AtomicU64,
    /// Inputs decided with the model.
    pub model_decisions: AtomicU64,
    /// Times the model could not take an input yet (it was kept unacked and retried).
    pub deferred: AtomicU64,
    /// Inputs the role would give the model, decided by rules because every model endpoint
    /// had been unavailable past `[llm] degrade_after_ms`.
    pub degraded: AtomicU64,
    /// Events published (committed), by `Event::ordinal`.
    pub published: [AtomicU64; Event::KINDS.len()],
    /// The feeder's counters.
    pub feeder: Arc<FeederStats>,
    /// Time from an input's publication to the role's decision on it.
    pub latency: crate::histogram::Histogram,
}

/// A serializable view of a role.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RoleSnapshot {
    /// Inputs decided.
    pub processed: u64,
    /// Commits applied.
    pub committed: u64,
    /// Duplicate commits skipped.
    pub duplicates: u64,
    /// Failed commits.
    pub commit_failures: u64,
    /// Refused commits.
    pub refused: u64,
    /// Restarts.
    pub restarts: u64,
    /// Inputs decided with the model.
    pub model_decisions: u64,
    /// Times the model could not take an input yet.
    pub deferred: u64,
    /// Inputs decided by rules while the model was down.
    pub degraded: u64,
    /// Credits held by deliveries right now.
    pub credits_in_use: u32,
    /// Events published, by kind.
    pub published: BTreeMap<String, u64>,
    /// The feeder's counters.
    pub feeder: FeederSnapshot,
}

impl RoleStats {
    /// A snapshot (`credits_in_use` is filled by the live actor).
    pub fn snapshot(&self) -> RoleSnapshot {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RoleSnapshot {
            processed: l(&self.processed),
            committed: l(&self.committed),
            duplicates: l(&self.duplicates),
            commit_failures: l(&self.commit_failures),
            refused: l(&self.refused),
            restarts: l(&self.restarts),
            model_decisions: l(&self.model_decisions),
            deferred: l(&self.deferred),
            degraded: l(&self.degraded),
            credits_in_use: 0,
            published: Event::KINDS
                .iter()
                .zip(&self.published)
                .filter(|(_, n)| l(n) > 0)
                .map(|(k, n)| ((*k).to_owned(), l(n)))
                .collect(),
            feeder: self.feeder.snapshot(),
        }
    }

    /// Events of `kind` published by this role.
    pub(crate) fn published_of(&self, kind: &str) -> u64 {
        Event::KINDS
            .iter()
            .position(|k| *k == kind)
            .map_or(0, |i| self.published[i].load(Ordering::Relaxed))
    }
}

/// Fault injection for crash tests: panic on a schedule. Never set outside tests.
#[derive(Debug)]
pub struct PanicSchedule {
    /// The role to break.
    pub role: String,
    /// Panic on every `every`-th delivery (counted across restarts).
    pub every: u64,
    counter: AtomicU64,
}

/// Where in handling an injected panic strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PanicPoint {
    /// After deciding, before submitting the commit.
    BeforeCommit,
    /// After submitting the commit, before the handler returns.
    AfterCommit,
}

impl PanicSchedule {
    /// Panics in `role` on every `every`-th delivery, alternating before and after commit.
    pub fn new(role: &str, every: u64) -> Self {
        Self {
            role: role.to_owned(),
            every: every.max(1),
            counter: AtomicU64::new(0),
        }
    }

    /// Where the next delivery should panic, if at all.
    fn next(&self) -> Option<PanicPoint> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        n.is_multiple_of(self.every).then(|| {
            if (n / self.every).is_multiple_of(2) {
                PanicPoint::AfterCommit
            } else {
                PanicPoint::BeforeCommit
            }
        })
    }
}

/// How the supervisor spawns one kind of role.
#[derive(Clone, Copy)]
pub struct RoleSpec {
    /// Role name.
    pub name: &'static str,
    /// Stream consumed.
    pub input: Topic,
    spawn: SpawnFn,
}

type SpawnFn = fn(
    String,
    Args,
    ActorCell,
) -> Pin<Box<dyn Future<Output = Result<ActorRef<Msg>, SpawnErr>> + Send>>;

impl RoleSpec {
    /// The spec of role `R`.
    pub const fn of<R: Role>() -> Self {
        Self {
            name: R::NAME,
            input: R::INPUT,
            spawn: spawn_role::<R>,
        }
    }

    /// Spawns the role actor, linked to `supervisor`.
    pub async fn spawn(
        &self,
        actor_name: String,
        args: Args,
        supervisor: ActorCell,
    ) -> Result<ActorRef<Msg>, SpawnErr> {
        (self.spawn)(actor_name, args, supervisor).await
    }
}

/// The feeder's filter for role `R`: the wire kind of the event it consumes.
fn accepts<R: Role>(kind: &str) -> bool {
    <R::Input as RoleInput>::accepts(kind)
}

fn spawn_role<R: Role>(
    actor_name: String,
    args: Args,
    supervisor: ActorCell,
) -> Pin<Box<dyn Future<Output = Result<ActorRef<Msg>, SpawnErr>> + Send>> {
    Box::pin(async move {
        let handler = RoleActor::<R>(PhantomData);
        Actor::spawn_linked(Some(actor_name), handler, args, supervisor)
            .await
            .map(|(actor, _)| actor)
    })
}

/// The actor that runs role `R`.
pub(crate) struct RoleActor<R>(PhantomData<fn() -> R>);

/// State of a running role.
pub struct State<R> {
    role: R,
    bus: Bus,
    stats: Arc<RoleStats>,
    faults: Option<Arc<PanicSchedule>>,
    credits: Arc<Semaphore>,
    total_credits: u32,
    feeder: Option<AbortOnDropHandle<()>>,
    feeder_stop: CancellationToken,
    llm: Option<Llm>,
    /// Decisions the model is working on; aborted with the actor.
    thinking: JoinSet<()>,
    /// Retries waiting for their backoff; aborted with the actor.
    retries: Vec<AbortOnDropHandle<Result<(), ractor::MessagingErr<Msg>>>>,
    /// Whether the latest model input was decided degraded (logged once per change).
    degraded: bool,
}

impl<R: Role> Actor for RoleActor<R> {
    type Msg = Msg;
    type State = State<R>;
    type Arguments = Args;

    async fn pre_start(
        &self,
        myself: ActorRef<Msg>,
        args: Args,
    ) -> Result<State<R>, ActorProcessingErr> {
        let consumer = args.bus.consumer(R::INPUT, R::NAME, &args.consumer).await?;
        let config = FeederConfig::from(args.bus.config());
        let total_credits = config.credits;
        let sink_ref = myself.clone();
        let feeder = Feeder::new(
            consumer,
            args.bus.clone(),
            config,
            accepts::<R>,
            Box::new(move |delivery| sink_ref.cast(Msg::Deliver(delivery)).is_ok()),
            args.stats.feeder.clone(),
        );
        let credits = feeder.credits();
        let feeder_stop = feeder.stop_token();
        let faults = args.faults.filter(|f| f.role == R::NAME);
        let watcher = myself.clone();
        let feeder = spawn_watched(
            async move {
                feeder.run().await;
                true
            },
            move || {
                let _ = watcher.cast(Msg::FeederExited);
            },
        );
        Ok(State {
            role: R::new(&args.env),
            bus: args.bus,
            stats: args.stats,
            faults,
            credits,
            total_credits,
            feeder: Some(feeder),
            feeder_stop,
            llm: args.llm,
            thinking: JoinSet::new(),
            retries: Vec::new(),
            degraded: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Msg>,
        msg: Msg,
        state: &mut State<R>,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            Msg::Deliver(deliveries) => state.handle_deliveries(&myself, deliveries),
            Msg::Modeled(modeled) => state.modeled(&myself, *modeled),
            Msg::Retry(delivery, attempt) => {
                let span = handling_span::<R>(&delivery.envelope);
                state.think(&myself, *delivery, attempt, span);
            }
            Msg::StopFeeding(reply) => {
                state.feeder_stop.cancel();
                if let Some(feeder) = state.feeder.take() {
                    let _ = feeder.await;
                }
                let _ = reply.send(());
            }
            Msg::FeederExited => {
                // A feeder returns only when stopped or when this actor stops taking
                // deliveries; anything else (a panic) leaves a role that does nothing.
                if !state.feeder_stop.is_cancelled() {
                    return Err(format!("{} feeder stopped unexpectedly", R::NAME).into());
                }
            }
            Msg::Observe(reply) => {
                let mut snapshot = state.stats.snapshot();
                snapshot.credits_in_use =
                    Feeder::credits_in_use(&state.credits, state.total_credits);
                let _ = reply.send(snapshot);
            }
        }
        Ok(())
    }
}

impl<R: Role> State<R> {
    /// Decides every delivery of a feeder read, then submits their commits together: one lock
    /// (memory) or one bridge job (Redis) per read instead of per entry. Each commit is still
    /// atomic on its own, and each delivery's credit returns when its batch completes.
    fn handle_deliveries(&mut self, myself: &ActorRef<Msg>, deliveries: Vec<Delivery>) {
        let mut commits = Vec::with_capacity(deliveries.len());
        let mut kinds = Vec::with_capacity(deliveries.len());
        let mut credits = Vec::with_capacity(deliveries.len());
        let mut panic_after_commit = false;
        for delivery in deliveries {
            let input = &delivery.envelope;
            let span = handling_span::<R>(input);
            let _entered = span.enter();
            match self.faults.as_ref().and_then(|f| f.next()) {
                Some(PanicPoint::BeforeCommit) => {
                    panic!("injected fault: {} panics before commit", R::NAME)
                }
                Some(PanicPoint::AfterCommit) => panic_after_commit = true,
                None => {}
            }
            let Some(event) = R::Input::input_of(&input.event) else {
                // Not the role's kind (the feeder filters on the wire kind): acked, nothing said.
                if let Some((commit, kinds_out)) =
                    self.commit_of(input, delivery.ack.clone(), Vec::new())
                {
                    commits.push(commit);
                    kinds.push(kinds_out);
                    credits.push(delivery.credit);
                }
                continue;
            };
            if self.llm.is_some() && self.role.wants_model(input, &event) {
                self.think(myself, delivery, 0, span.clone());
                continue;
            }
            let events = self.role.decide(input, &event);
            let Some((commit, output_kinds)) = self.commit_of(input, delivery.ack.clone(), events)
            else {
                continue;
            };
            commits.push(commit);
            kinds.push(output_kinds);
            credits.push(delivery.credit);
        }
        if !commits.is_empty() {
            self.submit(commits, kinds, credits);
        }
        if panic_after_commit {
            panic!("injected fault: {} panics after commit", R::NAME);
        }
    }

    /// Asks the model to decide `delivery`, on a task of this actor's, in its handling `span`.
    fn think(
        &mut self,
        myself: &ActorRef<Msg>,
        delivery: Delivery,
        attempt: u32,
        span: tracing::Span,
    ) {
        while self.thinking.try_join_next().is_some() {}
        let Some(llm) = self.llm.clone() else {
            return;
        };
        if let Some(down) = llm.degraded() {
            self.decide_degraded(&llm, delivery, down);
            return;
        }
        self.note_recovered();
        let Some(event) = R::Input::input_of(&delivery.envelope.event) else {
            return;
        };
        let decision = self
            .role
            .decide_with_model(delivery.envelope.clone(), event, llm);
        let myself = myself.clone();
        self.thinking.spawn(tracing::Instrument::instrument(
            async move {
                let result = decision.await;
                let modeled = Modeled {
                    delivery,
                    result,
                    attempt,
                    span: tracing::Span::current(),
                };
                let _ = myself.send_message(Msg::Modeled(Box::new(modeled)));
            },
            span,
        ));
    }

    /// Commits the model's decision, keeps the input for a retry, or falls back to the rules.
    fn modeled(&mut self, myself: &ActorRef<Msg>, modeled: Modeled) {
        let Modeled {
            delivery,
            result,
            attempt,
            span,
        } = modeled;
        let _entered = span.enter();
        let input = &delivery.envelope;
        let events = match result {
            Ok(events) => {
                self.stats.model_decisions.fetch_add(1, Ordering::Relaxed);
                events
            }
            Err(e) if e.is_transient() => {
                if let Some((llm, down)) = self
                    .llm
                    .clone()
                    .and_then(|llm| llm.degraded().map(|down| (llm, down)))
                {
                    self.decide_degraded(&llm, delivery, down);
                    return;
                }
                self.stats.deferred.fetch_add(1, Ordering::Relaxed);
                let delay = retry_delay(attempt);
                tracing::debug!(role = R::NAME, ticket = %input.correlation_id, error = %e, retry_in_ms = delay.as_millis() as u64, "model busy; input kept for a retry");
                self.retries.retain(|t| !t.is_finished());
                let retry = myself.send_after(delay, move || {
                    Msg::Retry(Box::new(delivery), attempt.saturating_add(1))
                });
                self.retries.push(AbortOnDropHandle::new(retry));
                return;
            }
            Err(e) => {
                tracing::warn!(role = R::NAME, ticket = %input.correlation_id, error = %e, "the model cannot decide this input; deciding by rules");
                self.role.decide_envelope(input)
            }
        };
        if let Some((commit, kinds)) = self.commit_of(input, delivery.ack.clone(), events) {
            self.submit(vec![commit], vec![kinds], vec![delivery.credit]);
        }
    }

    /// Decides `delivery` by rules because every model endpoint has been unavailable for
    /// `down` (past the grace): monitoring continues while the AI is down, and each decision
    /// says so.
    fn decide_degraded(&mut self, llm: &Llm, delivery: Delivery, down: std::time::Duration) {
        if !self.degraded {
            self.degraded = true;
            tracing::warn!(
                role = R::NAME,
                down_s = down.as_secs(),
                "every model endpoint is unavailable: deciding by rules (degraded) until one answers again"
            );
        }
        let input = &delivery.envelope;
        let why = format!(
            "decided by rules: every model endpoint had been unavailable for {} s",
            down.as_secs()
        );
        let mut events = self.role.decide_envelope(input);
        for event in &mut events {
            if let Some(meta) = event.decision_meta_mut() {
                meta.degraded = Some(why.clone());
            }
        }
        self.stats.degraded.fetch_add(1, Ordering::Relaxed);
        llm.degraded_decision(R::NAME);
        if let Some((commit, kinds)) = self.commit_of(input, delivery.ack.clone(), events) {
            self.submit(vec![commit], vec![kinds], vec![delivery.credit]);
        }
    }

    /// Logs the return to the model once, after degraded decisions.
    fn note_recovered(&mut self) {
        if self.degraded {
            self.degraded = false;
            tracing::info!(
                role = R::NAME,
                "a model endpoint answers again: the model decides again"
            );
        }
    }

    /// The commit of a decision on `input`, and the kinds of the events it publishes.
    fn commit_of(
        &self,
        input: &Envelope,
        ack: AckRef,
        events: Vec<Event>,
    ) -> Option<(Commit, Vec<usize>)> {
        self.stats.processed.fetch_add(1, Ordering::Relaxed);
        let waited_ms = crate::proto::now_ms().saturating_sub(input.at_ms);
        self.stats.latency.observe(waited_ms as f64 / 1000.0);
        let mut kinds = Vec::with_capacity(events.len());
        let mut outputs = Vec::with_capacity(events.len());
        for event in events {
            kinds.push(event.ordinal());
            let mut envelope = input.caused(R::NAME, event);
            // Children of this handling span, when traces are exported.
            if let Some(tp) = crate::telemetry::current_traceparent() {
                envelope.traceparent = Some(tp);
            }
            match Outgoing::event(&envelope) {
                Ok(out) => outputs.push(out),
                Err(e) => {
                    // Our own events always encode; if one does not, leave the input pending
                    // so it is retried and, failing that, dead-lettered with the reason.
                    tracing::error!(error = %e, "cannot encode an output event");
                    return None;
                }
            }
        }
        let commit = Commit::ack(ack, outputs);
        // Exactly once per alert, not per entry: a copy of an alert's entry (replayed by hand,
        // re-added by a misbehaving producer) is acked without a second case.
        let commit = match &input.event {
            Event::AlertReceived(received) => commit.with_dedupe(format!(
                "handled:{}:{}:{}",
                R::NAME,
                received.alert.source,
                received.alert.ticket_id
            )),
            _ => commit,
        };
        Some((commit, kinds))
    }

    fn submit(&self, commits: Vec<Commit>, kinds: Vec<Vec<usize>>, credits: Vec<Credit>) {
        let stats = self.stats.clone();
        let n = commits.len() as u64;
        let submitted = self.bus.submit_with(
            commits,
            Box::new(move |result| {
                match result {
                    Ok(outcomes) => {
                        for (outcome, kinds) in outcomes.iter().zip(kinds) {
                            if *outcome == Outcome::Applied {
                                stats.committed.fetch_add(1, Ordering::Relaxed);
                                for k in kinds {
                                    stats.published[k].fetch_add(1, Ordering::Relaxed);
                                }
                            } else {
                                stats.duplicates.fetch_add(1, Ordering::Relaxed);
                                tracing::info!(
                                    role = R::NAME,
                                    outcome = ?outcome,
                                    "an input was handled before (redelivered after its ack, or a copy of an alert already worked); nothing written again"
                                );
                            }
                        }
                    }
                    Err(e) => {
                        stats
                            .commit_failures
                            .fetch_add(kinds.len() as u64, Ordering::Relaxed);
                        tracing::warn!(role = R::NAME, error = %e, "commit failed; the inputs will be redelivered");
                    }
                }
                drop(credits);
            }),
        );
        if let Err(e) = submitted {
            self.stats.refused.fetch_add(n, Ordering::Relaxed);
            tracing::warn!(error = %e, "commit refused; the inputs stay pending");
        }
    }
}

/// Backoff before asking the model again: 250 ms doubling to 8 s, +-20 % jitter.
fn retry_delay(attempt: u32) -> std::time::Duration {
    let base = 250u64.saturating_mul(1 << attempt.min(5));
    let jitter = base / 5;
    std::time::Duration::from_millis(base - jitter + fastrand::u64(0..=jitter * 2))
}
