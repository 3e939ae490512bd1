//! The assessment a decision records: the calibrated probability and everything behind it
//! (vendor evidence, learned priors, signals, correlated cases, precedents, linked cases).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::case::{CaseContext, Disposition};

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
