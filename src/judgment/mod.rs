//! Judgment: the probability that a site's analysts would escalate a case, and the evidence it
//! rests on.
//!
//! Where its knowledge comes from, and nowhere else (docs/judgment.md has the provenance):
//! - **built in**: what the detector vendors published ([`vendor`]: Wazuh levels and groups,
//!   Suricata classtypes and priorities, Emerging Threats categories and severities, Sigma/ECS/
//!   OCSF severities, ATT&CK technique ids), read from the user's rulesets or carried by the
//!   alert; it only sets the cold-start prior of a tier and groups rules into categories;
//! - **learned** from the dispositions a run is given (`priors`): hierarchical priors (rule,
//!   detector category and vendor tier over other sites; rule, category and host on the case's
//!   own site, decaying with alert time), each shrunk towards its parent;
//! - **observed without labels** on the site (`model`): rule novelty, volume against the
//!   rule's baseline, detector and ATT&CK convergence on a host, and the host's incident state;
//! - **fitted by code** from the history (`fit`): every shrinkage strength, signal weight and
//!   the threshold, inside each leave-one-site-out fold when a backtest asks for one.
//!
//! The escalation policy: escalate when the probability reaches the threshold that maximizes
//! F-beta (beta = `[reasoning] recall_weight`, 2 by default: a missed attack costs a SOC more
//! than a second look at a false alarm) on the history's own replays; with no history to fit
//! on, high and critical vendor severities escalate. `calibration` reports how well the
//! probabilities match the analysts' answers.

pub(crate) mod calibration;
pub(crate) mod fit;
pub(crate) mod model;
pub(crate) mod priors;
mod scan;
pub mod vendor;
