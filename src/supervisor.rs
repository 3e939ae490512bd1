//! The root supervisor: spawns every actor of the runtime, restarts what fails, drains on exit.
//!
//! Children, in start order: the bus bridge (Redis only), the HTTP server (unless off), the LLM
//! gateway (when endpoints are configured), the projector (soc.audit into the local store),
//! one actor per reactive role of [`REACTIVE_ROLES`], and the alert source.
//!
//! ractor has no built-in restart strategy, so this is it: a child that fails (panics or
//! returns an error) or stops on its own is restarted after a backoff that doubles with each
//! failure inside `restart_window_s` (plus jitter). More than `max_restarts` failures of one
//! child inside the window escalate: the runtime drains and exits with an error, as an OTP
//! supervisor would pass the failure to its parent.
//!
//! Draining (on a signal, on `--until-idle`, or on escalation) goes source first, then roles
//! (stop reading, finish what is in the mailbox), then the LLM gateway, then the bridge (write
//! what is queued), then the projector (fold the audit to its end), then HTTP. What was not processed stays pending in the bus. A restart of this actor is not
//! planned for: it is the root, and its exit ends the process.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use serde::Serialize;
use tokio::time::Instant;

use crate::actors::alert_source::{self, SourceSnapshot};
use crate::actors::projector::{self, ProjectorSnapshot};
use crate::actors::role::{self, RoleSnapshot};
use crate::bus::Topic;
use crate::bus::bridge::{self, BridgeSnapshot};
use crate::llm::stats::{GatewaySnapshot, GatewayStats};

pub use crate::actors::roles::REACTIVE_ROLES;
use crate::app::children::{ChildSpec, Stage, Start, StartError, children, start_role};
pub use crate::app::context::{Context, ExitReason, RuntimeOptions};

struct Child {
    spec: ChildSpec,
    actor: Option<ActorCell>,
    /// Successful starts so far; every start after the first is a restart.
    starts: u64,
    failures: VecDeque<Instant>,
}

/// Messages of the supervisor.
pub enum Msg {
    /// Start a child again (sent after its backoff), by name.
    Restart(&'static str),
    /// `--until-idle`: check whether the work is done.
    CheckIdle,
    /// Drain everything and stop.
    Drain(ExitReason),
    /// Report the runtime's state.
    Observe(RpcReplyPort<RuntimeSnapshot>),
}

/// A live view of the runtime.
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeSnapshot {
    /// Each role's stats.
    pub roles: BTreeMap<String, RoleSnapshot>,
    /// The alert source.
    pub source: SourceSnapshot,
    /// The bus bridge (Redis only).
    pub bridge: Option<BridgeSnapshot>,
    /// The LLM gateway, when endpoints are configured.
    pub llm: Option<GatewaySnapshot>,
    /// The projector.
    pub projector: ProjectorSnapshot,
    /// Children and whether they run.
    pub children: BTreeMap<String, bool>,
    /// Whether the runtime is draining.
    pub draining: bool,
}

/// The root supervisor.
pub(crate) struct Supervisor;

/// The supervisor's state.
pub struct State {
    ctx: Arc<Context>,
    children: Vec<Child>,
    draining: bool,
    /// Pending timers (restarts, idle checks); aborted when the supervisor stops.
    timers: Vec<tokio::task::JoinHandle<Result<(), ractor::MessagingErr<Msg>>>>,
}

impl Actor for Supervisor {
    type Msg = Msg;
    type State = State;
    type Arguments = Arc<Context>;

    async fn pre_start(
        &self,
        myself: ActorRef<Msg>,
        ctx: Arc<Context>,
    ) -> Result<State, ActorProcessingErr> {
        let specs = children(&ctx);
        for spec in &specs {
            ctx.health.set_child(spec.name, false);
        }
        let mut state = State {
            children: specs
                .into_iter()
                .map(|spec| Child {
                    spec,
                    actor: None,
                    starts: 0,
                    failures: VecDeque::new(),
                })
                .collect(),
            ctx,
            draining: false,
            timers: Vec::new(),
        };
        for i in 0..state.children.len() {
            let name = state.children[i].spec.name;
            state.start_child(&myself, name).await;
        }
        if state.ctx.options.until_idle {
            let every = state.poll_interval();
            state.schedule(&myself, every, Msg::CheckIdle);
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Msg>,
        msg: Msg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            Msg::Restart(name) => state.start_child(&myself, name).await,
            Msg::CheckIdle => state.check_idle(&myself).await,
            Msg::Drain(reason) => state.drain(&myself, reason).await,
            Msg::Observe(reply) => {
                let _ = reply.send(state.observe().await);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Msg>,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        for timer in state.timers.drain(..) {
            timer.abort();
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Msg>,
        event: SupervisionEvent,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                state.child_down(&myself, cell.get_id(), error.to_string());
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                let reason = reason.unwrap_or_else(|| "stopped".to_owned());
                state.child_down(&myself, cell.get_id(), format!("terminated: {reason}"));
            }
            _ => {}
        }
        Ok(())
    }
}

impl State {
    /// Sends `msg` to this supervisor after `delay`, keeping the timer owned.
    fn schedule(&mut self, myself: &ActorRef<Msg>, delay: Duration, msg: Msg) {
        self.timers.retain(|t| !t.is_finished());
        self.timers.push(myself.send_after(delay, move || msg));
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.ctx.config.supervisor.idle_poll_ms)
    }

    fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.ctx.config.supervisor.drain_timeout_s.max(1))
    }

    /// Takes the running actors of the children at `stage`, leaving the others alone.
    fn take_stage(&mut self, stage: Stage) -> Vec<ActorCell> {
        self.children
            .iter_mut()
            .filter(|c| c.spec.stage == stage)
            .filter_map(|c| c.actor.take())
            .collect()
    }

    fn child_mut(&mut self, name: &str) -> Option<&mut Child> {
        self.children.iter_mut().find(|c| c.spec.name == name)
    }

    async fn start_child(&mut self, myself: &ActorRef<Msg>, name: &'static str) {
        if self.draining {
            return;
        }
        let Some(spec) = self
            .child_mut(name)
            .filter(|c| c.actor.is_none())
            .map(|c| c.spec)
        else {
            return;
        };
        match self.spawn(myself, spec).await {
            Ok(actor) => {
                let mut restarted = false;
                if let Some(child) = self.child_mut(name) {
                    child.actor = Some(actor);
                    restarted = child.starts > 0;
                    child.starts += 1;
                }
                self.ctx.health.set_child(name, true);
                if restarted {
                    tracing::info!(child = name, "restarted");
                    match spec.stage {
                        Stage::Role => {
                            if let Some(stats) = self.ctx.role_stats.get(name) {
                                stats
                                    .restarts
                                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                        }
                        Stage::Gateway => {
                            if let Some(stats) = &self.ctx.llm_stats {
                                GatewayStats::bump(&stats.counters.restarts);
                            }
                        }
                        _ => {}
                    }
                }
            }
            Err(error) => self.failed(myself, name, error.to_string()),
        }
    }

    async fn spawn(
        &self,
        myself: &ActorRef<Msg>,
        spec: ChildSpec,
    ) -> Result<ActorCell, StartError> {
        let ctx = &self.ctx;
        let name = format!("{}/{}", ctx.instance, spec.name);
        let parent = myself.get_cell();
        match spec.start {
            Start::Actor(start) => start(ctx, name, parent).await,
            Start::Role(role) => start_role(ctx, role, name, parent).await,
        }
    }

    /// Starts the child at `stage` again for a final flush, if it is one of this process's.
    async fn respawn_for_flush(&self, myself: &ActorRef<Msg>, stage: Stage) -> Option<ActorCell> {
        let spec = self.children.iter().find(|c| c.spec.stage == stage)?.spec;
        match self.spawn(myself, spec).await {
            Ok(cell) => Some(cell),
            Err(e) => {
                tracing::warn!(child = spec.name, error = %e, "cannot start it for the final flush");
                None
            }
        }
    }

    fn child_down(&mut self, myself: &ActorRef<Msg>, actor: ActorId, error: String) {
        let Some(child) = self
            .children
            .iter_mut()
            .find(|c| c.actor.as_ref().is_some_and(|a| a.get_id() == actor))
        else {
            return;
        };
        child.actor = None;
        let name = child.spec.name;
        self.ctx.health.set_child(name, false);
        if self.draining {
            return;
        }
        self.failed(myself, name, error);
    }

    /// Records a failure of `id` and schedules its restart, or escalates.
    fn failed(&mut self, myself: &ActorRef<Msg>, name: &'static str, error: String) {
        let policy = self.ctx.config.supervisor.clone();
        let window = Duration::from_secs(policy.restart_window_s);
        let now = Instant::now();
        let Some(child) = self.child_mut(name) else {
            return;
        };
        child.failures.push_back(now);
        while child
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            child.failures.pop_front();
        }
        let recent = u32::try_from(child.failures.len()).unwrap_or(u32::MAX);
        if recent > policy.max_restarts {
            tracing::error!(
                child = name,
                failures = recent,
                window_s = policy.restart_window_s,
                error = %error,
                "restart intensity exceeded; draining and exiting"
            );
            let _ = myself.cast(Msg::Drain(ExitReason::Escalated {
                child: name.to_owned(),
                error,
            }));
            return;
        }
        let delay = backoff(policy.backoff_initial_ms, policy.backoff_max_ms, recent);
        tracing::warn!(
            child = name,
            error = %error,
            restart_in_ms = delay.as_millis() as u64,
            failures_in_window = recent,
            "child failed; restarting"
        );
        self.schedule(myself, delay, Msg::Restart(name));
    }

    async fn check_idle(&mut self, myself: &ActorRef<Msg>) {
        if self.draining {
            return;
        }
        // Idle means the whole SOC is: every role's group, whichever processes run them, and
        // the feed, if this process reads one (XSOAR is polled for ever: never idle).
        let feed_done = !self.ctx.config.supervisor.runs("source")
            || (!self.ctx.config.xsoar.enabled() && self.ctx.source_stats.is_done());
        if feed_done {
            let groups: Vec<(Topic, &str)> =
                REACTIVE_ROLES.iter().map(|r| (r.input, r.name)).collect();
            match self.ctx.bus.group_states(&groups).await {
                Ok(states) if states.iter().all(|s| s.is_idle()) => {
                    tracing::info!("feed drained and nothing pending: stopping (--until-idle)");
                    let _ = myself.cast(Msg::Drain(ExitReason::Idle));
                    return;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "idle check failed; will retry"),
            }
        }
        let every = self.poll_interval();
        self.schedule(myself, every, Msg::CheckIdle);
    }

    async fn drain(&mut self, myself: &ActorRef<Msg>, reason: ExitReason) {
        if self.draining {
            return;
        }
        self.draining = true;
        self.ctx.health.set_draining();
        self.ctx.exit.lock().get_or_insert(reason.clone());
        tracing::info!(reason = ?reason, "draining");
        // One budget for the whole drain (so it ends inside a service manager's stop
        // timeout): each step gets what is left, at least a moment.
        let deadline = std::time::Instant::now() + self.drain_timeout();
        let left = || {
            deadline
                .saturating_duration_since(std::time::Instant::now())
                .max(Duration::from_millis(200))
        };

        for child in self.take_stage(Stage::Feed) {
            let source: ActorRef<alert_source::Msg> = child.clone().into();
            if !answered(
                source
                    .call(alert_source::Msg::StopPublishing, Some(left()))
                    .await,
            ) {
                // Its handler is still running, which a stop cannot interrupt.
                tracing::warn!("alert source did not stop in time; killing it");
                child.kill();
                continue;
            }
            stop_or_kill(child, left()).await;
        }
        for child in self.take_stage(Stage::Publisher) {
            stop_or_kill(child, left()).await;
        }
        let roles: Vec<ActorRef<role::Msg>> = self
            .take_stage(Stage::Role)
            .into_iter()
            .map(ActorCell::into)
            .collect();
        // Feeders finish their current read (up to block_ms), all at once.
        let mut stopping = tokio::task::JoinSet::new();
        for role in &roles {
            let role = role.clone();
            let timeout = left();
            stopping.spawn(async move {
                if !answered(role.call(role::Msg::StopFeeding, Some(timeout)).await) {
                    tracing::warn!(actor = ?role.get_name(), "role did not stop feeding in time");
                }
            });
        }
        while stopping.join_next().await.is_some() {}
        for role in roles {
            if role.drain_and_wait(Some(left())).await.is_err() {
                tracing::warn!(actor = ?role.get_name(), "role did not drain in time; killing it");
                role.kill();
            }
        }
        for child in self.take_stage(Stage::Gateway) {
            stop_or_kill(child, left()).await;
        }
        let mut bridges = self.take_stage(Stage::Bridge);
        if bridges.is_empty() {
            // The bridge was waiting out a restart backoff: start it for the final flush, or
            // what the roles just committed would never be written.
            bridges.extend(self.respawn_for_flush(myself, Stage::Bridge).await);
        }
        for child in bridges {
            let bridge: ActorRef<bridge::Msg> = child.clone().into();
            if !answered(bridge.call(bridge::Msg::Flush, Some(left())).await) {
                tracing::warn!(
                    "bus bridge did not flush in time (is redis down?); killing it: unwritten \
                     commits stay pending in redis and are redone on the next start"
                );
                child.kill();
                continue;
            }
            stop_or_kill(child, left()).await;
        }
        let mut projectors = self.take_stage(Stage::Projector);
        if projectors.is_empty() {
            // It was waiting out a restart backoff: start it for the final fold, or the store
            // would miss the end of the audit.
            projectors.extend(self.respawn_for_flush(myself, Stage::Projector).await);
        }
        for child in projectors {
            let projector: ActorRef<projector::Msg> = child.clone().into();
            if !answered(projector.call(projector::Msg::Flush, Some(left())).await) {
                tracing::warn!(
                    "the projector did not catch up in time; it resumes from its checkpoint next start"
                );
            }
            stop_or_kill(child, left()).await;
        }
        for child in self.take_stage(Stage::Last) {
            stop_or_kill(child, left()).await;
        }
        let reason_text = match &reason {
            ExitReason::Escalated { child, .. } => format!("escalated: {child}"),
            other => format!("{other:?}").to_lowercase(),
        };
        myself.stop(Some(reason_text));
    }

    async fn observe(&self) -> RuntimeSnapshot {
        let mut roles = BTreeMap::new();
        for child in &self.children {
            if let (Stage::Role, Some(cell)) = (child.spec.stage, &child.actor) {
                let name = child.spec.name;
                let actor: ActorRef<role::Msg> = cell.clone().into();
                let snapshot = match actor
                    .call(role::Msg::Observe, Some(Duration::from_secs(1)))
                    .await
                {
                    Ok(ractor::rpc::CallResult::Success(s)) => s,
                    _ => self.ctx.role_stats[name].snapshot(),
                };
                roles.insert(name.to_owned(), snapshot);
            }
        }
        for (name, stats) in &self.ctx.role_stats {
            roles
                .entry((*name).to_owned())
                .or_insert_with(|| stats.snapshot());
        }
        RuntimeSnapshot {
            roles,
            source: self.ctx.source_stats.snapshot(),
            bridge: self.ctx.bridge_queue.as_ref().map(|q| q.snapshot()),
            llm: self.ctx.llm_stats.as_ref().map(|s| s.snapshot()),
            projector: self.ctx.projector_stats.snapshot(),
            children: self.ctx.health.report().children,
            draining: self.draining,
        }
    }
}

/// Whether a call got its answer (not a timeout, not a dead actor).
fn answered<T, M>(result: Result<ractor::rpc::CallResult<T>, ractor::MessagingErr<M>>) -> bool {
    matches!(result, Ok(ractor::rpc::CallResult::Success(_)))
}

async fn stop_or_kill(cell: ActorCell, timeout: Duration) {
    if cell.stop_and_wait(None, Some(timeout)).await.is_err() {
        tracing::warn!(actor = ?cell.get_name(), "did not stop in time; killing it");
        cell.kill();
    }
}

/// Restart delay after the `failures`-th failure in the window: doubling, capped, +-10% jitter.
fn backoff(initial_ms: u64, max_ms: u64, failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    let base = initial_ms.saturating_mul(1 << exp).min(max_ms);
    let jitter = base / 10;
    let ms = base - jitter + fastrand::u64(0..=jitter * 2);
    Duration::from_millis(ms.clamp(1, max_ms.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        for (failures, low, high) in [(1, 90, 110), (2, 180, 220), (4, 720, 880), (30, 900, 1_000)]
        {
            let d = backoff(100, 1_000, failures).as_millis() as u64;
            assert!((low..=high).contains(&d), "{failures}: {d}");
        }
    }
}
