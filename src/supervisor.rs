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
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use serde::Serialize;
use tokio::time::Instant;

use crate::actors::RoleEnv;
use crate::actors::alert_source::{self, AlertSource, Feed, SourceSnapshot, SourceStats};
use crate::actors::calendar::{self, Calendar};
use crate::actors::notifier::{self, Notifier};
use crate::actors::projector::{self, Projector, ProjectorSnapshot, ProjectorStats};
use crate::actors::role::{self, PanicSchedule, RoleSnapshot, RoleSpec, RoleStats};
use crate::actors::xsoar;
use crate::app::config::Config;
use crate::app::health::Health;
use crate::app::http::{self, HttpServer};
use crate::bus::bridge::{self, BridgeSnapshot, BusBridge, WriteQueue};
use crate::bus::{Bus, Topic};
use crate::knowledge::Knowledge;
use crate::llm::Llm;
use crate::llm::gateway::{self, Gateway};
use crate::llm::stats::{GatewaySnapshot, GatewayStats};

pub use crate::actors::roles::REACTIVE_ROLES;

/// Why the runtime stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum ExitReason {
    /// A drain was requested (signal or API).
    Requested,
    /// `--until-idle`: the feed was drained and no work was pending.
    Idle,
    /// A child failed more often than the restart intensity allows.
    Escalated {
        /// The child.
        child: String,
        /// Its last error.
        error: String,
    },
}

/// Options that are not configuration: how this run ends, and test-only fault injection.
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// Exit once the feed is drained and nothing is pending.
    pub until_idle: bool,
    /// Fault injection for crash tests.
    pub faults: Option<Arc<PanicSchedule>>,
    /// Knowledge to start from instead of a fresh one (a backtest's history and feedback);
    /// the store's dispositions are added to it.
    pub knowledge: Option<Arc<Knowledge>>,
    /// Leave out the tools that reach live systems (site connectors such as Falcon): a
    /// backtest's tickets are history, and a live EDR knows nothing of their time.
    pub no_site_connectors: bool,
}

/// Everything the supervisor and the runtime handle share.
pub struct Context {
    /// Configuration.
    pub config: Config,
    /// Run options.
    pub options: RuntimeOptions,
    /// The bus.
    pub bus: Bus,
    /// Prefix of actor names, unique per runtime in this process.
    pub instance: String,
    /// The feed the alert source reads.
    pub feed: Feed,
    /// Counters of each role, by name.
    pub role_stats: BTreeMap<&'static str, Arc<RoleStats>>,
    /// Counters of the alert source.
    pub source_stats: Arc<SourceStats>,
    /// The bridge queue (Redis only).
    pub bridge_queue: Option<Arc<WriteQueue>>,
    /// The HTTP listener bound at startup (taken by the first HTTP actor) and its address.
    pub http: Option<(Arc<Mutex<Option<std::net::TcpListener>>>, SocketAddr)>,
    /// Shared health.
    pub health: Arc<Health>,
    /// The LLM gateway's accounting, when endpoints are configured.
    pub llm_stats: Option<Arc<GatewayStats>>,
    /// The store file the projector folds into.
    pub store_path: std::path::PathBuf,
    /// The projection's checkpoint name.
    pub projection: String,
    /// The projector's counters.
    pub projector_stats: Arc<ProjectorStats>,
    /// The XSOAR poller's counters.
    pub xsoar_stats: Arc<xsoar::XsoarStats>,
    /// What the rules reasoner knows (dispositions, activity); outlives role restarts.
    pub knowledge: Arc<Knowledge>,
    /// The roles' tools (over the same knowledge).
    pub tools: Arc<crate::tools::Toolbox>,
    /// Why the runtime stopped, once it has.
    pub exit: Mutex<Option<ExitReason>>,
    /// When the runtime started.
    pub started: std::time::Instant,
}

impl Context {
    fn consumer_name(&self, role: &str) -> String {
        crate::bus::consumer_name(role)
    }

    /// How long a proposal may be decided, ms.
    pub fn proposal_ttl_ms(&self) -> i64 {
        i64::try_from(self.config.approvals.proposal_ttl_s)
            .unwrap_or(i64::MAX / 2_000)
            .saturating_mul(1000)
    }

    /// Where approvers' browsers reach the approval pages: `webex.approvals_url`, else this
    /// runtime's HTTP address.
    pub fn approvals_url(&self) -> String {
        if !self.config.webex.approvals_url.is_empty() {
            return self.config.webex.approvals_url.clone();
        }
        match &self.http {
            Some((_, addr)) => format!("http://{addr}"),
            None => format!("http://{}", self.config.http.addr),
        }
    }

    /// A handle to this runtime's LLM gateway, when endpoints are configured.
    pub fn llm(&self) -> Option<Llm> {
        self.llm_stats.as_ref().map(|_| {
            Llm::new(
                format!("{}/{}", self.instance, gateway::NAME),
                Duration::from_millis(self.config.llm.deadline_ms),
            )
        })
    }
}

/// Where a child stands in a drain: stages stop in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The alert source: told to stop publishing, then stopped.
    Feed,
    /// Other publishers of new work (the calendar roles): stopped with the feed.
    Publisher,
    /// A reactive role: stops reading, finishes its mailbox.
    Role,
    /// The LLM gateway.
    Gateway,
    /// The bus bridge: writes what is queued.
    Bridge,
    /// The projector: folds the audit to its end.
    Projector,
    /// Everything else (HTTP, the notifier, the XSOAR poller).
    Last,
}

type SpawnFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<ActorCell, String>> + Send + 'a>>;

/// How a child starts: from the shared context, under its actor name, linked to the
/// supervisor.
#[derive(Clone, Copy)]
enum Start {
    /// A child with its own start function.
    Actor(fn(&Context, String, ActorCell) -> SpawnFuture<'_>),
    /// A reactive role (all started the same way, from its [`RoleSpec`]).
    Role(&'static RoleSpec),
}

/// One supervised child: its name, its place in a drain, how it starts. The supervisor's
/// children are a list of these ([`children`]); nothing else enumerates them.
#[derive(Clone, Copy)]
struct ChildSpec {
    name: &'static str,
    stage: Stage,
    start: Start,
}

impl ChildSpec {
    const fn of(
        name: &'static str,
        stage: Stage,
        start: fn(&Context, String, ActorCell) -> SpawnFuture<'_>,
    ) -> Self {
        Self {
            name,
            stage,
            start: Start::Actor(start),
        }
    }
}

/// The children this process runs, in start order.
fn children(ctx: &Context) -> Vec<ChildSpec> {
    let parts = &ctx.config.supervisor;
    let mut specs = Vec::new();
    if ctx.bridge_queue.is_some() {
        specs.push(ChildSpec::of(bridge::NAME, Stage::Bridge, start_bridge));
    }
    if ctx.http.is_some() {
        specs.push(ChildSpec::of(http::NAME, Stage::Last, start_http));
    }
    if ctx.llm_stats.is_some() {
        specs.push(ChildSpec::of(gateway::NAME, Stage::Gateway, start_gateway));
    }
    specs.push(ChildSpec::of(
        projector::NAME,
        Stage::Projector,
        start_projector,
    ));
    if ctx.config.webex.sends_cards() && parts.runs("approvals") {
        specs.push(ChildSpec::of(notifier::NAME, Stage::Last, start_notifier));
    }
    for role in REACTIVE_ROLES.iter().filter(|r| parts.runs(r.name)) {
        specs.push(ChildSpec {
            name: role.name,
            stage: Stage::Role,
            start: Start::Role(role),
        });
    }
    if parts.runs("source") {
        // The JSONL feed (or the demo feed) unless XSOAR alone is the source.
        if ctx.config.alerts.is_some() || !ctx.config.xsoar.enabled() {
            specs.push(ChildSpec::of(alert_source::NAME, Stage::Feed, start_source));
        }
        if ctx.config.xsoar.enabled() {
            specs.push(ChildSpec::of(xsoar::NAME, Stage::Last, start_xsoar));
        }
    }
    if ctx.config.calendar.enabled && parts.runs("calendar") {
        specs.push(ChildSpec::of(
            calendar::NAME,
            Stage::Publisher,
            start_calendar,
        ));
    }
    specs
}

/// Spawns `actor` linked to `parent`, as its cell.
async fn linked<A: Actor>(
    name: String,
    actor: A,
    args: A::Arguments,
    parent: ActorCell,
) -> Result<ActorCell, String> {
    Actor::spawn_linked(Some(name), actor, args, parent)
        .await
        .map(|(a, _)| a.get_cell())
        .map_err(|e| e.to_string())
}

fn start_bridge(ctx: &Context, name: String, parent: ActorCell) -> SpawnFuture<'_> {
    Box::pin(async move {
        let queue = ctx.bridge_queue.clone().ok_or("no bridge queue")?;
        let args = bridge::Args {
            url: ctx.config.bus.redis_url.clone(),
            config: ctx.bus.config().clone(),
            queue,
        };
        linked(name, BusBridge, args, parent).await
    })
}

fn start_http(ctx: &Context, name: String, parent: ActorCell) -> SpawnFuture<'_> {
    Box::pin(async move {
        let (listener, addr) = ctx.http.clone().ok_or("http is off")?;
        let args = http::Args {
            listener,
            addr,
            health: ctx.health.clone(),
            pages: Some(http::Pages {
                approval_pages: ctx.config.supervisor.runs("approvals"),
                store: ctx.store_path.clone(),
                approvals: ctx.config.approvals.clone(),
                webex: ctx.config.webex.clone(),
                knowledge: Some(ctx.knowledge.clone()),
                data_dir: ctx.config.data_dir.clone(),
            }),
            metrics: crate::app::metrics::Sources {
                // Only the roles this process runs: several processes' scrapes add up.
                roles: REACTIVE_ROLES
                    .iter()
                    .filter(|r| ctx.config.supervisor.runs(r.name))
                    .map(|r| (r.name, (r.input, ctx.role_stats[r.name].clone())))
                    .collect(),
                xsoar: ctx.config.xsoar.enabled().then(|| ctx.xsoar_stats.clone()),
                source: ctx.source_stats.clone(),
                llm: ctx.llm_stats.clone(),
                projector: ctx.projector_stats.clone(),
                bus: ctx.bus.clone(),
                pool: None,
            },
        };
        linked(name, HttpServer, args, parent).await
    })
}

fn start_gateway(ctx: &Context, name: String, parent: ActorCell) -> SpawnFuture<'_> {
    Box::pin(async move {
        let stats = ctx.llm_stats.clone().ok_or("no llm endpoints")?;
        let args = gateway::Args {
            config: ctx.config.llm.clone(),
            stats,
        };
        linked(name, Gateway, args, parent).await
    })
}

fn start_projector(ctx: &Context, name: String, parent: ActorCell) -> SpawnFuture<'_> {
    Box::pin(async move {
        let args = projector::Args {
            bus: ctx.bus.clone(),
            path: ctx.store_path.clone(),
            projection: ctx.projection.clone(),
            interval: Duration::from_millis(ctx.config.supervisor.idle_poll_ms.max(100)),
            stats: ctx.projector_stats.clone(),
            knowledge: Some(ctx.knowledge.clone()),
        };
        linked(name, Projector, args, parent).await
    })
}

fn start_notifier(ctx: &Context, name: String, parent: ActorCell) -> SpawnFuture<'_> {
    Box::pin(async move {
        let args = notifier::Args {
            path: ctx.store_path.clone(),
            config: ctx.config.webex.clone(),
            approvals_url: ctx.approvals_url(),
            max_age_ms: ctx.proposal_ttl_ms(),
        };
        linked(name, Notifier, args, parent).await
    })
}

fn start_xsoar(ctx: &Context, name: String, parent: ActorCell) -> SpawnFuture<'_> {
    Box::pin(async move {
        let args = xsoar::Args {
            config: ctx.config.xsoar.clone(),
            bus: ctx.bus.clone(),
            store: ctx.store_path.clone(),
            stats: ctx.xsoar_stats.clone(),
        };
        linked(name, xsoar::XsoarPoller, args, parent).await
    })
}

fn start_calendar(ctx: &Context, name: String, parent: ActorCell) -> SpawnFuture<'_> {
    Box::pin(async move {
        let args = calendar::Args {
            bus: ctx.bus.clone(),
            tz: ctx.config.calendar.tz.clone(),
        };
        linked(name, Calendar, args, parent).await
    })
}

fn start_source(ctx: &Context, name: String, parent: ActorCell) -> SpawnFuture<'_> {
    Box::pin(async move {
        let args = alert_source::Args {
            feed: ctx.feed.clone(),
            bus: ctx.bus.clone(),
            stats: ctx.source_stats.clone(),
            batch: ctx.config.supervisor.source_batch,
        };
        linked(name, AlertSource, args, parent).await
    })
}

async fn start_role(
    ctx: &Context,
    spec: &RoleSpec,
    name: String,
    parent: ActorCell,
) -> Result<ActorCell, String> {
    let args = role::Args {
        bus: ctx.bus.clone(),
        consumer: ctx.consumer_name(spec.name),
        stats: ctx.role_stats[spec.name].clone(),
        faults: ctx.options.faults.clone(),
        llm: ctx.llm(),
        env: RoleEnv {
            knowledge: ctx.knowledge.clone(),
            reasoning: ctx.config.reasoning.clone(),
            tools: ctx.tools.clone(),
            proposal_ttl_ms: ctx.proposal_ttl_ms(),
        },
    };
    spec.spawn(name, args, parent)
        .await
        .map(|a| a.get_cell())
        .map_err(|e| e.to_string())
}

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
pub struct Supervisor;

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
            Err(error) => self.failed(myself, name, error),
        }
    }

    async fn spawn(&self, myself: &ActorRef<Msg>, spec: ChildSpec) -> Result<ActorCell, String> {
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
        let timeout = self.drain_timeout();

        for child in self.take_stage(Stage::Feed) {
            let source: ActorRef<alert_source::Msg> = child.clone().into();
            if !answered(
                source
                    .call(alert_source::Msg::StopPublishing, Some(timeout))
                    .await,
            ) {
                // Its handler is still running, which a stop cannot interrupt.
                tracing::warn!("alert source did not stop in time; killing it");
                child.kill();
                continue;
            }
            stop_or_kill(child, timeout).await;
        }
        for child in self.take_stage(Stage::Publisher) {
            stop_or_kill(child, timeout).await;
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
            stopping.spawn(async move {
                if !answered(role.call(role::Msg::StopFeeding, Some(timeout)).await) {
                    tracing::warn!(actor = ?role.get_name(), "role did not stop feeding in time");
                }
            });
        }
        while stopping.join_next().await.is_some() {}
        for role in roles {
            if role.drain_and_wait(Some(timeout)).await.is_err() {
                tracing::warn!(actor = ?role.get_name(), "role did not drain in time; killing it");
                role.kill();
            }
        }
        for child in self.take_stage(Stage::Gateway) {
            stop_or_kill(child, timeout).await;
        }
        let mut bridges = self.take_stage(Stage::Bridge);
        if bridges.is_empty() {
            // The bridge was waiting out a restart backoff: start it for the final flush, or
            // what the roles just committed would never be written.
            bridges.extend(self.respawn_for_flush(myself, Stage::Bridge).await);
        }
        for child in bridges {
            let bridge: ActorRef<bridge::Msg> = child.clone().into();
            if !answered(bridge.call(bridge::Msg::Flush, Some(timeout)).await) {
                tracing::warn!(
                    "bus bridge did not flush in time (is redis down?); killing it: unwritten \
                     commits stay pending in redis and are redone on the next start"
                );
                child.kill();
                continue;
            }
            stop_or_kill(child, timeout).await;
        }
        let mut projectors = self.take_stage(Stage::Projector);
        if projectors.is_empty() {
            // It was waiting out a restart backoff: start it for the final fold, or the store
            // would miss the end of the audit.
            projectors.extend(self.respawn_for_flush(myself, Stage::Projector).await);
        }
        for child in projectors {
            let projector: ActorRef<projector::Msg> = child.clone().into();
            if !answered(projector.call(projector::Msg::Flush, Some(timeout)).await) {
                tracing::warn!(
                    "the projector did not catch up in time; it resumes from its checkpoint next start"
                );
            }
            stop_or_kill(child, timeout).await;
        }
        for child in self.take_stage(Stage::Last) {
            stop_or_kill(child, timeout).await;
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
