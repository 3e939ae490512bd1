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
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;

use super::reasoning::{ReasoningConfig, ReasoningMode};
use super::{Role, RoleEnv, rules_meta};
use crate::approvals::{action_id, approver_for};
use crate::bus::Topic;
use crate::llm::reason::{Answer, AnswerError, Brief, Scope, case_injection, reason_checked};
use crate::llm::{CallOptions, Llm, LlmError};
use crate::proto::{
    ActionProposed, CaseContext, CaseEscalated, DecisionMeta, Envelope, Event, IrPlan, PlanStep,
    Severity,
};
use crate::tools::Toolbox;

/// Most IPs proposed for blocking in one plan.
const MAX_BLOCKED_IPS: usize = 3;
/// Most entries in each section of a model's plan.
const MAX_SECTION: usize = 5;
/// The system prompt of the IR Lead's model reasoner.
const PROMPT: &str = "You are the IR Lead of a security operations center. Tier 2 escalated \
this case as an incident. Scope it with your tools (the raw alert archive, earlier cases \
sharing its indicators, the host's other alerts, the EDR when there is one), then decide its \
severity (SEV-1: active compromise with business impact; SEV-2: high; SEV-3: medium; SEV-4: \
low) and plan the response: a short summary citing the evidence; containment steps, each an \
action from the allowed list on a target taken from the case (its host, its user or one of \
its source IPs); eradication and recovery steps; who to notify. Containment steps are \
proposals only: a human approver decides each one.";

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

/// Whether every containment step of `answer` targets an entity of `case` fit for its action.
fn check_targets(answer: &PlanAnswer, case: &CaseContext) -> Result<(), AnswerError> {
    for step in &answer.containment {
        let target = step.target.trim();
        let fits = match step.action {
            ContainmentAction::IsolateHost => {
                !case.host.is_empty() && target.eq_ignore_ascii_case(&case.host)
            }
            ContainmentAction::BlockIp => case.src_ips.iter().any(|ip| ip == target),
            ContainmentAction::DisableAccount => case.user.as_deref() == Some(target),
        };
        if !fits {
            return Err(AnswerError::Invalid(format!(
                "containment step {} on {target:?}: the target must be the case's own {}",
                step.action.as_str(),
                match step.action {
                    ContainmentAction::IsolateHost => "host",
                    ContainmentAction::BlockIp => "source IP",
                    ContainmentAction::DisableAccount => "user",
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
    tools: Arc<Toolbox>,
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
            tools: env.tools.clone(),
            proposal_ttl_ms: env.proposal_ttl_ms,
        }
    }

    type Input = CaseEscalated;

    fn decide(&self, input: &Envelope, escalated: &CaseEscalated) -> Vec<Event> {
        let started = Instant::now();
        let plan = IrPlan {
            meta: rules_meta(started),
            ..plan(escalated)
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
        async move {
            let escalated = &escalated;
            let started = Instant::now();
            let case = &escalated.case;
            let rules = plan(escalated);
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
                "allowed_targets": {"host": case.host, "user": case.user, "source_ips": case.src_ips},
            });
            let options = CallOptions::case(Self::NAME, case.priority);
            let scope = Scope::of(case);
            let check = |a: &PlanAnswer| check_targets(a, case);
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

fn plan(escalated: &CaseEscalated) -> IrPlan {
    let case = &escalated.case;
    let priority = case.priority.unwrap_or(5);
    let severity = match priority {
        9.. => Severity::Sev1,
        7..=8 => Severity::Sev2,
        5..=6 => Severity::Sev3,
        _ => Severity::Sev4,
    };
    let mut containment = Vec::new();
    if severity <= Severity::Sev2 && !case.host.is_empty() {
        containment.push(PlanStep {
            step_id: "contain-host".into(),
            action: "isolate_host".into(),
            target: case.host.clone(),
            description: format!("isolate host {} from the network", case.host),
        });
    }
    for (i, ip) in case
        .src_ips
        .iter()
        .filter(|ip| is_public(ip))
        .take(MAX_BLOCKED_IPS)
        .enumerate()
    {
        containment.push(PlanStep {
            step_id: format!("block-ip-{}", i + 1),
            action: "block_ip".into(),
            target: ip.clone(),
            description: format!("block traffic from {ip} at the perimeter"),
        });
    }
    IrPlan {
        plan_id: format!("{}/plan", case.ticket),
        case: case.clone(),
        severity,
        summary: format!(
            "{} incident on {} ({}): {}",
            severity_text(severity),
            case.host,
            case.rule_name,
            escalated.reason
        ),
        containment,
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

fn is_public(ip: &str) -> bool {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => {
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64))
        }
        Ok(IpAddr::V6(v6)) => {
            !(v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80)
        }
        Err(_) => false,
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
    use crate::proto::CaseContext;

    fn decide(priority: u8, src_ips: &[&str]) -> Vec<Event> {
        let input = Envelope::new_root(
            "tier2",
            "t-9",
            Event::CaseEscalated(CaseEscalated {
                case: CaseContext {
                    ticket: "t-9".into(),
                    host: "mail".into(),
                    priority: Some(priority),
                    src_ips: src_ips.iter().map(|s| (*s).to_owned()).collect(),
                    ..CaseContext::default()
                },
                reason: "scanner".into(),
                confidence: 0.8,
                linked: Vec::new(),
            }),
        );
        IrLead::default().decide_envelope(&input)
    }

    #[test]
    fn high_priority_cases_isolate_the_host_and_block_public_ips_only() {
        let events = decide(10, &["10.0.0.5", "203.0.113.9", "8.8.8.8", "100.64.1.1"]);
        let Event::IrPlan(plan) = &events[0] else {
            panic!("plan first")
        };
        assert_eq!(plan.severity, Severity::Sev1);
        let targets: Vec<&str> = plan.containment.iter().map(|s| s.target.as_str()).collect();
        assert_eq!(targets, ["mail", "8.8.8.8"]);
        assert_eq!(events.len(), 3);
        assert!(events[1..].iter().all(|e| matches!(e,
            Event::ActionProposed(p) if p.approver_role == APPROVER_HIGH && p.action_id.starts_with("t-9/"))));
    }

    #[test]
    fn low_severity_cases_go_to_the_shift_lead() {
        let events = decide(5, &["8.8.4.4"]);
        assert!(matches!(&events[0], Event::IrPlan(p) if p.severity == Severity::Sev3));
        assert!(matches!(&events[1], Event::ActionProposed(p) if p.approver_role == APPROVER_LOW));
    }

    #[test]
    fn a_model_plan_may_only_contain_the_cases_own_entities() {
        let case = CaseContext {
            host: "mail".into(),
            user: Some("alice".into()),
            src_ips: vec!["203.0.113.9".into()],
            ..CaseContext::default()
        };
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
        assert!(check_targets(&answer(IsolateHost, "MAIL"), &case).is_ok());
        assert!(check_targets(&answer(BlockIp, "203.0.113.9"), &case).is_ok());
        assert!(check_targets(&answer(DisableAccount, "alice"), &case).is_ok());
        let e = check_targets(&answer(IsolateHost, "dc-1"), &case)
            .unwrap_err()
            .to_string();
        assert!(e.contains("the case's own host"), "{e}");
        assert!(check_targets(&answer(BlockIp, "8.8.8.8"), &case).is_err());
        assert!(check_targets(&answer(DisableAccount, "root"), &case).is_err());
        let mut long = answer(IsolateHost, "mail");
        long.notifications = vec!["x".into(); 6];
        assert!(long.check().unwrap_err().to_string().contains("at most 5"));
    }
}
