//! Calendar roles: reports over a window of what the SOC recorded.
//!
//! Each role has a schedule (cron, in the SOC's time zone, America/New_York by default) and a
//! window length. A report covers the window that ends at the latest scheduled time at or
//! before "now" (or `--at`), and its id is `<role>:<window end>`, so running it again for the
//! same window gives the same id, and publishing it again is a no-op (the bus dedupes on it).
//!
//! The input is the window's domain events, as `(role that produced it, event)`, read from the
//! audit stream by entry time (`read_audit`) or from the store's recorded case events
//! ([`read_store`], the projection of the same audit, for a run whose in-memory audit is
//! gone). The reports are computed by rules, from counts: nothing here asks the model.

mod reports;

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::bus::{Bus, BusError, Commit, Outgoing, StreamId, Topic};
use crate::proto::{
    DecisionMeta, DetectionTuningReport, Envelope, Event, HuntingReport, ReasonerKind, Window,
};
use crate::store::{Store, StoreError};

pub use reports::render;
use reports::{campaigns, hunt, noisy_rules, shift_summary};

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
    pub(crate) const ALL: [CalendarRole; 4] = [
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
    pub(crate) fn schedule(self) -> &'static str {
        match self {
            CalendarRole::SocManager => "0 6,14,22 * * *",
            CalendarRole::DetectionEng => "0 9 * * MON-FRI",
            CalendarRole::ThreatHunter => "0 6,18 * * *",
            CalendarRole::CampaignDetector => "0 0,6,12,18 * * *",
        }
    }

    /// Its window, ms.
    pub(crate) fn window_ms(self) -> i64 {
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
pub(crate) async fn read_audit(
    bus: &Bus,
    window: &Window,
) -> Result<Vec<(String, Event)>, BusError> {
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
