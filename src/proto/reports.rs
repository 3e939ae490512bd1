//! The calendar roles' reports: detection tuning, hunts, campaigns and shift summaries.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::case::{DecisionMeta, Ioc};

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
