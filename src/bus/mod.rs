//! The durable event bus: topic streams, consumer groups, atomic commits, dead letters.
//!
//! Two backends with identical semantics (one conformance suite in `tests/bus_conformance.rs`
//! runs against both): `memory` for the embedded default, tests and backtests, and `redis`
//! (Redis Streams) for durability and multi-process deployments.
//!
//! The semantics, in short:
//! - every domain message is written to its topic stream and, in the same atomic step, to
//!   `soc.audit`; stream entries carry plain fields `v`, `kind`, `id`, `corr` and `data`;
//! - one consumer group per role; a consumer first re-reads its own pending entries, then new
//!   ones; entries idle on a dead consumer are claimed;
//! - a role's outputs, their audit copies and the ack of its input are one [`Commit`], applied
//!   atomically. The ack goes first and fences the rest: when the input was already acked (a
//!   redelivered or claimed duplicate), the outputs are skipped, so every input produces its
//!   outputs exactly once even across crashes, takeovers and retried writes;
//! - an entry delivered more than `max_deliveries` times goes to `soc.dead` with the reason.

pub mod bridge;
pub(crate) mod commit;
pub(crate) mod config;
pub(crate) mod error;
pub mod feeder;
pub(crate) mod group;
pub(crate) mod memory;
pub(crate) mod redis;
pub(crate) mod wire;
pub(crate) mod writer;

pub use commit::{AckRef, Commit, CommitCallback, Delivered, Outcome, Outgoing};
pub use config::{BusConfig, Durability, Retention};
pub use error::BusError;
pub use group::{GroupState, consumer_name};
pub use wire::{
    DecodeError, Entry, F_CORR, F_DATA, F_ID, F_KIND, F_TOPIC, F_TOPIC_ID, F_V, Fields, MAX_FIELDS,
    StreamId, Topic,
};

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// A handle to the bus, cheap to clone.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Backend>,
}

enum Backend {
    Memory(memory::MemoryBus),
    Redis(Box<redis::RedisBus>),
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus")
            .field("backend", &self.backend_name())
            .finish()
    }
}

impl Bus {
    /// An in-memory bus.
    pub fn memory(config: BusConfig) -> Result<Bus, BusError> {
        config.validate()?;
        Ok(Bus {
            inner: Arc::new(Backend::Memory(memory::MemoryBus::new(config))),
        })
    }

    /// A Redis Streams bus. Writes go through `writer` (the bus bridge's queue).
    pub async fn redis(
        url: &str,
        config: BusConfig,
        writer: bridge::WriterHandle,
    ) -> Result<Bus, BusError> {
        config.validate()?;
        let bus = redis::RedisBus::connect(url, config, writer).await?;
        Ok(Bus {
            inner: Arc::new(Backend::Redis(Box::new(bus))),
        })
    }

    /// `memory` or `redis`.
    pub fn backend_name(&self) -> &'static str {
        match &*self.inner {
            Backend::Memory(_) => "memory",
            Backend::Redis(_) => "redis",
        }
    }

    /// The settings.
    pub fn config(&self) -> &BusConfig {
        match &*self.inner {
            Backend::Memory(m) => m.config(),
            Backend::Redis(r) => r.config(),
        }
    }

    /// A connection to the bus's Redis (it reconnects on its own), for state shared by every
    /// process of the deployment (model slot leases); `None` on the in-memory bus.
    pub(crate) fn redis_connection(&self) -> Option<::redis::aio::ConnectionManager> {
        match &*self.inner {
            Backend::Memory(_) => None,
            Backend::Redis(r) => Some(r.query_connection()),
        }
    }

    /// Creates `group` on `topic` (reading from the start of the stream) unless it exists.
    pub async fn ensure_group(&self, topic: Topic, group: &str) -> Result<(), BusError> {
        match &*self.inner {
            Backend::Memory(m) => {
                m.ensure_group(topic, group);
                Ok(())
            }
            Backend::Redis(r) => r.ensure_group(topic, group).await,
        }
    }

    /// Submits commits and waits for their outcomes (one per commit, in order).
    pub async fn submit(&self, commits: Vec<Commit>) -> Result<Vec<Outcome>, BusError> {
        validate_all(&commits)?;
        match &*self.inner {
            Backend::Memory(m) => Ok(m.apply(commits)),
            Backend::Redis(r) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                r.enqueue(
                    commits,
                    Box::new(move |result| {
                        let _ = tx.send(result);
                    }),
                )?;
                rx.await.map_err(|_| BusError::Closed)?
            }
        }
    }

    /// Submits commits without waiting; `done` is called once with the outcomes.
    ///
    /// Returns an error (and drops `done` uncalled) when the work is refused, e.g. because the
    /// bridge's buffer is full while Redis is down.
    pub fn submit_with(&self, commits: Vec<Commit>, done: CommitCallback) -> Result<(), BusError> {
        validate_all(&commits)?;
        match &*self.inner {
            Backend::Memory(m) => {
                let outcomes = m.apply(commits);
                done(Ok(outcomes));
                Ok(())
            }
            Backend::Redis(r) => r.enqueue(commits, done),
        }
    }

    /// Appends raw fields straight to a stream, bypassing the contract (operators, tests).
    pub async fn append_raw(&self, topic: Topic, fields: Fields) -> Result<StreamId, BusError> {
        if fields.is_empty() {
            return Err(BusError::Invalid(
                "an entry needs at least one field".into(),
            ));
        }
        match &*self.inner {
            Backend::Memory(m) => Ok(m.append_raw(topic, fields)),
            Backend::Redis(r) => r.append_raw(topic, fields).await,
        }
    }

    /// Entries of a stream with ids in `start..=end`, at most `count`.
    pub async fn range(
        &self,
        topic: Topic,
        start: StreamId,
        end: StreamId,
        count: usize,
    ) -> Result<Vec<Entry>, BusError> {
        match &*self.inner {
            Backend::Memory(m) => Ok(m.range(topic, start, end, count)),
            Backend::Redis(r) => r.range(topic, start, end, count).await,
        }
    }

    /// Every entry of a stream, read page by page.
    pub async fn read_all(&self, topic: Topic) -> Result<Vec<Entry>, BusError> {
        let mut out = Vec::new();
        let mut start = StreamId::ZERO;
        loop {
            let page = self.range(topic, start, StreamId::MAX, 10_000).await?;
            let Some(last) = page.last() else { break };
            start = last.id.next();
            let full = page.len() == 10_000;
            out.extend(page);
            if !full {
                break;
            }
        }
        Ok(out)
    }

    /// The id of a stream's last entry (`None` when empty).
    pub async fn last_id(&self, topic: Topic) -> Result<Option<StreamId>, BusError> {
        match &*self.inner {
            Backend::Memory(m) => Ok(m.last_id(topic)),
            Backend::Redis(r) => r.last_id(topic).await,
        }
    }

    /// Tells the bus the projector has folded the audit up to `upto`. On the in-memory bus a
    /// retention configured for the audit then drops folded entries, never unfolded ones (a
    /// replay that keeps only what is not yet in its store). On Redis the audit's retention
    /// is the operator's (`trim.lua`), so this does nothing.
    pub fn audit_folded(&self, upto: StreamId) {
        if let Backend::Memory(m) = &*self.inner {
            m.audit_folded(upto);
        }
    }

    /// Waits, before a feed publishes, while more than [`BusConfig::max_unfolded`] audit
    /// entries are not folded into the store yet, for at most 5 s.
    /// Returns whether it gave up waiting. In-memory bus only (Redis holds its backlog).
    pub async fn pace_to_fold(&self) -> bool {
        let Backend::Memory(m) = &*self.inner else {
            return false;
        };
        let limit = m.config().max_unfolded;
        if limit == 0 {
            return false;
        }
        tokio::time::timeout(config::UNFOLDED_WAIT, m.folded_to(limit))
            .await
            .is_err()
    }

    /// Number of entries in a stream.
    pub async fn len(&self, topic: Topic) -> Result<u64, BusError> {
        match &*self.inner {
            Backend::Memory(m) => Ok(m.len(topic)),
            Backend::Redis(r) => r.len(topic).await,
        }
    }

    /// A consistent snapshot of the given groups (taken atomically across streams).
    pub async fn group_states(
        &self,
        groups: &[(Topic, &str)],
    ) -> Result<Vec<GroupState>, BusError> {
        match &*self.inner {
            Backend::Memory(m) => Ok(m.group_states(groups)),
            Backend::Redis(r) => r.group_states(groups).await,
        }
    }

    /// A consumer named `consumer` in `group` on `topic`. On Redis it owns its own connection,
    /// so its blocking reads never hold up anyone else.
    pub async fn consumer(
        &self,
        topic: Topic,
        group: &str,
        consumer: &str,
    ) -> Result<Consumer, BusError> {
        let inner = match &*self.inner {
            Backend::Memory(m) => ConsumerImpl::Memory(m.consumer(topic, group, consumer)),
            Backend::Redis(r) => {
                ConsumerImpl::Redis(Box::new(r.consumer(topic, group, consumer).await?))
            }
        };
        Ok(Consumer {
            topic,
            group: Arc::from(group),
            name: Arc::from(consumer),
            inner,
        })
    }
}

fn validate_all(commits: &[Commit]) -> Result<(), BusError> {
    commits.iter().try_for_each(Commit::validate)
}

/// One named consumer of one group.
pub struct Consumer {
    topic: Topic,
    group: Arc<str>,
    name: Arc<str>,
    inner: ConsumerImpl,
}

enum ConsumerImpl {
    Memory(memory::MemoryConsumer),
    Redis(Box<redis::RedisConsumer>),
}

impl Consumer {
    /// The stream consumed.
    pub fn topic(&self) -> Topic {
        self.topic
    }

    /// The group.
    pub fn group(&self) -> &Arc<str> {
        &self.group
    }

    /// The consumer name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The reference that acks a delivered entry.
    pub fn ack_ref(&self, id: StreamId) -> AckRef {
        AckRef {
            topic: self.topic,
            group: self.group.clone(),
            id,
        }
    }

    /// This consumer's own pending entries with ids after `after`, oldest first (each read
    /// counts as a delivery).
    pub async fn read_own_pending(
        &mut self,
        after: StreamId,
        count: usize,
    ) -> Result<Vec<Delivered>, BusError> {
        match &mut self.inner {
            ConsumerImpl::Memory(m) => Ok(m.read_own_pending(after, count)),
            ConsumerImpl::Redis(r) => r.read_own_pending(after, count).await,
        }
    }

    /// New entries, waiting up to `block` for at least one.
    pub async fn read_new(
        &mut self,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivered>, BusError> {
        self.read_new_or_stop(count, block, &CancellationToken::new())
            .await
    }

    /// New entries, waiting up to `block` for at least one, or until `stop` is cancelled.
    /// A stop never strands entries: whatever the read took is returned.
    pub async fn read_new_or_stop(
        &mut self,
        count: usize,
        block: Duration,
        stop: &CancellationToken,
    ) -> Result<Vec<Delivered>, BusError> {
        match &mut self.inner {
            ConsumerImpl::Memory(m) => Ok(m.read_new(count, block, stop).await),
            ConsumerImpl::Redis(r) => r.read_new(count, block, stop).await,
        }
    }

    /// Claims entries idle for at least `min_idle` on any consumer, scanning from `cursor`.
    /// Returns the cursor for the next call (`0-0` when the scan wrapped around).
    pub async fn autoclaim(
        &mut self,
        min_idle: Duration,
        cursor: StreamId,
        count: usize,
    ) -> Result<(StreamId, Vec<Delivered>), BusError> {
        match &mut self.inner {
            ConsumerImpl::Memory(m) => Ok(m.autoclaim(min_idle, cursor, count)),
            ConsumerImpl::Redis(r) => r.autoclaim(min_idle, cursor, count).await,
        }
    }

    /// Marks `ids` as just delivered to this consumer (their idle time restarts) without
    /// counting a delivery: work in progress must not look abandoned.
    pub(crate) async fn touch(&mut self, ids: &[StreamId]) -> Result<(), BusError> {
        match &mut self.inner {
            ConsumerImpl::Memory(m) => {
                m.touch(ids);
                Ok(())
            }
            ConsumerImpl::Redis(r) => r.touch(ids).await,
        }
    }

    /// Claims every entry pending on consumers of this host whose process is gone (names are
    /// `host:pid:role`), then removes those consumers. Returns the claimed entries.
    pub async fn reap_dead_consumers(&mut self) -> Result<Vec<Delivered>, BusError> {
        match &mut self.inner {
            ConsumerImpl::Memory(m) => Ok(m.reap_dead_consumers(&self.name)),
            ConsumerImpl::Redis(r) => r.reap_dead_consumers(&self.name).await,
        }
    }

    /// Drops a broken connection and opens a new one (Redis); a no-op in memory.
    pub(crate) async fn reconnect(&mut self) -> Result<(), BusError> {
        match &mut self.inner {
            ConsumerImpl::Memory(_) => Ok(()),
            ConsumerImpl::Redis(r) => r.reconnect().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::group::is_dead_local_consumer;
    use super::*;

    #[test]
    fn stream_ids_parse_print_and_order() {
        let id: StreamId = "1700000000000-7".parse().unwrap();
        assert_eq!(id.to_string(), "1700000000000-7");
        assert!(id < id.next());
        assert_eq!(
            "12".parse::<StreamId>().unwrap(),
            StreamId { ms: 12, seq: 0 }
        );
        assert!("x-1".parse::<StreamId>().is_err());
        assert!("1-".parse::<StreamId>().is_err());
    }

    #[test]
    fn topics_round_trip_their_names() {
        for topic in Topic::ALL {
            assert_eq!(topic.name().parse::<Topic>().unwrap(), topic);
            assert_eq!(Topic::ALL[topic.index()], topic);
        }
        assert!("soc.nope".parse::<Topic>().is_err());
    }

    #[test]
    fn dead_local_consumers_are_recognised_by_pid() {
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        let me = consumer_name("sentinel");
        assert!(!is_dead_local_consumer(&me, &me));
        // pid 0x7fff_fff0 is far above pid_max on Linux, so no such process exists
        assert!(is_dead_local_consumer(
            &format!("{host}:2147483632:sentinel"),
            &me
        ));
        assert!(!is_dead_local_consumer("otherhost:1:sentinel", &me));
        assert!(!is_dead_local_consumer("garbage", &me));
    }

    #[test]
    fn config_validation_names_the_bad_key() {
        let cfg = BusConfig {
            credits: 0,
            ..BusConfig::default()
        };
        assert!(cfg.validate().unwrap_err().to_string().contains("credits"));
        let mut cfg = BusConfig::default();
        cfg.retention.insert("soc.bogus".into(), Retention::Keep);
        assert!(cfg.validate().is_err());
    }
}
