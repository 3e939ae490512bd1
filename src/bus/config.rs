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
    /// Retention per stream name; streams not listed use `default_retention`.
    pub retention: std::collections::BTreeMap<String, Retention>,
    /// Retention of topic streams not listed in `retention` (the audit stream is kept whole).
    /// Trimming drops entries whether or not they were read: size it above any backlog.
    pub default_retention: Retention,
}

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
