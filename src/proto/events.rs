//! The events of the seed SOC, one struct each, and the [`Event`] union that envelopes carry.
//!
//! Case events embed a [`CaseContext`] so no downstream role has to re-derive ticket, host, user,
//! rule, source or priority. Every role decision carries [`DecisionMeta`] (which reasoner, how
//! long, how many tool calls and tokens) so accuracy and cost are read models over the audit.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::assessment::{Assessment, LinkedCase};
use super::case::{
    Alert, CaseContext, DecisionMeta, Disposition, Ioc, Severity, Tier2Decision, TriageVerdict,
};
use super::reports::{CampaignDetected, DetectionTuningReport, HuntingReport, ShiftSummary};

/// Every event of the contract. Serialized as `{"kind": <name>, "body": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", content = "body")]
pub enum Event {
    /// An alert entered the SOC from a source.
    AlertReceived(AlertReceived),
    /// Sentinel (Tier 1) triaged an alert.
    AlertTriaged(AlertTriaged),
    /// Tier 2 decided the case needs incident response.
    CaseEscalated(CaseEscalated),
    /// Tier 2's investigation of a triaged alert.
    Tier2Analysis(Tier2Analysis),
    /// The IR Lead's severity and response plan.
    #[serde(rename = "IRPlan")]
    IrPlan(IrPlan),
    /// A containment step waiting for a human approver.
    ActionProposed(ActionProposed),
    /// A human approved or rejected a proposed action.
    ActionDecision(ActionDecision),
    /// Threat Intel's attribution of an escalated case.
    ThreatIntelReport(ThreatIntelReport),
    /// Detection Engineer's noisy-rule tuning report over a window.
    DetectionTuningReport(DetectionTuningReport),
    /// Threat Hunter's pattern sweep over a window.
    HuntingReport(HuntingReport),
    /// Cases tied together by shared rare infrastructure.
    CampaignDetected(CampaignDetected),
    /// SOC Manager's shift summary.
    ShiftSummary(ShiftSummary),
    /// An analyst's disposition of a case became known (the record the reasoner learns from).
    DispositionRecorded(DispositionRecorded),
    /// More raw alerts joined a case a streaming source opened: the case as it is now.
    CaseUpdated(CaseUpdated),
}

impl Event {
    /// The decision metadata of a role's decision event (triage, Tier 2, plan, intel).
    pub fn decision_meta_mut(&mut self) -> Option<&mut DecisionMeta> {
        match self {
            Event::AlertTriaged(e) => Some(&mut e.meta),
            Event::Tier2Analysis(e) => Some(&mut e.meta),
            Event::IrPlan(e) => Some(&mut e.meta),
            Event::ThreatIntelReport(e) => Some(&mut e.meta),
            _ => None,
        }
    }

    /// Every event kind name, in a fixed order (the index is `Event::ordinal`).
    pub const KINDS: [&'static str; 14] = [
        "AlertReceived",
        "AlertTriaged",
        "CaseEscalated",
        "Tier2Analysis",
        "IRPlan",
        "ActionProposed",
        "ActionDecision",
        "ThreatIntelReport",
        "DetectionTuningReport",
        "HuntingReport",
        "CampaignDetected",
        "ShiftSummary",
        "DispositionRecorded",
        "CaseUpdated",
    ];

    /// Position of this event's kind in [`Event::KINDS`].
    pub(crate) fn ordinal(&self) -> usize {
        match self {
            Self::AlertReceived(_) => 0,
            Self::AlertTriaged(_) => 1,
            Self::CaseEscalated(_) => 2,
            Self::Tier2Analysis(_) => 3,
            Self::IrPlan(_) => 4,
            Self::ActionProposed(_) => 5,
            Self::ActionDecision(_) => 6,
            Self::ThreatIntelReport(_) => 7,
            Self::DetectionTuningReport(_) => 8,
            Self::HuntingReport(_) => 9,
            Self::CampaignDetected(_) => 10,
            Self::ShiftSummary(_) => 11,
            Self::DispositionRecorded(_) => 12,
            Self::CaseUpdated(_) => 13,
        }
    }

    /// The kind name written to the stream entry's `kind` field.
    pub fn kind(&self) -> &'static str {
        Self::KINDS[self.ordinal()]
    }

    /// The case this event is about, for case events.
    pub fn case(&self) -> Option<&CaseContext> {
        match self {
            Self::AlertTriaged(e) => Some(&e.case),
            Self::CaseEscalated(e) => Some(&e.case),
            Self::Tier2Analysis(e) => Some(&e.case),
            Self::IrPlan(e) => Some(&e.case),
            Self::ActionProposed(e) => Some(&e.case),
            Self::ActionDecision(e) => Some(&e.case),
            Self::ThreatIntelReport(e) => Some(&e.case),
            Self::DispositionRecorded(e) => Some(&e.case),
            Self::AlertReceived(_)
            | Self::CaseUpdated(_)
            | Self::DetectionTuningReport(_)
            | Self::HuntingReport(_)
            | Self::CampaignDetected(_)
            | Self::ShiftSummary(_) => None,
        }
    }
}

/// One event type of the contract: its kind name (the `kind` wire field) and how to find it in
/// an [`Event`]. A role declares the one it consumes ([`crate::actors::Role::Input`]); counts
/// and filters name kinds by `T::KIND`, never by a string literal.
pub trait EventKind: Clone + Send + Sync + 'static {
    /// The kind name, as in [`Event::KINDS`].
    const KIND: &'static str;
    /// The event, if `event` is of this kind.
    fn of(event: &Event) -> Option<&Self>;
}

macro_rules! event_kinds {
    ($($variant:ident => $ordinal:literal),* $(,)?) => {
        $(
            impl EventKind for $variant {
                const KIND: &'static str = Event::KINDS[$ordinal];
                fn of(event: &Event) -> Option<&Self> {
                    match event {
                        Event::$variant(e) => Some(e),
                        _ => None,
                    }
                }
            }
        )*
    };
}

event_kinds! {
    AlertReceived => 0,
    AlertTriaged => 1,
    CaseEscalated => 2,
    Tier2Analysis => 3,
    IrPlan => 4,
    ActionProposed => 5,
    ActionDecision => 6,
    ThreatIntelReport => 7,
    DetectionTuningReport => 8,
    HuntingReport => 9,
    CampaignDetected => 10,
    ShiftSummary => 11,
    DispositionRecorded => 12,
    CaseUpdated => 13,
}

/// An alert entered the SOC.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertReceived {
    /// The alert.
    pub alert: Alert,
    /// The source that delivered it (`jsonl:<file name>`, `xsoar`, `http`).
    pub received_via: String,
}

/// More raw alerts joined an open case after its `AlertReceived`: a streaming source (a
/// followed file, a pipe) publishes a case at its first alert, so triage need not wait for its
/// window to close, and its repeats as updates. Cumulative (the counts, times and addresses so
/// far, under the case's `ticket_id`), so a repeat or a reordering is harmless: readers keep
/// the largest count.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CaseUpdated {
    /// The case as it is now.
    pub alert: Alert,
    /// The source that delivered it.
    pub received_via: String,
}

/// Sentinel's triage of an alert.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertTriaged {
    /// The case, with the priority sentinel assigned.
    pub case: CaseContext,
    /// The verdict.
    pub verdict: TriageVerdict,
    /// Confidence in the verdict, 0..=1.
    pub confidence: f32,
    /// Priority 1 (lowest) to 10 (highest).
    pub priority: u8,
    /// Why, in a sentence or two.
    pub rationale: String,
    /// Who decided and at what cost.
    pub meta: DecisionMeta,
    /// The calibrated score the verdict rests on and the evidence it used, as recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assessment: Option<Assessment>,
}

/// An analyst's disposition of a case became known.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DispositionRecorded {
    /// The case (its facts: site, rule, host, detector, times).
    pub case: CaseContext,
    /// What the analysts decided.
    pub disposition: Disposition,
    /// Who decided (an analyst, a feed, a file).
    pub by: String,
    /// Where it came from: `history`, `backtest_feedback`, `webex`, `xsoar`, `console`.
    pub origin: String,
    /// When it became known, milliseconds since the Unix epoch (alert time in a replay).
    pub known_at_ms: i64,
    /// The analyst's reason, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Tier 2's investigation of a triaged alert.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Tier2Analysis {
    /// The case.
    pub case: CaseContext,
    /// The verdict sentinel gave.
    pub triage_verdict: TriageVerdict,
    /// Tier 2's refined verdict.
    pub verdict: TriageVerdict,
    /// Escalate, close or ask a human.
    pub decision: Tier2Decision,
    /// Confidence in the decision, 0..=1.
    pub confidence: f32,
    /// What Tier 2 found.
    pub summary: String,
    /// Tickets of similar earlier incidents.
    #[serde(default)]
    pub similar_incidents: Vec<String>,
    /// Recommended next steps.
    #[serde(default)]
    pub next_steps: Vec<String>,
    /// Who decided and at what cost.
    pub meta: DecisionMeta,
}

/// Tier 2 handed the case to incident response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CaseEscalated {
    /// The case.
    pub case: CaseContext,
    /// Why it was escalated.
    pub reason: String,
    /// Tier 2's confidence, 0..=1.
    pub confidence: f32,
    /// Earlier cases on the same host escalated with it as one incident.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub linked: Vec<LinkedCase>,
}

/// One step of a response plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlanStep {
    /// Stable id of the step within the plan (`contain-1`).
    pub step_id: String,
    /// Machine-readable action (`isolate_host`, `block_ip`, `disable_account`).
    pub action: String,
    /// What the action applies to.
    pub target: String,
    /// What a human reads.
    pub description: String,
    /// The evidence that supports the step (what the case shows of its target), so an
    /// approver sees why this action and not another.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
}

/// The IR Lead's response plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IrPlan {
    /// Stable id of the plan (`<ticket>/plan`); proposals refer to it.
    pub plan_id: String,
    /// The case.
    pub case: CaseContext,
    /// Severity.
    pub severity: Severity,
    /// Plan summary.
    pub summary: String,
    /// Containment steps: each also becomes an `ActionProposed`.
    #[serde(default)]
    pub containment: Vec<PlanStep>,
    /// Eradication steps.
    #[serde(default)]
    pub eradication: Vec<String>,
    /// Recovery steps.
    #[serde(default)]
    pub recovery: Vec<String>,
    /// Who must be told.
    #[serde(default)]
    pub notifications: Vec<String>,
    /// Who decided and at what cost.
    pub meta: DecisionMeta,
}

/// A containment action waiting for a human with the named role. Nothing auto-executes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ActionProposed {
    /// Stable id of the action (`<ticket>/<step_id>`).
    pub action_id: String,
    /// The case.
    pub case: CaseContext,
    /// `plan_id` of the plan that proposed it.
    pub plan_id: String,
    /// The proposed step.
    pub step: PlanStep,
    /// Severity of the incident.
    pub severity: Severity,
    /// The human role that must decide ("IR Lead On-Call").
    pub approver_role: String,
    /// When the proposal expires, milliseconds since the Unix epoch.
    pub expires_at_ms: i64,
}

/// A human's decision on a proposed action.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ActionDecision {
    /// The action decided.
    pub action_id: String,
    /// The case.
    pub case: CaseContext,
    /// Approved or rejected.
    pub decision: ApprovalDecision,
    /// Who decided (the signed-in approver).
    pub decided_by: String,
    /// When, milliseconds since the Unix epoch.
    pub decided_at_ms: i64,
    /// Why.
    pub reason: String,
    /// Whether anything was executed (always false: execution is a separate, human step).
    pub executed: bool,
}

/// A human's answer to a proposal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalDecision {
    /// Go ahead.
    Approved,
    /// Do not.
    #[default]
    Rejected,
}

/// An ATT&CK technique.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AttackTechnique {
    /// Technique id (`T1046`, `T1071.004`).
    pub id: String,
    /// Technique name.
    pub name: String,
}

/// Threat Intel's attribution of an escalated case.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ThreatIntelReport {
    /// The case.
    pub case: CaseContext,
    /// Likely actor, when one can be named.
    #[serde(default)]
    pub likely_actor: Option<String>,
    /// Evidence for the attribution.
    #[serde(default)]
    pub evidence: Vec<String>,
    /// ATT&CK techniques observed.
    #[serde(default)]
    pub attack_techniques: Vec<AttackTechnique>,
    /// Indicators examined.
    #[serde(default)]
    pub iocs: Vec<Ioc>,
    /// Suggested change of severity in levels (-1 lowers, +1 raises).
    #[serde(default)]
    pub severity_adjustment: i8,
    /// Who decided and at what cost.
    pub meta: DecisionMeta,
}
