//! One conformance suite, two backends: every test below runs on the in-memory bus and on a
//! real Redis (with the real bus bridge actor). A behaviour that differs is a bug.

#![allow(
    clippy::disallowed_methods,
    reason = "tests own and abort the tasks they spawn"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure should fail the test loudly"
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorRef};
use soc_runtime::bus::bridge::{self, BusBridge};
use soc_runtime::bus::feeder::{Delivery, Feeder, FeederConfig, FeederStats};
use soc_runtime::bus::{
    Bus, BusConfig, BusError, Commit, F_CORR, F_DATA, F_ID, F_KIND, F_TOPIC, F_TOPIC_ID, F_V,
    Fields, Outcome, Outgoing, Retention, StreamId, Topic,
};
use soc_runtime::proto::{
    Alert, AlertReceived, CaseContext, CaseEscalated, Envelope, Event, Tier2Analysis,
};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

struct Harness {
    bus: Bus,
    redis: Option<(common::Namespace, ActorRef<bridge::Msg>)>,
}

fn config(namespace: &str) -> BusConfig {
    BusConfig {
        namespace: namespace.to_owned(),
        max_deliveries: 3,
        claim_idle_ms: 100,
        claim_interval_ms: 60_000,
        credits: 8,
        read_batch: 8,
        block_ms: 50,
        ..BusConfig::default()
    }
}

async fn memory_harness(config: BusConfig) -> Harness {
    Harness {
        bus: Bus::memory(config).unwrap(),
        redis: None,
    }
}

async fn redis_harness(mut config: BusConfig) -> Harness {
    let url = common::redis_url();
    let ns = common::Namespace::new(&url, "conformance");
    config.namespace = ns.name().to_owned();
    let (writer, queue) = bridge::queue(config.bridge_buffer);
    let bus = Bus::redis(&url, config.clone(), writer).await.unwrap();
    let (bridge, _) = Actor::spawn(
        None,
        BusBridge,
        bridge::Args {
            url: url.clone(),
            config,
            queue,
        },
    )
    .await
    .unwrap();
    Harness {
        bus,
        redis: Some((ns, bridge)),
    }
}

impl Harness {
    async fn finish(self) {
        if let Some((_namespace, bridge)) = self.redis {
            bridge.stop_and_wait(None, None).await.unwrap();
        }
    }
}

fn alert_envelope(ticket: &str) -> Envelope {
    Envelope::new_root(
        "source:test",
        ticket,
        Event::AlertReceived(AlertReceived {
            alert: Alert {
                ticket_id: ticket.into(),
                source: "suricata".into(),
                rule_id: "R1".into(),
                rule_name: "Suricata: ET SCAN Nmap".into(),
                host: "h1".into(),
                first_seen: "2026-01-01T00:00:00Z".into(),
                last_seen: "2026-01-01T00:00:01Z".into(),
                alert_count: 1,
                ..Alert::default()
            },
            received_via: "test".into(),
        }),
    )
}

async fn publish(bus: &Bus, tickets: &[&str]) -> Vec<Outcome> {
    let commits = tickets
        .iter()
        .map(|t| {
            Commit::dedupe(
                format!("alert:{t}"),
                vec![Outgoing::event(&alert_envelope(t)).unwrap()],
            )
        })
        .collect();
    bus.submit(commits).await.unwrap()
}

fn tickets(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
}

async fn publish_n(bus: &Bus, prefix: &str, n: usize) {
    let names = tickets(prefix, n);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    assert!(
        publish(bus, &refs)
            .await
            .iter()
            .all(|o| *o == Outcome::Applied)
    );
}

fn triage_output(input: &Envelope) -> Outgoing {
    Outgoing::event(&input.caused(
        "sentinel",
        Event::CaseEscalated(CaseEscalated {
            case: CaseContext {
                ticket: input.correlation_id.clone(),
                ..CaseContext::default()
            },
            reason: "test".into(),
            confidence: 1.0,
            linked: Vec::new(),
        }),
    ))
    .unwrap()
}

/// A running feeder whose deliveries arrive on a channel.
struct TestFeeder {
    deliveries: mpsc::UnboundedReceiver<Delivery>,
    stats: Arc<FeederStats>,
    task: tokio::task::JoinHandle<()>,
}

impl TestFeeder {
    async fn start(bus: &Bus, topic: Topic, consumer: &str, accepts: fn(&str) -> bool) -> Self {
        let consumer = bus.consumer(topic, "role", consumer).await.unwrap();
        let (tx, deliveries) = mpsc::unbounded_channel();
        let stats = Arc::new(FeederStats::default());
        let feeder = Feeder::new(
            consumer,
            bus.clone(),
            FeederConfig::from(bus.config()),
            accepts,
            Box::new(move |batch| batch.into_iter().all(|d| tx.send(d).is_ok())),
            stats.clone(),
        );
        TestFeeder {
            deliveries,
            stats,
            task: tokio::spawn(feeder.run()),
        }
    }

    async fn next(&mut self) -> Delivery {
        tokio::time::timeout(WAIT, self.deliveries.recv())
            .await
            .expect("a delivery in time")
            .expect("feeder running")
    }

    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

fn alerts_only(kind: &str) -> bool {
    kind == "AlertReceived"
}

async fn dead_entries(bus: &Bus) -> Vec<Arc<Fields>> {
    bus.read_all(Topic::Dead)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.fields)
        .collect()
}

// ---------------------------------------------------------------------------------------------

async fn publish_writes_topic_and_audit_copies_atomically(h: &Harness) {
    let env = alert_envelope("t-1");
    let outcomes = h
        .bus
        .submit(vec![Commit::dedupe(
            "alert:t-1".into(),
            vec![Outgoing::event(&env).unwrap()],
        )])
        .await
        .unwrap();
    assert_eq!(outcomes, [Outcome::Applied]);
    let topic = h.bus.read_all(Topic::Alerts).await.unwrap();
    let audit = h.bus.read_all(Topic::Audit).await.unwrap();
    assert_eq!((topic.len(), audit.len()), (1, 1));
    let fields = &topic[0].fields;
    assert_eq!(fields.get_str(F_V), Some("1"));
    assert_eq!(fields.get_str(F_KIND), Some("AlertReceived"));
    assert_eq!(fields.get_str(F_ID), Some(env.id.as_str()));
    assert_eq!(fields.get_str(F_CORR), Some("t-1"));
    assert_eq!(fields.decode_envelope().unwrap(), env);
    let copy = &audit[0].fields;
    assert_eq!(copy.get(F_DATA), fields.get(F_DATA));
    assert_eq!(copy.get_str(F_TOPIC), Some("soc.alerts"));
    assert_eq!(
        copy.get_str(F_TOPIC_ID),
        Some(topic[0].id.to_string().as_str())
    );
}

async fn dedupe_keys_drop_duplicates(h: &Harness) {
    assert_eq!(publish(&h.bus, &["a", "b"]).await, [Outcome::Applied; 2]);
    assert_eq!(
        publish(&h.bus, &["b", "c", "a"]).await,
        [Outcome::Duplicate, Outcome::Applied, Outcome::Duplicate]
    );
    assert_eq!(h.bus.len(Topic::Alerts).await.unwrap(), 3);
    assert_eq!(h.bus.len(Topic::Audit).await.unwrap(), 3);
}

async fn commits_ack_their_input_and_write_outputs_once(h: &Harness) {
    publish_n(&h.bus, "c", 1).await;
    let mut consumer = h.bus.consumer(Topic::Alerts, "role", "c1").await.unwrap();
    let got = consumer
        .read_new(10, Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].deliveries, 1);
    let input = got[0].fields.as_ref().unwrap().decode_envelope().unwrap();
    let commit = Commit::ack(consumer.ack_ref(got[0].id), vec![triage_output(&input)]);
    // Twice in one batch (two consumers' commits of one claimed entry can meet in the bridge).
    assert_eq!(
        h.bus
            .submit(vec![commit.clone(), commit.clone()])
            .await
            .unwrap(),
        [Outcome::Applied, Outcome::AlreadyAcked]
    );
    // The same commit again (a retry, or a redelivered duplicate) writes nothing.
    assert_eq!(
        h.bus.submit(vec![commit]).await.unwrap(),
        [Outcome::AlreadyAcked]
    );
    assert_eq!(h.bus.len(Topic::Cases).await.unwrap(), 1);
    assert_eq!(h.bus.len(Topic::Audit).await.unwrap(), 2);
    let state = h
        .bus
        .group_states(&[(Topic::Alerts, "role")])
        .await
        .unwrap();
    assert!(state[0].is_idle(), "{state:?}");
}

async fn restarted_consumers_reread_their_own_pending_first(h: &Harness) {
    publish_n(&h.bus, "r", 3).await;
    let mut first = h.bus.consumer(Topic::Alerts, "role", "c1").await.unwrap();
    let read = first
        .read_new(10, Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(read.len(), 3);
    drop(first);
    publish_n(&h.bus, "later", 1).await;
    let mut again = h.bus.consumer(Topic::Alerts, "role", "c1").await.unwrap();
    let pending = again.read_own_pending(StreamId::ZERO, 10).await.unwrap();
    assert_eq!(
        pending.iter().map(|d| d.id).collect::<Vec<_>>(),
        read.iter().map(|d| d.id).collect::<Vec<_>>()
    );
    assert!(
        pending
            .iter()
            .all(|d| d.deliveries == 2 && d.fields.is_some())
    );
    // Paging past the last pending entry finds nothing more.
    let last = pending[2].id;
    assert!(again.read_own_pending(last, 10).await.unwrap().is_empty());
    // Another consumer's pending entries are not "own".
    let mut other = h.bus.consumer(Topic::Alerts, "role", "c2").await.unwrap();
    assert!(
        other
            .read_own_pending(StreamId::ZERO, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let fresh = again
        .read_new(10, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(fresh.len(), 1, "then new entries");
}

async fn claimed_entries_are_committed_exactly_once(h: &Harness) {
    publish_n(&h.bus, "k", 2).await;
    let mut slow = h.bus.consumer(Topic::Alerts, "role", "slow").await.unwrap();
    let taken = slow.read_new(10, Duration::from_millis(500)).await.unwrap();
    assert_eq!(taken.len(), 2);
    let mut rescuer = h
        .bus
        .consumer(Topic::Alerts, "role", "rescuer")
        .await
        .unwrap();
    let (_, too_early) = rescuer
        .autoclaim(Duration::from_secs(60), StreamId::ZERO, 10)
        .await
        .unwrap();
    assert!(
        too_early.is_empty(),
        "entries not idle long enough stay put"
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (next, claimed) = rescuer
        .autoclaim(Duration::from_millis(100), StreamId::ZERO, 10)
        .await
        .unwrap();
    assert_eq!(next, StreamId::ZERO);
    assert_eq!(claimed.len(), 2);
    assert!(claimed.iter().all(|d| d.deliveries == 2));
    // Both the rescuer and the slow consumer (which was not dead after all) commit.
    let commit = |c: &soc_runtime::bus::Consumer, id| {
        let input = taken
            .iter()
            .find(|d| d.id == id)
            .unwrap()
            .fields
            .as_ref()
            .unwrap()
            .decode_envelope()
            .unwrap();
        Commit::ack(c.ack_ref(id), vec![triage_output(&input)])
    };
    let rescued: Vec<Commit> = claimed.iter().map(|d| commit(&rescuer, d.id)).collect();
    let late: Vec<Commit> = taken.iter().map(|d| commit(&slow, d.id)).collect();
    assert_eq!(h.bus.submit(rescued).await.unwrap(), [Outcome::Applied; 2]);
    assert_eq!(
        h.bus.submit(late).await.unwrap(),
        [Outcome::AlreadyAcked; 2]
    );
    assert_eq!(h.bus.len(Topic::Cases).await.unwrap(), 2);
}

async fn entries_of_dead_local_consumers_are_reaped(h: &Harness) {
    publish_n(&h.bus, "d", 2).await;
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    // pid 2147483632 is above Linux's pid_max: that process cannot exist.
    let dead_name = format!("{host}:2147483632:role");
    let mut dead = h
        .bus
        .consumer(Topic::Alerts, "role", &dead_name)
        .await
        .unwrap();
    assert_eq!(
        dead.read_new(10, Duration::from_millis(500))
            .await
            .unwrap()
            .len(),
        2
    );
    let me = soc_runtime::bus::consumer_name("role");
    let mut alive = h.bus.consumer(Topic::Alerts, "role", &me).await.unwrap();
    let reaped = alive.reap_dead_consumers().await.unwrap();
    assert_eq!(reaped.len(), 2);
    assert!(
        reaped
            .iter()
            .all(|d| d.deliveries == 2 && d.fields.is_some())
    );
    assert_eq!(
        alive
            .read_own_pending(StreamId::ZERO, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    // Reaping again finds nothing: the dead consumer is gone.
    assert!(alive.reap_dead_consumers().await.unwrap().is_empty());
}

async fn claimed_entries_report_exact_delivery_counts(h: &Harness) {
    // Alternate entries between a live consumer and one whose process is gone, so the claimed
    // entries sit between the live consumer's own pending entries.
    publish_n(&h.bus, "x", 6).await;
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let me = soc_runtime::bus::consumer_name("role");
    let mut live = h.bus.consumer(Topic::Alerts, "role", &me).await.unwrap();
    let dead_name = format!("{host}:2147483632:role");
    let mut dead = h
        .bus
        .consumer(Topic::Alerts, "role", &dead_name)
        .await
        .unwrap();
    for i in 0..6 {
        let reader = if i % 2 == 0 { &mut live } else { &mut dead };
        assert_eq!(
            reader
                .read_new(1, Duration::from_millis(500))
                .await
                .unwrap()
                .len(),
            1
        );
    }
    // The live consumer's own entries are now at 2 deliveries.
    assert_eq!(
        live.read_own_pending(StreamId::ZERO, 10)
            .await
            .unwrap()
            .len(),
        3
    );
    let reaped = live.reap_dead_consumers().await.unwrap();
    assert_eq!(reaped.len(), 3);
    let counts: Vec<u32> = reaped.iter().map(|d| d.deliveries).collect();
    assert_eq!(counts, [2, 2, 2], "each reaped entry was delivered twice");
}

async fn the_feeder_dead_letters_after_max_deliveries(h: &Harness) {
    publish_n(&h.bus, "m", 1).await;
    // Each "crash": the feeder delivers the entry, the role dies without committing.
    for expected in 1..=3 {
        let mut feeder = TestFeeder::start(&h.bus, Topic::Alerts, "c1", alerts_only).await;
        let delivery = feeder.next().await;
        assert_eq!(delivery.deliveries, expected);
        feeder.stop().await;
    }
    let feeder = TestFeeder::start(&h.bus, Topic::Alerts, "c1", alerts_only).await;
    let dead = common::wait_for("the dead letter", WAIT, || async {
        let dead = dead_entries(&h.bus).await;
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    assert_eq!(dead.len(), 1);
    let reason = dead[0].get_str("dead_reason").unwrap();
    assert!(reason.contains("max_deliveries"), "{reason}");
    assert_eq!(dead[0].get_str("dead_deliveries"), Some("4"));
    assert_eq!(dead[0].get_str("dead_from"), Some("soc.alerts"));
    assert!(dead[0].get(F_DATA).is_some(), "the payload is kept");
    let state = h
        .bus
        .group_states(&[(Topic::Alerts, "role")])
        .await
        .unwrap();
    assert!(
        state[0].is_idle(),
        "dead-lettered entries are acked: {state:?}"
    );
    assert_eq!(feeder.stats.snapshot().dead_lettered, 1);
    feeder.stop().await;
}

async fn the_feeder_dead_letters_poison_and_keeps_delivering(h: &Harness) {
    let poison = [
        Fields::from_pairs([
            ("v", &b"1"[..]),
            ("kind", &b"AlertReceived"[..]),
            ("data", &b"\xc1\xff garbage"[..]),
        ]),
        Fields::from_pairs([("hello", &b"world"[..])]),
        Fields::from_pairs([("kind", &b"FromTheFuture"[..]), ("data", &b"x"[..])]),
    ];
    for fields in poison {
        h.bus.append_raw(Topic::Alerts, fields).await.unwrap();
    }
    publish_n(&h.bus, "ok", 1).await;
    let mut feeder = TestFeeder::start(&h.bus, Topic::Alerts, "c1", alerts_only).await;
    let good = feeder.next().await;
    assert_eq!(good.envelope.correlation_id, "ok-0000");
    let dead = common::wait_for("three dead letters", WAIT, || async {
        let dead = dead_entries(&h.bus).await;
        (dead.len() == 3).then_some(dead)
    })
    .await;
    let reasons: Vec<&str> = dead
        .iter()
        .map(|f| f.get_str("dead_reason").unwrap())
        .collect();
    assert!(reasons[0].contains("undecodable"), "{reasons:?}");
    assert!(reasons[1].contains("no `kind`"), "{reasons:?}");
    assert!(
        reasons[2].contains("unknown event kind `FromTheFuture`"),
        "{reasons:?}"
    );
    // Poison never reaches the role, and the feeder keeps going.
    publish_n(&h.bus, "after", 1).await;
    assert_eq!(feeder.next().await.envelope.correlation_id, "after-0000");
    feeder.stop().await;
}

async fn invalid_commits_are_refused_whole(h: &Harness) {
    let good = Outgoing::event(&alert_envelope("ok")).unwrap();
    let empty = Outgoing {
        topic: Topic::Reports,
        fields: Fields::default(),
        audit: false,
    };
    let huge = Outgoing {
        topic: Topic::Reports,
        fields: Fields::from_pairs((0..300).map(|i| (format!("f{i}"), "x"))),
        audit: false,
    };
    for bad in [empty, huge] {
        let commit = Commit::dedupe("k".into(), vec![good.clone(), bad]);
        let err = h.bus.submit(vec![commit]).await.unwrap_err();
        assert!(matches!(err, BusError::Invalid(_)), "{err}");
    }
    assert_eq!(
        h.bus.len(Topic::Alerts).await.unwrap(),
        0,
        "nothing was written"
    );
    assert!(
        h.bus
            .append_raw(Topic::Alerts, Fields::default())
            .await
            .is_err()
    );
}

async fn oversized_poison_is_dead_lettered_with_its_fields_capped(h: &Harness) {
    let fields = Fields::from_pairs((0..400).map(|i| (format!("f{i}"), "x")));
    h.bus.append_raw(Topic::Alerts, fields).await.unwrap();
    let feeder = TestFeeder::start(&h.bus, Topic::Alerts, "c1", alerts_only).await;
    let dead = common::wait_for("the dead letter", WAIT, || async {
        dead_entries(&h.bus).await.pop()
    })
    .await;
    assert!(
        dead.len() <= soc_runtime::bus::MAX_FIELDS + 1,
        "{}",
        dead.len()
    );
    assert!(dead.get("dead_truncated").is_some());
    assert!(dead.get_str("dead_reason").unwrap().contains("no `kind`"));
    feeder.stop().await;
}

async fn the_feeder_skips_kinds_the_role_does_not_consume(h: &Harness) {
    let input = alert_envelope("s-1");
    let analysis = input.caused("tier2", Event::Tier2Analysis(Tier2Analysis::default()));
    let escalation = input.caused(
        "tier2",
        Event::CaseEscalated(CaseEscalated {
            case: CaseContext::default(),
            reason: "r".into(),
            confidence: 1.0,
            linked: Vec::new(),
        }),
    );
    let outputs = vec![
        Outgoing::event(&analysis).unwrap(),
        Outgoing::event(&escalation).unwrap(),
    ];
    h.bus
        .submit(vec![Commit::dedupe("k".into(), outputs)])
        .await
        .unwrap();
    let mut feeder = TestFeeder::start(&h.bus, Topic::Cases, "c1", |k| k == "CaseEscalated").await;
    let delivery = feeder.next().await;
    assert_eq!(delivery.envelope.id, escalation.id);
    common::wait_for("the skip to be acked", WAIT, || async {
        (feeder.stats.snapshot().skipped == 1).then_some(())
    })
    .await;
    let state = h.bus.group_states(&[(Topic::Cases, "role")]).await.unwrap();
    assert_eq!(state[0].pending, 1, "only the delivered entry is pending");
    feeder.stop().await;
}

async fn work_in_progress_is_neither_claimed_nor_recounted(h: &Harness) {
    publish_n(&h.bus, "wip", 1).await;
    let mut feeder = TestFeeder::start(&h.bus, Topic::Alerts, "c1", alerts_only).await;
    let delivery = feeder.next().await;
    assert_eq!(delivery.deliveries, 1);
    // Hold it for five claim_idle periods while another consumer keeps trying to claim.
    let mut other = h.bus.consumer(Topic::Alerts, "role", "c2").await.unwrap();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (_, claimed) = other
            .autoclaim(Duration::from_millis(100), StreamId::ZERO, 10)
            .await
            .unwrap();
        assert!(claimed.is_empty(), "work in progress was claimed away");
    }
    assert!(feeder.deliveries.try_recv().is_err(), "no second delivery");
    let commit = Commit::ack(
        delivery.ack.clone(),
        vec![triage_output(&delivery.envelope)],
    );
    assert_eq!(
        h.bus.submit(vec![commit]).await.unwrap(),
        [Outcome::Applied]
    );
    drop(delivery);
    feeder.stop().await;
}

async fn the_feeder_holds_at_most_its_credits(h: &Harness) {
    publish_n(&h.bus, "cr", 20).await;
    let mut feeder = TestFeeder::start(&h.bus, Topic::Alerts, "c1", alerts_only).await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(feeder.next().await);
    }
    // With all 8 credits held, nothing more is read from the bus.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(feeder.deliveries.try_recv().is_err());
    let state = h
        .bus
        .group_states(&[(Topic::Alerts, "role")])
        .await
        .unwrap();
    assert_eq!(state[0].pending, 8);
    assert!(state[0].has_unread);
    // Returning three credits lets exactly three more in.
    held.truncate(5);
    for _ in 0..3 {
        held.push(feeder.next().await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(feeder.deliveries.try_recv().is_err());
    feeder.stop().await;
}

async fn blocking_reads_wake_on_publish(h: &Harness) {
    let mut consumer = h.bus.consumer(Topic::Alerts, "role", "c1").await.unwrap();
    let reader =
        tokio::spawn(async move { consumer.read_new(10, Duration::from_secs(5)).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(200)).await;
    publish_n(&h.bus, "w", 1).await;
    let got = reader.await.unwrap();
    assert_eq!(got.len(), 1, "the blocked read returns the new entry");
}

async fn a_stop_interrupts_a_blocking_read_and_strands_nothing(h: &Harness) {
    let mut consumer = h.bus.consumer(Topic::Alerts, "role", "c1").await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let token = stop.clone();
    let reader = tokio::spawn(async move {
        consumer
            .read_new_or_stop(10, Duration::from_secs(30), &token)
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    let got = tokio::time::timeout(WAIT, reader)
        .await
        .expect("the stopped read returns long before its 30 s block")
        .unwrap();
    assert!(got.is_empty());
    publish_n(&h.bus, "after-stop", 2).await;
    let state = h
        .bus
        .group_states(&[(Topic::Alerts, "role")])
        .await
        .unwrap();
    assert_eq!(
        (state[0].pending, state[0].has_unread),
        (0, true),
        "{state:?}"
    );
}

async fn retention_trims_topics_but_keeps_the_audit(h: &Harness) {
    publish_n(&h.bus, "ret", 1000).await;
    // Memory trims as it appends; Redis within a maintenance round (500 ms).
    common::wait_for("retention applied", WAIT, || async {
        (h.bus.len(Topic::Alerts).await.unwrap() == 10).then_some(())
    })
    .await;
    assert_eq!(h.bus.len(Topic::Audit).await.unwrap(), 1000);
}

/// Retention below a group's backlog keeps the backlog: nothing pending or unread is trimmed;
/// once the group has acked, the stream shrinks to its retention.
async fn retention_never_trims_what_a_group_still_needs(h: &Harness) {
    h.bus.ensure_group(Topic::Alerts, "role").await.unwrap();
    publish_n(&h.bus, "keep", 50).await;
    let mut consumer = h.bus.consumer(Topic::Alerts, "role", "c1").await.unwrap();
    let mut read = Vec::new();
    while read.len() < 20 {
        let want = 20 - read.len();
        read.extend(
            consumer
                .read_new(want, Duration::from_millis(500))
                .await
                .unwrap(),
        );
    }
    publish_n(&h.bus, "more", 5).await;
    // Two maintenance rounds: still every entry, the oldest pending one first.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(h.bus.len(Topic::Alerts).await.unwrap(), 55);
    let acks: Vec<Commit> = read
        .iter()
        .map(|e| Commit::ack(consumer.ack_ref(e.id), Vec::new()))
        .collect();
    h.bus.submit(acks).await.unwrap();
    publish_n(&h.bus, "after-ack", 1).await;
    // The 20 acked entries may go; the 36 unread stay, past the retention of 10.
    common::wait_for("the acked entries trimmed", WAIT, || async {
        (h.bus.len(Topic::Alerts).await.unwrap() == 36).then_some(())
    })
    .await;
    let kept = h.bus.read_all(Topic::Alerts).await.unwrap();
    assert_eq!(kept[0].fields.get_str("corr"), Some("keep-0020"));
    // Read and acked: the stream shrinks to its retention.
    let mut rest = Vec::new();
    while rest.len() < 36 {
        rest.extend(
            consumer
                .read_new(36, Duration::from_millis(500))
                .await
                .unwrap(),
        );
    }
    let acks: Vec<Commit> = rest
        .iter()
        .map(|e| Commit::ack(consumer.ack_ref(e.id), Vec::new()))
        .collect();
    h.bus.submit(acks).await.unwrap();
    publish_n(&h.bus, "last", 1).await;
    common::wait_for("retention applied once caught up", WAIT, || async {
        (h.bus.len(Topic::Alerts).await.unwrap() == 10).then_some(())
    })
    .await;
}

async fn group_states_report_pending_and_unread(h: &Harness) {
    h.bus.ensure_group(Topic::Alerts, "role").await.unwrap();
    let idle = h
        .bus
        .group_states(&[(Topic::Alerts, "role")])
        .await
        .unwrap();
    assert!(idle[0].is_idle());
    publish_n(&h.bus, "g", 3).await;
    let unread = h
        .bus
        .group_states(&[(Topic::Alerts, "role")])
        .await
        .unwrap();
    assert!(unread[0].has_unread && unread[0].pending == 0);
    let mut consumer = h.bus.consumer(Topic::Alerts, "role", "c1").await.unwrap();
    consumer
        .read_new(2, Duration::from_millis(500))
        .await
        .unwrap();
    let partly = h
        .bus
        .group_states(&[(Topic::Alerts, "role"), (Topic::Alerts, "other")])
        .await
        .unwrap();
    assert_eq!((partly[0].pending, partly[0].has_unread), (2, true));
    assert_eq!((partly[1].pending, partly[1].has_unread), (0, true));
}

/// The suite against one backend: a module of tests, each on a fresh harness.
macro_rules! conformance_on {
    ($backend:ident, $harness:ident, $($name:ident $(with $tweak:expr)?),*) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    #[allow(unused_mut)]
                    let mut config = super::config("");
                    $( ($tweak)(&mut config); )?
                    let h = super::$harness(config).await;
                    super::$name(&h).await;
                    h.finish().await;
                }
            )*
        }
    };
}

macro_rules! conformance {
    ($($name:ident $(with $tweak:expr)?),* $(,)?) => {
        conformance_on!(memory, memory_harness, $($name $(with $tweak)?),*);
        conformance_on!(redis, redis_harness, $($name $(with $tweak)?),*);
    };
}

conformance!(
    publish_writes_topic_and_audit_copies_atomically,
    dedupe_keys_drop_duplicates,
    commits_ack_their_input_and_write_outputs_once,
    restarted_consumers_reread_their_own_pending_first,
    claimed_entries_are_committed_exactly_once,
    entries_of_dead_local_consumers_are_reaped,
    claimed_entries_report_exact_delivery_counts,
    the_feeder_dead_letters_after_max_deliveries,
    the_feeder_dead_letters_poison_and_keeps_delivering,
    the_feeder_skips_kinds_the_role_does_not_consume,
    invalid_commits_are_refused_whole,
    oversized_poison_is_dead_lettered_with_its_fields_capped,
    the_feeder_holds_at_most_its_credits,
    work_in_progress_is_neither_claimed_nor_recounted with |c: &mut BusConfig| {
        c.claim_interval_ms = 50;
    },
    blocking_reads_wake_on_publish,
    a_stop_interrupts_a_blocking_read_and_strands_nothing,
    retention_trims_topics_but_keeps_the_audit with |c: &mut BusConfig| {
        c.default_retention = Retention::MaxLen(10);
    },
    retention_never_trims_what_a_group_still_needs with |c: &mut BusConfig| {
        c.default_retention = Retention::MaxLen(10);
    },
    group_states_report_pending_and_unread,
);
