//! Approvals over a real store: proposals folded from a real run's audit, decisions recorded
//! once with their `ActionDecision` in the outbox, and the relay publishing it exactly once to
//! a bus, also after a crash between the store write and the publish.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure should fail the test loudly"
)]

mod common;

use soc_runtime::approvals::{self, Approver, DecideError};
use soc_runtime::bus::{Bus, BusConfig, Topic};
use soc_runtime::config::Config;
use soc_runtime::proto::ApprovalDecision;
use soc_runtime::runtime::Runtime;
use soc_runtime::supervisor::RuntimeOptions;

fn approver(name: &str, role: &str) -> Approver {
    Approver {
        name: name.into(),
        roles: vec![role.into()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_is_decided_once_by_its_role_and_published_once() {
    common::logs();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().join("data"),
        alerts: Some(common::dev_tickets()),
        ..Config::default()
    };
    config.http.addr = "off".into();
    config.calendar.enabled = false;
    let report = Runtime::start(
        config,
        RuntimeOptions {
            until_idle: true,
            ..RuntimeOptions::default()
        },
    )
    .await
    .unwrap()
    .wait()
    .await;
    let proposed = report.summary.actions_proposed;
    assert!(proposed > 0);
    let store = soc_runtime::store::Store::open(&soc_runtime::store::file_for(
        &dir.path().join("data"),
        "memory",
    ))
    .await
    .unwrap();
    let pool = store.pool();
    // Every proposal the IR Lead published is in the store, undecided.
    let pending = approvals::list(pool, true, 100_000).await.unwrap();
    assert_eq!(pending.len() as u64, proposed);
    assert!(pending.iter().all(|p| p.proposed_by == "ir_lead"));
    let first = &pending[0].proposed;
    let role = first.approver_role.clone();
    let now = pending[0].proposed_at_ms + 1000;

    assert!(matches!(
        approvals::decide(
            pool,
            "nope/step",
            &approver("ana", &role),
            ApprovalDecision::Approved,
            "",
            now
        )
        .await,
        Err(DecideError::NotFound(_))
    ));
    let wrong = approver("bob", "Somebody Else");
    assert!(matches!(
        approvals::decide(
            pool,
            &first.action_id,
            &wrong,
            ApprovalDecision::Approved,
            "",
            now
        )
        .await,
        Err(DecideError::Forbidden { .. })
    ));
    // Two approvers race: exactly one decision is recorded, the other sees it.
    let (ana, eve) = (approver("ana", &role), approver("eve", &role));
    let (a, b) = tokio::join!(
        approvals::decide(
            pool,
            &first.action_id,
            &ana,
            ApprovalDecision::Approved,
            "contain it",
            now
        ),
        approvals::decide(
            pool,
            &first.action_id,
            &eve,
            ApprovalDecision::Rejected,
            "false alarm",
            now
        ),
    );
    let (won, lost) = match (a, b) {
        (Ok(d), Err(DecideError::AlreadyDecided(seen)))
        | (Err(DecideError::AlreadyDecided(seen)), Ok(d)) => (d, seen),
        other => panic!("one decision must win: {other:?}"),
    };
    assert_eq!(won, lost, "the loser is shown the first decision");
    let stored = approvals::proposal(pool, &first.action_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.decision.as_ref(), Some(&won));
    // Past its expiry a proposal cannot be decided.
    let other = &pending[1].proposed;
    assert!(matches!(
        approvals::decide(
            pool,
            &other.action_id,
            &approver("ana", &other.approver_role),
            ApprovalDecision::Approved,
            "",
            other.expires_at_ms + 1
        )
        .await,
        Err(DecideError::Expired(_))
    ));
    assert_eq!(
        approvals::list(pool, true, 100_000).await.unwrap().len() as u64,
        proposed - 1
    );

    // The relay publishes the decision, with executed = false, exactly once: a crash after the
    // publish but before marking it sent (the row put back to unsent) publishes nothing new.
    let bus = Bus::memory(BusConfig::default()).unwrap();
    assert_eq!(approvals::relay(pool, &bus, 100).await.unwrap(), 1);
    assert_eq!(approvals::relay(pool, &bus, 100).await.unwrap(), 0);
    sqlx::query("UPDATE outbox SET sent_ms = NULL")
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(approvals::relay(pool, &bus, 100).await.unwrap(), 1);
    assert_eq!(bus.len(Topic::Actions).await.unwrap(), 1);
    let entries = bus
        .range(
            Topic::Actions,
            soc_runtime::bus::StreamId::ZERO,
            soc_runtime::bus::StreamId::MAX,
            10,
        )
        .await
        .unwrap();
    let envelope = entries[0].fields.decode_envelope().unwrap();
    let soc_runtime::proto::Event::ActionDecision(d) = envelope.event else {
        panic!("{envelope:?}")
    };
    assert_eq!(d.action_id, first.action_id);
    assert_eq!(d.decided_by, won.decided_by);
    assert!(!d.executed);
    // The decision survives a rebuild of the projection; the proposals come back from the
    // audit.
    store
        .reset(&soc_runtime::store::projection_name(&bus))
        .await
        .unwrap();
    assert!(
        approvals::proposal(pool, &first.action_id)
            .await
            .unwrap()
            .is_none()
    );
    let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM decisions")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(kept, 1);
    store.close().await;
}
