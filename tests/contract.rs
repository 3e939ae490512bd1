//! The event contract: the JSON Schema in `proto/` matches the Rust types, frozen fixtures
//! still decode, unknown fields are tolerated, and no byte string makes the decoder panic.
//!
//! `SOC_BLESS=1 cargo test --test contract` writes the schema and any *missing* fixture;
//! existing fixtures are frozen and never rewritten.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure should fail the test loudly"
)]

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use soc_runtime::proto::*;

fn proto_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("proto/v1")
}

fn bless() -> bool {
    std::env::var_os("SOC_BLESS").is_some()
}

fn case() -> CaseContext {
    CaseContext {
        ticket: "fox-00042".into(),
        alert_ref: "0190f5a2-7c1e-7c3a-9d1b-3f0b6e1a2c4d".into(),
        site: Some("fox".into()),
        source: "suricata".into(),
        rule_id: "S-Dns-Qry3".into(),
        rule_name: "Suricata: Alert - ET INFO Observed DNS Query to .biz TLD".into(),
        host: "mail".into(),
        user: Some("jdoe".into()),
        src_ips: vec!["192.168.10.5".into(), "203.0.113.7".into()],
        alert_count: 9,
        first_seen: "2022-01-15T00:00:01Z".into(),
        last_seen: "2022-01-15T00:09:13Z".into(),
        priority: Some(9),
        dest_ips: vec!["192.168.10.1".into()],
        vendor: Some(soc_runtime::proto::VendorMeta {
            priority: Some(3),
            category: Some("misc-activity".into()),
            ..Default::default()
        }),
    }
}

fn meta() -> DecisionMeta {
    DecisionMeta {
        reasoner: ReasonerKind::Llm,
        wall_time_us: 1234,
        tool_calls: 2,
        tokens_in: 300,
        tokens_out: 80,
        needs_human_review: None,
        degraded: None,
        record: vec![
            soc_runtime::proto::Exchange {
                kind: "model".into(),
                at_ms: 1_642_204_801_500,
                prompt: vec![
                    "system: You are...".into(),
                    "user: Assess this case.".into(),
                ],
                ..Default::default()
            }
            .with_output("call memory.recall({\"ticket\":\"fox-00042\"})"),
            soc_runtime::proto::Exchange {
                kind: "tool".into(),
                at_ms: 1_642_204_801_600,
                tool: "memory.recall".into(),
                arguments: "{\"ticket\":\"fox-00042\"}".into(),
                outcome: "ran".into(),
                ..Default::default()
            }
            .with_output("[]"),
        ],
    }
}

fn step() -> PlanStep {
    PlanStep {
        step_id: "contain-host".into(),
        action: "isolate_host".into(),
        target: "mail".into(),
        description: "isolate host mail from the network".into(),
        evidence: vec!["ATT&CK T1059: execution".into()],
    }
}

fn window() -> Window {
    Window {
        start_ms: 1_642_204_800_000,
        end_ms: 1_642_233_600_000,
    }
}

/// One fully populated sample of every event kind, in [`Event::KINDS`] order.
fn samples() -> Vec<Event> {
    vec![
        Event::AlertReceived(AlertReceived {
            alert: Alert {
                ticket_id: "fox-00042".into(),
                site: Some("fox".into()),
                source: "suricata".into(),
                rule_id: "S-Dns-Qry3".into(),
                rule_name: "Suricata: Alert - ET INFO Observed DNS Query to .biz TLD".into(),
                host: "mail".into(),
                user: None,
                src_ips: vec!["192.168.10.5".into()],
                first_seen: "2022-01-15T00:00:01Z".into(),
                last_seen: "2022-01-15T00:09:13Z".into(),
                alert_count: 9,
                dest_ips: vec!["192.168.10.1".into()],
                dest_ports: vec![53],
                raw: Some(r#"{"event_type":"alert","alert":{"signature_id":2027757}}"#.into()),
                vendor: Some(VendorMeta {
                    rule: Some("2027757".into()),
                    priority: Some(3),
                    severity: Some("informational".into()),
                    category: Some("Potentially Bad Traffic".into()),
                    groups: vec!["dns".into()],
                    attack: vec!["T1071.004".into()],
                    ..VendorMeta::default()
                }),
            },
            received_via: "jsonl:tickets.jsonl.gz".into(),
        }),
        Event::AlertTriaged(AlertTriaged {
            case: case(),
            verdict: TriageVerdict::TruePositive,
            confidence: 0.8,
            priority: 9,
            rationale: "rule title matches .biz tld".into(),
            meta: meta(),
            assessment: Some(assessment()),
        }),
        Event::CaseEscalated(CaseEscalated {
            case: case(),
            reason: "true positive on mail".into(),
            confidence: 0.8,
            linked: assessment().linked,
        }),
        Event::Tier2Analysis(Tier2Analysis {
            case: case(),
            triage_verdict: TriageVerdict::Suspicious,
            verdict: TriageVerdict::TruePositive,
            decision: Tier2Decision::NeedsHumanReview,
            confidence: 0.5,
            summary: "model output did not validate".into(),
            similar_incidents: vec!["fox-00007".into()],
            next_steps: vec!["look at DNS logs".into()],
            meta: meta(),
        }),
        Event::IrPlan(IrPlan {
            plan_id: "fox-00042/plan".into(),
            case: case(),
            severity: Severity::Sev2,
            summary: "SEV-2 on mail".into(),
            containment: vec![step()],
            eradication: vec!["remove the implant".into()],
            recovery: vec!["restore mail".into()],
            notifications: vec!["CISO".into()],
            meta: meta(),
        }),
        Event::ActionProposed(ActionProposed {
            action_id: "fox-00042/contain-host".into(),
            case: case(),
            plan_id: "fox-00042/plan".into(),
            step: step(),
            severity: Severity::Sev2,
            approver_role: "IR Lead On-Call".into(),
            expires_at_ms: 1_642_219_200_000,
        }),
        Event::ActionDecision(ActionDecision {
            action_id: "fox-00042/contain-host".into(),
            case: case(),
            decision: ApprovalDecision::Approved,
            decided_by: "alice".into(),
            decided_at_ms: 1_642_205_000_000,
            reason: "confirmed beaconing".into(),
            executed: false,
        }),
        Event::ThreatIntelReport(ThreatIntelReport {
            case: case(),
            likely_actor: Some("APT-EXAMPLE".into()),
            evidence: vec!["domain registered yesterday".into()],
            attack_techniques: vec![AttackTechnique {
                id: "T1071.004".into(),
                name: "Application Layer Protocol: DNS".into(),
            }],
            iocs: vec![Ioc {
                kind: IocKind::Domain,
                value: "evil.biz".into(),
            }],
            severity_adjustment: 1,
            meta: meta(),
        }),
        Event::DetectionTuningReport(DetectionTuningReport {
            report_id: "detection_eng/2022-01-15T14:00:00Z".into(),
            window: window(),
            noisy_rules: vec![NoisyRule {
                rule_id: "W-Sys-Cav".into(),
                rule_name: "Wazuh: ClamAV database update".into(),
                fired: 2218,
                closed: 2218,
                top_hosts: vec!["mail".into()],
                sample_tickets: vec!["fox-00001".into()],
                recommendation: "suppress".into(),
            }],
            meta: meta(),
        }),
        Event::HuntingReport(HuntingReport {
            report_id: "threat_hunter/2022-01-15T11:00:00Z".into(),
            window: window(),
            findings: vec![HuntFinding {
                title: "host repeats".into(),
                detail: "mail raised 40 tickets".into(),
                tickets: vec!["fox-00042".into()],
                entities: vec![Ioc {
                    kind: IocKind::Host,
                    value: "mail".into(),
                }],
            }],
            meta: meta(),
        }),
        Event::CampaignDetected(CampaignDetected {
            campaign_id: "campaign-7f3a".into(),
            window: window(),
            tickets: vec!["fox-00042".into(), "fox-00043".into()],
            shared_indicators: vec![Ioc {
                kind: IocKind::Ip,
                value: "203.0.113.7".into(),
            }],
            summary: "two cases share 203.0.113.7".into(),
        }),
        Event::ShiftSummary(ShiftSummary {
            report_id: "soc_manager/2022-01-15T11:00:00Z".into(),
            window: window(),
            alerts: 1200,
            escalated: 12,
            closed: 1188,
            actions_proposed: 9,
            actions_decided: 7,
            highlights: vec!["DNS to .biz from mail".into()],
            meta: meta(),
        }),
        Event::DispositionRecorded(DispositionRecorded {
            case: case(),
            disposition: Disposition::Escalate,
            by: "ana@soc.example".into(),
            origin: "webex".into(),
            known_at_ms: 1_642_219_200_000,
            reason: Some("confirmed exfiltration".into()),
        }),
        Event::CaseUpdated(CaseUpdated {
            alert: Alert {
                ticket_id: "fox:mail:2027757:20220115T00".into(),
                site: Some("fox".into()),
                source: "suricata".into(),
                rule_id: "2027757".into(),
                rule_name: "ET INFO Observed DNS Query to .biz TLD".into(),
                host: "mail".into(),
                user: None,
                src_ips: vec!["192.168.10.5".into()],
                dest_ips: vec!["192.168.10.1".into()],
                dest_ports: vec![53],
                first_seen: "2022-01-15T00:00:01Z".into(),
                last_seen: "2022-01-15T00:41:13Z".into(),
                alert_count: 17,
                raw: Some(r#"{"event_type":"alert"}"#.into()),
                vendor: None,
            },
            received_via: "follow:eve.json".into(),
        }),
    ]
}

fn assessment() -> Assessment {
    Assessment {
        probability: 0.83,
        threshold: 0.45,
        policy: "fitted on 7800 dispositions of 4 sites".into(),
        vendor: VendorEvidence {
            category: "et:INFO".into(),
            tier: "info".into(),
            source: "ET category INFO".into(),
            attack: vec!["T1071.004".into()],
        },
        priors: vec![PriorEvidence {
            level: "rule@site".into(),
            key: "S-Dns-Qry3".into(),
            escalated: 12.0,
            closed: 0.5,
            rate: 0.91,
        }],
        signals: vec![SignalEvidence {
            name: "volume".into(),
            value: 3.4,
            contribution: 1.2,
            detail: "ln(1 + alerts) against the rule's usual count".into(),
        }],
        correlated: vec![CorrelatedCase {
            ticket: "fox-00040".into(),
            rule_id: "A-Dns-Val1".into(),
            source: "aminer".into(),
            probability: 0.2,
        }],
        precedents: vec![Precedent {
            ticket: "santos-00009".into(),
            site: "santos".into(),
            rule_id: "S-Dns-Qry3".into(),
            host: "inet-firewall".into(),
            disposition: Disposition::Escalate,
            similarity: "same rule, another site".into(),
        }],
        linked: vec![LinkedCase {
            case: case(),
            probability: 0.7,
        }],
    }
}

fn envelope(event: Event) -> Envelope {
    Envelope {
        v: SCHEMA_VERSION,
        id: "0190f5a2-7c1e-7c3a-9d1b-3f0b6e1a2c4e".into(),
        at_ms: 1_642_204_801_000,
        produced_by: "sentinel".into(),
        correlation_id: "fox-00042".into(),
        causation_id: Some("0190f5a2-7c1e-7c3a-9d1b-3f0b6e1a2c4d".into()),
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        event,
    }
}

#[test]
fn samples_cover_every_event_kind_in_order() {
    let kinds: Vec<&str> = samples().iter().map(Event::kind).collect();
    assert_eq!(kinds, Event::KINDS);
}

#[test]
fn the_json_schema_in_proto_matches_the_types() {
    let path = proto_dir().join("envelope.schema.json");
    let generated = serde_json::to_string_pretty(&json_schema()).unwrap() + "\n";
    if bless() {
        std::fs::create_dir_all(proto_dir()).unwrap();
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date with the Rust types; run `SOC_BLESS=1 cargo test --test contract` \
         and review the diff (changes inside a version must be additive)",
        path.display()
    );
    for kind in Event::KINDS {
        assert!(
            generated.contains(&format!("\"{kind}\"")),
            "{kind} missing from the schema"
        );
    }
}

/// An event as the judgment fixtures froze it: the alert's flow fields and raw record (added
/// since, additively) left at their defaults, which is what an older producer's bytes decode to.
fn as_judgment_frozen(event: &Event) -> Event {
    let mut e = event.clone();
    if let Event::AlertReceived(r) = &mut e {
        r.alert.dest_ips.clear();
        r.alert.dest_ports.clear();
        r.alert.raw = None;
    }
    e
}

/// An event as the ingest fixtures froze it: the console's additions (a case's destinations
/// and vendor fields, a decision's record, a step's evidence) left at their defaults.
fn as_ingest_frozen(event: &Event) -> Event {
    fn strip(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, child) in map.iter_mut() {
                    match (key.as_str(), &mut *child) {
                        ("case", serde_json::Value::Object(c)) => {
                            c.remove("dest_ips");
                            c.remove("vendor");
                        }
                        ("meta", serde_json::Value::Object(m)) => {
                            m.remove("record");
                        }
                        ("step", serde_json::Value::Object(s)) => {
                            s.remove("evidence");
                        }
                        ("containment", serde_json::Value::Array(steps)) => {
                            for s in steps.iter_mut().filter_map(|s| s.as_object_mut()) {
                                s.remove("evidence");
                            }
                        }
                        _ => {}
                    }
                    strip(child);
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(event).unwrap();
    strip(&mut value);
    serde_json::from_value(value).unwrap()
}

/// An event as the first v1 fixtures froze it: the fields added since (additively) left at
/// their defaults, which is what an old producer's bytes decode to.
fn as_first_frozen(event: &Event) -> Event {
    let mut e = as_judgment_frozen(event);
    match &mut e {
        Event::AlertReceived(r) => r.alert.vendor = None,
        Event::AlertTriaged(t) => t.assessment = None,
        Event::CaseEscalated(c) => c.linked.clear(),
        _ => {}
    }
    e
}

#[test]
fn frozen_fixtures_still_decode_to_the_same_events() {
    let dir = proto_dir().join("fixtures");
    let check = |path: std::path::PathBuf, expected: Envelope| {
        let kind = expected.event.kind();
        if !path.exists() && bless() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, encode(&expected).unwrap()).unwrap();
        }
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "missing frozen fixture {}: {e} (SOC_BLESS=1 writes it once)",
                path.display()
            )
        });
        let decoded = decode(&bytes).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(decoded, expected, "{} decodes differently", path.display());
    };
    for event in samples() {
        let kind = event.kind();
        let ingest = as_ingest_frozen(&event);
        let first = as_first_frozen(&ingest);
        let judgment = as_judgment_frozen(&ingest);
        // The first fixture of each kind, and one per later addition to it.
        if ingest != event {
            check(dir.join(format!("{kind}.console.msgpack")), envelope(event));
        }
        if judgment != ingest {
            check(dir.join(format!("{kind}.ingest.msgpack")), envelope(ingest));
        }
        if first != judgment {
            check(
                dir.join(format!("{kind}.judgment.msgpack")),
                envelope(judgment),
            );
        }
        check(dir.join(format!("{kind}.msgpack")), envelope(first));
    }
}

#[test]
fn every_event_round_trips_through_named_messagepack() {
    for event in samples() {
        let original = envelope(event);
        let bytes = encode(&original).unwrap();
        // Named encoding: field names are on the wire.
        assert!(bytes.windows(14).any(|w| w == b"correlation_id"));
        assert_eq!(decode(&bytes).unwrap(), original);
    }
}

#[test]
fn unknown_fields_from_newer_producers_are_ignored() {
    for event in samples() {
        let original = envelope(event);
        let mut value = serde_json::to_value(&original).unwrap();
        value["added_in_a_later_release"] = serde_json::json!({"nested": [1, 2, 3]});
        value["event"]["body"]["another_new_field"] = serde_json::json!("x");
        let bytes = rmp_serde::to_vec_named(&value).unwrap();
        assert_eq!(decode(&bytes).unwrap(), original);
    }
}

#[test]
fn missing_required_fields_and_unknown_kinds_are_errors() {
    let mut value = serde_json::to_value(envelope(samples().remove(0))).unwrap();
    value["event"]["kind"] = serde_json::json!("NotAnEvent");
    assert!(decode(&rmp_serde::to_vec_named(&value).unwrap()).is_err());
    let mut value = serde_json::to_value(envelope(samples().remove(0))).unwrap();
    value.as_object_mut().unwrap().remove("correlation_id");
    assert!(decode(&rmp_serde::to_vec_named(&value).unwrap()).is_err());
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    // An unknown field holding 100k nested arrays.
    let mut bytes = vec![0x81, 0xa1, b'x'];
    bytes.extend(std::iter::repeat_n(0x91, 100_000));
    bytes.push(0xc0);
    assert!(decode(&bytes).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn corrupted_valid_envelopes_never_panic(
        which in 0usize..12,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = encode(&envelope(samples().swap_remove(which))).unwrap();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let keep = cut.index(bytes.len() + 1);
        bytes.truncate(keep);
        let _ = decode(&bytes);
    }
}
