//! Tier 2: investigates triaged alerts that matter and decides whether to escalate.
//!
//! Consumes `AlertTriaged` on `soc.triage`. Engages on true-positive verdicts or priority >= 7;
//! other alerts end at triage (acked, nothing published). When engaged it publishes a
//! `Tier2Analysis` and, when it escalates, a `CaseEscalated` for the IR Lead, both on
//! `soc.cases`.
//!
//! A triage that needs human review (its model answer did not validate, or alert text held
//! instructions) is always engaged and ends as `needs_human_review`, never escalated on its
//! own. Otherwise the rules reasoner follows the escalation policy: it escalates when the
//! triage's calibrated probability reaches the policy's threshold (with the earlier cases of the
//! host that triage linked into the incident), and closes the rest with the reason. A triage
//! without an assessment (a model that gave none) escalates confident true positives and
//! anything of priority >= 8. Its similar incidents are the cases on the same host in the hour
//! before (from the runtime's [`Knowledge`], as triage recorded them), likeliest first.
//!
//! No state of its own: a restart loses nothing (the role actor in `role.rs` owns delivery
//! and commits).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;

use super::reasoning::{ReasoningConfig, ReasoningMode};
use super::{Role, RoleEnv, rules_meta};
use crate::bus::Topic;
use crate::knowledge::Knowledge;
use crate::llm::reason::{Answer, AnswerError, Brief, Scope, case_injection, reason};
use crate::llm::{CallOptions, Llm, LlmError};
use crate::proto::DecisionMeta;
use crate::proto::{
    AlertTriaged, CaseEscalated, Envelope, Event, Tier2Analysis, Tier2Decision, TriageVerdict,
};
use crate::tools::Toolbox;

/// Priority from which Tier 2 engages regardless of verdict.
const ENGAGE_PRIORITY: u8 = 7;
/// Priority from which Tier 2 escalates regardless of verdict.
const ESCALATE_PRIORITY: u8 = 8;
/// Triage confidence from which a true positive is escalated.
const ESCALATE_CONFIDENCE: f32 = 0.7;

/// Similar incidents listed at most.
const SIMILAR_MAX: usize = 10;

/// The system prompt of Tier 2's model reasoner.
const PROMPT: &str = "You are the Tier 2 analyst of a security operations center. Triage has \
flagged a case as worth a closer look. Investigate it with your tools (the host's other alerts \
in the hour before, how analysts disposed of this rule's past tickets, earlier cases sharing \
its indicators, the raw alert archive, the site's indicator lists, the EDR when there is one) \
and decide: escalate \
(an attack or compromise that needs incident response), close (benign or a detector \
misfire), or needs_human_review (you cannot tell). Give your refined verdict, a confidence \
from 0 to 1, a summary citing the evidence, and up to five next steps.";

/// What Tier 2's model reasoner works with.
pub(crate) const BRIEF: Brief = Brief {
    role: "tier2",
    system: PROMPT,
    tools: &[
        "memory.host_activity",
        "memory.rule_history",
        "memory.recall",
        "alerts.search",
        "ioc.lookup",
        "falcon.alerts",
        "falcon.host",
        "falcon.process",
    ],
    budget: 30,
    max_tokens: 384,
};

/// Tier 2's answer, as the model must give it.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Tier2Answer {
    /// Escalate, close, or needs_human_review.
    pub decision: Tier2Decision,
    /// The refined verdict.
    pub verdict: TriageVerdict,
    /// Confidence, 0 to 1.
    pub confidence: f32,
    /// What was found, citing the evidence.
    pub summary: String,
    /// Up to five next steps.
    pub next_steps: Vec<String>,
}

impl Answer for Tier2Answer {
    fn check(&self) -> Result<(), AnswerError> {
        if !(0.0..=1.0).contains(&self.confidence) {
            return Err(AnswerError::Invalid(format!(
                "confidence {} is not between 0 and 1",
                self.confidence
            )));
        }
        if self.summary.trim().is_empty() || self.summary.len() > 4000 {
            return Err("the summary must be 1 to 4000 characters".into());
        }
        if self.next_steps.len() > 5 {
            return Err(AnswerError::Invalid(format!(
                "{} next steps; at most 5",
                self.next_steps.len()
            )));
        }
        Ok(())
    }
}

/// Tier 2: the rules reasoner, and the model when the reasoning mode sends it there.
#[derive(Debug, Default)]
pub struct Tier2 {
    knowledge: Arc<Knowledge>,
    reasoning: ReasoningConfig,
    tools: Arc<Toolbox>,
}

impl Role for Tier2 {
    const NAME: &'static str = "tier2";
    const INPUT: Topic = Topic::Triage;
    type Input = AlertTriaged;

    fn new(env: &RoleEnv) -> Self {
        Self {
            knowledge: env.knowledge.clone(),
            reasoning: env.reasoning.clone(),
            tools: env.tools.clone(),
        }
    }

    fn wants_model(&self, _input: &Envelope, triaged: &AlertTriaged) -> bool {
        // A case for a human stays with the human; one Tier 2 would not engage ends here.
        self.reasoning.mode != ReasoningMode::Rules
            && triaged.meta.needs_human_review.is_none()
            && engages(triaged)
    }

    fn decide_with_model(
        &self,
        _input: Envelope,
        triaged: AlertTriaged,
        llm: Llm,
    ) -> impl Future<Output = Result<Vec<Event>, LlmError>> + Send + 'static {
        let knowledge = self.knowledge.clone();
        let tools = self.tools.clone();
        let precedent = self.reasoning.precedent;
        async move {
            let triaged = &triaged;
            let case = &triaged.case;
            let flagged = case_injection(case, &[("triage_rationale", &triaged.rationale)]);
            let mut data = serde_json::json!({
                "case": case,
                "triage": {"verdict": triaged.verdict, "confidence": triaged.confidence,
                           "priority": triaged.priority, "rationale": triaged.rationale},
            });
            if precedent && let Some(a) = &triaged.assessment {
                // The cases like this one the analysts already decided, quoted as data.
                data["precedent"] = serde_json::json!({
                    "similar_cases_already_decided": a.precedents,
                    "calibrated_probability_of_escalation": a.probability,
                    "escalation_threshold": a.threshold,
                });
            }
            let options = CallOptions::case(Self::NAME, Some(triaged.priority));
            let scope = Scope::of(case);
            let reasoned =
                reason::<Tier2Answer>(&llm, &BRIEF, &data.to_string(), &*tools, &scope, options)
                    .await?;
            let similar = similar(&knowledge, triaged);
            let mut meta = reasoned.meta;
            let mut analysis = match reasoned.answer {
                Ok(a) => {
                    if a.decision == Tier2Decision::NeedsHumanReview {
                        // The model's own call: the reason is its summary.
                        meta.needs_human_review =
                            Some(format!("the model asked for a human: {}", a.summary));
                    }
                    Tier2Analysis {
                        case: case.clone(),
                        triage_verdict: triaged.verdict,
                        verdict: a.verdict,
                        decision: a.decision,
                        confidence: a.confidence,
                        summary: a.summary,
                        similar_incidents: similar,
                        next_steps: a.next_steps,
                        meta: DecisionMeta::default(),
                    }
                }
                Err(why) => {
                    let why = why.to_string();
                    meta.needs_human_review = Some(why.clone());
                    Tier2Analysis {
                        case: case.clone(),
                        triage_verdict: triaged.verdict,
                        verdict: triaged.verdict,
                        decision: Tier2Decision::NeedsHumanReview,
                        confidence: 0.0,
                        summary: format!("needs human review: {why}"),
                        similar_incidents: similar,
                        next_steps: vec![format!("an analyst reviews {}", case.ticket)],
                        meta: DecisionMeta::default(),
                    }
                }
            };
            if let Some(why) = flagged {
                analysis.summary = format!("{} [flagged: {why}]", analysis.summary);
                analysis.decision = Tier2Decision::NeedsHumanReview;
                meta.needs_human_review = Some(why);
            }
            analysis.meta = meta;
            let escalate = analysis.decision == Tier2Decision::Escalate;
            let mut events = Vec::with_capacity(2);
            if escalate {
                events.push(Event::CaseEscalated(CaseEscalated {
                    case: case.clone(),
                    reason: analysis.summary.clone(),
                    confidence: analysis.confidence,
                    linked: Vec::new(),
                }));
            }
            events.insert(0, Event::Tier2Analysis(analysis));
            Ok(events)
        }
    }

    fn decide(&self, _input: &Envelope, triaged: &AlertTriaged) -> Vec<Event> {
        let started = Instant::now();
        if let Some(why) = &triaged.meta.needs_human_review {
            // Triage could not be trusted: a person decides, nothing escalates on its own.
            return vec![Event::Tier2Analysis(Tier2Analysis {
                case: triaged.case.clone(),
                triage_verdict: triaged.verdict,
                verdict: triaged.verdict,
                decision: Tier2Decision::NeedsHumanReview,
                confidence: 0.0,
                summary: format!("triage needs human review: {why}"),
                similar_incidents: similar(&self.knowledge, triaged),
                next_steps: vec![format!(
                    "an analyst reviews {} on {} and decides",
                    triaged.case.ticket, triaged.case.host
                )],
                meta: rules_meta(started),
            })];
        }
        if !engages(triaged) {
            return Vec::new();
        }
        let escalate = match &triaged.assessment {
            Some(a) => a.probability >= a.threshold,
            None => {
                (triaged.verdict == TriageVerdict::TruePositive
                    && triaged.confidence >= ESCALATE_CONFIDENCE)
                    || triaged.priority >= ESCALATE_PRIORITY
            }
        };
        let linked = triaged
            .assessment
            .as_ref()
            .filter(|_| escalate)
            .map(|a| a.linked.clone())
            .unwrap_or_default();
        let (decision, summary, next_steps) = if escalate {
            let mut summary = format!(
                "{} on {} at priority {}: {}",
                verdict_text(triaged.verdict),
                triaged.case.host,
                triaged.priority,
                triaged.rationale
            );
            if !linked.is_empty() {
                let tickets: Vec<&str> = linked.iter().map(|l| l.case.ticket.as_str()).collect();
                summary.push_str(&format!(
                    ". Escalated as one incident with {}",
                    tickets.join(", ")
                ));
            }
            (
                Tier2Decision::Escalate,
                summary,
                vec![
                    format!(
                        "scope activity of {} around {}",
                        triaged.case.host, triaged.case.first_seen
                    ),
                    "hand to IR Lead for a containment plan".to_owned(),
                ],
            )
        } else {
            (
                Tier2Decision::Close,
                match &triaged.assessment {
                    Some(a) => format!(
                        "below the escalation threshold: p(escalate) {:.3} < {:.2} ({} at \
                         priority {})",
                        a.probability,
                        a.threshold,
                        verdict_text(triaged.verdict),
                        triaged.priority
                    ),
                    None => format!(
                        "not enough evidence to escalate: {} at priority {}",
                        verdict_text(triaged.verdict),
                        triaged.priority
                    ),
                },
                vec!["close; reopen if the rule fires again on this host".to_owned()],
            )
        };
        let confidence = match &triaged.assessment {
            Some(a) if escalate => a.probability as f32,
            Some(a) => 1.0 - a.probability as f32,
            None if escalate => triaged.confidence.max(0.7),
            None => 0.6,
        };
        let analysis = Tier2Analysis {
            case: triaged.case.clone(),
            triage_verdict: triaged.verdict,
            verdict: triaged.verdict,
            decision,
            confidence,
            summary: summary.clone(),
            similar_incidents: similar(&self.knowledge, triaged),
            next_steps,
            meta: rules_meta(started),
        };
        let mut events = vec![Event::Tier2Analysis(analysis)];
        if escalate {
            events.push(Event::CaseEscalated(CaseEscalated {
                case: triaged.case.clone(),
                reason: summary,
                confidence,
                linked,
            }));
        }
        events
    }
}

/// The alerts that scored on the same host in the hour before this one, latest first.
fn similar(knowledge: &Knowledge, triaged: &AlertTriaged) -> Vec<String> {
    let case = &triaged.case;
    let at_ms = chrono::DateTime::parse_from_rfc3339(&case.first_seen)
        .map(|t| t.timestamp_millis())
        .unwrap_or(0);
    let site = case.site.as_deref().unwrap_or("");
    let mut recent = knowledge.recent(site, &case.host, at_ms, &case.ticket);
    // Likeliest first; the latest first among equals.
    recent.reverse();
    recent.sort_by(|a, b| b.score.total_cmp(&a.score));
    recent
        .into_iter()
        .filter(|r| r.score > 0.0)
        .take(SIMILAR_MAX)
        .map(|r| r.ticket)
        .collect()
}

fn engages(triaged: &AlertTriaged) -> bool {
    triaged.verdict == TriageVerdict::TruePositive || triaged.priority >= ENGAGE_PRIORITY
}

fn verdict_text(verdict: TriageVerdict) -> &'static str {
    match verdict {
        TriageVerdict::TruePositive => "true positive",
        TriageVerdict::Suspicious => "suspicious activity",
        TriageVerdict::Benign => "benign activity",
        TriageVerdict::FalsePositive => "false positive",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::CaseContext;

    fn decide(verdict: TriageVerdict, confidence: f32, priority: u8) -> Vec<Event> {
        let input = Envelope::new_root(
            "sentinel",
            "t-1",
            Event::AlertTriaged(AlertTriaged {
                case: CaseContext {
                    ticket: "t-1".into(),
                    host: "web-1".into(),
                    ..CaseContext::default()
                },
                verdict,
                confidence,
                priority,
                ..AlertTriaged::default()
            }),
        );
        Tier2::default().decide_envelope(&input)
    }

    #[test]
    fn low_priority_non_true_positives_end_at_triage() {
        assert!(decide(TriageVerdict::Benign, 0.9, 3).is_empty());
        assert!(decide(TriageVerdict::Suspicious, 0.9, 6).is_empty());
    }

    #[test]
    fn confident_true_positives_escalate_with_analysis_first() {
        let events = decide(TriageVerdict::TruePositive, 0.8, 6);
        assert_eq!(events.len(), 2);
        assert!(
            matches!(&events[0], Event::Tier2Analysis(a) if a.decision == Tier2Decision::Escalate)
        );
        assert!(matches!(&events[1], Event::CaseEscalated(e) if e.case.host == "web-1"));
    }

    #[test]
    fn a_triage_that_needs_review_goes_to_a_human_and_does_not_escalate() {
        let input = Envelope::new_root(
            "sentinel",
            "t-1",
            Event::AlertTriaged(AlertTriaged {
                verdict: TriageVerdict::TruePositive,
                confidence: 0.9,
                priority: 9,
                meta: crate::proto::DecisionMeta {
                    needs_human_review: Some("instructions found inside alert text".into()),
                    ..Default::default()
                },
                ..AlertTriaged::default()
            }),
        );
        let events = Tier2::default().decide_envelope(&input);
        assert_eq!(events.len(), 1);
        assert!(matches!(&events[0], Event::Tier2Analysis(a)
            if a.decision == Tier2Decision::NeedsHumanReview && a.summary.contains("instructions")));
    }

    #[test]
    fn the_assessment_decides_and_carries_the_linked_cases() {
        let assessed = |p: f64| {
            let input = Envelope::new_root(
                "sentinel",
                "t-1",
                Event::AlertTriaged(AlertTriaged {
                    case: CaseContext {
                        ticket: "t-1".into(),
                        host: "web-1".into(),
                        ..CaseContext::default()
                    },
                    verdict: TriageVerdict::TruePositive,
                    confidence: p as f32,
                    priority: 8,
                    assessment: Some(crate::proto::Assessment {
                        probability: p,
                        threshold: 0.6,
                        linked: vec![crate::proto::LinkedCase {
                            case: CaseContext {
                                ticket: "t-0".into(),
                                ..CaseContext::default()
                            },
                            probability: 0.7,
                        }],
                        ..crate::proto::Assessment::default()
                    }),
                    ..AlertTriaged::default()
                }),
            );
            Tier2::default().decide_envelope(&input)
        };
        let events = assessed(0.8);
        assert!(
            matches!(&events[1], Event::CaseEscalated(e) if e.linked.len() == 1 && e.confidence > 0.79)
        );
        let events = assessed(0.5);
        assert_eq!(
            events.len(),
            1,
            "below the threshold: closed whatever the verdict"
        );
        assert!(
            matches!(&events[0], Event::Tier2Analysis(a) if a.decision == Tier2Decision::Close
                && a.summary.contains("below the escalation threshold"))
        );
    }

    #[test]
    fn engaged_but_weak_cases_are_closed_with_an_analysis() {
        let events = decide(TriageVerdict::Suspicious, 0.6, 7);
        assert_eq!(events.len(), 1);
        assert!(
            matches!(&events[0], Event::Tier2Analysis(a) if a.decision == Tier2Decision::Close)
        );
    }
}
