//! Threat Intel: attributes escalated cases to ATT&CK techniques and examines their indicators.
//!
//! Consumes `IRPlan` on `soc.cases`; publishes one `ThreatIntelReport` per plan on
//! `soc.reports`.
//!
//! The first rules reasoner maps phrases of the rule title to ATT&CK techniques and lists the
//! case's IPs, host and rule as indicators. It names no actor: attribution needs intel sources,
//! which later issues add (ATT&CK bundle lookups, indicator lists, case memory).
//!
//! Stateless: a restart loses nothing (the role actor in `role.rs` owns delivery and commits).

use std::time::Instant;

use super::{Role, RoleEnv, rules_meta};
use crate::bus::Topic;
use crate::proto::{AttackTechnique, Envelope, Event, Ioc, IocKind, ThreatIntelReport};

/// Phrases of a rule title and the ATT&CK technique they indicate.
const TECHNIQUES: &[(&str, &str, &str)] = &[
    ("nmap", "T1595", "Active Scanning"),
    ("scan", "T1046", "Network Service Discovery"),
    ("dns", "T1071.004", "Application Layer Protocol: DNS"),
    (" tld", "T1568", "Dynamic Resolution"),
    ("brute force", "T1110", "Brute Force"),
    ("failed login", "T1110", "Brute Force"),
    (
        "sudo",
        "T1548.003",
        "Abuse Elevation Control Mechanism: Sudo and Sudo Caching",
    ),
    ("web server", "T1190", "Exploit Public-Facing Application"),
    ("forbidden", "T1190", "Exploit Public-Facing Application"),
    ("apache", "T1190", "Exploit Public-Facing Application"),
    (
        "smtp",
        "T1071.003",
        "Application Layer Protocol: Mail Protocols",
    ),
    ("exfil", "T1048", "Exfiltration Over Alternative Protocol"),
];

/// Threat Intel's rules reasoner.
#[derive(Debug, Default)]
pub struct ThreatIntel;

impl Role for ThreatIntel {
    const NAME: &'static str = "threat_intel";
    const INPUT: Topic = Topic::Cases;

    fn new(_: &RoleEnv) -> Self {
        Self
    }

    fn accepts(kind: &str) -> bool {
        kind == "IRPlan"
    }

    fn decide(&self, input: &Envelope) -> Vec<Event> {
        let Event::IrPlan(plan) = &input.event else {
            return Vec::new();
        };
        let started = Instant::now();
        let case = &plan.case;
        let title = case.rule_name.to_lowercase();
        let mut techniques: Vec<AttackTechnique> = Vec::new();
        let mut evidence = Vec::new();
        for (phrase, id, name) in TECHNIQUES {
            if title.contains(phrase) && !techniques.iter().any(|t| t.id == *id) {
                techniques.push(AttackTechnique {
                    id: (*id).to_owned(),
                    name: (*name).to_owned(),
                });
                evidence.push(format!("rule title mentions `{}` -> {id}", phrase.trim()));
            }
        }
        let mut iocs: Vec<Ioc> = case
            .src_ips
            .iter()
            .map(|ip| Ioc {
                kind: IocKind::Ip,
                value: ip.clone(),
            })
            .collect();
        iocs.push(Ioc {
            kind: IocKind::Host,
            value: case.host.clone(),
        });
        iocs.push(Ioc {
            kind: IocKind::Rule,
            value: case.rule_id.clone(),
        });
        evidence.push("no actor named: attribution needs intel sources".to_owned());
        vec![Event::ThreatIntelReport(ThreatIntelReport {
            case: case.clone(),
            likely_actor: None,
            evidence,
            attack_techniques: techniques,
            iocs,
            severity_adjustment: 0,
            meta: rules_meta(started),
        })]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{CaseContext, IrPlan};

    #[test]
    fn dns_queries_to_odd_tlds_map_to_dns_and_dynamic_resolution() {
        let input = Envelope::new_root(
            "ir_lead",
            "t-3",
            Event::IrPlan(IrPlan {
                case: CaseContext {
                    rule_name: "Suricata: ET INFO Observed DNS Query to .biz TLD".into(),
                    src_ips: vec!["192.0.2.1".into()],
                    host: "h".into(),
                    rule_id: "S-Dns-Qry3".into(),
                    ..CaseContext::default()
                },
                ..IrPlan::default()
            }),
        );
        let Some(Event::ThreatIntelReport(report)) = ThreatIntel.decide(&input).pop() else {
            panic!("expected a report")
        };
        let ids: Vec<&str> = report
            .attack_techniques
            .iter()
            .map(|t| t.id.as_str())
            .collect();
        assert_eq!(ids, ["T1071.004", "T1568"]);
        assert_eq!(report.iocs.len(), 3);
        assert!(report.likely_actor.is_none());
    }
}
