//! The calendar roles' report builders, pure functions over a window's events, and the text
//! rendering of a report.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, TimeZone, Utc};

use crate::proto::{
    CampaignDetected, Event, HuntFinding, Ioc, IocKind, NoisyRule, ShiftSummary, Tier2Decision,
    Window,
};

/// Campaigns among the window's cases: cases tied by shared rare strong indicators (actor,
/// hash, domain, public IP, CVE) found in their events, as case memory clusters them
/// ([`crate::memory::cluster`]).
pub(super) fn campaigns(window: Window, events: &[(String, Event)]) -> Vec<Event> {
    use crate::indicators::{self, Kind};
    let mut first: HashMap<&str, i64> = HashMap::new();
    let mut rows: BTreeSet<(&'static str, String, &str)> = BTreeSet::new();
    for (_, event) in events {
        let Some(case) = event.case() else {
            continue;
        };
        let opened =
            DateTime::parse_from_rfc3339(&case.first_seen).map_or(0, |t| t.timestamp_millis());
        first.entry(case.ticket.as_str()).or_insert(opened);
        for (kind, value) in indicators::of_event(event) {
            if Kind::is_strong(kind.as_str()) {
                rows.insert((kind.as_str(), value, case.ticket.as_str()));
            }
        }
    }
    let options = crate::memory::CampaignOptions::default();
    let found = crate::memory::cluster(
        rows.into_iter().map(|(kind, value, ticket)| {
            let at = first.get(ticket).copied().unwrap_or_default();
            (kind.to_owned(), value, ticket.to_owned(), at)
        }),
        options.rare_limit(first.len()),
        &options,
    );
    found
        .into_iter()
        .map(|c| {
            let shared_indicators: Vec<Ioc> = c
                .shared
                .iter()
                .filter_map(|s| {
                    let (kind, value) = s.split_once(':')?;
                    let kind = match kind {
                        "actor" => IocKind::Actor,
                        "hash" => IocKind::Hash,
                        "domain" => IocKind::Domain,
                        "cve" => IocKind::Cve,
                        _ => IocKind::Ip,
                    };
                    Some(Ioc {
                        kind,
                        value: value.to_owned(),
                    })
                })
                .collect();
            let summary = format!(
                "{} cases from {} to {} share {}",
                c.cases.len(),
                rfc3339(c.first_ms),
                rfc3339(c.last_ms),
                c.shared.join(", ")
            );
            Event::CampaignDetected(CampaignDetected {
                campaign_id: c.id,
                window,
                tickets: c.cases,
                shared_indicators,
                summary,
            })
        })
        .collect()
}

pub(super) fn rfc3339(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map_or_else(|| ms.to_string(), |t: DateTime<Utc>| t.to_rfc3339())
}

/// A report as text, for a person; `events` is how many it was computed from.
pub fn render(report: &Event, events: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let when = |w: &Window| {
        let t = |ms| {
            Utc.timestamp_millis_opt(ms)
                .single()
                .map_or_else(|| ms.to_string(), |t: DateTime<Utc>| t.to_rfc3339())
        };
        format!("{} .. {}", t(w.start_ms), t(w.end_ms))
    };
    match report {
        Event::ShiftSummary(s) => {
            let _ = writeln!(
                out,
                "{} ({}; {events} events)",
                s.report_id,
                when(&s.window)
            );
            let _ = writeln!(
                out,
                "  alerts {}  escalated {}  closed {}  actions proposed {}  decided {}",
                s.alerts, s.escalated, s.closed, s.actions_proposed, s.actions_decided
            );
            for h in &s.highlights {
                let _ = writeln!(out, "  - {h}");
            }
        }
        Event::DetectionTuningReport(r) => {
            let _ = writeln!(
                out,
                "{} ({}; {events} events)",
                r.report_id,
                when(&r.window)
            );
            if r.noisy_rules.is_empty() {
                let _ = writeln!(
                    out,
                    "  no rule fired {NOISY_MIN_FIRED}+ times and was closed 95%+ of the time"
                );
            }
            for n in &r.noisy_rules {
                let _ = writeln!(
                    out,
                    "  {:<12} {:>5} fired {:>5} closed  {}\n      hosts {}; e.g. {}\n      {}",
                    n.rule_id,
                    n.fired,
                    n.closed,
                    n.rule_name,
                    n.top_hosts.join(", "),
                    n.sample_tickets.join(", "),
                    n.recommendation
                );
            }
        }
        Event::HuntingReport(r) => {
            let _ = writeln!(
                out,
                "{} ({}; {events} events)",
                r.report_id,
                when(&r.window)
            );
            if r.findings.is_empty() {
                let _ = writeln!(out, "  no findings");
            }
            for f in &r.findings {
                let _ = writeln!(
                    out,
                    "  - {}: {}\n      {}",
                    f.title,
                    f.detail,
                    f.tickets.join(", ")
                );
            }
        }
        Event::CampaignDetected(c) => {
            let _ = writeln!(out, "{}: {}", c.campaign_id, c.summary);
            let _ = writeln!(out, "      {}", c.tickets.join(", "));
        }
        other => {
            let _ = writeln!(out, "{}", other.kind());
        }
    }
    out
}

/// What the tickets of a window came to: triaged (ticket -> facts), escalated tickets.
struct Cases<'a> {
    triaged: BTreeMap<&'a str, &'a crate::proto::AlertTriaged>,
    escalated: HashSet<&'a str>,
}

fn cases(events: &[(String, Event)]) -> Cases<'_> {
    let mut triaged = BTreeMap::new();
    let mut escalated = HashSet::new();
    for (_, event) in events {
        match event {
            Event::AlertTriaged(t) => {
                triaged.insert(t.case.ticket.as_str(), t);
            }
            Event::CaseEscalated(e) => {
                escalated.insert(e.case.ticket.as_str());
            }
            _ => {}
        }
    }
    Cases { triaged, escalated }
}

pub(super) fn shift_summary(
    report_id: String,
    window: Window,
    events: &[(String, Event)],
) -> ShiftSummary {
    let mut s = ShiftSummary {
        report_id,
        window,
        ..ShiftSummary::default()
    };
    let mut review = 0;
    let mut severities: BTreeMap<String, u64> = BTreeMap::new();
    for (_, event) in events {
        match event {
            Event::AlertReceived(_) => s.alerts += 1,
            Event::CaseEscalated(_) => s.escalated += 1,
            Event::ActionProposed(_) => s.actions_proposed += 1,
            Event::ActionDecision(_) => s.actions_decided += 1,
            Event::Tier2Analysis(a) if a.decision == Tier2Decision::NeedsHumanReview => {
                review += 1;
            }
            Event::IrPlan(p) => {
                *severities
                    .entry(format!("{:?}", p.severity).to_uppercase())
                    .or_default() += 1;
            }
            _ => {}
        }
    }
    let c = cases(events);
    s.closed = c
        .triaged
        .keys()
        .filter(|t| !c.escalated.contains(*t))
        .count() as u64;
    if !severities.is_empty() {
        let list: Vec<String> = severities.iter().map(|(k, n)| format!("{n} {k}")).collect();
        s.highlights.push(format!("IR plans: {}", list.join(", ")));
    }
    if review > 0 {
        s.highlights
            .push(format!("{review} cases wait for a human review"));
    }
    let pending = s.actions_proposed.saturating_sub(s.actions_decided);
    if pending > 0 {
        s.highlights
            .push(format!("{pending} proposed actions wait for an approver"));
    }
    let mut hosts: HashMap<&str, u64> = HashMap::new();
    for t in c.escalated.iter().filter_map(|t| c.triaged.get(t)) {
        *hosts.entry(t.case.host.as_str()).or_default() += 1;
    }
    let mut hosts: Vec<_> = hosts.into_iter().collect();
    hosts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    for (host, n) in hosts.into_iter().take(3) {
        s.highlights.push(format!("{host}: {n} escalated cases"));
    }
    s
}

/// Rules that fired at least this often in the window are considered for tuning.
const NOISY_MIN_FIRED: u64 = 5;
/// ...and were closed at least this share of the time.
const NOISY_MIN_CLOSED_SHARE: f64 = 0.95;

pub(super) fn noisy_rules(events: &[(String, Event)]) -> Vec<NoisyRule> {
    let c = cases(events);
    struct Tally<'a> {
        name: &'a str,
        fired: u64,
        closed: u64,
        hosts: BTreeMap<&'a str, u64>,
        samples: Vec<&'a str>,
    }
    let mut rules: BTreeMap<&str, Tally> = BTreeMap::new();
    for (ticket, t) in &c.triaged {
        let r = rules
            .entry(t.case.rule_id.as_str())
            .or_insert_with(|| Tally {
                name: &t.case.rule_name,
                fired: 0,
                closed: 0,
                hosts: BTreeMap::new(),
                samples: Vec::new(),
            });
        r.fired += 1;
        if !c.escalated.contains(ticket) {
            r.closed += 1;
            *r.hosts.entry(t.case.host.as_str()).or_default() += 1;
            if r.samples.len() < 3 {
                r.samples.push(ticket);
            }
        }
    }
    let mut noisy: Vec<NoisyRule> = rules
        .into_iter()
        .filter(|(_, r)| {
            r.fired >= NOISY_MIN_FIRED && r.closed as f64 >= NOISY_MIN_CLOSED_SHARE * r.fired as f64
        })
        .map(|(rule, r)| {
            let mut hosts: Vec<(&str, u64)> = r.hosts.into_iter().collect();
            hosts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            let top: Vec<String> = hosts.iter().take(3).map(|(h, _)| (*h).to_owned()).collect();
            let recommendation = if r.closed == r.fired {
                format!(
                    "all {} tickets closed without escalation: suppress or raise the threshold \
                     on {} (review the rule's tuning with its owner)",
                    r.fired,
                    top.join(", ")
                )
            } else {
                format!(
                    "{} of {} tickets closed: add an exception for the benign pattern on {}",
                    r.closed,
                    r.fired,
                    top.join(", ")
                )
            };
            NoisyRule {
                rule_id: rule.to_owned(),
                rule_name: r.name.to_owned(),
                fired: r.fired,
                closed: r.closed,
                top_hosts: top,
                sample_tickets: r.samples.into_iter().map(str::to_owned).collect(),
                recommendation,
            }
        })
        .collect();
    noisy.sort_by(|a, b| b.closed.cmp(&a.closed).then(a.rule_id.cmp(&b.rule_id)));
    noisy.truncate(20);
    noisy
}

/// How close (ms) a closed ticket must open to an escalated one on its host to be a
/// potential miss.
const MISS_WINDOW_MS: i64 = 3_600_000;

/// A host as a hunt names it: `site/host` (host names repeat across sites).
fn host_of(t: &crate::proto::AlertTriaged) -> String {
    match t.case.site.as_deref() {
        Some(site) if !site.is_empty() => format!("{site}/{}", t.case.host),
        _ => t.case.host.clone(),
    }
}

pub(super) fn hunt(events: &[(String, Event)]) -> Vec<HuntFinding> {
    let c = cases(events);
    let mut findings = Vec::new();
    let opened = |t: &crate::proto::AlertTriaged| {
        DateTime::parse_from_rfc3339(&t.case.first_seen).map_or(0, |d| d.timestamp_millis())
    };
    // Host repeats: hosts with several escalated cases.
    let mut by_host: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for t in &c.escalated {
        if let Some(tr) = c.triaged.get(t) {
            by_host.entry(host_of(tr)).or_default().push(t);
        }
    }
    for (host, mut tickets) in by_host {
        if tickets.len() >= 3 {
            tickets.sort_unstable();
            findings.push(HuntFinding {
                title: format!("{host} escalated {} times", tickets.len()),
                detail: format!(
                    "{host} raised {} escalated cases in the window: one intrusion, or a \
                     foothold coming back; scope the host as a whole",
                    tickets.len()
                ),
                tickets: tickets.iter().take(20).map(|t| (*t).to_owned()).collect(),
                entities: vec![Ioc {
                    kind: IocKind::Host,
                    value: host.clone(),
                }],
            });
        }
    }
    // Shared pivots: an address seen on several hosts, at least one of them escalated.
    let mut by_ip: BTreeMap<&str, (BTreeSet<String>, Vec<&str>, bool)> = BTreeMap::new();
    for (ticket, t) in &c.triaged {
        for ip in &t.case.src_ips {
            let e = by_ip.entry(ip.as_str()).or_default();
            e.0.insert(host_of(t));
            e.1.push(ticket);
            e.2 |= c.escalated.contains(ticket);
        }
    }
    for (ip, (hosts, tickets, any_escalated)) in by_ip {
        if hosts.len() >= 2 && any_escalated {
            findings.push(HuntFinding {
                title: format!("{ip} on {} hosts", hosts.len()),
                detail: format!(
                    "{ip} appears in {} tickets across {}; at least one was escalated: check \
                     the others for the same activity",
                    tickets.len(),
                    hosts.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
                tickets: tickets.iter().take(20).map(|t| (*t).to_owned()).collect(),
                entities: vec![Ioc {
                    kind: IocKind::Ip,
                    value: ip.to_owned(),
                }],
            });
        }
    }
    // Potential misses: closed tickets on a host within an hour of an escalation there.
    let mut hot: HashMap<String, Vec<i64>> = HashMap::new();
    for t in &c.escalated {
        if let Some(tr) = c.triaged.get(t) {
            hot.entry(host_of(tr)).or_default().push(opened(tr));
        }
    }
    let mut misses: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (ticket, t) in &c.triaged {
        if c.escalated.contains(ticket) {
            continue;
        }
        let at = opened(t);
        let host = host_of(t);
        if hot
            .get(&host)
            .is_some_and(|times| times.iter().any(|e| (at - e).abs() <= MISS_WINDOW_MS))
        {
            misses.entry(host).or_default().push(ticket);
        }
    }
    for (host, tickets) in misses {
        findings.push(HuntFinding {
            title: format!(
                "{} closed tickets next to escalations on {host}",
                tickets.len()
            ),
            detail: format!(
                "these tickets were closed, but {host} had an escalated case within an hour of \
                 each: potential misses, worth a second look"
            ),
            tickets: tickets.iter().take(20).map(|t| (*t).to_owned()).collect(),
            entities: vec![Ioc {
                kind: IocKind::Host,
                value: host,
            }],
        });
    }
    findings
}
