//! Case memory on a constructed case set: a planted campaign among benign cases that all
//! mention one ubiquitous domain. Recall and clustering must find the campaign and must not
//! chain anything through the ubiquitous domain. A real SQLite file, folded the way the
//! projector folds the audit.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure should fail the test loudly"
)]

mod common;

use soc_runtime::bus::StreamId;
use soc_runtime::memory::{self, CampaignOptions, RecallOptions};
use soc_runtime::proto::{Alert, AlertReceived, AlertTriaged, CaseContext, Envelope, Event};
use soc_runtime::store::Store;

const UBIQUITOUS: &str = "update.windows-cdn.com";
const C2_IP: &str = "185.220.101.7";

fn alert(ticket: &str, minute: u32, host: &str, ip: &str, text: &str) -> Envelope {
    Envelope::new_root(
        "source:test",
        ticket,
        Event::AlertReceived(AlertReceived {
            alert: Alert {
                ticket_id: ticket.into(),
                site: Some("acme".into()),
                source: "suricata".into(),
                rule_id: "S-Http-1".into(),
                rule_name: text.into(),
                host: host.into(),
                src_ips: vec![ip.into()],
                first_seen: format!("2026-03-01T{:02}:{:02}:00Z", minute / 60, minute % 60),
                last_seen: format!("2026-03-01T{:02}:{:02}:30Z", minute / 60, minute % 60),
                alert_count: 1,
                ..Alert::default()
            },
            received_via: "test".into(),
        }),
    )
}

fn benign(i: u32) -> Envelope {
    alert(
        &format!("benign-{i:03}"),
        i,
        &format!("ws-{}", i % 40),
        &format!("45.33.{}.{}", i / 200, i % 200 + 1),
        &format!("HTTP GET to {UBIQUITOUS} for patch KB{}", 5000 + i),
    )
}

fn campaign(i: u32) -> Envelope {
    alert(
        &format!("camp-{i}"),
        30 + i * 40,
        &format!("db-{i}"),
        C2_IP,
        &format!("beacon to evil-c2.biz after {UBIQUITOUS} check, stage {i}"),
    )
}

async fn fold(store: &Store, envelopes: &[Envelope], from_seq: u64) {
    let page: Vec<(StreamId, Envelope)> = envelopes
        .iter()
        .enumerate()
        .map(|(i, e)| {
            (
                StreamId {
                    ms: 1,
                    seq: from_seq + i as u64,
                },
                e.clone(),
            )
        })
        .collect();
    let last = page.last().unwrap().0;
    store.fold("test", &page, last).await.unwrap();
}

#[tokio::test]
async fn a_planted_campaign_is_recalled_and_clustered_without_chaining_the_ubiquitous_domain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("soc.db");
    let store = Store::open(&path).await.unwrap();
    let mut cases: Vec<Envelope> = (0..200).map(benign).collect();
    cases.extend((0..5).map(campaign));
    fold(&store, &cases, 0).await;
    // Folding the same entries again changes nothing (exactly-once by key).
    let once = common::dump_store(&path).await;
    fold(&store, &cases, 0).await;
    assert_eq!(common::dump_store(&path).await, once);

    // Recall from the last campaign case: the four earlier ones, for the right reasons.
    let found = memory::recall(store.pool(), "camp-4", RecallOptions::default())
        .await
        .unwrap();
    let top: Vec<&str> = found.iter().take(4).map(|r| r.ticket.as_str()).collect();
    let mut sorted = top.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        ["camp-0", "camp-1", "camp-2", "camp-3"],
        "{found:#?}"
    );
    for r in &found[..4] {
        assert!(r.shared.contains(&format!("ip:{C2_IP}")), "{r:?}");
        assert!(r.shared.contains(&"domain:evil-c2.biz".to_owned()), "{r:?}");
    }
    assert!(
        found
            .iter()
            .all(|r| r.shared.iter().all(|s| !s.contains(UBIQUITOUS))),
        "the ubiquitous domain carries no weight: {found:#?}"
    );
    // Closer in time scores higher among equals.
    assert_eq!(found[0].ticket, "camp-3", "{found:#?}");
    // A benign case recalls no campaign case: they share only the ubiquitous domain (and
    // the rule every case has).
    let benign_recall = memory::recall(store.pool(), "benign-150", RecallOptions::default())
        .await
        .unwrap();
    assert!(
        benign_recall.iter().all(|r| !r.ticket.starts_with("camp-")),
        "{benign_recall:#?}"
    );

    // Clustering: one campaign, exactly the planted cases.
    let found = memory::campaigns(store.pool(), CampaignOptions::default())
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(
        found[0].cases,
        ["camp-0", "camp-1", "camp-2", "camp-3", "camp-4"]
    );
    assert!(found[0].shared.contains(&format!("ip:{C2_IP}")));
    assert!(found[0].shared.iter().all(|s| !s.contains(UBIQUITOUS)));
    let id = found[0].id.clone();

    // The campaign grows: same id, one more case.
    fold(&store, &[campaign(5)], 1000).await;
    let grown = memory::campaigns(store.pool(), CampaignOptions::default())
        .await
        .unwrap();
    assert_eq!(grown.len(), 1);
    assert_eq!(grown[0].id, id, "a campaign keeps its id as it grows");
    assert_eq!(grown[0].cases.len(), 6);

    // One store, one log: another projection is refused, not mixed in.
    store.bind_projection("test").await.unwrap();
    let err = store.bind_projection("redis:other").await.unwrap_err();
    assert!(err.to_string().contains("another data directory"), "{err}");

    // The trace of a case is what was recorded, in order.
    let trace = memory::why(store.pool(), "camp-2").await.unwrap();
    assert_eq!(trace.len(), 1);
    assert_eq!(trace[0].kind, "AlertReceived");
    assert_eq!(trace[0].event["body"]["alert"]["ticket_id"], "camp-2");
    store.close().await;
}

async fn counted(store: &Store) -> (i64, i64) {
    let kept: i64 = sqlx::query_scalar("SELECT n FROM case_count")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cases")
        .fetch_one(store.pool())
        .await
        .unwrap();
    (kept, rows)
}

fn triaged(received: &Envelope) -> Envelope {
    let Event::AlertReceived(r) = &received.event else {
        panic!("not an alert")
    };
    received.caused(
        "sentinel",
        Event::AlertTriaged(AlertTriaged {
            case: CaseContext::from_alert(&r.alert, &received.id.to_string()),
            ..AlertTriaged::default()
        }),
    )
}

/// Recall's rarity weights divide by the number of cases, which the fold keeps in
/// `case_count` rather than counting the table on every recall: it must equal the rows
/// whatever the paging, on a page folded twice, and after a reset and a rebuild.
#[tokio::test]
async fn the_case_count_equals_the_cases_however_the_audit_is_folded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("soc.db")).await.unwrap();
    let first: Vec<Envelope> = (0..50).map(benign).collect();
    // The second page triages the first page's cases and opens 30 more.
    let mut second: Vec<Envelope> = first.iter().map(triaged).collect();
    second.extend((50..80).map(benign));
    fold(&store, &first, 0).await;
    assert_eq!(counted(&store).await, (50, 50));
    fold(&store, &second, 100).await;
    assert_eq!(counted(&store).await, (80, 80));
    fold(&store, &second, 100).await;
    assert_eq!(
        counted(&store).await,
        (80, 80),
        "a page folded again adds no case"
    );
    store.reset("test").await.unwrap();
    assert_eq!(counted(&store).await, (0, 0));
    fold(&store, &first, 0).await;
    fold(&store, &second, 100).await;
    assert_eq!(counted(&store).await, (80, 80), "a rebuild counts the same");
}
