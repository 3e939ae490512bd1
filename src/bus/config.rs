//! Bus settings shared by both backends: retention, delivery limits, batching.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::BusError;
use super::wire::Topic;

/// How much of a stream to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Retention {
    /// Keep everything.
    Keep,
    /// Keep about this many entries (Redis trims approximately, in whole nodes).
    MaxLen(u64),
    /// Keep entries younger than this many seconds.
    MaxAgeSecs(u64),
}

/// When a write counts as accepted on Redis (`bus.durability`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// `WAITAOF` (the local AOF fsynced, and `wait_replicas` replicas') when the server has it
    /// (Redis 7.2+, Valkey) and AOF is on; else `WAIT` for `wait_replicas` when that is set;
    /// else the server's own persistence setting. What applies is logged at start.
    #[default]
    Auto,
    /// Require `WAITAOF`: refuse to start on a server without it or with AOF off.
    Aof,
    /// Never wait: a write counts once Redis has applied it in memory.
    None,
}

/// Bus settings shared by both backends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    /// Prefix for every key (`soc.alerts` becomes `<namespace>soc.alerts`), to share one Redis.
    pub namespace: String,
    /// Deliveries after which an entry goes to `soc.dead`.
    pub max_deliveries: u32,
    /// How long an entry must sit unacked on another consumer before it is claimed, ms.
    pub claim_idle_ms: u64,
    /// How often a consumer looks for entries to claim, ms.
    pub claim_interval_ms: u64,
    /// Credits per role: most unacked entries one role's feeder holds.
    pub credits: u32,
    /// Most entries read in one call.
    pub read_batch: u32,
    /// How long a blocking read waits for new entries, ms.
    pub block_ms: u64,
    /// Redis only: most submissions (a role's batch, an ingestion batch) the bus bridge buffers
    /// while Redis is unreachable; more are refused. The bridge holds up to 64 more in flight.
    pub bridge_buffer: usize,
    /// Redis only: most commits written in one script call.
    pub write_batch: usize,
    /// How long an ingestion dedupe key is remembered, seconds.
    pub dedupe_ttl_s: u64,
    /// Retention per stream name; streams not listed use `default_retention`. On the in-memory
    /// bus a retention on `soc.audit` never drops what the store has not folded yet.
    pub retention: std::collections::BTreeMap<String, Retention>,
    /// Retention of topic streams not listed in `retention` (the audit stream is kept whole).
    /// Trimming never drops an entry a consumer group has not read or acked: a backlog is
    /// kept past the retention (and said so) until it is worked.
    pub default_retention: Retention,
    /// Redis only: when a commit counts as accepted (feed offsets saved, HTTP ingest
    /// answered, role inputs acked). See [`Durability`].
    pub durability: Durability,
    /// Redis only: replicas that must have each write before it counts (`WAIT`, or the
    /// replica part of `WAITAOF`); 0 for none.
    pub wait_replicas: u32,
    /// Redis only: how long one wait for durability may take, ms; past it the batch is
    /// retried (nothing counts as accepted meanwhile) and the bridge reports `refusing`.
    pub durability_timeout_ms: u64,
    /// In-memory bus only: the alert file feed waits before publishing while more than this
    /// many audit entries are not folded into the store yet (at most 5 s per batch), so a
    /// burst faster than the store takes memory for this many, not for all of it. 0: no
    /// bound. With a retention on the audit, folded entries are dropped as the store takes
    /// them.
    pub max_unfolded: u64,
}

/// Longest a feed waits for the store before publishing a batch anyway
/// ([`BusConfig::max_unfolded`]): a store that stopped folding slows the feed, never stops it.
pub(crate) const UNFOLDED_WAIT: Duration = Duration::from_secs(5);

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            namespace: String::new(),
            max_deliveries: 5,
            claim_idle_ms: 30_000,
            claim_interval_ms: 5_000,
            credits: 256,
            read_batch: 128,
            block_ms: 1_000,
            bridge_buffer: 10_000,
            write_batch: 256,
            dedupe_ttl_s: 30 * 24 * 3600,
            retention: std::collections::BTreeMap::new(),
            default_retention: Retention::MaxLen(1_000_000),
            durability: Durability::Auto,
            wait_replicas: 0,
            durability_timeout_ms: 2_000,
            max_unfolded: 0,
        }
    }
}

impl BusConfig {
    /// Retention of a stream.
    pub(crate) fn retention_of(&self, topic: Topic) -> Retention {
        match self.retention.get(topic.name()) {
            Some(r) => *r,
            None if topic == Topic::Audit => Retention::Keep,
            None => self.default_retention,
        }
    }

    /// Checks values that would make the bus misbehave.
    pub fn validate(&self) -> Result<(), BusError> {
        let positive = [
            ("max_deliveries", u64::from(self.max_deliveries)),
            ("credits", u64::from(self.credits)),
            ("read_batch", u64::from(self.read_batch)),
            ("block_ms", self.block_ms),
            ("claim_interval_ms", self.claim_interval_ms),
            ("bridge_buffer", self.bridge_buffer as u64),
            ("write_batch", self.write_batch as u64),
            ("dedupe_ttl_s", self.dedupe_ttl_s),
            ("durability_timeout_ms", self.durability_timeout_ms),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(BusError::Config(format!("bus.{name} must be at least 1")));
        }
        for name in self.retention.keys() {
            name.parse::<Topic>()?;
        }
        Ok(())
    }

    /// The blocking-read timeout.
    pub fn block(&self) -> Duration {
        Duration::from_millis(self.block_ms)
    }
}
