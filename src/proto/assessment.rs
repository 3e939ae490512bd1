//! The assessment a decision records: the calibrated probability and everything behind it
//! (vendor evidence, learned priors, signals, correlated cases, precedents, linked cases);
//! and [`decode_without_evidence`], the decode of a fold that reads only the probability.

use std::cell::Cell;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use super::case::{CaseContext, Disposition};
use super::{CodecError, Envelope};

thread_local! {
    /// Set only inside [`decode_without_evidence`], on the thread decoding.
    static WITHOUT_EVIDENCE: Cell<bool> = const { Cell::new(false) };
}

/// Decodes an envelope as [`super::decode`] does, except that an assessment's evidence lists
/// (priors, signals, correlated cases, precedents, linked cases) are read past and left empty.
/// A fold that keeps no case timelines (a backtest's scratch store) reads none of them, only
/// the probability: a 2,000-ticket dry run's fold decoded its audit in 89 M instructions
/// instead of 96 M, and allocated and freed none of the lists. Everything else is decoded and
/// checked as by [`super::decode`]; the lists are checked to be well-formed MessagePack, not
/// to have their types (an entry with malformed evidence decodes here and not there).
pub fn decode_without_evidence(bytes: &[u8]) -> Result<Envelope, CodecError> {
    /// Puts the flag back as it was, however the decode ends.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            WITHOUT_EVIDENCE.set(self.0);
        }
    }
    let _restore = Restore(WITHOUT_EVIDENCE.replace(true));
    super::decode(bytes)
}

/// An evidence list: decoded, or (inside [`decode_without_evidence`]) checked to be
/// well-formed MessagePack and left empty.
fn evidence<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    if WITHOUT_EVIDENCE.get() {
        serde::de::IgnoredAny::deserialize(deserializer)?;
        Ok(Vec::new())
    } else {
        Vec::deserialize(deserializer)
    }
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
    #[serde(default, deserialize_with = "evidence")]
    pub priors: Vec<PriorEvidence>,
    /// Signals observed without labels, each with its share of the log-odds.
    #[serde(default, deserialize_with = "evidence")]
    pub signals: Vec<SignalEvidence>,
    /// Other cases on the same host in the window, with their probabilities.
    #[serde(default, deserialize_with = "evidence")]
    pub correlated: Vec<CorrelatedCase>,
    /// The dispositioned cases most like this one, as known at its time.
    #[serde(default, deserialize_with = "evidence")]
    pub precedents: Vec<Precedent>,
    /// Earlier cases on the same host that this one pulls into its incident.
    #[serde(default, deserialize_with = "evidence")]
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

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failure should fail loudly"
    )]

    use super::*;
    use crate::proto::{AlertTriaged, Event, decode, encode};

    fn triage_with_evidence() -> Envelope {
        let case = CaseContext {
            ticket: "t-1".into(),
            host: "web-1".into(),
            ..CaseContext::default()
        };
        let assessment = Assessment {
            probability: 0.73,
            threshold: 0.4,
            policy: "fitted".into(),
            vendor: VendorEvidence {
                category: "wazuh:web".into(),
                tier: "high".into(),
                source: "ruleset".into(),
                attack: vec!["T1190".into()],
            },
            priors: vec![PriorEvidence {
                level: "rule@site".into(),
                key: "R1".into(),
                escalated: 2.0,
                closed: 1.0,
                rate: 0.6,
            }],
            signals: vec![SignalEvidence {
                name: "burst".into(),
                value: 3.0,
                contribution: 0.2,
                detail: "3 alerts".into(),
            }],
            correlated: vec![CorrelatedCase {
                ticket: "t-0".into(),
                rule_id: "R0".into(),
                source: "wazuh".into(),
                probability: 0.5,
            }],
            precedents: vec![Precedent {
                ticket: "t-9".into(),
                site: "fox".into(),
                rule_id: "R1".into(),
                host: "web-1".into(),
                disposition: Disposition::Escalate,
                similarity: "same rule and host".into(),
            }],
            linked: vec![LinkedCase {
                case: case.clone(),
                probability: 0.9,
            }],
        };
        Envelope::new_root(
            "sentinel",
            "t-1",
            Event::AlertTriaged(AlertTriaged {
                case,
                rationale: "seen from 203.0.113.7".into(),
                assessment: Some(assessment),
                ..AlertTriaged::default()
            }),
        )
    }

    #[test]
    fn a_decode_without_evidence_is_the_decode_less_the_evidence_lists_only() {
        let envelope = triage_with_evidence();
        let bytes = encode(&envelope).unwrap();
        let slim = decode_without_evidence(&bytes).unwrap();
        let mut expected = envelope.clone();
        let Event::AlertTriaged(triaged) = &mut expected.event else {
            unreachable!("built as a triage")
        };
        let a = triaged.assessment.as_mut().unwrap();
        assert!(!(a.priors.is_empty() || a.signals.is_empty() || a.correlated.is_empty()));
        assert!(!(a.precedents.is_empty() || a.linked.is_empty()));
        (a.priors, a.signals, a.correlated, a.precedents, a.linked) = Default::default();
        assert_eq!(slim, expected);
        // The flag ends with the call: the next decode on this thread is whole again.
        assert_eq!(decode(&bytes).unwrap(), envelope);
        // Bytes cut short inside the evidence fail both ways; nothing is left set.
        let cut = &bytes[..bytes.len() - 20];
        assert!(decode_without_evidence(cut).is_err());
        assert!(decode(cut).is_err());
        assert_eq!(decode(&bytes).unwrap(), envelope);
    }
}
