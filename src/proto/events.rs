//! The events of the seed SOC, one struct each, and the [`Event`] union that envelopes carry.
//!
//! Case events embed a [`CaseContext`] so no downstream role has to re-derive ticket, host, user,
//! rule, source or priority. Every role decision carries [`DecisionMeta`] (which reasoner, how
//! long, how many tool calls and tokens) so accuracy and cost are read models over the audit.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
}

impl Event {
    /// Every event kind name, in a fixed order (the index is [`Event::ordinal`]).
    pub const KINDS: [&'static str; 13] = [
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
    ];

    /// Position of this event's kind in [`Event::KINDS`].
    pub fn ordinal(&self) -> usize {
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
}

/// An alert as a source delivers it (one SOAR ticket: repeated detections grouped).
///
/// Every text field is attacker-influenced data: roles quote it, never obey it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Alert {
    /// Ticket id in the source system; the case's correlation id.
    pub ticket_id: String,
    /// Site or tenant the alert came from, when the source knows it.
    #[serde(default)]
    pub site: Option<String>,
    /// Detector family (`wazuh`, `suricata`, `aminer`, ...).
    pub source: String,
    /// Short rule code.
    pub rule_id: String,
    /// The detector's alert title.
    pub rule_name: String,
    /// Host that raised the alert.
    pub host: String,
    /// User involved, when the detector names one.
    #[serde(default)]
    pub user: Option<String>,
    /// Most frequent source IPs of the grouped alerts.
    #[serde(default)]
    pub src_ips: Vec<String>,
    /// First grouped alert, RFC 3339 UTC.
    pub first_seen: String,
    /// Last grouped alert, RFC 3339 UTC.
    pub last_seen: String,
    /// Number of raw alerts grouped into this ticket.
    pub alert_count: u32,
    /// What the detector's vendor says of the rule that fired, when the source carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<VendorMeta>,
}

/// What the detector's vendor says of the rule that fired, as the alert carries it: Wazuh's
/// `rule.id`, `rule.level`, `rule.groups` and `rule.mitre.id`; Suricata EVE's
/// `alert.signature_id`, `alert.severity` (the classtype's priority), `alert.category` and
/// `alert.metadata.signature_severity`; a Sigma rule's `level` and `tags`; ECS `event.severity`;
/// OCSF `severity`. Every field is optional: a source fills what it knows. Vendor-controlled
/// text, so treated as untrusted data like the rest of the alert.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VendorMeta {
    /// The vendor's rule id (Wazuh rule id, signature id, Sigma id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Wazuh rule level, 0 (ignored) to 16 (severe attack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<u8>,
    /// Suricata priority, 1 (high) to 4 (very low).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    /// A named severity: `informational`, `low`, `medium`, `high`, `critical` (Sigma, ECS,
    /// OCSF) or ET's `informational`, `minor`, `major`, `critical`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// The vendor's category: a Suricata classtype, a Wazuh group, an ET category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Wazuh rule groups, Sigma tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// ATT&CK technique ids (`T1190`, `T1548.003`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attack: Vec<String>,
}

/// Case context carried by every case event, so no role re-derives it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CaseContext {
    /// The ticket id (also the envelope's correlation id).
    pub ticket: String,
    /// Envelope id of the `AlertReceived` that opened the case.
    pub alert_ref: String,
    /// Site or tenant.
    #[serde(default)]
    pub site: Option<String>,
    /// Detector family.
    pub source: String,
    /// Rule code.
    pub rule_id: String,
    /// Rule title.
    pub rule_name: String,
    /// Affected host.
    pub host: String,
    /// Affected user, when known.
    #[serde(default)]
    pub user: Option<String>,
    /// Source IPs seen.
    #[serde(default)]
    pub src_ips: Vec<String>,
    /// Raw alerts in the ticket.
    pub alert_count: u32,
    /// First alert, RFC 3339 UTC.
    pub first_seen: String,
    /// Last alert, RFC 3339 UTC.
    pub last_seen: String,
    /// Priority 1 (lowest) to 10 (highest), once triage has assigned one.
    #[serde(default)]
    pub priority: Option<u8>,
}

impl CaseContext {
    /// The context of a case opened by `alert`, received in envelope `alert_ref`.
    pub fn from_alert(alert: &Alert, alert_ref: &str) -> Self {
        Self {
            ticket: alert.ticket_id.clone(),
            alert_ref: alert_ref.to_owned(),
            site: alert.site.clone(),
            source: alert.source.clone(),
            rule_id: alert.rule_id.clone(),
            rule_name: alert.rule_name.clone(),
            host: alert.host.clone(),
            user: alert.user.clone(),
            src_ips: alert.src_ips.clone(),
            alert_count: alert.alert_count,
            first_seen: alert.first_seen.clone(),
            last_seen: alert.last_seen.clone(),
            priority: None,
        }
    }
}

/// Which reasoner made a decision, and what it cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DecisionMeta {
    /// The reasoner that decided.
    pub reasoner: ReasonerKind,
    /// Wall time of the decision, microseconds.
    pub wall_time_us: u64,
    /// Tool calls made while deciding.
    #[serde(default)]
    pub tool_calls: u32,
    /// Prompt tokens spent.
    #[serde(default)]
    pub tokens_in: u32,
    /// Completion tokens spent.
    #[serde(default)]
    pub tokens_out: u32,
    /// Why a human must look at this decision (the model's answer did not validate after a
    /// repair, instructions were found inside alert text); absent when nothing is amiss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs_human_review: Option<String>,
}

/// Kinds of reasoner a role can decide with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReasonerKind {
    /// The deterministic rules reasoner.
    #[default]
    Rules,
    /// The LLM, through the gateway.
    Llm,
}

/// Tier 1 triage verdicts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TriageVerdict {
    /// Real malicious activity.
    TruePositive,
    /// Possibly malicious: worth a second look.
    #[default]
    Suspicious,
    /// Real activity, but expected and harmless.
    Benign,
    /// The detector misfired.
    FalsePositive,
}

/// Tier 2's decision on a case.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Tier2Decision {
    /// Hand to incident response.
    Escalate,
    /// Close the case.
    #[default]
    Close,
    /// The reasoner could not decide (or its output was invalid): a human must look.
    NeedsHumanReview,
}

/// Incident severity, SEV-1 being the worst.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum Severity {
    /// Critical: active compromise with business impact.
    #[serde(rename = "SEV-1")]
    Sev1,
    /// High.
    #[serde(rename = "SEV-2")]
    Sev2,
    /// Medium.
    #[serde(rename = "SEV-3")]
    Sev3,
    /// Low.
    #[default]
    #[serde(rename = "SEV-4")]
    Sev4,
}

/// An alert entered the SOC.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertReceived {
    /// The alert.
    pub alert: Alert,
    /// The source that delivered it (`jsonl:<file name>`, `xsoar`, `http`).
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

/// The calibrated score a decision rests on, and everything it used, recorded with the decision
/// so "why" is read back, never re-derived.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Assessment {
    /// Probability that the site's analysts would escalate the case, 0..=1.
    pub probability: f64,
    /// The escalation threshold of the policy in force: escalate at or above it.
    pub threshold: f64,
    /// How the threshold and weights were set.
    pub policy: String,
    /// What the detector's vendor says of the rule.
    pub vendor: VendorEvidence,
    /// The analysts' dispositions used, most specific first.
    #[serde(default)]
    pub priors: Vec<PriorEvidence>,
    /// Signals observed without labels, each with its share of the log-odds.
    #[serde(default)]
    pub signals: Vec<SignalEvidence>,
    /// Other cases on the same host in the window, with their probabilities.
    #[serde(default)]
    pub correlated: Vec<CorrelatedCase>,
    /// The dispositioned cases most like this one, as known at its time.
    #[serde(default)]
    pub precedents: Vec<Precedent>,
    /// Earlier cases on the same host that this one pulls into its incident.
    #[serde(default)]
    pub linked: Vec<LinkedCase>,
}

/// The vendor knowledge a decision used.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VendorEvidence {
    /// The detector category the priors are kept by (`wazuh:web`, `et:INFO`, ...).
    pub category: String,
    /// The vendor's severity tier (`info`, `low`, `medium`, `high`, `critical`, `unknown`).
    pub tier: String,
    /// Where it came from (the alert's own fields, a ruleset file and rule, a published table).
    pub source: String,
    /// ATT&CK technique ids.
    #[serde(default)]
    pub attack: Vec<String>,
}

/// One prior: the analysts' dispositions of one key, as known at the case's time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PriorEvidence {
    /// The level (`rule@site`, `rule@other-sites`, `category`, `tier`, `host@site`, ...).
    pub level: String,
    /// The key (`S-Dns-Qry3`, `et:INFO`, ...).
    pub key: String,
    /// Escalated dispositions (time-decayed, per-site capped: may be fractional).
    pub escalated: f64,
    /// Closed dispositions.
    pub closed: f64,
    /// The shrunk escalation rate at this level.
    pub rate: f64,
}

/// One signal and what it added to the log-odds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SignalEvidence {
    /// Signal name.
    pub name: String,
    /// Its value.
    pub value: f64,
    /// Its contribution to the log-odds (value x the weight fitted on the history).
    pub contribution: f64,
    /// What it measured.
    pub detail: String,
}

/// A case seen on the same host in the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CorrelatedCase {
    /// Ticket.
    pub ticket: String,
    /// Rule code.
    pub rule_id: String,
    /// Detector family.
    pub source: String,
    /// Its escalation probability.
    pub probability: f64,
}

/// A dispositioned case like this one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Precedent {
    /// Ticket.
    pub ticket: String,
    /// Site.
    pub site: String,
    /// Rule code.
    pub rule_id: String,
    /// Host.
    pub host: String,
    /// What the analysts decided.
    pub disposition: Disposition,
    /// Why it is similar.
    pub similarity: String,
}

/// An earlier case pulled into an escalating case's incident.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LinkedCase {
    /// The linked case.
    pub case: CaseContext,
    /// Its probability, re-assessed with the incident in view.
    pub probability: f64,
}

/// What the analysts decided for a case.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// Handed to incident response.
    Escalate,
    /// Closed as benign or uninteresting.
    #[default]
    Close,
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

/// Kinds of indicator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IocKind {
    /// IPv4 or IPv6 address.
    #[default]
    Ip,
    /// Domain name.
    Domain,
    /// File hash.
    Hash,
    /// URL.
    Url,
    /// CVE id.
    Cve,
    /// Threat actor name.
    Actor,
    /// Detection rule.
    Rule,
    /// Host name.
    Host,
}

/// An indicator of compromise.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Ioc {
    /// What kind of value.
    pub kind: IocKind,
    /// The value, as data.
    pub value: String,
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

/// A time window, milliseconds since the Unix epoch, start inclusive, end exclusive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Window {
    /// Start, inclusive.
    pub start_ms: i64,
    /// End, exclusive.
    pub end_ms: i64,
}

/// A rule that fires often and is closed as benign.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NoisyRule {
    /// Rule code.
    pub rule_id: String,
    /// Rule title.
    pub rule_name: String,
    /// Tickets the rule raised in the window.
    pub fired: u64,
    /// Of those, closed without escalation.
    pub closed: u64,
    /// Hosts it fired on most.
    #[serde(default)]
    pub top_hosts: Vec<String>,
    /// A few example tickets.
    #[serde(default)]
    pub sample_tickets: Vec<String>,
    /// What to change.
    pub recommendation: String,
}

/// Detection Engineer's tuning report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DetectionTuningReport {
    /// Report id: the aligned window boundary, so a rerun is idempotent.
    pub report_id: String,
    /// The window covered.
    pub window: Window,
    /// Noisy rules, noisiest first.
    #[serde(default)]
    pub noisy_rules: Vec<NoisyRule>,
    /// Who decided and at what cost.
    pub meta: DecisionMeta,
}

/// One finding of a hunt.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HuntFinding {
    /// One-line title.
    pub title: String,
    /// What was seen and why it matters.
    pub detail: String,
    /// Tickets involved.
    #[serde(default)]
    pub tickets: Vec<String>,
    /// Entities pivoted on.
    #[serde(default)]
    pub entities: Vec<Ioc>,
}

/// Threat Hunter's sweep report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HuntingReport {
    /// Report id: the aligned window boundary.
    pub report_id: String,
    /// The window covered.
    pub window: Window,
    /// Findings.
    #[serde(default)]
    pub findings: Vec<HuntFinding>,
    /// Who decided and at what cost.
    pub meta: DecisionMeta,
}

/// Cases tied by shared rare infrastructure.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CampaignDetected {
    /// Stable campaign id.
    pub campaign_id: String,
    /// The window clustered.
    pub window: Window,
    /// Tickets in the campaign.
    pub tickets: Vec<String>,
    /// The shared indicators that tie them.
    pub shared_indicators: Vec<Ioc>,
    /// What a human reads.
    pub summary: String,
}

/// SOC Manager's shift summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ShiftSummary {
    /// Report id: the aligned shift boundary.
    pub report_id: String,
    /// The shift covered.
    pub window: Window,
    /// Alerts received.
    pub alerts: u64,
    /// Cases escalated.
    pub escalated: u64,
    /// Cases closed.
    pub closed: u64,
    /// Actions proposed.
    pub actions_proposed: u64,
    /// Actions decided by humans.
    pub actions_decided: u64,
    /// Notable items.
    #[serde(default)]
    pub highlights: Vec<String>,
    /// Who decided and at what cost.
    pub meta: DecisionMeta,
}
