//! Judgment end to end, through the real backtest harness and runtime: the site's analysts
//! override any built-in prior, real detector titles from outside AIT-ADS reach Tier 2 on a
//! cold start, dispositions on the bus reach the reasoner without a restart, and no decision
//! ever sees its own ticket's label.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure should fail the test loudly"
)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use soc_runtime::backtest::{self, Disposition, SelectionSummary, Setup, Ticket};
use soc_runtime::judgment::vendor::{RulesetsConfig, Vendor};

fn rulesets() -> RulesetsConfig {
    let shared = common::datasets_dir();
    RulesetsConfig {
        wazuh: vec![shared.join("wazuh-ruleset/rules")],
        suricata: vec![shared.join("suricata-rules/rules")],
        suricata_classification: Some(shared.join("suricata-rules/classification.config")),
    }
}

fn selection(file: &str) -> SelectionSummary {
    SelectionSummary {
        file: file.into(),
        sites: Vec::new(),
        sample: None,
        stratify: false,
        seed: 0,
        leave_one_site_out: false,
        at_first_alert: false,
        updates: false,
    }
}

/// Labelled tickets as a backtest file holds them.
fn tickets(dir: &std::path::Path, lines: &[serde_json::Value]) -> Vec<Ticket> {
    let path = dir.join("tickets.jsonl");
    let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    std::fs::write(&path, text.join("\n") + "\n").unwrap();
    backtest::load_tickets(&path).unwrap()
}

fn ticket(
    id: &str,
    rule: &str,
    title: &str,
    host: &str,
    minute: i64,
    truth: &str,
) -> serde_json::Value {
    let at = chrono::DateTime::from_timestamp(1_700_000_000 + minute * 60, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    serde_json::json!({
        "ticket_id": id, "site": "new-site", "source": "suricata", "rule_id": rule,
        "rule_name": title, "host": host, "src_ips": ["10.0.0.5"], "first_seen": at,
        "last_seen": at, "alert_count": 3, "ground_truth": truth,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sites_own_analysts_override_the_vendors_prior_both_ways() {
    common::logs();
    let dir = tempfile::tempdir().unwrap();
    // A new site, no history: the vendor calls one rule critical (ET MALWARE) and another
    // informational (ET INFO). This site's analysts close the first every time and escalate
    // the second every time; their dispositions arrive an hour after each ticket.
    let mut lines = Vec::new();
    for i in 0..40 {
        let host = format!("h{}", i % 7);
        lines.push(ticket(
            &format!("m-{i:03}"),
            "ET-MAL",
            "Suricata: Alert - ET MALWARE Generic Beacon Observed",
            &host,
            i * 120,
            "close",
        ));
        lines.push(ticket(
            &format!("i-{i:03}"),
            "ET-INF",
            "Suricata: Alert - ET INFO Observed DNS Query to .zz TLD",
            &host,
            i * 120 + 1,
            "escalate",
        ));
    }
    let tickets = tickets(dir.path(), &lines);
    let setup = Setup {
        feedback_delay_ms: Some(3_600_000),
        vendor: Arc::new(Vendor::load(&rulesets()).unwrap()),
        keep_assessments: true,
        ..Setup::default()
    };
    let summary = backtest::run(tickets.clone(), selection("synthetic"), &setup)
        .await
        .unwrap();
    // Without the assessments (no --decisions) the replay's store keeps no case timelines:
    // the decisions are the same, to the probability.
    let untimed = Setup {
        keep_assessments: false,
        ..setup.clone()
    };
    let without = backtest::run(tickets, selection("synthetic"), &untimed)
        .await
        .unwrap();
    let decided = |s: &backtest::Summary| -> Vec<(String, bool, Option<f64>)> {
        s.decisions
            .iter()
            .map(|d| (d.ticket.clone(), d.escalated, d.p))
            .collect()
    };
    assert_eq!(decided(&without), decided(&summary));
    assert_eq!(without.confusion, summary.confusion);
    assert!(summary.decisions.iter().all(|d| d.assessment.is_some()));
    assert!(without.decisions.iter().all(|d| d.assessment.is_none()));
    let escalated = |prefix: &str, range: std::ops::Range<usize>| {
        summary
            .decisions
            .iter()
            .filter(|d| d.ticket.starts_with(prefix))
            .skip(range.start)
            .take(range.len())
            .filter(|d| d.escalated)
            .count()
    };
    // Cold: the vendor decides (the first malware tickets escalate, the info ones do not).
    assert_eq!(escalated("m-", 0..2), 2, "{:#?}", &summary.decisions[..6]);
    assert_eq!(escalated("i-", 0..2), 0, "{:#?}", &summary.decisions[..6]);
    // Once the closings and escalations arrive, the site's analysts decide.
    assert_eq!(
        escalated("m-", 25..40),
        0,
        "{:#?}",
        &summary.decisions[60..]
    );
    assert_eq!(
        escalated("i-", 25..40),
        15,
        "{:#?}",
        &summary.decisions[60..]
    );
    // The record says why: the site's own counts.
    let last = summary
        .decisions
        .iter()
        .rfind(|d| d.ticket.starts_with("m-"))
        .unwrap();
    let a = last.assessment.as_ref().unwrap();
    let site = a.priors.iter().find(|p| p.level == "rule@site").unwrap();
    assert!(site.closed >= 20.0 && site.escalated == 0.0, "{a:#?}");
    assert_eq!(a.vendor.tier, "critical");
    assert!(summary.calibration.cases == 80, "{:?}", summary.calibration);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_detector_titles_reach_tier2_on_a_cold_start_and_routine_ones_do_not() {
    common::logs();
    let dir = tempfile::tempdir().unwrap();
    // Level >= 12 titles as the user's own Wazuh ruleset declares them.
    let mut high = Vec::new();
    let vendor = Vendor::load(&rulesets()).unwrap();
    for file in std::fs::read_dir(common::datasets_dir().join("wazuh-ruleset/rules")).unwrap() {
        let text = std::fs::read_to_string(file.unwrap().path()).unwrap_or_default();
        for block in text.split("<rule id=").skip(1) {
            let level: u8 = block
                .split("level=\"")
                .nth(1)
                .and_then(|l| l.split('"').next())
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            if let Some(desc) = block
                .split("<description>")
                .nth(1)
                .and_then(|d| d.split("</description>").next())
                && level >= 12
                && !desc.contains("$(")
                && !desc.contains('&')
                && high.len() < 3
            {
                high.push(format!("Wazuh: {}", desc.trim()));
            }
        }
    }
    assert_eq!(high.len(), 3, "the ruleset holds level >= 12 rules");
    let escalate = [
        "Suricata: Alert - ET MALWARE Cobalt Strike Beacon Observed",
        "Suricata: Alert - ET EXPLOIT Apache log4j RCE Attempt (tcp ldap) (CVE-2021-44228)",
        "Suricata: Alert - ET ATTACK_RESPONSE Output of id command from HTTP server",
    ];
    let routine = [
        "Wazuh: ClamAV database update",
        "Suricata: Alert - ET INFO Observed DNS Query to .cloud TLD",
        "Suricata: Alert - SURICATA TLS invalid handshake message",
        "Wazuh: Dovecot Authentication Success.",
    ];
    let mut lines = Vec::new();
    for (i, title) in escalate
        .iter()
        .map(|t| t.to_string())
        .chain(high.iter().cloned())
        .enumerate()
    {
        let source = if title.starts_with("Wazuh") {
            "wazuh"
        } else {
            "suricata"
        };
        lines.push(serde_json::json!({
            "ticket_id": format!("hi-{i}"), "site": "cold", "source": source,
            "rule_id": format!("HI-{i}"), "rule_name": title, "host": format!("host-{i}"),
            "first_seen": "2026-01-10T10:00:00Z", "last_seen": "2026-01-10T10:00:00Z",
            "alert_count": 1,
        }));
    }
    for (i, title) in routine.iter().enumerate() {
        let source = if title.starts_with("Wazuh") {
            "wazuh"
        } else {
            "suricata"
        };
        lines.push(serde_json::json!({
            "ticket_id": format!("lo-{i}"), "site": "cold", "source": source,
            "rule_id": format!("LO-{i}"), "rule_name": title, "host": format!("quiet-{i}"),
            "first_seen": "2026-01-10T11:00:00Z", "last_seen": "2026-01-10T11:00:00Z",
            "alert_count": 1,
        }));
    }
    // The vendor tiers them before any run.
    for l in &lines {
        let alert = soc_runtime::ingest::jsonl::parse_line(l.to_string().as_bytes()).unwrap();
        let view = vendor.view(&alert);
        tracing::info!(title = %alert.rule_name, tier = ?view.tier, source = %view.source, "vendor view");
    }
    let feed = dir.path().join("feed.jsonl");
    let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    std::fs::write(&feed, text.join("\n") + "\n").unwrap();
    let mut config = soc_runtime::app::config::Config {
        data_dir: dir.path().join("data"),
        alerts: Some(feed),
        rulesets: rulesets(),
        ..soc_runtime::app::config::Config::default()
    };
    config.http.addr = "off".into();
    config.calendar.enabled = false;
    let report = soc_runtime::app::runtime::Runtime::start(
        config,
        soc_runtime::supervisor::RuntimeOptions {
            until_idle: true,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .wait()
    .await;
    assert_eq!(report.exit, soc_runtime::supervisor::ExitReason::Idle);
    let store = soc_runtime::store::Store::open(&soc_runtime::store::file_for(
        &dir.path().join("data"),
        "memory",
    ))
    .await
    .unwrap();
    let engaged: HashSet<String> = store
        .verdicts()
        .await
        .unwrap()
        .into_iter()
        .filter(|v| v.role == "tier2")
        .map(|v| v.ticket)
        .collect();
    for (i, line) in lines.iter().enumerate() {
        let ticket = line["ticket_id"].as_str().unwrap();
        let high = ticket.starts_with("hi-");
        assert_eq!(
            engaged.contains(ticket),
            high,
            "{ticket} ({}) {} reach Tier 2: {engaged:?} ({i})",
            line["rule_name"],
            if high { "should" } else { "should not" }
        );
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disposition_on_the_bus_reaches_the_reasoner_and_the_store_without_a_restart() {
    use soc_runtime::proto::{CaseContext, DispositionRecorded, Envelope, Event};
    common::logs();
    let dir = tempfile::tempdir().unwrap();
    let knowledge = Arc::new(soc_runtime::knowledge::Knowledge::default());
    let mut config = soc_runtime::app::config::Config {
        data_dir: dir.path().join("data"),
        ..soc_runtime::app::config::Config::default()
    };
    config.http.addr = "off".into();
    config.calendar.enabled = false;
    // The case, then (while the runtime keeps running) the analysts' disposition of it and of
    // a ticket this SOC never saw.
    let feed = dir.path().join("feed.jsonl");
    let line = serde_json::json!({
        "ticket_id": "fb-1", "site": "s", "source": "wazuh", "rule_id": "R-9",
        "rule_name": "Wazuh: something", "host": "h", "first_seen": "2026-01-10T10:00:00Z",
        "last_seen": "2026-01-10T10:05:00Z", "alert_count": 2,
    });
    std::fs::write(&feed, format!("{line}\n")).unwrap();
    config.alerts = Some(feed);
    let runtime = soc_runtime::app::runtime::Runtime::start(
        config,
        soc_runtime::supervisor::RuntimeOptions {
            knowledge: Some(knowledge.clone()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(knowledge.dispositions(), 0);
    common::wait_for("fb-1 triaged", Duration::from_secs(20), || {
        let k = knowledge.clone();
        async move { k.latest_ms("s", "h").map(|_| ()) }
    })
    .await;
    let case = CaseContext {
        ticket: "fb-1".into(),
        site: Some("s".into()),
        source: "wazuh".into(),
        rule_id: "R-9".into(),
        rule_name: "Wazuh: something".into(),
        host: "h".into(),
        first_seen: "2026-01-10T10:00:00Z".into(),
        last_seen: "2026-01-10T10:05:00Z".into(),
        alert_count: 2,
        ..CaseContext::default()
    };
    let stranger = CaseContext {
        ticket: "elsewhere-1".into(),
        site: Some("other".into()),
        ..case.clone()
    };
    for (ticket, case) in [("fb-1", case), ("elsewhere-1", stranger)] {
        let envelope = Envelope::new_root(
            "console",
            ticket,
            Event::DispositionRecorded(DispositionRecorded {
                case,
                disposition: Disposition::Escalate,
                by: "ana@soc.example".into(),
                origin: "console".into(),
                known_at_ms: 1_768_040_000_000,
                reason: Some("confirmed".into()),
            }),
        );
        runtime
            .bus()
            .submit(vec![soc_runtime::bus::Commit::dedupe(
                format!("disposition:{ticket}"),
                vec![soc_runtime::bus::Outgoing::event(&envelope).unwrap()],
            )])
            .await
            .unwrap();
    }
    common::wait_for("the dispositions folded", Duration::from_secs(20), || {
        let k = knowledge.clone();
        async move { (k.dispositions() == 2).then_some(()) }
    })
    .await;
    let p = knowledge.priors("R-9", "h", "wazuh", i64::MAX);
    assert_eq!(p.rule.escalated, 2);
    let report = runtime.shutdown().await;
    assert!(report.summary.store.projected.errors == 0);
    let store = soc_runtime::store::Store::open(&soc_runtime::store::file_for(
        &dir.path().join("data"),
        "memory",
    ))
    .await
    .unwrap();
    let kept = store.dispositions().await.unwrap();
    assert_eq!(kept.len(), 2);
    let fb = kept.iter().find(|d| d.ticket == "fb-1").unwrap();
    assert_eq!(fb.first_ms, Some(1_768_039_200_000));
    // The disposition joins its own case's trace; it opens no case for a stranger's ticket.
    let trace = soc_runtime::memory::why(store.pool(), "fb-1")
        .await
        .unwrap();
    assert!(
        trace.iter().any(|s| s.kind == "DispositionRecorded"),
        "{trace:?}"
    );
    let none = soc_runtime::memory::why(store.pool(), "elsewhere-1")
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_decision_sees_its_own_label_whatever_the_delay() {
    common::logs();
    let dir = tempfile::tempdir().unwrap();
    // Tickets whose first and last alert are the same instant, a rule that is always
    // escalated, and the shortest feedback there is: each label is known 1 ms after its
    // ticket. A decision that counted its own label would see one more escalation than the
    // tickets before it.
    let lines: Vec<serde_json::Value> = (0..20)
        .map(|i| {
            ticket(
                &format!("z-{i:02}"),
                "R-Z",
                "Suricata: Alert - ET INFO Something Z",
                "h",
                i * 5,
                "escalate",
            )
        })
        .collect();
    let tickets = tickets(dir.path(), &lines);
    let setup = Setup {
        feedback_delay_ms: Some(1),
        keep_assessments: true,
        ..Setup::default()
    };
    let summary = backtest::run(tickets.clone(), selection("synthetic"), &setup)
        .await
        .unwrap();
    for (i, d) in summary.decisions.iter().enumerate() {
        let a = d.assessment.as_ref().unwrap();
        let site = a.priors.iter().find(|p| p.level == "rule@site").unwrap();
        assert!(
            // Decay with alert time (30-day half-life) shaves a little off each count.
            (site.escalated + site.closed - i as f64).abs() < 0.05,
            "{}: counted {} dispositions with {i} tickets before it",
            d.ticket,
            site.escalated + site.closed
        );
    }
    // A zero delay is refused outright.
    let zero = Setup {
        feedback_delay_ms: Some(0),
        ..Setup::default()
    };
    let err = backtest::run(tickets, selection("synthetic"), &zero)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("longer than zero"), "{err}");
}
