//! Calendar roles: reports over a window of what the SOC recorded.
//!
//! Each role has a schedule (cron, in the SOC's time zone, America/New_York by default) and a
//! window length. A report covers the window that ends at the latest scheduled time at or
//! before "now" (or `--at`), and its id is `<role>:<window end>`, so running it again for the
//! same window gives the same id, and publishing it again is a no-op (the bus dedupes on it).
//!
//! The input is the window's domain events, as `(role that produced it, event)`, read from the
//! audit stream by entry time ([`read_audit`]) or from the store's recorded case events
//! ([`read_store`], the projection of the same audit, for a run whose in-memory audit is
//! gone). The reports are computed by rules, from counts: nothing here asks the model.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::bus::{Bus, BusError, Commit, Outgoing, StreamId, Topic};
use crate::proto::{
    CampaignDetected, DecisionMeta, DetectionTuningReport, Envelope, Event, HuntFinding,
    HuntingReport, Ioc, IocKind, NoisyRule, ReasonerKind, ShiftSummary, Tier2Decision, Window,
};
use crate::store::{Store, StoreError};

/// `[calendar]`: the calendar roles (shift summaries, detection tuning, hunts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CalendarConfig {
    /// Run them in this process.
    pub enabled: bool,
    /// Time zone of their schedules (IANA name).
    pub tz: String,
}

impl Default for CalendarConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            tz: DEFAULT_TZ.to_owned(),
        }
    }
}

/// The default time zone of the schedules.
pub const DEFAULT_TZ: &str = "America/New_York";

/// A calendar role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CalendarRole {
    /// Shift summaries at 06:00, 14:00 and 22:00 over the 8 hours before.
    #[value(name = "soc_manager", alias = "soc-manager")]
    SocManager,
    /// Noisy-rule tuning at 09:00 Monday to Friday over the 24 hours before.
    #[value(name = "detection_eng", alias = "detection-eng")]
    DetectionEng,
    /// Sweeps at 06:00 and 18:00 over the 12 hours before.
    #[value(name = "threat_hunter", alias = "threat-hunter")]
    ThreatHunter,
    /// Campaign clustering every 6 hours (00:00, 06:00, 12:00, 18:00) over the 14 days before.
    #[value(name = "campaign_detector", alias = "campaign-detector")]
    CampaignDetector,
}

impl CalendarRole {
    /// Every calendar role.
    pub const ALL: [CalendarRole; 4] = [
        CalendarRole::SocManager,
        CalendarRole::DetectionEng,
        CalendarRole::ThreatHunter,
        CalendarRole::CampaignDetector,
    ];

    /// The role's name.
    pub fn name(self) -> &'static str {
        match self {
            CalendarRole::SocManager => "soc_manager",
            CalendarRole::DetectionEng => "detection_eng",
            CalendarRole::ThreatHunter => "threat_hunter",
            CalendarRole::CampaignDetector => "campaign_detector",
        }
    }

    /// Its schedule (cron: minute hour day-of-month month day-of-week).
    pub fn schedule(self) -> &'static str {
        match self {
            CalendarRole::SocManager => "0 6,14,22 * * *",
            CalendarRole::DetectionEng => "0 9 * * MON-FRI",
            CalendarRole::ThreatHunter => "0 6,18 * * *",
            CalendarRole::CampaignDetector => "0 0,6,12,18 * * *",
        }
    }

    /// Its window, ms.
    pub fn window_ms(self) -> i64 {
        let hours = match self {
            CalendarRole::SocManager => 8,
            CalendarRole::DetectionEng => 24,
            CalendarRole::ThreatHunter => 12,
            CalendarRole::CampaignDetector => 14 * 24,
        };
        hours * 3_600_000
    }
}

/// Calendar errors.
#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    /// A bad time zone or schedule.
    #[error("{0}")]
    Schedule(String),
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The window a report run at `at_ms` covers: the role's window ending at its latest scheduled
/// time at or before `at_ms` in time zone `tz`; or, when `length_ms` is given (an on-demand
/// report), that long ending at `at_ms` itself.
pub fn window_at(
    role: CalendarRole,
    at_ms: i64,
    tz: &str,
    length_ms: Option<i64>,
) -> Result<Window, CalendarError> {
    if let Some(length) = length_ms {
        return Ok(Window {
            start_ms: at_ms.saturating_sub(length),
            end_ms: at_ms,
        });
    }
    let zone = chrono_tz::Tz::from_str(tz)
        .map_err(|_| CalendarError::Schedule(format!("unknown time zone {tz:?}")))?;
    let cron = croner::Cron::from_str(role.schedule())
        .map_err(|e| CalendarError::Schedule(format!("schedule of {}: {e}", role.name())))?;
    let at = zone
        .timestamp_millis_opt(at_ms)
        .single()
        .ok_or_else(|| CalendarError::Schedule(format!("time {at_ms} ms is out of range")))?;
    let end = cron
        .find_previous_occurrence(&at, true)
        .map_err(|e| CalendarError::Schedule(format!("no scheduled time before {at}: {e}")))?;
    let end_ms = end.timestamp_millis();
    Ok(Window {
        start_ms: end_ms - role.window_ms(),
        end_ms,
    })
}

/// The report id of `role` for `window`: the role and the window's end.
pub fn report_id(role: CalendarRole, window: &Window) -> String {
    let end = Utc
        .timestamp_millis_opt(window.end_ms)
        .single()
        .map_or_else(
            || window.end_ms.to_string(),
            |t: DateTime<Utc>| t.to_rfc3339(),
        );
    format!("{}:{end}", role.name())
}

/// The window's domain events from the audit stream (entries written in the window).
pub async fn read_audit(bus: &Bus, window: &Window) -> Result<Vec<(String, Event)>, BusError> {
    let end = StreamId {
        ms: u64::try_from(window.end_ms.saturating_sub(1)).unwrap_or(0),
        seq: u64::MAX,
    };
    let mut from = StreamId {
        ms: u64::try_from(window.start_ms).unwrap_or(0),
        seq: 0,
    };
    let mut out = Vec::new();
    loop {
        let page = bus.range(Topic::Audit, from, end, 1000).await?;
        let Some(last) = page.last().map(|e| e.id) else {
            break;
        };
        for entry in &page {
            if let Ok(envelope) = entry.fields.decode_envelope() {
                out.push((envelope.produced_by, envelope.event));
            }
        }
        if page.len() < 1000 {
            break;
        }
        from = last.next();
    }
    Ok(out)
}

/// The window's case events as the store recorded them (by audit entry time).
pub async fn read_store(
    store: &Store,
    window: &Window,
) -> Result<Vec<(String, Event)>, StoreError> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT role, body FROM case_events WHERE audit_ms >= ? AND audit_ms < ? \
         ORDER BY audit_ms, audit_seq",
    )
    .bind(window.start_ms)
    .bind(window.end_ms)
    .fetch_all(store.pool())
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(role, body)| Some((role, serde_json::from_str::<Event>(&body).ok()?)))
        .collect())
}

/// The reports of `role` over `window` from its events: one report, or for the campaign
/// detector one `CampaignDetected` per campaign.
pub fn reports(role: CalendarRole, window: Window, events: &[(String, Event)]) -> Vec<Event> {
    if role == CalendarRole::CampaignDetector {
        return campaigns(window, events);
    }
    let started = std::time::Instant::now();
    let id = report_id(role, &window);
    let mut event = match role {
        CalendarRole::CampaignDetector => return Vec::new(),
        CalendarRole::SocManager => Event::ShiftSummary(shift_summary(id, window, events)),
        CalendarRole::DetectionEng => Event::DetectionTuningReport(DetectionTuningReport {
            report_id: id,
            window,
            noisy_rules: noisy_rules(events),
            meta: DecisionMeta::default(),
        }),
        CalendarRole::ThreatHunter => Event::HuntingReport(HuntingReport {
            report_id: id,
            window,
            findings: hunt(events),
            meta: DecisionMeta::default(),
        }),
    };
    let meta = DecisionMeta {
        reasoner: ReasonerKind::Rules,
        wall_time_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        ..DecisionMeta::default()
    };
    match &mut event {
        Event::ShiftSummary(r) => r.meta = meta,
        Event::DetectionTuningReport(r) => r.meta = meta,
        Event::HuntingReport(r) => r.meta = meta,
        _ => {}
    }
    vec![event]
}

/// Campaigns among the window's cases: cases tied by shared rare strong indicators (actor,
/// hash, domain, public IP, CVE) found in their events, as case memory clusters them
/// ([`crate::memory::cluster`]).
fn campaigns(window: Window, events: &[(String, Event)]) -> Vec<Event> {
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

fn rfc3339(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map_or_else(|| ms.to_string(), |t: DateTime<Utc>| t.to_rfc3339())
}

/// Publishes a report once: a second publish of the same report id writes nothing. A
/// campaign is published once per set of cases: again only when it has grown or changed.
/// Returns whether this one was written.
pub async fn publish(bus: &Bus, role: CalendarRole, event: &Event) -> Result<bool, BusError> {
    let (id, key) = match event {
        Event::ShiftSummary(r) => (&r.report_id, format!("report:{}", r.report_id)),
        Event::DetectionTuningReport(r) => (&r.report_id, format!("report:{}", r.report_id)),
        Event::HuntingReport(r) => (&r.report_id, format!("report:{}", r.report_id)),
        Event::CampaignDetected(c) => {
            let digest = crate::memory::fnv1a(&c.tickets.join("\n"));
            (
                &c.campaign_id,
                format!("campaign:{}:{digest:016x}", c.campaign_id),
            )
        }
        _ => return Ok(false),
    };
    let envelope = Envelope::new_root(role.name(), id, event.clone());
    let commit = Commit::dedupe(key, vec![Outgoing::event(&envelope)?]);
    let outcome = bus.submit(vec![commit]).await?;
    Ok(matches!(
        outcome.first(),
        Some(crate::bus::Outcome::Applied)
    ))
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

fn shift_summary(report_id: String, window: Window, events: &[(String, Event)]) -> ShiftSummary {
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

fn noisy_rules(events: &[(String, Event)]) -> Vec<NoisyRule> {
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

fn hunt(events: &[(String, Event)]) -> Vec<HuntFinding> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_end_at_the_latest_scheduled_time_in_the_time_zone() {
        // 2026-11-23 10:30 in New York is 15:30 UTC (EST, UTC-5).
        let at = Utc
            .with_ymd_and_hms(2026, 11, 23, 15, 30, 0)
            .unwrap()
            .timestamp_millis();
        let w = window_at(CalendarRole::SocManager, at, DEFAULT_TZ, None).unwrap();
        let end = Utc.with_ymd_and_hms(2026, 11, 23, 11, 0, 0).unwrap(); // 06:00 EST
        assert_eq!(w.end_ms, end.timestamp_millis());
        assert_eq!(w.end_ms - w.start_ms, 8 * 3_600_000);
        assert_eq!(
            report_id(CalendarRole::SocManager, &w),
            "soc_manager:2026-11-23T11:00:00+00:00"
        );
        // The same window however late in the shift it is asked for.
        let later = at + 3 * 3_600_000;
        assert_eq!(
            window_at(CalendarRole::SocManager, later, DEFAULT_TZ, None).unwrap(),
            w
        );
        // Detection engineering skips the weekend: Sunday 2026-11-22 -> Friday 09:00.
        let sunday = Utc
            .with_ymd_and_hms(2026, 11, 22, 20, 0, 0)
            .unwrap()
            .timestamp_millis();
        let w = window_at(CalendarRole::DetectionEng, sunday, DEFAULT_TZ, None).unwrap();
        assert_eq!(
            w.end_ms,
            Utc.with_ymd_and_hms(2026, 11, 20, 14, 0, 0)
                .unwrap()
                .timestamp_millis()
        );
        assert!(window_at(CalendarRole::SocManager, at, "Mars/Olympus", None).is_err());
        // On demand: that long, ending at the time asked.
        let w = window_at(CalendarRole::SocManager, at, DEFAULT_TZ, Some(60_000)).unwrap();
        assert_eq!((w.start_ms, w.end_ms), (at - 60_000, at));
    }

    #[tokio::test]
    async fn a_report_is_published_once_per_window() {
        let bus = Bus::memory(crate::bus::BusConfig::default()).unwrap();
        let window = Window {
            start_ms: 0,
            end_ms: 3_600_000,
        };
        let role = CalendarRole::SocManager;
        let first = reports(role, window, &[]).remove(0);
        assert!(publish(&bus, role, &first).await.unwrap());
        let again = reports(role, window, &[]).remove(0);
        assert!(
            !publish(&bus, role, &again).await.unwrap(),
            "same window, same id"
        );
        assert_eq!(bus.len(Topic::Reports).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn campaigns_are_published_once_per_set_of_cases() {
        let triaged = |ticket: &str, ips: &[&str]| {
            (
                "sentinel".to_owned(),
                Event::AlertTriaged(crate::proto::AlertTriaged {
                    case: crate::proto::CaseContext {
                        ticket: ticket.into(),
                        site: Some("s".into()),
                        host: format!("h-{ticket}"),
                        src_ips: ips.iter().map(|s| (*s).to_owned()).collect(),
                        first_seen: "2026-11-20T10:00:00Z".into(),
                        ..Default::default()
                    },
                    ..Default::default()
                }),
            )
        };
        let c2 = ["45.33.32.156", "185.220.101.4"];
        let mut events = vec![triaged("a", &c2), triaged("b", &c2), triaged("c", &c2)];
        // Background: other cases, each with an address of its own (rarity is relative).
        for i in 0..80 {
            let ip = format!("8.8.{}.{}", i / 200, i % 200 + 1);
            events.push(triaged(&format!("z{i:02}"), &[ip.as_str()]));
        }
        let window = Window {
            start_ms: 0,
            end_ms: 3_600_000,
        };
        let role = CalendarRole::CampaignDetector;
        let found = reports(role, window, &events);
        let [Event::CampaignDetected(c)] = found.as_slice() else {
            panic!("one campaign: {found:?}")
        };
        assert_eq!(c.tickets, ["a", "b", "c"]);
        assert_eq!(c.shared_indicators.len(), 2);
        assert!(c.summary.starts_with("3 cases"), "{}", c.summary);
        let bus = Bus::memory(crate::bus::BusConfig::default()).unwrap();
        assert!(publish(&bus, role, &found[0]).await.unwrap());
        let again = reports(role, window, &events).remove(0);
        assert!(!publish(&bus, role, &again).await.unwrap(), "nothing new");
        // A fourth case joins: the grown campaign is news, under the same id.
        events.push(triaged("e", &c2));
        let grown = reports(role, window, &events).remove(0);
        let Event::CampaignDetected(g) = &grown else {
            panic!()
        };
        assert_eq!(g.campaign_id, c.campaign_id);
        assert!(publish(&bus, role, &grown).await.unwrap());
        assert_eq!(bus.len(Topic::Reports).await.unwrap(), 2);
    }
}
