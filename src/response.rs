//! Proportionate response: what containment an escalated case's evidence supports, on which
//! target, and at which severity. The IR Lead's rules reasoner plans with it, and a model's
//! plan may only propose steps it allows.
//!
//! The policy reads three things, none of them fitted to a data set:
//!
//! - **Direction.** An address is *ours* when it lies in `[response] our_networks` (default:
//!   the private and special-purpose ranges of RFC 1918, RFC 6598 and RFC 4193); the case's
//!   host is ours. Loopback, link-local, multicast and unspecified addresses are never
//!   targets.
//! - **What the rule shows**, from the vendors' and MITRE's own definitions:
//!   - ATT&CK tactics (from the bundle) of the rule's techniques. *On-host* tactics
//!     (execution, persistence, privilege escalation, defense evasion, collection, command and
//!     control, exfiltration, impact) are done on a machine the adversary already controls:
//!     the host where they were seen is compromised. *Actor* tactics (credential access,
//!     discovery, lateral movement) are done from a controlled machine against others: they
//!     show the source's compromise when the source is ours, and an attempt on the host when
//!     it is not. *Pre-compromise* tactics (reconnaissance, resource development, initial
//!     access) are attempts.
//!     Valid Accounts (T1078) is evidence about the account, not the host. A rule with an
//!     initial-access technique (other than Valid Accounts) detects an entry attempt: its
//!     other tactics are what the attempt aims at, not what happened.
//!   - Suricata classtypes (`classification.config`): `successful-user`/`successful-admin`
//!     (privilege gained on the destination), `trojan-activity`, `command-and-control`,
//!     `domain-c2`, `coin-mining`, `credential-theft` (our end of the flow runs malware or lost
//!     credentials) are compromise; the `attempted-*` classes, scans, web attacks, denial of
//!     service and login attempts are attempts. Without a known classtype, an ET title's category by
//!     ET's published definitions: a compromised end system (MALWARE, TROJAN, ATTACK_RESPONSE,
//!     ...) or reconnaissance and attempts (SCAN, EXPLOIT, WEB_SERVER, ...).
//!   - Wazuh's rule classification of levels: 6 ("low relevance attack", without effect on
//!     the system), 9 ("error from invalid source") and 10 ("multiple user generated
//!     errors") are attempts.
//!
//!   When the vendor classes a rule as an attempt, its on-host ATT&CK tactics are its aim, not
//!   its outcome.
//! - **The vendor's severity tier** of the rule.
//!
//! Then: external sources are blocked at the perimeter (never the scanned server isolated);
//! a machine is isolated only on evidence of its own compromise: on-host activity seen on a
//! host-based detector's host, a compromise classtype or ET category on our end of a flow (the
//! host itself only when the detection records no address), or an attack launched from its
//! address where the case records the flow's destination (without one, which end attacked is
//! unknown). An account is disabled only on evidence it is in an adversary's hands (ATT&CK
//! Valid Accounts on a rule the vendor does not class as an attempt, a successful privilege
//! gain, credential theft); a compromised machine's external peers are blocked. Severity:
//! SEV-1 for a compromise with impact or exfiltration or a critical vendor tier; SEV-2 for a
//! compromise shown directly, or inferred from an attack of high tier; SEV-3 for one only
//! inferred from a lower-tier attack launched from our address, for a high or critical
//! attempt, and for evidence no vendor source describes (an analyst must scope it; external
//! sources are still blocked, nothing of ours isolated); SEV-4 for other attempts. Every step
//! carries the evidence that supports it.
//!
//! In: the case, its vendor's view of the rule and its techniques' tactics. Out: a [`Response`].
//! A pure function of its input and `[response] our_networks`: no state, nothing to lose.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::judgment::vendor::{Tier, VendorView};
use crate::proto::{CaseContext, PlanStep, Severity};

/// Most addresses proposed for blocking in one plan.
const MAX_BLOCKED_IPS: usize = 3;

/// The default networks that are ours: RFC 1918, RFC 6598 (shared address space) and
/// RFC 4193 (unique local IPv6).
pub const DEFAULT_OUR_NETWORKS: &[&str] = &[
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
];

/// `[response]`: what the organisation's own networks are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResponseConfig {
    /// CIDR ranges whose addresses are ours: an attack from them is an insider or a
    /// compromised machine (isolate it), from anywhere else an outsider (block it).
    pub our_networks: Vec<String>,
}

impl Default for ResponseConfig {
    fn default() -> Self {
        Self {
            our_networks: DEFAULT_OUR_NETWORKS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }
    }
}

/// A `[response] our_networks` entry that is not a CIDR range.
#[derive(Debug, thiserror::Error)]
#[error("[response] our_networks: {0:?} is not a CIDR range (like 10.0.0.0/8 or fc00::/7)")]
pub struct NetworkError(String);

/// Our networks, parsed.
#[derive(Debug, Clone)]
pub struct Networks(Vec<ipnet::IpNet>);

impl Default for Networks {
    fn default() -> Self {
        Self::parse(&ResponseConfig::default()).unwrap_or(Networks(Vec::new()))
    }
}

impl Networks {
    /// Parses `[response] our_networks`.
    pub fn parse(config: &ResponseConfig) -> Result<Self, NetworkError> {
        config
            .our_networks
            .iter()
            .map(|n| {
                n.trim()
                    .parse::<ipnet::IpNet>()
                    .map_err(|_| NetworkError(n.clone()))
            })
            .collect::<Result<_, _>>()
            .map(Networks)
    }

    /// Whether `ip` is one of ours.
    pub fn ours(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }
}

/// Addresses that are never a target: they name no particular machine.
fn never_target(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// What a tactic says of where the adversary is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TacticKind {
    /// Done on a machine already controlled.
    OnHost,
    /// Done from a controlled machine against another.
    Actor,
    /// Before any compromise.
    Attempt,
}

fn tactic_kind(tactic: &str) -> Option<TacticKind> {
    match tactic {
        "execution"
        | "persistence"
        | "privilege-escalation"
        | "defense-evasion"
        | "collection"
        | "command-and-control"
        | "exfiltration"
        | "impact" => Some(TacticKind::OnHost),
        "credential-access" | "discovery" | "lateral-movement" => Some(TacticKind::Actor),
        "reconnaissance" | "resource-development" | "initial-access" => Some(TacticKind::Attempt),
        _ => None,
    }
}

/// What a Suricata classtype says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClassKind {
    /// Privilege gained on the flow's destination.
    GainedOnDestination,
    /// Our end of the flow runs malware or lost credentials.
    OurEndCompromised,
    /// An attempt.
    Attempt,
}

fn class_kind(classtype: &str) -> Option<ClassKind> {
    match classtype {
        "successful-user" | "successful-admin" => Some(ClassKind::GainedOnDestination),
        "trojan-activity"
        | "command-and-control"
        | "domain-c2"
        | "coin-mining"
        | "credential-theft" => Some(ClassKind::OurEndCompromised),
        "attempted-recon"
        | "attempted-dos"
        | "attempted-user"
        | "unsuccessful-user"
        | "attempted-admin"
        | "network-scan"
        | "denial-of-service"
        | "web-application-attack"
        | "misc-attack"
        | "default-login-attempt"
        | "suspicious-login"
        | "shellcode-detect"
        | "targeted-activity"
        | "exploit-kit"
        | "social-engineering" => Some(ClassKind::Attempt),
        _ => None,
    }
}

/// What the evidence established, most serious first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// One of our machines or accounts is in an adversary's hands.
    Compromise,
    /// Someone tried.
    Attempt,
    /// No vendor source describes what the rule shows.
    Unknown,
}

/// The facts the policy reads.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// The case.
    pub case: &'a CaseContext,
    /// What the vendor says of its rule.
    pub vendor: &'a VendorView,
    /// The ATT&CK tactics of each of the rule's techniques (empty when the bundle is not
    /// loaded or does not know the technique).
    pub tactics: Vec<(String, Vec<String>)>,
}

/// The policy's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Response {
    /// What the evidence established.
    pub stage: Stage,
    /// The severity it supports.
    pub severity: Severity,
    /// The containment steps it supports, each with its evidence (may be empty).
    pub steps: Vec<PlanStep>,
    /// What was read, for the plan's summary.
    pub evidence: Vec<String>,
}

/// One candidate step before ids are given.
struct Candidate {
    action: &'static str,
    target: String,
    description: String,
    evidence: Vec<String>,
}

/// What the policy supports for `facts`, with `networks` as ours.
pub fn respond(facts: &Facts<'_>, networks: &Networks) -> Response {
    let case = facts.case;
    let parse = |ips: &[String]| -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = ips
            .iter()
            .filter_map(|s| s.trim().parse::<IpAddr>().ok())
            .filter(|ip| !never_target(*ip))
            .collect();
        out.dedup();
        out
    };
    let sources = parse(&case.src_ips);
    let dests = parse(&case.dest_ips);
    let host_ip = case.host.parse::<IpAddr>().ok();
    let is_host = |ip: IpAddr| host_ip == Some(ip);
    // The host may be a target: named, and not an address that names no machine.
    let host_ok = !case.host.trim().is_empty() && host_ip.is_none_or(|ip| !never_target(ip));
    let ours = |ip: IpAddr| networks.ours(ip) || is_host(ip);
    let rule = format!("{} ({})", case.rule_name, case.rule_id);

    let mut evidence = vec![format!(
        "vendor: {} ({} tier)",
        facts.vendor.source,
        facts.vendor.tier.label()
    )];
    let mut attempt_tactic = false;
    let mut on_host_tactics = BTreeSet::new();
    let mut actor_tactics = BTreeSet::new();
    // An entry technique (initial access other than Valid Accounts) makes the rule an entry
    // attempt: its other tactics are what the attempt aims at, not what happened.
    let mut entry = false;
    for (technique, tactics) in &facts.tactics {
        if !tactics.is_empty() {
            evidence.push(format!("ATT&CK {technique}: {}", tactics.join(", ")));
        }
        if is_valid_accounts(technique) {
            // An account used: evidence about the account (below), not the host.
            continue;
        }
        entry |= tactics.iter().any(|t| t == "initial-access");
        for t in tactics {
            match tactic_kind(t) {
                Some(TacticKind::OnHost) => {
                    on_host_tactics.insert(t.as_str());
                }
                Some(TacticKind::Actor) => {
                    actor_tactics.insert(t.as_str());
                }
                Some(TacticKind::Attempt) => attempt_tactic = true,
                None => {}
            }
        }
    }
    let class = facts.vendor.classtype.as_deref();
    // What the vendor's classification says: a classtype, an ET category (ET's published
    // definitions: critical = a compromised end system; minor and major = reconnaissance and
    // attempts), a Wazuh level whose class is an attack without effect (6: "low relevance
    // attack", 9: "error from invalid source", 10: "multiple user generated errors").
    let et = facts
        .vendor
        .category
        .strip_prefix("et:")
        .and_then(crate::judgment::vendor::et_category);
    let by_classtype = class.and_then(class_kind);
    let class_kind = by_classtype.or(match et {
        Some(Tier::Critical) => Some(ClassKind::OurEndCompromised),
        Some(Tier::Low | Tier::Medium | Tier::High) => Some(ClassKind::Attempt),
        _ => None,
    });
    // What named the kind, for the evidence.
    let said = match (by_classtype, class) {
        (Some(_), Some(c)) => format!("classtype {c}"),
        _ => format!(
            "ET category {}",
            facts.vendor.category.trim_start_matches("et:")
        ),
    };
    if let Some(c) = class {
        evidence.push(format!("Suricata classtype {c}"));
    }
    if by_classtype.is_none() && et.is_some() {
        evidence.push(said.clone());
    }
    let wazuh_attempt = matches!(facts.vendor.level, Some(6 | 9 | 10));
    if let Some(level) = facts.vendor.level.filter(|_| wazuh_attempt) {
        evidence.push(format!(
            "Wazuh level {level}: an attack or error without effect on the system (Wazuh's rule classification)"
        ));
    }
    if entry {
        evidence.push("ATT&CK initial access: an attempt to get in".to_owned());
    }
    // The vendor calls it an attempt: on-host tactics are its aim, not its outcome.
    let vendor_attempt = entry || wazuh_attempt || class_kind == Some(ClassKind::Attempt);
    if vendor_attempt {
        on_host_tactics.clear();
    }
    let valid_accounts = facts.tactics.iter().any(|(t, _)| is_valid_accounts(t));

    let mut candidates: Vec<Candidate> = Vec::new();
    let mut compromised = false;
    // Whether a compromise is shown directly (on-host activity, a classtype, an account),
    // not only inferred from attacks launched from one of our addresses.
    let mut direct = false;
    // The host's own compromise: on-host activity seen on it.
    let on_host = !on_host_tactics.is_empty();
    let mut isolate: Vec<(String, String)> = Vec::new();
    if on_host && host_ok {
        isolate.push((
            case.host.clone(),
            format!(
                "{rule} shows {} on {}: activity of an adversary already on the host (ATT&CK)",
                join(&on_host_tactics),
                case.host
            ),
        ));
    }
    // A classification that names the compromised end of the flow.
    let named = match class_kind {
        Some(ClassKind::GainedOnDestination) => Some((
            dests
                .iter()
                .copied()
                .filter(|ip| ours(*ip))
                .collect::<Vec<_>>(),
            "privilege gained on",
        )),
        Some(ClassKind::OurEndCompromised) => Some((
            sources
                .iter()
                .chain(&dests)
                .copied()
                .filter(|ip| ours(*ip))
                .collect(),
            "malware or stolen credentials on",
        )),
        _ => None,
    };
    if let Some((ends, what)) = named {
        // Only a host-based detection (no address at all) names the host itself: a sensor's
        // host is the sensor.
        if ends.is_empty() && sources.is_empty() && dests.is_empty() && host_ok {
            isolate.push((
                case.host.clone(),
                format!("{rule}: {what} {} ({said})", case.host),
            ));
        }
        for ip in ends {
            isolate.push((
                ip.to_string(),
                format!("{rule}: {what} {ip}, our end of the flow ({said})"),
            ));
        }
    }
    // Attacks launched from one of our addresses: that machine is in an adversary's hands (or
    // an insider's). Only where the case shows the flow's direction (its destinations): an
    // address a host log or a sensor records without one may be the attacked host's own.
    // (A rule written for the response direction names the server as the source; the
    // evidence says which flow matched, and the approver decides.)
    let attacked = !actor_tactics.is_empty() || attempt_tactic || vendor_attempt;
    direct |= !isolate.is_empty();
    let inside: Vec<IpAddr> = sources
        .iter()
        .copied()
        .filter(|ip| networks.ours(*ip) && !dests.contains(ip))
        .collect();
    if attacked && dests.is_empty() && !inside.is_empty() {
        evidence.push(format!(
            "our address(es) {} among the sources, with no destination recorded: which end \
             attacked is unknown, so nothing of ours is isolated until an analyst scopes it",
            inside
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if attacked && !dests.is_empty() {
        for ip in inside {
            isolate.push((
                ip.to_string(),
                format!(
                    "{rule}: our address {ip} is the source of the matched flow to {}{}",
                    dests
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    if actor_tactics.is_empty() {
                        String::new()
                    } else {
                        format!(" ({} from inside: ATT&CK)", join(&actor_tactics))
                    }
                ),
            ));
        }
    }
    let mut isolated: Vec<String> = Vec::new();
    for (target, why) in isolate {
        if let Some(c) = candidates
            .iter_mut()
            .find(|c| c.action == "isolate_host" && same_target(&c.target, &target))
        {
            if !c.evidence.contains(&why) {
                c.evidence.push(why);
            }
            continue;
        }
        compromised = true;
        isolated.push(target.clone());
        candidates.push(Candidate {
            action: "isolate_host",
            description: format!(
                "isolate {target} from the network: the evidence shows it compromised"
            ),
            target,
            evidence: vec![why],
        });
    }
    // The account, on evidence an adversary holds it.
    if let Some(user) = case.user.as_deref().filter(|u| !u.trim().is_empty()) {
        // A rule the vendor classes as an attempt (a failed logon tagged Valid Accounts) names
        // the attacked account, not one in an adversary's hands.
        let why = if valid_accounts && !vendor_attempt {
            Some(format!(
                "{rule}: ATT&CK T1078 Valid Accounts, the account {user} used by an adversary"
            ))
        } else if matches!(
            class,
            Some("successful-user" | "successful-admin" | "credential-theft")
        ) {
            Some(format!(
                "{rule}: classtype {} for the account {user}",
                class.unwrap_or_default()
            ))
        } else {
            None
        };
        if let Some(why) = why {
            compromised = true;
            direct = true;
            candidates.push(Candidate {
                action: "disable_account",
                target: user.to_owned(),
                description: format!("disable the account {user} until its owner is verified"),
                evidence: vec![why],
            });
        }
    }
    // Outsiders: the external sources of the traffic are blocked at the perimeter; a
    // compromised machine's external peers too (its command and control, where data went).
    let mut blocks: Vec<(IpAddr, String)> = sources
        .iter()
        .copied()
        .filter(|ip| !ours(*ip))
        .map(|ip| {
            (
                ip,
                format!(
                    "{rule}: traffic from {ip}, outside our networks, to {}",
                    case.host
                ),
            )
        })
        .collect();
    if compromised {
        blocks.extend(dests.iter().copied().filter(|ip| !ours(*ip)).map(|ip| {
            (
                ip,
                format!("{rule}: {ip}, outside our networks, is the peer of a compromised machine"),
            )
        }));
    }
    for (ip, why) in blocks {
        if candidates.iter().filter(|c| c.action == "block_ip").count() >= MAX_BLOCKED_IPS {
            break;
        }
        if candidates
            .iter()
            .any(|c| c.action == "block_ip" && c.target == ip.to_string())
        {
            continue;
        }
        candidates.push(Candidate {
            action: "block_ip",
            target: ip.to_string(),
            description: format!("block traffic from and to {ip} at the perimeter"),
            evidence: vec![why],
        });
    }

    let described = on_host
        || !actor_tactics.is_empty()
        || attempt_tactic
        || vendor_attempt
        || class_kind.is_some();
    let stage = if compromised {
        Stage::Compromise
    } else if described {
        Stage::Attempt
    } else {
        Stage::Unknown
    };
    let tier = facts.vendor.tier;
    let severity = match stage {
        Stage::Compromise
            if tier == Tier::Critical
                || on_host_tactics.contains("impact")
                || on_host_tactics.contains("exfiltration") =>
        {
            Severity::Sev1
        }
        Stage::Compromise if direct || tier >= Tier::High => Severity::Sev2,
        Stage::Compromise => Severity::Sev3,
        Stage::Attempt if tier >= Tier::High => Severity::Sev3,
        Stage::Attempt => Severity::Sev4,
        Stage::Unknown => Severity::Sev3,
    };
    evidence.push(match stage {
        Stage::Compromise => format!(
            "compromise of {}",
            if isolated.is_empty() {
                "an account".to_owned()
            } else {
                isolated.join(", ")
            }
        ),
        Stage::Attempt => {
            "an attempt: nothing shows a machine or account of ours compromised".to_owned()
        }
        Stage::Unknown => "no vendor source describes what this rule shows: nothing of ours is \
                           isolated until an analyst scopes it"
            .to_owned(),
    });
    let mut counts = std::collections::HashMap::<&str, usize>::new();
    let steps = candidates
        .into_iter()
        .map(|c| {
            let n = counts.entry(c.action).or_default();
            *n += 1;
            PlanStep {
                step_id: format!("{}-{n}", c.action.replace('_', "-")),
                action: c.action.to_owned(),
                target: c.target,
                description: c.description,
                evidence: c.evidence,
            }
        })
        .collect();
    Response {
        stage,
        severity,
        steps,
        evidence,
    }
}

/// ATT&CK T1078 Valid Accounts and its sub-techniques.
fn is_valid_accounts(technique: &str) -> bool {
    technique == "T1078" || technique.starts_with("T1078.")
}

/// Whether two targets name the same thing: addresses however spelled, names in any case.
fn same_target(a: &str, b: &str) -> bool {
    match (a.parse::<IpAddr>(), b.parse::<IpAddr>()) {
        (Ok(x), Ok(y)) => x.to_canonical() == y.to_canonical(),
        _ => a.eq_ignore_ascii_case(b),
    }
}

fn join(set: &BTreeSet<&str>) -> String {
    set.iter().copied().collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Row {
        what: &'static str,
        host: &'static str,
        user: Option<&'static str>,
        src: &'static [&'static str],
        dest: &'static [&'static str],
        tier: Tier,
        classtype: Option<&'static str>,
        /// The vendor category (`et:SCAN`), when it matters.
        category: &'static str,
        level: Option<u8>,
        tactics: &'static [(&'static str, &'static [&'static str])],
        /// `action target` of each step, in order.
        steps: &'static [&'static str],
        stage: Stage,
        severity: Severity,
    }

    const ROW: Row = Row {
        what: "",
        host: "web-01",
        user: None,
        src: &[],
        dest: &[],
        tier: Tier::Unknown,
        classtype: None,
        category: "test",
        level: None,
        tactics: &[],
        steps: &[],
        stage: Stage::Unknown,
        severity: Severity::Sev3,
    };

    fn run(row: &Row, networks: &Networks) -> Response {
        let case = CaseContext {
            ticket: "t-1".into(),
            rule_id: "r".into(),
            rule_name: "rule".into(),
            host: row.host.into(),
            user: row.user.map(str::to_owned),
            src_ips: row.src.iter().map(|s| (*s).to_owned()).collect(),
            dest_ips: row.dest.iter().map(|s| (*s).to_owned()).collect(),
            ..CaseContext::default()
        };
        let vendor = VendorView {
            category: row.category.into(),
            tier: row.tier,
            attack: row.tactics.iter().map(|(t, _)| (*t).to_owned()).collect(),
            classtype: row.classtype.map(str::to_owned),
            level: row.level,
            source: "a test row".into(),
        };
        let tactics = row
            .tactics
            .iter()
            .map(|(t, ts)| {
                (
                    (*t).to_owned(),
                    ts.iter().map(|s| (*s).to_owned()).collect(),
                )
            })
            .collect();
        respond(
            &Facts {
                case: &case,
                vendor: &vendor,
                tactics,
            },
            networks,
        )
    }

    #[test]
    fn the_policy_follows_the_evidence_and_the_direction_of_the_traffic() {
        let table = [
            Row {
                what: "an inbound Nmap scan from outside: block the scanner, not the server",
                src: &["198.51.100.7"],
                dest: &["10.0.0.5"],
                tier: Tier::High,
                classtype: Some("web-application-attack"),
                tactics: &[("T1595", &["reconnaissance"])],
                steps: &["block_ip 198.51.100.7"],
                stage: Stage::Attempt,
                severity: Severity::Sev3,
                ..ROW
            },
            Row {
                what: "a low-tier scan from outside",
                src: &["198.51.100.7"],
                tier: Tier::Low,
                classtype: Some("attempted-recon"),
                steps: &["block_ip 198.51.100.7"],
                stage: Stage::Attempt,
                severity: Severity::Sev4,
                ..ROW
            },
            Row {
                what: "brute force from outside: an attempt on the host",
                host: "mail",
                src: &["198.51.100.20"],
                tier: Tier::Medium,
                tactics: &[("T1110", &["credential-access"])],
                steps: &["block_ip 198.51.100.20"],
                stage: Stage::Attempt,
                severity: Severity::Sev4,
                ..ROW
            },
            Row {
                what: "brute force from inside: the source machine is the compromised one",
                host: "mail",
                src: &["10.1.2.3"],
                dest: &["10.0.0.25"],
                tier: Tier::Medium,
                tactics: &[("T1110", &["credential-access"])],
                steps: &["isolate_host 10.1.2.3"],
                stage: Stage::Compromise,
                severity: Severity::Sev3,
                ..ROW
            },
            Row {
                what: "malware calling out: isolate our end, block its controller",
                host: "ws-7",
                src: &["10.0.0.5"],
                dest: &["203.0.113.50"],
                tier: Tier::High,
                classtype: Some("trojan-activity"),
                steps: &["isolate_host 10.0.0.5", "block_ip 203.0.113.50"],
                stage: Stage::Compromise,
                severity: Severity::Sev2,
                ..ROW
            },
            Row {
                what: "execution on the host itself: isolate it",
                host: "db-1",
                tier: Tier::High,
                tactics: &[("T1059", &["execution"])],
                steps: &["isolate_host db-1"],
                stage: Stage::Compromise,
                severity: Severity::Sev2,
                ..ROW
            },
            Row {
                what: "impact on the host: SEV-1",
                host: "files",
                tier: Tier::Medium,
                tactics: &[("T1486", &["impact"])],
                steps: &["isolate_host files"],
                stage: Stage::Compromise,
                severity: Severity::Sev1,
                ..ROW
            },
            Row {
                what: "an account in an adversary's hands",
                host: "vpn",
                user: Some("alice"),
                src: &["198.51.100.9"],
                tier: Tier::Medium,
                tactics: &[(
                    "T1078",
                    &[
                        "defense-evasion",
                        "persistence",
                        "privilege-escalation",
                        "initial-access",
                    ],
                )],
                steps: &["disable_account alice", "block_ip 198.51.100.9"],
                stage: Stage::Compromise,
                severity: Severity::Sev2,
                ..ROW
            },
            Row {
                what: "a login (Valid Accounts) with no account named: nothing to contain yet",
                host: "intranet_server",
                src: &["10.35.35.206"],
                tier: Tier::Info,
                level: Some(3),
                tactics: &[(
                    "T1078",
                    &[
                        "defense-evasion",
                        "persistence",
                        "privilege-escalation",
                        "initial-access",
                    ],
                )],
                steps: &[],
                ..ROW
            },
            Row {
                what: "a web attack from inside (ATT&CK aims plus initial access, Wazuh level 6): \
                       the attacking machine, not the server",
                host: "intranet_server",
                src: &["10.35.35.206"],
                dest: &["10.35.35.1"],
                tier: Tier::Low,
                level: Some(6),
                tactics: &[
                    ("T1055", &["defense-evasion", "privilege-escalation"]),
                    ("T1083", &["discovery"]),
                    ("T1190", &["initial-access"]),
                ],
                steps: &["isolate_host 10.35.35.206"],
                stage: Stage::Compromise,
                severity: Severity::Sev3,
                ..ROW
            },
            Row {
                what: "an attack from one of our addresses with no destination recorded: that \
                       address may be the attacked host's own, so nothing is isolated",
                host: "webserver",
                src: &["172.17.130.37"],
                tier: Tier::Low,
                category: "et:SCAN",
                steps: &[],
                stage: Stage::Attempt,
                severity: Severity::Sev4,
                ..ROW
            },
            Row {
                what: "an attack from our host to the outside: our host is the attacker",
                host: "10.0.0.7",
                src: &["10.0.0.7"],
                dest: &["198.51.100.50"],
                tier: Tier::High,
                classtype: Some("attempted-admin"),
                steps: &["isolate_host 10.0.0.7", "block_ip 198.51.100.50"],
                stage: Stage::Compromise,
                severity: Severity::Sev2,
                ..ROW
            },
            Row {
                what: "failed logons tagged Valid Accounts (Wazuh level 10): the account is the \
                       target, not disabled",
                host: "dc-1",
                user: Some("bob"),
                src: &["198.51.100.60"],
                tier: Tier::Medium,
                level: Some(10),
                tactics: &[(
                    "T1078",
                    &["defense-evasion", "persistence", "initial-access"],
                )],
                steps: &["block_ip 198.51.100.60"],
                stage: Stage::Attempt,
                severity: Severity::Sev4,
                ..ROW
            },
            Row {
                what: "a trojan classtype where no end of the flow is ours: the sensor is not \
                       isolated",
                host: "sensor-1",
                src: &["198.51.100.1"],
                dest: &["203.0.113.2"],
                tier: Tier::Critical,
                classtype: Some("trojan-activity"),
                steps: &["block_ip 198.51.100.1"],
                stage: Stage::Attempt,
                severity: Severity::Sev3,
                ..ROW
            },
            Row {
                what: "a suspicious request Wazuh classes as an attack without effect (level 6)",
                host: "intranet_server",
                src: &["198.51.100.4"],
                tier: Tier::Low,
                level: Some(6),
                tactics: &[("T1055", &["defense-evasion", "privilege-escalation"])],
                steps: &["block_ip 198.51.100.4"],
                stage: Stage::Attempt,
                severity: Severity::Sev4,
                ..ROW
            },
            Row {
                what: "sudo to root on the host (privilege escalation seen on it)",
                host: "intranet_server",
                tier: Tier::Info,
                level: Some(3),
                tactics: &[("T1548.003", &["privilege-escalation", "defense-evasion"])],
                steps: &["isolate_host intranet_server"],
                stage: Stage::Compromise,
                severity: Severity::Sev2,
                ..ROW
            },
            Row {
                what: "an ET SCAN title from outside, no classtype: ET's category says reconnaissance",
                src: &["198.51.100.99"],
                tier: Tier::Low,
                category: "et:SCAN",
                steps: &["block_ip 198.51.100.99"],
                stage: Stage::Attempt,
                severity: Severity::Sev4,
                ..ROW
            },
            Row {
                what: "an ET TROJAN title: ET's category says a compromised end system",
                host: "ws-9",
                src: &["10.9.9.9"],
                dest: &["198.51.100.200"],
                tier: Tier::Critical,
                category: "et:TROJAN",
                steps: &["isolate_host 10.9.9.9", "block_ip 198.51.100.200"],
                stage: Stage::Compromise,
                severity: Severity::Sev1,
                ..ROW
            },
            Row {
                what: "privilege gained on our server from outside",
                src: &["198.51.100.3"],
                dest: &["10.0.0.9"],
                tier: Tier::Critical,
                classtype: Some("successful-admin"),
                steps: &["isolate_host 10.0.0.9", "block_ip 198.51.100.3"],
                stage: Stage::Compromise,
                severity: Severity::Sev1,
                ..ROW
            },
            Row {
                what: "nothing any vendor describes, from inside: scope before containing",
                host: "cloud_share",
                src: &["172.17.0.4"],
                steps: &[],
                ..ROW
            },
            Row {
                what: "loopback and link-local addresses are never targets",
                src: &["127.0.0.1", "169.254.1.1", "::1"],
                tier: Tier::High,
                classtype: Some("attempted-admin"),
                steps: &[],
                stage: Stage::Attempt,
                severity: Severity::Sev3,
                ..ROW
            },
        ];
        let networks = Networks::default();
        for row in &table {
            let got = run(row, &networks);
            let steps: Vec<String> = got
                .steps
                .iter()
                .map(|s| format!("{} {}", s.action, s.target))
                .collect();
            assert_eq!(steps, row.steps, "{}", row.what);
            assert_eq!(got.stage, row.stage, "{}", row.what);
            assert_eq!(got.severity, row.severity, "{}", row.what);
            assert!(
                got.steps.iter().all(|s| !s.evidence.is_empty()),
                "{}: every step says what supports it",
                row.what
            );
        }
    }

    #[test]
    fn which_networks_are_ours_is_configuration() {
        let scan = Row {
            src: &["203.0.113.9"],
            dest: &["203.0.113.80"],
            tier: Tier::High,
            classtype: Some("attempted-recon"),
            ..ROW
        };
        let default = run(&scan, &Networks::default());
        assert_eq!(default.steps[0].action, "block_ip");
        let ours = Networks::parse(&ResponseConfig {
            our_networks: vec!["203.0.113.0/24".into()],
        })
        .unwrap();
        let inside = run(&scan, &ours);
        assert_eq!(inside.steps.len(), 1);
        assert_eq!(
            (
                inside.steps[0].action.as_str(),
                inside.steps[0].target.as_str()
            ),
            ("isolate_host", "203.0.113.9")
        );
        assert!(ours.ours("::ffff:203.0.113.1".parse().unwrap()));
        assert!(!ours.ours("10.0.0.1".parse().unwrap()));
        let bad = Networks::parse(&ResponseConfig {
            our_networks: vec!["10.0.0.0/33".into()],
        })
        .unwrap_err();
        assert!(bad.to_string().contains("10.0.0.0/33"), "{bad}");
    }
}
