//! The case vocabulary every event shares: the alert and its vendor's metadata, the case
//! context, decision metadata, verdicts, severities, indicators and the analysts' disposition.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
    /// Most frequent destination addresses of the grouped alerts, when the detector sees a
    /// flow (Suricata, ECS `destination.ip`, OCSF `dst_endpoint.ip`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dest_ips: Vec<String>,
    /// Destination ports of the grouped alerts, most frequent first (the service a flow went
    /// to; source ports are ephemeral and stay in the raw record).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dest_ports: Vec<u16>,
    /// The first raw record of the case as its source wrote it (a JSON record or a CSV row),
    /// for the audit; cut at [`Alert::MAX_RAW`] bytes with a marker saying so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// What the detector's vendor says of the rule that fired, when the source carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<VendorMeta>,
}

impl Alert {
    /// The longest raw record kept, bytes.
    pub const MAX_RAW: usize = 8192;
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
    /// Destination addresses of the grouped alerts, when the detector sees a flow: with the
    /// source IPs they give the traffic's direction.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dest_ips: Vec<String>,
    /// What the detector's vendor said of the rule, when the alert carried it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<VendorMeta>,
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
            dest_ips: alert.dest_ips.clone(),
            vendor: alert.vendor.clone(),
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
    /// What the role saw and did while deciding, in order: every model exchange and every
    /// tool invocation, so "why?" is answered from what it saw, never re-derived. Empty for
    /// the rules reasoner (its evidence is the assessment it records).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub record: Vec<Exchange>,
    /// Why the rules decided although the role asks the model (every model endpoint had
    /// been unavailable longer than `[llm] degrade_after_ms`); absent on ordinary decisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
}

/// One model exchange or tool invocation made while deciding.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Exchange {
    /// `model` or `tool`.
    pub kind: String,
    /// When it ended, ms since the epoch.
    pub at_ms: i64,
    /// A model exchange: the messages sent that no earlier exchange of this decision recorded
    /// (the first: the system prompt and the case; a repair: the reason), each as
    /// `role: text`. Tool results sent back are the tool exchanges' outputs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompt: Vec<String>,
    /// A tool invocation: the tool's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tool: String,
    /// A tool invocation: its arguments, as the model wrote them.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub arguments: String,
    /// A tool invocation: `ran`, `failed` or why it was refused.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub outcome: String,
    /// The model's answer (its text, or the tool calls it asked for) or the tool's result,
    /// cut at [`Exchange::MAX_OUTPUT`] bytes.
    pub output: String,
    /// SHA-256 of the whole output, hex: what was cut can be matched against a copy.
    pub output_sha256: String,
    /// Bytes of the whole output.
    pub output_bytes: u64,
    /// A model exchange: the model's reasoning before its answer (a reasoning field or a think
    /// block, never parsed as the answer), cut at [`Exchange::MAX_OUTPUT`] bytes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reasoning: String,
    /// Bytes of the whole reasoning.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reasoning_bytes: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Exchange {
    /// Most bytes of an output kept in the record.
    pub const MAX_OUTPUT: usize = 4096;

    /// `reasoning` as recorded: cut on a character boundary, with its length.
    pub fn with_reasoning(mut self, reasoning: &str) -> Self {
        let mut end = reasoning.len().min(Self::MAX_OUTPUT);
        while !reasoning.is_char_boundary(end) {
            end -= 1;
        }
        self.reasoning = reasoning[..end].to_owned();
        self.reasoning_bytes = reasoning.len() as u64;
        self
    }

    /// `output` as recorded: cut on a character boundary, with its digest and length.
    pub fn with_output(mut self, output: &str) -> Self {
        use sha2::Digest as _;
        let mut end = output.len().min(Self::MAX_OUTPUT);
        while !output.is_char_boundary(end) {
            end -= 1;
        }
        self.output = output[..end].to_owned();
        let digest = sha2::Sha256::digest(output.as_bytes());
        self.output_sha256 = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.output_bytes = output.len() as u64;
        self
    }
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
