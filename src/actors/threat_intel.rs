//! Threat Intel: attributes escalated cases to ATT&CK techniques and examines their indicators.
//!
//! Consumes `IRPlan` on `soc.cases`; publishes one `ThreatIntelReport` per plan on
//! `soc.reports`.
//!
//! The rules reasoner maps phrases of the rule title to ATT&CK techniques (named from the
//! configured ATT&CK bundle when there is one), checks the case's IPs against the site's
//! indicator lists, and lists the case's IPs, host and rule as indicators examined. It names no
//! actor: attribution needs evidence the rules do not weigh.
//!
//! The model reasoner investigates with its tools (ATT&CK lookups, indicator lists, case
//! memory, the raw alert archive) and may name an actor with its evidence. Its technique ids
//! must be ATT&CK ids, and, when a bundle is configured, active techniques in it; a named
//! actor must then be a known group or alias, and must come with evidence. An answer that
//! breaks these is repaired once, then the rules report stands, marked `needs_human_review`.
//!
//! Stateless: a restart loses nothing (the role actor in `role.rs` owns delivery and commits).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;

use super::reasoning::{ReasoningConfig, ReasoningMode};
use super::{Role, RoleEnv, rules_meta};
use crate::bus::Topic;
use crate::llm::reason::{Answer, AnswerError, Brief, Scope, case_injection, reason_checked};
use crate::llm::{CallOptions, Llm, LlmError};
use crate::proto::{
    AttackTechnique, CaseContext, DecisionMeta, Envelope, Event, Ioc, IocKind, IrPlan,
    ThreatIntelReport,
};
use crate::tools::Toolbox;

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

/// Most techniques, indicators and evidence lines in a model's report.
const MAX_ITEMS: usize = 10;

/// The system prompt of Threat Intel's model reasoner.
const PROMPT: &str = "You are the Threat Intel analyst of a security operations center. For \
an incident with a response plan, find which MITRE ATT&CK techniques the evidence shows \
(look ids up with attack.lookup; give ids such as T1110 or T1110.001), check the case's \
indicators against the site's lists and earlier cases, and name the likely actor only when the \
evidence supports it (an ATT&CK group name, with the evidence); otherwise leave it null. Say \
which indicators you examined, and whether the plan's severity should change: -1 lowers it one \
level, 0 keeps it, +1 raises it.";

/// What Threat Intel's model reasoner works with.
pub(crate) const BRIEF: Brief = Brief {
    role: "threat_intel",
    system: PROMPT,
    tools: &[
        "attack.lookup",
        "ioc.lookup",
        "memory.recall",
        "alerts.search",
    ],
    budget: 12,
    max_tokens: 512,
};

/// Threat Intel's report, as the model must give it.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct IntelAnswer {
    /// The likely actor (an ATT&CK group name or alias), or null.
    pub likely_actor: Option<String>,
    /// Evidence for the techniques and the attribution, at most ten lines.
    pub evidence: Vec<String>,
    /// ATT&CK technique ids observed, at most ten.
    pub attack_techniques: Vec<String>,
    /// Indicators examined, at most ten.
    pub iocs: Vec<Ioc>,
    /// -1, 0 or +1 levels of severity.
    pub severity_adjustment: i8,
}

impl Answer for IntelAnswer {
    fn check(&self) -> Result<(), AnswerError> {
        for (name, len) in [
            ("evidence", self.evidence.len()),
            ("attack_techniques", self.attack_techniques.len()),
            ("iocs", self.iocs.len()),
        ] {
            if len > MAX_ITEMS {
                return Err(AnswerError::Invalid(format!(
                    "{len} {name} entries; at most {MAX_ITEMS}"
                )));
            }
        }
        if let Some(bad) = self.attack_techniques.iter().find(|t| !is_technique_id(t)) {
            return Err(AnswerError::Invalid(format!(
                "{bad:?} is not an ATT&CK technique id (T and four digits, optionally . and three)"
            )));
        }
        if !(-1..=1).contains(&self.severity_adjustment) {
            return Err(AnswerError::Invalid(format!(
                "severity_adjustment {} must be -1, 0 or 1",
                self.severity_adjustment
            )));
        }
        if self
            .likely_actor
            .as_deref()
            .is_some_and(|a| !a.trim().is_empty())
            && self.evidence.iter().all(|e| e.trim().is_empty())
        {
            return Err("an actor is named without evidence".into());
        }
        Ok(())
    }
}

fn is_technique_id(id: &str) -> bool {
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    match id.strip_prefix('T') {
        Some(rest) => match rest.split_once('.') {
            Some((main, sub)) => digits(main, 4) && digits(sub, 3),
            None => digits(rest, 4),
        },
        None => false,
    }
}

/// Threat Intel: the rules reasoner, and the model when the reasoning mode sends it there.
#[derive(Debug, Default)]
pub struct ThreatIntel {
    reasoning: ReasoningConfig,
    tools: Arc<Toolbox>,
}

impl Role for ThreatIntel {
    const NAME: &'static str = "threat_intel";
    const INPUT: Topic = Topic::Cases;

    fn new(env: &RoleEnv) -> Self {
        Self {
            reasoning: env.reasoning.clone(),
            tools: env.tools.clone(),
        }
    }

    type Input = IrPlan;

    fn decide(&self, _input: &Envelope, plan: &IrPlan) -> Vec<Event> {
        let started = Instant::now();
        vec![Event::ThreatIntelReport(by_rules(
            &self.tools,
            &plan.case,
            rules_meta(started),
        ))]
    }

    /// Every plan is an incident: the model examines it unless reasoning is `rules`.
    fn wants_model(&self, _input: &Envelope, _plan: &IrPlan) -> bool {
        self.reasoning.mode != ReasoningMode::Rules
    }

    fn decide_with_model(
        &self,
        _input: Envelope,
        plan: IrPlan,
        llm: Llm,
    ) -> impl Future<Output = Result<Vec<Event>, LlmError>> + Send + 'static {
        let tools = self.tools.clone();
        async move {
            let plan = &plan;
            let started = Instant::now();
            let case = &plan.case;
            if let Some(why) = case_injection(case, &[("plan_summary", &plan.summary)]) {
                return Ok(vec![Event::ThreatIntelReport(needs_review(
                    by_rules(&tools, case, DecisionMeta::default()),
                    why,
                    rules_meta(started),
                ))]);
            }
            let data = serde_json::json!({
                "case": case,
                "plan": {"severity": plan.severity, "summary": plan.summary,
                         "containment": plan.containment},
            });
            let options = CallOptions::case(Self::NAME, case.priority);
            let scope = Scope::of(case);
            let check = |a: &IntelAnswer| check_known(&tools, a);
            let reasoned = reason_checked::<IntelAnswer>(
                &llm,
                &BRIEF,
                &data.to_string(),
                &*tools,
                &scope,
                options,
                &check,
            )
            .await?;
            let report = match reasoned.answer {
                Ok(a) => ThreatIntelReport {
                    case: case.clone(),
                    likely_actor: a
                        .likely_actor
                        .map(|actor| {
                            // Named as ATT&CK names the group, when the bundle knows it.
                            tools
                                .attack()
                                .and_then(|b| b.group(&actor))
                                .map_or(actor.trim().to_owned(), |g| g.name.clone())
                        })
                        .filter(|a| !a.is_empty()),
                    evidence: a.evidence,
                    attack_techniques: a
                        .attack_techniques
                        .iter()
                        .map(|id| AttackTechnique {
                            id: id.clone(),
                            name: technique_name(&tools, id).unwrap_or_default(),
                        })
                        .collect(),
                    iocs: a.iocs,
                    severity_adjustment: a.severity_adjustment,
                    meta: reasoned.meta,
                },
                Err(why) => needs_review(
                    by_rules(&tools, case, DecisionMeta::default()),
                    why.to_string(),
                    reasoned.meta,
                ),
            };
            Ok(vec![Event::ThreatIntelReport(report)])
        }
    }
}

/// With a bundle configured, named techniques must be in it and a named actor a known group.
fn check_known(tools: &Toolbox, answer: &IntelAnswer) -> Result<(), AnswerError> {
    let Some(attack) = tools.attack() else {
        return Ok(());
    };
    if let Some(bad) = answer
        .attack_techniques
        .iter()
        .find(|id| attack.technique(id).is_none())
    {
        return Err(AnswerError::Invalid(format!(
            "{bad} is not an active ATT&CK technique"
        )));
    }
    if let Some(actor) = answer.likely_actor.as_deref().map(str::trim)
        && !actor.is_empty()
        && attack.group(actor).is_none()
    {
        return Err(AnswerError::Invalid(format!(
            "{actor:?} is not an ATT&CK group or alias; name a known group or null"
        )));
    }
    Ok(())
}

fn technique_name(tools: &Toolbox, id: &str) -> Option<String> {
    tools
        .attack()
        .and_then(|a| a.technique(id))
        .map(|t| t.name.clone())
        .or_else(|| {
            TECHNIQUES
                .iter()
                .find(|(_, tid, _)| *tid == id)
                .map(|(_, _, name)| (*name).to_owned())
        })
}

/// The rules report standing in for one a human must review, with the reason.
fn needs_review(
    mut rules: ThreatIntelReport,
    why: String,
    mut meta: DecisionMeta,
) -> ThreatIntelReport {
    meta.needs_human_review = Some(why.clone());
    rules
        .evidence
        .insert(0, format!("needs human review: {why}"));
    rules.meta = meta;
    rules
}

/// The rules reasoner's report on `case`.
fn by_rules(tools: &Toolbox, case: &CaseContext, meta: DecisionMeta) -> ThreatIntelReport {
    let title = case.rule_name.to_lowercase();
    let mut techniques: Vec<AttackTechnique> = Vec::new();
    let mut evidence = Vec::new();
    for (phrase, id, _) in TECHNIQUES {
        if title.contains(phrase) && !techniques.iter().any(|t| t.id == *id) {
            techniques.push(AttackTechnique {
                id: (*id).to_owned(),
                name: technique_name(tools, id).unwrap_or_default(),
            });
            evidence.push(format!("rule title mentions `{}` -> {id}", phrase.trim()));
        }
    }
    let mut iocs: Vec<Ioc> = Vec::with_capacity(case.src_ips.len() + 2);
    for ip in &case.src_ips {
        if let Some(lists) = tools.iocs() {
            for hit in lists.lookup(ip) {
                evidence.push(format!(
                    "{ip} is on the {} list ({}{})",
                    hit.list,
                    hit.entry,
                    if hit.label.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", hit.label)
                    }
                ));
            }
        }
        iocs.push(Ioc {
            kind: IocKind::Ip,
            value: ip.clone(),
        });
    }
    iocs.push(Ioc {
        kind: IocKind::Host,
        value: case.host.clone(),
    });
    iocs.push(Ioc {
        kind: IocKind::Rule,
        value: case.rule_id.clone(),
    });
    evidence.push("no actor named: the rules do not attribute".to_owned());
    ThreatIntelReport {
        case: case.clone(),
        likely_actor: None,
        evidence,
        attack_techniques: techniques,
        iocs,
        severity_adjustment: 0,
        meta,
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
        let Some(Event::ThreatIntelReport(report)) =
            ThreatIntel::default().decide_envelope(&input).pop()
        else {
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

    #[test]
    fn model_reports_name_real_technique_ids_and_back_an_actor_with_evidence() {
        let answer = |ids: &[&str], actor: Option<&str>, evidence: &[&str], adj: i8| IntelAnswer {
            likely_actor: actor.map(Into::into),
            evidence: evidence.iter().map(|e| (*e).to_owned()).collect(),
            attack_techniques: ids.iter().map(|e| (*e).to_owned()).collect(),
            iocs: vec![],
            severity_adjustment: adj,
        };
        assert!(
            answer(&["T1110", "T1071.004"], None, &[], 0)
                .check()
                .is_ok()
        );
        for bad in ["T111", "T1110.1", "1110", "t1110", "T1110.0010"] {
            assert!(answer(&[bad], None, &[], 0).check().is_err(), "{bad}");
        }
        assert!(answer(&[], None, &[], 2).check().is_err());
        let e = answer(&[], Some("APT28"), &[], 0)
            .check()
            .unwrap_err()
            .to_string();
        assert!(e.contains("without evidence"), "{e}");
        assert!(answer(&[], Some("APT28"), &["same C2"], 0).check().is_ok());
        // Without a bundle, ids are only checked for their form.
        assert!(check_known(&Toolbox::default(), &answer(&["T9999"], None, &[], 0)).is_ok());
    }
}
