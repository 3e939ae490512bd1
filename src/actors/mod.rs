//! The actors of the SOC: one file per role, plus the generic role actor that connects a role
//! to the bus and the alert source that feeds the SOC.
//!
//! A role is a [`Role`]: what it consumes and how it decides. `role::RoleActor` does the
//! rest (feeder, credits, atomic commit, stats, fault tolerance) the same way for every role.
//! Adding a role is one file here plus one line in [`roles::REACTIVE_ROLES`].

pub(crate) mod alert_source;
pub(crate) mod calendar;
pub mod ir_lead;
pub(crate) mod notifier;
pub(crate) mod projector;
pub(crate) mod reasoning;
pub mod role;
pub(crate) mod roles;
pub mod sentinel;
pub mod threat_intel;
pub mod tier2;
pub(crate) mod xsoar;

use std::future::Future;
use std::sync::Arc;

use crate::bus::Topic;
use crate::knowledge::Knowledge;
use crate::llm::{Llm, LlmError};
use crate::proto::{DecisionMeta, Envelope, Event, EventKind, ReasonerKind};

/// What a role consumes: one event kind (every [`EventKind`] is one), or several.
pub trait RoleInput: Clone + Send + Sync + 'static {
    /// Whether entries of wire kind `kind` are the role's (others are skipped unread).
    fn accepts(kind: &str) -> bool;
    /// The role's input in `event`, if it is one.
    fn input_of(event: &Event) -> Option<Self>;
}

impl<T: EventKind> RoleInput for T {
    fn accepts(kind: &str) -> bool {
        kind == T::KIND
    }

    fn input_of(event: &Event) -> Option<Self> {
        T::of(event).cloned()
    }
}

/// A reactive role: consumes events from one stream and decides what to publish.
pub trait Role: Send + Sync + 'static {
    /// Role name: the consumer group and the envelopes' `produced_by`.
    const NAME: &'static str;
    /// Builds the role (at each start of its actor).
    fn new(env: &RoleEnv) -> Self
    where
        Self: Sized;
    /// The stream the role consumes.
    const INPUT: Topic;
    /// The event (or events) the role consumes (other kinds on its stream are skipped unread).
    type Input: RoleInput;
    /// Decides on one input (its envelope and its event) with the role's rules; the returned
    /// events are published atomically with its ack. An empty list means "nothing to say"
    /// (the input is still acked).
    fn decide(&self, input: &Envelope, event: &Self::Input) -> Vec<Event>;

    /// [`Role::decide`] on an envelope: nothing to say when it is not of the role's kind.
    fn decide_envelope(&self, input: &Envelope) -> Vec<Event> {
        Self::Input::input_of(&input.event)
            .map(|event| self.decide(input, &event))
            .unwrap_or_default()
    }

    /// Whether `input` is decided with the model, when the LLM gateway runs. Default: never.
    fn wants_model(&self, _input: &Envelope, _event: &Self::Input) -> bool {
        false
    }

    /// Decides `input` with the model through `llm`. A transient error
    /// (`LlmError::is_transient`: `Overloaded`, a deadline, no endpoint, no gateway) leaves
    /// the input pending: the role actor keeps it, with its credit, and tries again later, so
    /// the backlog waits in the bus. Any other error falls back to [`Role::decide`].
    fn decide_with_model(
        &self,
        input: Envelope,
        event: Self::Input,
        llm: Llm,
    ) -> impl Future<Output = Result<Vec<Event>, LlmError>> + Send + 'static {
        let _ = llm;
        std::future::ready(Ok(self.decide(&input, &event)))
    }
}

/// What a role is built with: shared by the roles of one runtime, outliving their restarts.
#[derive(Debug, Clone)]
pub struct RoleEnv {
    /// Analysts' dispositions and recent activity, for the rules reasoner.
    pub knowledge: Arc<Knowledge>,
    /// Which reasoner decides what.
    pub reasoning: reasoning::ReasoningConfig,
    /// The tools the model reasoner may call (each role offers its whitelist of them).
    pub tools: Arc<crate::tools::Toolbox>,
    /// How long a proposed action may be decided, ms (`[approvals] proposal_ttl_s`).
    pub proposal_ttl_ms: i64,
    /// The organisation's own networks (`[response] our_networks`).
    pub networks: Arc<crate::response::Networks>,
}

impl Default for RoleEnv {
    fn default() -> Self {
        Self {
            knowledge: Arc::default(),
            reasoning: reasoning::ReasoningConfig::default(),
            tools: Arc::default(),
            proposal_ttl_ms: i64::try_from(
                crate::approvals::ApprovalsConfig::default().proposal_ttl_s,
            )
            .unwrap_or(0)
                * 1000,
            networks: Arc::default(),
        }
    }
}

/// [`DecisionMeta`] of a rules-reasoner decision that started at `started`.
pub(crate) fn rules_meta(started: std::time::Instant) -> DecisionMeta {
    DecisionMeta {
        reasoner: ReasonerKind::Rules,
        wall_time_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        ..DecisionMeta::default()
    }
}
