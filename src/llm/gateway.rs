//! The LLM gateway actor: owns access to the model servers.
//!
//! Inputs: [`Msg::Call`] from [`Llm::chat`] (any role). Outputs: one reply per call, always: a
//! [`Completion`] or an [`LlmError`]. Each call waits in a bounded priority queue
//! (`super::queue`) until the endpoint it should use has a free slot (`max_in_flight`, 1 by
//! default: one GPU stream). A full queue answers [`LlmError::Overloaded`] at once, so the role
//! leaves its input pending and the bus holds the backlog. A call whose caller has gone (the
//! future was dropped or its deadline passed) is never sent, and one in flight is cut off.
//!
//! Failover: the endpoints are ordered. A call goes to the first one whose circuit is closed
//! and that it has not already failed on. A retryable leg failure (connection error, timeout,
//! 408/429/5xx, broken stream) counts against that endpoint's breaker ([`super::breaker`]) and
//! sends the whole request, unchanged, to the next endpoint; a rejection (other 4xx) is
//! returned as is. Every `probe_interval_ms` a probe asks each open endpoint for its model
//! list; the first answer closes the circuit and traffic flips back (logged and counted).
//! While every circuit is open, calls fail at once with [`LlmError::Unavailable`] instead of
//! waiting out their deadlines. A full queue refuses the least urgent call: the newcomer, or
//! a queued call it outranks.
//!
//! A restart loses the queue and the legs in flight: their callers get
//! [`LlmError::NotRunning`] and retry through the bus, like any other failure. Breakers start
//! closed again. The accounting ([`GatewayStats`]) outlives restarts.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;
use tracing::{info, warn};

use super::breaker::{Breaker, Transition};
use super::client::{Answer, Endpoint};
use super::lease::{Leases, NoLease};
use super::queue::{Full, PriorityQueue};
use super::stats::{GatewaySnapshot, GatewayStats};
use super::{
    AttemptError, AttemptErrorKind, CallOptions, ChatRequest, Completion, LlmConfig, LlmError,
};
use crate::secret::redact_url;
use crate::task::ExitNotice;

/// Actor name (prefixed by the runtime instance).
pub const NAME: &str = "llm_gateway";

/// Most endpoints one gateway fails over across.
pub(crate) const MAX_ENDPOINTS: usize = 64;

/// The handle roles call. Cheap to clone; resolves the gateway by name on every call, so it
/// stays valid across gateway restarts.
#[derive(Debug, Clone)]
pub struct Llm {
    actor: String,
    default_deadline: Duration,
    stats: Option<Arc<GatewayStats>>,
}

impl Llm {
    /// A handle to the gateway registered as `actor`.
    pub fn new(actor: impl Into<String>, default_deadline: Duration) -> Self {
        Self {
            actor: actor.into(),
            default_deadline,
            stats: None,
        }
    }

    /// With the gateway's accounting, so answers' validation is counted and roles can tell
    /// that every endpoint has been down past `[llm] degrade_after_ms` (and decide by rules).
    pub fn with_stats(mut self, stats: Arc<GatewayStats>) -> Self {
        self.stats = Some(stats);
        self
    }

    /// How long every endpoint has been unavailable, once that is past the grace: roles then
    /// decide by rules, marked degraded. `None` while any endpoint may answer.
    pub fn degraded(&self) -> Option<Duration> {
        self.stats.as_ref()?.unavailable_for()
    }

    /// Counts a final answer of `role` from `endpoint` that validated (`ok`) or not.
    pub fn validated(&self, role: &str, endpoint: &str, ok: bool) {
        if let Some(stats) = &self.stats {
            stats.validated(role, endpoint, ok);
        }
    }

    /// Counts a decision of `role` that the rules made because the model was down.
    pub fn degraded_decision(&self, role: &str) {
        if let Some(stats) = &self.stats {
            stats.degraded_decision(role);
        }
    }

    /// The gateway actor's registered name.
    pub fn actor_name(&self) -> &str {
        &self.actor
    }

    fn gateway(&self) -> Result<ActorRef<Msg>, LlmError> {
        ractor::registry::where_is(self.actor.clone())
            .map(ActorRef::from)
            .ok_or(LlmError::NotRunning)
    }

    /// Asks the model. Waits at most the call's deadline, queue included; dropping the future
    /// withdraws the request (never sent if still queued, cut off if in flight).
    pub async fn chat(
        &self,
        request: ChatRequest,
        options: CallOptions,
    ) -> Result<Completion, LlmError> {
        // A span per call, with GenAI semantic-convention attributes (and ours for what they
        // do not name: time to first token, queueing, failover).
        let span = tracing::info_span!(
            "chat",
            otel.kind = "client",
            gen_ai.operation.name = "chat",
            gen_ai.system = "openai",
            gen_ai.request.max_tokens = request.max_tokens,
            gen_ai.response.model = tracing::field::Empty,
            gen_ai.usage.input_tokens = tracing::field::Empty,
            gen_ai.usage.output_tokens = tracing::field::Empty,
            gen_ai.response.finish_reasons = tracing::field::Empty,
            server.address = tracing::field::Empty,
            soc.role = %options.role,
            soc.llm.ttft_ms = tracing::field::Empty,
            soc.llm.queued_ms = tracing::field::Empty,
            soc.llm.attempts = tracing::field::Empty,
            soc.llm.failover = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        let result =
            tracing::Instrument::instrument(self.call(request, options), span.clone()).await;
        match &result {
            Ok(c) => {
                span.record("gen_ai.response.model", c.model.as_str());
                span.record("gen_ai.usage.input_tokens", c.usage.prompt_tokens);
                span.record("gen_ai.usage.output_tokens", c.usage.completion_tokens);
                span.record(
                    "gen_ai.response.finish_reasons",
                    c.finish_reason.as_deref().unwrap_or(""),
                );
                span.record("server.address", c.endpoint.as_str());
                span.record("soc.llm.ttft_ms", c.ttft.as_millis() as u64);
                span.record("soc.llm.queued_ms", c.queued.as_millis() as u64);
                span.record("soc.llm.attempts", c.attempts);
                span.record("soc.llm.failover", c.attempts > 1);
            }
            Err(e) => {
                span.record("error.type", e.to_string().as_str());
            }
        }
        result
    }

    async fn call(
        &self,
        request: ChatRequest,
        options: CallOptions,
    ) -> Result<Completion, LlmError> {
        let deadline = options.deadline.unwrap_or(self.default_deadline);
        let (reply, answer) = oneshot::channel();
        let call = Call::new(request, options, deadline, reply);
        self.gateway()?
            .send_message(Msg::Call(Box::new(call)))
            .map_err(|_| LlmError::NotRunning)?;
        match tokio::time::timeout(deadline, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(LlmError::NotRunning),
            Err(_) => Err(LlmError::DeadlineExceeded(deadline)),
        }
    }

    /// The gateway's live state, if it runs.
    pub async fn observe(&self) -> Option<GatewaySnapshot> {
        let gateway = self.gateway().ok()?;
        ractor::call!(gateway, Msg::Observe).ok()
    }
}

/// Messages of the gateway.
pub enum Msg {
    /// Answer this call.
    Call(Box<Call>),
    /// A leg ended.
    LegDone(Box<LegDone>),
    /// A leg's task ended without reporting (it panicked): free its slot.
    LegLost {
        /// Endpoint index.
        endpoint: usize,
    },
    /// Probe open circuits and sweep the queue.
    Tick,
    /// A probe ended.
    ProbeDone {
        /// Endpoint index.
        endpoint: usize,
        /// Whether it answered.
        healthy: bool,
    },
    /// Report stats.
    Observe(RpcReplyPort<GatewaySnapshot>),
}

/// One call, from arrival to reply.
pub struct Call {
    request: ChatRequest,
    role: String,
    rank: u64,
    received: Instant,
    deadline: Instant,
    deadline_len: Duration,
    reply: oneshot::Sender<Result<Completion, LlmError>>,
    /// Endpoints this call failed on (bit per index).
    tried: u64,
    attempts: Vec<AttemptError>,
    first_dispatch: Option<Instant>,
}

impl Call {
    fn new(
        request: ChatRequest,
        options: CallOptions,
        deadline: Duration,
        reply: oneshot::Sender<Result<Completion, LlmError>>,
    ) -> Self {
        let received = Instant::now();
        Self {
            request,
            role: options.role,
            rank: options.priority.rank(),
            received,
            deadline: received + deadline,
            deadline_len: deadline,
            reply,
            tried: 0,
            attempts: Vec::new(),
            first_dispatch: None,
        }
    }

    fn is_abandoned(&self, now: Instant) -> bool {
        self.reply.is_closed() || now >= self.deadline
    }
}

/// How a leg ended.
pub struct LegDone {
    call: Call,
    key: u64,
    endpoint: usize,
    outcome: LegOutcome,
    leg: Duration,
}

enum LegOutcome {
    Answered(Answer),
    Failed(AttemptError),
    CallerGone,
    /// The deadline passed waiting for a slot lease (held by other processes).
    NoSlot,
}

/// Startup arguments.
#[derive(Clone)]
pub struct Args {
    /// Configuration (validated, at least one endpoint).
    pub config: LlmConfig,
    /// Accounting, shared across restarts.
    pub stats: Arc<GatewayStats>,
    /// Slot leases in Redis, shared by every process of the deployment (Redis bus); `None`:
    /// the limit is this process's own (in-memory bus).
    pub leases: Option<Arc<Leases>>,
}

/// The gateway actor.
pub struct Gateway;

/// The gateway's state.
pub struct State {
    endpoints: Vec<Slot>,
    queue: PriorityQueue<Call>,
    stats: Arc<GatewayStats>,
    leases: Option<Arc<Leases>>,
    legs: JoinSet<()>,
    epoch: Instant,
    _ticker: AbortOnDropHandle<()>,
}

struct Slot {
    endpoint: Arc<Endpoint>,
    /// Failover rank: equal ranks share load.
    rank: u32,
    breaker: Breaker,
    in_flight: usize,
    probing: bool,
}

impl Actor for Gateway {
    type Msg = Msg;
    type State = State;
    type Arguments = Args;

    async fn pre_start(
        &self,
        myself: ActorRef<Msg>,
        args: Args,
    ) -> Result<State, ActorProcessingErr> {
        let c = &args.config;
        let endpoints = c
            .endpoints
            .iter()
            .take(MAX_ENDPOINTS)
            .enumerate()
            .map(|(i, e)| {
                Ok(Slot {
                    endpoint: Arc::new(Endpoint::new(e.clone())?),
                    rank: e.rank.unwrap_or(u32::try_from(i).unwrap_or(u32::MAX)),
                    breaker: Breaker::new(c.failure_threshold),
                    in_flight: 0,
                    probing: false,
                })
            })
            .collect::<Result<Vec<_>, AttemptError>>()?;
        let period = Duration::from_millis(c.probe_interval_ms);
        let ticker = myself.send_interval(period, || Msg::Tick);
        let ticker = AbortOnDropHandle::new(ticker);
        let state = State {
            endpoints,
            queue: PriorityQueue::new(c.queue_capacity, c.aging_ms),
            stats: args.stats,
            leases: args.leases,
            legs: JoinSet::new(),
            epoch: Instant::now(),
            _ticker: ticker,
        };
        for (i, slot) in state.endpoints.iter().enumerate() {
            state.stats.set_endpoint(i, 0, slot.breaker.circuit());
        }
        state.stats.set_queue_depth(0);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Msg>,
        msg: Msg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            Msg::Call(call) => state.admit(*call),
            Msg::LegDone(done) => state.leg_done(*done),
            Msg::LegLost { endpoint } => state.leg_lost(endpoint),
            Msg::Tick => state.tick(&myself),
            Msg::ProbeDone { endpoint, healthy } => state.probe_done(endpoint, healthy),
            Msg::Observe(reply) => {
                let _ = reply.send(state.stats.snapshot());
            }
        }
        state.dispatch(&myself);
        Ok(())
    }
}

impl State {
    fn now_ms(&self, at: Instant) -> u64 {
        u64::try_from(at.duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Queues a new call, or refuses it at once when the queue is full.
    fn admit(&mut self, call: Call) {
        GatewayStats::bump(&self.stats.counters.submitted);
        if call.request.messages.is_empty() {
            self.fail(
                call,
                LlmError::Invalid("a chat request needs messages".into()),
            );
            return;
        }
        let key = self.queue.key(call.rank, self.now_ms(call.received));
        let call = match self.queue.push(key, call) {
            Ok(()) => return,
            Err(Full(call)) => call,
        };
        // Full: make room by dropping calls nobody waits for any more, then try again; still
        // full, the least urgent call (this one, or a queued one it outranks) is refused.
        self.sweep();
        let refused = match self.queue.push(key, call) {
            Ok(()) => return,
            Err(Full(call)) => self.queue.displace(key, call),
        };
        GatewayStats::bump(&self.stats.counters.overloads);
        let err = LlmError::Overloaded {
            queued: self.queue.len(),
            capacity: self.queue.capacity(),
        };
        self.fail(refused, err);
    }

    /// Replies with an error and accounts it.
    fn fail(&self, call: Call, err: LlmError) {
        let counter = match &err {
            LlmError::DeadlineExceeded(_) => Some(&self.stats.counters.deadline_exceeded),
            LlmError::Rejected { .. } => Some(&self.stats.counters.rejected),
            LlmError::Unavailable(_) => Some(&self.stats.counters.unavailable),
            _ => None,
        };
        if let Some(counter) = counter {
            GatewayStats::bump(counter);
        }
        self.stats.call_failed(&call.role);
        let _ = call.reply.send(Err(err));
    }

    /// Drops queued calls whose caller has gone or whose deadline passed.
    fn sweep(&mut self) {
        let now = Instant::now();
        for call in self.queue.remove_if(|c| c.is_abandoned(now)) {
            self.abandon(call, now);
        }
    }

    /// Ends a call nobody waits for: past its deadline (the caller's own timer fires at the
    /// same moment, so this is checked first), or withdrawn by its caller.
    fn abandon(&self, call: Call, now: Instant) {
        if now >= call.deadline {
            let len = call.deadline_len;
            self.fail(call, LlmError::DeadlineExceeded(len));
        } else {
            GatewayStats::bump(&self.stats.counters.cancelled);
        }
    }

    /// The endpoint `call` should use next: of the lowest rank with a closed circuit it has
    /// not failed on, the one with the most free slots (the first on a tie). `None` when
    /// there is none left.
    fn pick(&self, call: &Call) -> Option<usize> {
        let usable = |(i, s): &(usize, &Slot)| s.breaker.is_closed() && call.tried & (1 << i) == 0;
        let rank = self
            .endpoints
            .iter()
            .enumerate()
            .filter(usable)
            .map(|(_, s)| s.rank)
            .min()?;
        self.endpoints
            .iter()
            .enumerate()
            .filter(|e| usable(e) && e.1.rank == rank)
            .max_by_key(|(i, _)| (self.free(*i), std::cmp::Reverse(*i)))
            .map(|(i, _)| i)
    }

    /// Free slots of endpoint `i`: its limit less the calls in flight here or, where leases
    /// are shared, held anywhere (as last seen).
    fn free(&self, i: usize) -> usize {
        let s = &self.endpoints[i];
        let held = self.leases.as_ref().map_or(0, |l| l.held(i));
        s.endpoint
            .config
            .max_in_flight
            .saturating_sub(s.in_flight.max(held))
    }

    fn has_free_slot(&self) -> bool {
        self.endpoints
            .iter()
            .any(|s| s.breaker.is_closed() && s.in_flight < s.endpoint.config.max_in_flight)
    }

    /// Starts legs while endpoints have free slots, in queue order. A call whose endpoint is
    /// full waits; calls behind it for another endpoint may go first.
    fn dispatch(&mut self, myself: &ActorRef<Msg>) {
        if !self.endpoints.iter().any(|s| s.breaker.is_closed()) {
            // Every circuit is open: fail fast, so callers leave their work in the bus rather
            // than wait out their deadlines for a probe.
            while let Some((_, mut call)) = self.queue.pop() {
                let now = Instant::now();
                if call.is_abandoned(now) {
                    self.abandon(call, now);
                } else {
                    let attempts = std::mem::take(&mut call.attempts);
                    self.fail(call, LlmError::Unavailable(attempts));
                }
            }
            self.stats.set_queue_depth(0);
            return;
        }
        let mut waiting = Vec::new();
        while self.has_free_slot() {
            let Some((key, call)) = self.queue.pop() else {
                break;
            };
            let now = Instant::now();
            if call.is_abandoned(now) {
                self.abandon(call, now);
                continue;
            }
            let Some(index) = self.pick(&call) else {
                let attempts = call.attempts.clone();
                self.fail(call, LlmError::Unavailable(attempts));
                continue;
            };
            let slot = &self.endpoints[index];
            if slot.in_flight >= slot.endpoint.config.max_in_flight {
                waiting.push((key, call));
                continue;
            }
            self.start_leg(myself, key, call, index);
        }
        for (key, call) in waiting {
            self.queue.requeue(key, call);
        }
        self.stats.set_queue_depth(self.queue.len());
    }

    fn start_leg(&mut self, myself: &ActorRef<Msg>, key: u64, mut call: Call, index: usize) {
        let slot = &mut self.endpoints[index];
        slot.in_flight += 1;
        self.stats
            .set_endpoint(index, slot.in_flight, slot.breaker.circuit());
        call.first_dispatch.get_or_insert_with(Instant::now);
        let endpoint = slot.endpoint.clone();
        let leases = self.leases.clone();
        let stats = self.stats.clone();
        // Most urgent first, then oldest: the same order in every process.
        let epoch_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_millis() as f64)
            - call.received.elapsed().as_millis() as f64;
        let priority = call.rank as f64 * 1e13 + epoch_ms;
        let myself = myself.clone();
        let lost = {
            let myself = myself.clone();
            ExitNotice::new(move || {
                let _ = myself.send_message(Msg::LegLost { endpoint: index });
            })
        };
        self.legs.spawn(async move {
            let config = &endpoint.config;
            let lease = match &leases {
                None => Ok(None),
                Some(leases) => leases
                    .acquire(
                        index,
                        &config.name,
                        config.max_in_flight,
                        config.lease_ms,
                        priority,
                        call.deadline,
                        call.reply.closed(),
                    )
                    .await
                    .map(Some),
            };
            let started = Instant::now();
            let outcome = match lease {
                Err(NoLease::CallerGone) => LegOutcome::CallerGone,
                Err(NoLease::Deadline) => LegOutcome::NoSlot,
                Ok(lease) => {
                    let outcome = tokio::select! {
                        result = endpoint.chat(&call.request, call.deadline) => match result {
                            Ok(answer) => LegOutcome::Answered(answer),
                            Err(err) => LegOutcome::Failed(err),
                        },
                        () = call.reply.closed() => LegOutcome::CallerGone,
                    };
                    if let Some(lease) = lease {
                        let (overhead, waited) = (lease.overhead, lease.waited);
                        let release = lease.release().await;
                        stats.lease(overhead + release, waited);
                    }
                    outcome
                }
            };
            let done = LegDone {
                call,
                key,
                endpoint: index,
                outcome,
                leg: started.elapsed(),
            };
            lost.disarm();
            let _ = myself.send_message(Msg::LegDone(Box::new(done)));
        });
    }

    fn leg_lost(&mut self, index: usize) {
        while self.legs.try_join_next().is_some() {}
        if let Some(slot) = self.endpoints.get_mut(index) {
            slot.in_flight = slot.in_flight.saturating_sub(1);
            warn!(endpoint = %slot.endpoint.name(), "an llm leg task died; its caller gets NotRunning");
            self.stats
                .set_endpoint(index, slot.in_flight, slot.breaker.circuit());
        }
    }

    fn leg_done(&mut self, done: LegDone) {
        while self.legs.try_join_next().is_some() {}
        let LegDone {
            mut call,
            key,
            endpoint: index,
            outcome,
            leg,
        } = done;
        let slot = &mut self.endpoints[index];
        slot.in_flight = slot.in_flight.saturating_sub(1);
        let name = slot.endpoint.name().to_owned();
        match outcome {
            LegOutcome::CallerGone => self.abandon(call, Instant::now()),
            LegOutcome::NoSlot => {
                let len = call.deadline_len;
                self.fail(call, LlmError::DeadlineExceeded(len));
            }
            LegOutcome::Answered(answer) => {
                slot.breaker.on_success();
                let queued = call
                    .first_dispatch
                    .map_or(Duration::ZERO, |d| d.duration_since(call.received));
                let latency = call.received.elapsed();
                self.stats.answered(
                    &call.role,
                    index,
                    super::stats::Answered {
                        usage: answer.usage,
                        reasoned: answer.reasoning.is_some(),
                        latency,
                        leg,
                        ttft: answer.ttft,
                    },
                );
                let completion = Completion {
                    content: answer.content,
                    reasoning: answer.reasoning,
                    tool_calls: answer.tool_calls,
                    finish_reason: answer.finish_reason,
                    usage: answer.usage,
                    model: answer.model,
                    endpoint: name,
                    attempts: u32::try_from(call.attempts.len() + 1).unwrap_or(u32::MAX),
                    queued,
                    ttft: answer.ttft,
                    upstream: leg,
                };
                let _ = call.reply.send(Ok(completion));
            }
            LegOutcome::Failed(err) => {
                self.stats.leg_failed(index, err.kind);
                if Instant::now() >= call.deadline {
                    let len = call.deadline_len;
                    self.fail(call, LlmError::DeadlineExceeded(len));
                } else if let AttemptErrorKind::Rejected(status) = err.kind {
                    let err = LlmError::Rejected {
                        endpoint: err.endpoint,
                        status,
                        message: err.message,
                    };
                    self.fail(call, err);
                } else {
                    if slot.breaker.on_failure() == Transition::Opened {
                        GatewayStats::bump(&self.stats.counters.circuit_opened);
                        warn!(endpoint = %name, error = %err, "llm endpoint failing: circuit open, traffic fails over");
                    } else {
                        warn!(endpoint = %name, error = %err, "llm leg failed; retrying on the next endpoint");
                    }
                    call.tried |= 1 << index;
                    call.attempts.push(err);
                    if self.pick(&call).is_some() {
                        GatewayStats::bump(&self.stats.counters.failovers);
                        self.queue.requeue(key, call);
                    } else {
                        let attempts = std::mem::take(&mut call.attempts);
                        self.fail(call, LlmError::Unavailable(attempts));
                    }
                }
            }
        }
        let slot = &self.endpoints[index];
        self.stats
            .set_endpoint(index, slot.in_flight, slot.breaker.circuit());
    }

    /// Probes open circuits and sweeps the queue.
    fn tick(&mut self, myself: &ActorRef<Msg>) {
        while self.legs.try_join_next().is_some() {}
        self.sweep();
        for (index, slot) in self.endpoints.iter_mut().enumerate() {
            if slot.breaker.is_closed() || slot.probing {
                continue;
            }
            slot.probing = true;
            let endpoint = slot.endpoint.clone();
            let myself = myself.clone();
            let lost = {
                let myself = myself.clone();
                ExitNotice::new(move || {
                    let _ = myself.send_message(Msg::ProbeDone {
                        endpoint: index,
                        healthy: false,
                    });
                })
            };
            self.legs.spawn(async move {
                let healthy = endpoint.probe().await;
                lost.disarm();
                let _ = myself.send_message(Msg::ProbeDone {
                    endpoint: index,
                    healthy,
                });
            });
        }
    }

    fn probe_done(&mut self, index: usize, healthy: bool) {
        while self.legs.try_join_next().is_some() {}
        let Some(slot) = self.endpoints.get_mut(index) else {
            return;
        };
        slot.probing = false;
        if slot.breaker.on_probe(healthy) == Transition::Closed {
            GatewayStats::bump(&self.stats.counters.flips_back);
            let url = redact_url(&slot.endpoint.config.url);
            if index == 0 {
                info!(endpoint = %slot.endpoint.name(), %url, "llm primary answers again: circuit closed, traffic flips back");
            } else {
                info!(endpoint = %slot.endpoint.name(), %url, "llm endpoint answers again: circuit closed");
            }
            self.stats
                .set_endpoint(index, slot.in_flight, slot.breaker.circuit());
        }
    }
}
