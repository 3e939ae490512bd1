//! IR Lead: sets severity and plans the response for escalated cases.
//!
//! Consumes `CaseEscalated` on `soc.cases`; publishes an `IRPlan` (on `soc.cases`) and one
//! `ActionProposed` per containment step (on `soc.actions`), addressed to a human approver role.
//! Nothing is executed: proposals wait for a signed-in human's decision.
//!
//! The first rules reasoner maps priority to severity, proposes isolating the host for SEV-1/2
//! and blocking the public source IPs involved.
//!
//! Stateless: a restart loses nothing (the role actor in `role.rs` owns delivery and commits).

use std::net::IpAddr;
use std::time::Instant;

use super::{Role, RoleEnv, rules_meta};
use crate::bus::Topic;
use crate::proto::{ActionProposed, CaseEscalated, Envelope, Event, IrPlan, PlanStep, Severity};

/// How long a proposal stays decidable.
const PROPOSAL_TTL_MS: i64 = 4 * 3600 * 1000;
/// Most IPs proposed for blocking in one plan.
const MAX_BLOCKED_IPS: usize = 3;
/// Approver for SEV-1 and SEV-2.
const APPROVER_HIGH: &str = "IR Lead On-Call";
/// Approver for SEV-3 and SEV-4.
const APPROVER_LOW: &str = "SOC Shift Lead";

/// IR Lead's rules reasoner.
#[derive(Debug, Default)]
pub struct IrLead;

impl Role for IrLead {
    const NAME: &'static str = "ir_lead";
    const INPUT: Topic = Topic::Cases;

    fn new(_: &RoleEnv) -> Self {
        Self
    }

    fn accepts(kind: &str) -> bool {
        kind == "CaseEscalated"
    }

    fn decide(&self, input: &Envelope) -> Vec<Event> {
        let Event::CaseEscalated(escalated) = &input.event else {
            return Vec::new();
        };
        let started = Instant::now();
        let plan = plan(escalated);
        let approver = if plan.severity <= Severity::Sev2 {
            APPROVER_HIGH
        } else {
            APPROVER_LOW
        };
        let mut events = Vec::with_capacity(1 + plan.containment.len());
        let proposals: Vec<Event> = plan
            .containment
            .iter()
            .map(|step| {
                Event::ActionProposed(ActionProposed {
                    action_id: format!("{}/{}", escalated.case.ticket, step.step_id),
                    case: escalated.case.clone(),
                    plan_id: plan.plan_id.clone(),
                    step: step.clone(),
                    severity: plan.severity,
                    approver_role: approver.to_owned(),
                    expires_at_ms: input.at_ms + PROPOSAL_TTL_MS,
                })
            })
            .collect();
        events.push(Event::IrPlan(IrPlan {
            meta: rules_meta(started),
            ..plan
        }));
        events.extend(proposals);
        events
    }
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
            }),
        );
        IrLead.decide(&input)
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
}
