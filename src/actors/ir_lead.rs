//! IR Lead: sets severity and plans the response for escalated cases.
//!
//! Consumes `CaseEscalated` on `soc.cases`; publishes an `IRPlan` (on `soc.cases`) and one
//! `ActionProposed` per containment step (on `soc.actions`), addressed to a human approver role
//! (SEV-1/2: the IR Lead On-Call, SEV-3/4: the SOC Shift Lead). Nothing is executed: proposals
//! wait for a signed-in human's decision.
//!
//! The rules reasoner maps priority to severity, proposes isolating the host for SEV-1/2 and
//! blocking the public source IPs involved. The model reasoner scopes the incident with its
//! tools and writes the plan; its containment steps come from a fixed list of actions, each on
//! an entity of the case itself (its host, user or a source IP): a step on anything else makes
//! the answer invalid. An invalid answer, or instructions found in the case's text, leave the
//! rules plan in place, marked `needs_human_review` with the reason.
//!
//! Stateless: a restart loses nothing (the role actor in `role.rs` owns delivery and commits).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;

use super::reasoning::{ReasoningConfig, ReasoningMode};
use super::{Role, RoleEnv, rules_meta};
use crate::approvals::{action_id, approver_for};
use crate::bus::Topic;
use crate::knowledge::Knowledge;
use crate::llm::reason::{Answer, AnswerError, Brief, Scope, case_injection, reason_checked};
use crate::llm::{CallOptions, Llm, LlmError};
use crate::proto::{
    ActionProposed, Alert, CaseContext, CaseEscalated, DecisionMeta, Envelope, Event, IrPlan,
    PlanStep, Severity,
};
use crate::response::{Facts, Networks, Response};
use crate::tools::Toolbox;

/// Most entries in each section of a model's plan.
const MAX_SECTION: usize = 5;
/// The system prompt of the IR Lead's model reasoner.
const PROMPT: &str = "You are the IR Lead of a security operations center. Tier 2 escalated \
this case as an incident. Scope it with your tools (the raw alert archive, earlier cases \
sharing its indicators, the host's other alerts, the EDR when there is one), then decide its \
severity (SEV-1: active compromise with business impact; SEV-2: high; SEV-3: medium; SEV-4: \
low) and plan the response: a short summary citing the evidence; containment steps, each one \
of the case's allowed_containment (the actions its evidence supports: block an outside \
attacker's address, isolate a machine only on evidence of its own compromise; propose fewer \
or none when your scoping shows them unneeded); eradication and recovery steps; who to \
notify. Containment steps are proposals only: a human approver decides each one.";

/// What the IR Lead's model reasoner works with.
pub(crate) const BRIEF: Brief = Brief {
    role: "ir_lead",
    system: PROMPT,
    tools: &[
        "alerts.search",
        "memory.recall",
        "memory.host_activity",
        "falcon.host",
        "falcon.alerts",
    ],
    budget: 15,
    max_tokens: 512,
};

/// Containment actions the IR Lead may propose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ContainmentAction {
    /// Cut a host off the network (target: the case's host).
    IsolateHost,
    /// Block an address at the perimeter (target: one of the case's source IPs).
    BlockIp,
    /// Disable an account (target: the case's user).
    DisableAccount,
}

impl ContainmentAction {
    fn as_str(self) -> &'static str {
        match self {
            Self::IsolateHost => "isolate_host",
            Self::BlockIp => "block_ip",
            Self::DisableAccount => "disable_account",
        }
    }
}

/// One containment step, as the model must give it.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StepAnswer {
    /// The action.
    pub action: ContainmentAction,
    /// Its target: the case's host, user or one of its source IPs.
    pub target: String,
    /// What it does and why.
    pub description: String,
}

/// The IR Lead's plan, as the model must give it.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlanAnswer {
    /// SEV-1 (worst) to SEV-4.
    pub severity: Severity,
    /// What happened and why this severity, citing the evidence.
    pub summary: String,
    /// Containment steps (proposals for a human approver), at most five.
    pub containment: Vec<StepAnswer>,
    /// Eradication steps, at most five.
    pub eradication: Vec<String>,
    /// Recovery steps, at most five.
    pub recovery: Vec<String>,
    /// Who to notify, at most five.
    pub notifications: Vec<String>,
}

impl Answer for PlanAnswer {
    fn check(&self) -> Result<(), AnswerError> {
        if self.summary.trim().is_empty() || self.summary.len() > 4000 {
            return Err("the summary must be 1 to 4000 characters".into());
        }
        for (name, len) in [
            ("containment", self.containment.len()),
            ("eradication", self.eradication.len()),
            ("recovery", self.recovery.len()),
            ("notifications", self.notifications.len()),
        ] {
            if len > MAX_SECTION {
                return Err(AnswerError::Invalid(format!(
                    "{len} {name} entries; at most {MAX_SECTION}"
                )));
            }
        }
        Ok(())
    }
}

/// The policy's step that `step` proposes, if the policy allows it.
fn allowed<'a>(policy: &'a [PlanStep], step: &StepAnswer) -> Option<&'a PlanStep> {
    let target = step.target.trim();
    policy
        .iter()
        .find(|p| p.action == step.action.as_str() && p.target.eq_ignore_ascii_case(target))
}

/// Whether every containment step of `answer` is one the response policy allows for the case
/// (an action on a target the evidence supports): the model may leave steps out, never add.
fn check_targets(answer: &PlanAnswer, policy: &[PlanStep]) -> Result<(), AnswerError> {
    for step in &answer.containment {
        if allowed(policy, step).is_none() {
            let allowed: Vec<String> = policy
                .iter()
                .map(|p| format!("{} {}", p.action, p.target))
                .collect();
            return Err(AnswerError::Invalid(format!(
                "containment step {} on {:?} is not supported by the case's evidence; the \
                 evidence supports: {}",
                step.action.as_str(),
                step.target.trim(),
                if allowed.is_empty() {
                    "no containment".to_owned()
                } else {
                    allowed.join(", ")
                }
            )));
        }
    }
    Ok(())
}

/// IR Lead: the rules reasoner, and the model when the reasoning mode sends it there.
#[derive(Debug)]
pub struct IrLead {
    reasoning: ReasoningConfig,
    knowledge: Arc<Knowledge>,
    tools: Arc<Toolbox>,
    networks: Arc<Networks>,
    proposal_ttl_ms: i64,
}

impl Default for IrLead {
    fn default() -> Self {
        Self::new(&RoleEnv::default())
    }
}

impl Role for IrLead {
    const NAME: &'static str = "ir_lead";
    const INPUT: Topic = Topic::Cases;

    fn new(env: &RoleEnv) -> Self {
        Self {
            reasoning: env.reasoning.clone(),
            knowledge: env.knowledge.clone(),
            tools: env.tools.clone(),
            networks: env.networks.clone(),
            proposal_ttl_ms: env.proposal_ttl_ms,
        }
    }

    type Input = CaseEscalated;

    fn decide(&self, input: &Envelope, escalated: &CaseEscalated) -> Vec<Event> {
        let started = Instant::now();
        let response = respond(
            &escalated.case,
            &self.knowledge,
            &self.tools,
            &self.networks,
        );
        let plan = IrPlan {
            meta: rules_meta(started),
            ..plan(escalated, &response)
        };
        with_proposals(plan, input.at_ms + self.proposal_ttl_ms)
    }

    /// Escalated cases are never low-risk: the model plans them unless reasoning is `rules`.
    fn wants_model(&self, _input: &Envelope, _escalated: &CaseEscalated) -> bool {
        self.reasoning.mode != ReasoningMode::Rules
    }

    fn decide_with_model(
        &self,
        input: Envelope,
        escalated: CaseEscalated,
        llm: Llm,
    ) -> impl Future<Output = Result<Vec<Event>, LlmError>> + Send + 'static {
        let tools = self.tools.clone();
        let ttl = self.proposal_ttl_ms;
        let response = respond(
            &escalated.case,
            &self.knowledge,
            &self.tools,
            &self.networks,
        );
        async move {
            let escalated = &escalated;
            let started = Instant::now();
            let case = &escalated.case;
            let rules = plan(escalated, &response);
            // Instructions in the case's text: the rules plan stands, a human reviews, and the
            // model is not asked to plan from text written to steer it.
            if let Some(why) = case_injection(case, &[("escalation_reason", &escalated.reason)]) {
                return Ok(with_proposals(
                    needs_review(rules, why, rules_meta(started)),
                    input.at_ms + ttl,
                ));
            }
            let data = serde_json::json!({
                "case": case,
                "escalation": {"reason": escalated.reason, "confidence": escalated.confidence},
                "evidence": response.evidence,
                "allowed_containment": response.steps.iter().map(|s| serde_json::json!({
                    "action": s.action, "target": s.target, "evidence": s.evidence,
                })).collect::<Vec<_>>(),
            });
            let options = CallOptions::case(Self::NAME, case.priority);
            let scope = Scope::of(case);
            let check = |a: &PlanAnswer| check_targets(a, &response.steps);
            let reasoned = reason_checked::<PlanAnswer>(
                &llm,
                &BRIEF,
                &data.to_string(),
                &*tools,
                &scope,
                options,
                &check,
            )
            .await?;
            let plan = match reasoned.answer {
                Ok(a) => IrPlan {
                    plan_id: rules.plan_id,
                    case: case.clone(),
                    severity: a.severity,
                    summary: a.summary,
                    containment: a
                        .containment
                        .iter()
                        .enumerate()
                        .map(|(i, step)| PlanStep {
                            step_id: format!("step-{}", i + 1),
                            action: step.action.as_str().to_owned(),
                            target: step.target.trim().to_owned(),
                            description: step.description.clone(),
                            evidence: allowed(&response.steps, step)
                                .map(|s| s.evidence.clone())
                                .unwrap_or_default(),
                        })
                        .collect(),
                    eradication: a.eradication,
                    recovery: a.recovery,
                    notifications: a.notifications,
                    meta: reasoned.meta,
                },
                Err(why) => needs_review(rules, why.to_string(), reasoned.meta),
            };
            Ok(with_proposals(plan, input.at_ms + ttl))
        }
    }
}

/// The rules plan, standing in for one a human must review, with the reason.
fn needs_review(rules: IrPlan, why: String, mut meta: DecisionMeta) -> IrPlan {
    meta.needs_human_review = Some(why.clone());
    IrPlan {
        summary: format!("needs human review: {why}. Rules plan: {}", rules.summary),
        meta,
        ..rules
    }
}

/// The plan, then one proposal per containment step for the approver of its severity, each
/// decidable until `expires_at_ms`.
fn with_proposals(plan: IrPlan, expires_at_ms: i64) -> Vec<Event> {
    let approver = approver_for(plan.severity);
    let proposals: Vec<Event> = plan
        .containment
        .iter()
        .map(|step| {
            Event::ActionProposed(ActionProposed {
                action_id: action_id(&plan.case.ticket, &step.step_id),
                case: plan.case.clone(),
                plan_id: plan.plan_id.clone(),
                step: step.clone(),
                severity: plan.severity,
                approver_role: approver.to_owned(),
                expires_at_ms,
            })
        })
        .collect();
    let mut events = Vec::with_capacity(1 + proposals.len());
    events.push(Event::IrPlan(plan));
    events.extend(proposals);
    events
}

/// What the response policy supports for the case: its vendor's view of the rule, with the
/// ATT&CK tactics of the rule's techniques when the bundle is loaded.
fn respond(
    case: &CaseContext,
    knowledge: &Knowledge,
    tools: &Toolbox,
    networks: &Networks,
) -> Response {
    let alert = Alert {
        ticket_id: case.ticket.clone(),
        source: case.source.clone(),
        rule_id: case.rule_id.clone(),
        rule_name: case.rule_name.clone(),
        host: case.host.clone(),
        vendor: case.vendor.clone(),
        ..Alert::default()
    };
    let vendor = knowledge.vendor().view(&alert);
    let tactics = vendor
        .attack
        .iter()
        .map(|id| {
            let tactics = tools
                .attack()
                .and_then(|a| a.technique(id))
                .map(|t| t.tactics.clone())
                .unwrap_or_default();
            (id.clone(), tactics)
        })
        .collect();
    crate::response::respond(
        &Facts {
            case,
            vendor: &vendor,
            tactics,
        },
        networks,
    )
}

fn plan(escalated: &CaseEscalated, response: &Response) -> IrPlan {
    let case = &escalated.case;
    let severity = response.severity;
    IrPlan {
        plan_id: format!("{}/plan", case.ticket),
        case: case.clone(),
        severity,
        // The escalation's reason is on the case already: the summary says what is new.
        summary: format!(
            "{} incident on {} ({}). Evidence: {}",
            severity_text(severity),
            case.host,
            case.rule_name,
            response.evidence.join("; ")
        ),
        containment: response.steps.clone(),
        eradication: vec![format!(
            "identify and remove what triggered {} on {}",
            case.rule_id, case.host
        )],
        recovery: vec![format!(
            "restore {} from a known-good state if it was changed",
            case.host
        )],
        notifications: match severity {
            Severity::Sev1 | Severity::Sev2 => vec!["IR Lead On-Call".into(), "CISO".into()],
            Severity::Sev3 | Severity::Sev4 => vec!["SOC Shift Lead".into()],
        },
        meta: Default::default(),
    }
}

fn severity_text(severity: Severity) -> &'static str {
    match severity {
        Severity::Sev1 => "SEV-1",
        Severity::Sev2 => "SEV-2",
        Severity::Sev3 => "SEV-3",
        Severity::Sev4 => "SEV-4",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approvals::{APPROVER_HIGH, APPROVER_LOW};
    use crate::judgment::vendor::Vendor;
    use crate::proto::{CaseContext, VendorMeta};

    fn decide(lead: &IrLead, case: CaseContext) -> Vec<Event> {
        let input = Envelope::new_root(
            "tier2",
            "t-9",
            Event::CaseEscalated(CaseEscalated {
                case: CaseContext {
                    ticket: "t-9".into(),
                    host: "mail".into(),
                    priority: Some(10),
                    ..case
                },
                reason: "scanner".into(),
                confidence: 0.8,
                linked: Vec::new(),
            }),
        );
        lead.decide_envelope(&input)
    }

    /// An IR Lead that knows Suricata's classtypes, as `[rulesets]` loads them.
    fn with_classtypes() -> IrLead {
        let mut vendor = Vendor::default();
        vendor.add_classification(
            "config classification: trojan-activity,A Network Trojan was detected, 1\n\
             config classification: attempted-recon,Attempted Information Leak,2\n",
        );
        IrLead::new(&RoleEnv {
            knowledge: Arc::new(Knowledge::new(Arc::new(vendor), Default::default())),
            ..RoleEnv::default()
        })
    }

    fn targets(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::ActionProposed(p) => Some(format!("{} {}", p.step.action, p.step.target)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn without_evidence_of_compromise_the_host_stays_and_outside_sources_are_blocked() {
        let case = CaseContext {
            src_ips: vec![
                "10.0.0.5".into(),
                "203.0.113.9".into(),
                "8.8.8.8".into(),
                "100.64.1.1".into(),
            ],
            ..CaseContext::default()
        };
        let events = decide(&IrLead::default(), case);
        let Event::IrPlan(plan) = &events[0] else {
            panic!("plan first")
        };
        // Priority 10 no longer makes a SEV-1: no vendor source describes the rule.
        assert_eq!(plan.severity, Severity::Sev3);
        assert!(
            plan.summary.contains("no vendor source describes"),
            "{}",
            plan.summary
        );
        assert_eq!(
            targets(&events),
            ["block_ip 203.0.113.9", "block_ip 8.8.8.8"]
        );
        assert!(events[1..].iter().all(|e| matches!(e,
            Event::ActionProposed(p) if p.approver_role == APPROVER_LOW
                && p.action_id.starts_with("t-9/") && !p.step.evidence.is_empty())));
    }

    #[test]
    fn an_eve_category_naming_a_compromise_isolates_our_end_and_goes_to_the_on_call() {
        let lead = with_classtypes();
        let case = CaseContext {
            src_ips: vec!["10.0.0.5".into()],
            dest_ips: vec!["198.51.100.80".into()],
            vendor: Some(VendorMeta {
                priority: Some(1),
                category: Some("A Network Trojan was detected".into()),
                ..VendorMeta::default()
            }),
            ..CaseContext::default()
        };
        let events = decide(&lead, case);
        assert!(matches!(&events[0], Event::IrPlan(p) if p.severity == Severity::Sev2));
        assert_eq!(
            targets(&events),
            ["isolate_host 10.0.0.5", "block_ip 198.51.100.80"]
        );
        assert!(matches!(&events[1], Event::ActionProposed(p) if p.approver_role == APPROVER_HIGH));
        let scan = CaseContext {
            src_ips: vec!["198.51.100.80".into()],
            vendor: Some(VendorMeta {
                priority: Some(2),
                category: Some("attempted-recon".into()),
                ..VendorMeta::default()
            }),
            ..CaseContext::default()
        };
        assert_eq!(targets(&decide(&lead, scan)), ["block_ip 198.51.100.80"]);
    }

    #[test]
    fn a_model_plan_may_only_contain_steps_the_evidence_supports() {
        let policy = vec![
            PlanStep {
                step_id: "block-ip-1".into(),
                action: "block_ip".into(),
                target: "203.0.113.9".into(),
                description: "d".into(),
                evidence: vec!["e".into()],
            },
            PlanStep {
                step_id: "isolate-host-1".into(),
                action: "isolate_host".into(),
                target: "mail".into(),
                description: "d".into(),
                evidence: vec!["e".into()],
            },
        ];
        let answer = |action, target: &str| PlanAnswer {
            severity: Severity::Sev2,
            summary: "s".into(),
            containment: vec![StepAnswer {
                action,
                target: target.into(),
                description: "d".into(),
            }],
            eradication: vec![],
            recovery: vec![],
            notifications: vec![],
        };
        use ContainmentAction::*;
        assert!(check_targets(&answer(IsolateHost, "MAIL"), &policy).is_ok());
        assert!(check_targets(&answer(BlockIp, "203.0.113.9"), &policy).is_ok());
        let e = check_targets(&answer(DisableAccount, "alice"), &policy)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not supported by the case's evidence"), "{e}");
        assert!(e.contains("block_ip 203.0.113.9, isolate_host mail"), "{e}");
        assert!(check_targets(&answer(IsolateHost, "dc-1"), &policy).is_err());
        assert!(check_targets(&answer(BlockIp, "8.8.8.8"), &[]).is_err());
        let mut long = answer(IsolateHost, "mail");
        long.notifications = vec!["x".into(); 6];
        assert!(long.check().unwrap_err().to_string().contains("at most 5"));
    }
}
