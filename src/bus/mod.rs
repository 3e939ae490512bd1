//! The durable event bus: topic streams, consumer groups, atomic commits, dead letters.
//!
//! Two backends with identical semantics (one conformance suite in `tests/bus_conformance.rs`
//! runs against both): [`memory`] for the embedded default, tests and backtests, and [`redis`]
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
pub mod feeder;
pub mod memory;
pub mod redis;
pub mod writer;

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::proto::{self, Envelope, Event};

/// The streams of the SOC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Topic {
    /// `soc.alerts`: alerts entering the SOC.
    #[serde(rename = "soc.alerts")]
    Alerts,
    /// `soc.triage`: sentinel's verdicts.
    #[serde(rename = "soc.triage")]
    Triage,
    /// `soc.cases`: tier 2 analyses, escalations and IR plans.
    #[serde(rename = "soc.cases")]
    Cases,
    /// `soc.actions`: proposals and human decisions.
    #[serde(rename = "soc.actions")]
    Actions,
    /// `soc.reports`: intel and windowed reports.
    #[serde(rename = "soc.reports")]
    Reports,
    /// `soc.audit`: a copy of every domain message, in commit order.
    #[serde(rename = "soc.audit")]
    Audit,
    /// `soc.dead`: entries that could not be processed, with the reason.
    #[serde(rename = "soc.dead")]
    Dead,
}

impl Topic {
    /// Every stream, in a fixed order.
    pub const ALL: [Topic; 7] = [
        Topic::Alerts,
        Topic::Triage,
        Topic::Cases,
        Topic::Actions,
        Topic::Reports,
        Topic::Audit,
        Topic::Dead,
    ];

    /// The stream name (`soc.alerts`, ...), before any namespace prefix.
    pub fn name(self) -> &'static str {
        match self {
            Topic::Alerts => "soc.alerts",
            Topic::Triage => "soc.triage",
            Topic::Cases => "soc.cases",
            Topic::Actions => "soc.actions",
            Topic::Reports => "soc.reports",
            Topic::Audit => "soc.audit",
            Topic::Dead => "soc.dead",
        }
    }

    /// Position in [`Topic::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The topic an event is published to.
    pub fn of(event: &Event) -> Topic {
        match event {
            Event::AlertReceived(_) => Topic::Alerts,
            Event::AlertTriaged(_) => Topic::Triage,
            Event::CaseEscalated(_) | Event::Tier2Analysis(_) | Event::IrPlan(_) => Topic::Cases,
            Event::ActionProposed(_) | Event::ActionDecision(_) | Event::DispositionRecorded(_) => {
                Topic::Actions
            }
            Event::ThreatIntelReport(_)
            | Event::DetectionTuningReport(_)
            | Event::HuntingReport(_)
            | Event::CampaignDetected(_)
            | Event::ShiftSummary(_) => Topic::Reports,
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Topic {
    type Err = BusError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Topic::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| BusError::Config(format!("unknown stream `{s}`")))
    }
}

/// A stream entry id: milliseconds and a sequence number, as Redis writes them (`1700000000000-0`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence within the millisecond.
    pub seq: u64,
}

impl StreamId {
    /// The smallest id (`0-0`).
    pub const ZERO: StreamId = StreamId { ms: 0, seq: 0 };
    /// The largest id.
    pub const MAX: StreamId = StreamId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    /// The id right after this one.
    pub fn next(self) -> StreamId {
        match self.seq.checked_add(1) {
            Some(seq) => StreamId { ms: self.ms, seq },
            None => StreamId {
                ms: self.ms.saturating_add(1),
                seq: 0,
            },
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for StreamId {
    type Err = BusError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BusError::Protocol(format!("bad stream id `{s}`"));
        let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
        Ok(StreamId {
            ms: ms.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

/// Field name of the schema version.
pub const F_V: &str = "v";
/// Field name of the event kind.
pub const F_KIND: &str = "kind";
/// Field name of the envelope id.
pub const F_ID: &str = "id";
/// Field name of the correlation id (the ticket).
pub const F_CORR: &str = "corr";
/// Field name of the MessagePack-encoded envelope.
pub const F_DATA: &str = "data";
/// Most fields an appended entry may have (Lua's `unpack` and sanity both want a bound).
pub const MAX_FIELDS: usize = 256;
/// Audit entries only: the topic the message was published to.
pub const F_TOPIC: &str = "topic";
/// Audit entries only: the entry id in that topic.
pub const F_TOPIC_ID: &str = "topic_id";

/// The fields of one stream entry, in order. Values are binary-safe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields(Vec<(Cow<'static, str>, Bytes)>);

impl Fields {
    /// Fields for a domain message: `v`, `kind`, `id`, `corr`, `data`.
    pub fn for_envelope(envelope: &Envelope) -> Result<Fields, BusError> {
        let data = proto::encode(envelope).map_err(|e| BusError::Protocol(e.to_string()))?;
        Ok(Fields(vec![
            (Cow::Borrowed(F_V), Bytes::from(envelope.v.to_string())),
            (
                Cow::Borrowed(F_KIND),
                Bytes::from_static(envelope.event.kind().as_bytes()),
            ),
            (Cow::Borrowed(F_ID), Bytes::from(envelope.id.clone())),
            (
                Cow::Borrowed(F_CORR),
                Bytes::from(envelope.correlation_id.clone()),
            ),
            (Cow::Borrowed(F_DATA), Bytes::from(data)),
        ]))
    }

    /// Builds fields from name/value pairs (for raw writes and parsing).
    pub fn from_pairs<N, V>(pairs: impl IntoIterator<Item = (N, V)>) -> Fields
    where
        N: Into<Cow<'static, str>>,
        V: Into<Bytes>,
    {
        Fields(
            pairs
                .into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
        )
    }

    /// The value of a field, if present.
    pub fn get(&self, name: &str) -> Option<&Bytes> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The value of a field as UTF-8 text, if present and valid.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Appends a field.
    pub fn push(&mut self, name: impl Into<Cow<'static, str>>, value: impl Into<Bytes>) {
        self.0.push((name.into(), value.into()));
    }

    /// The fields in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Bytes)> {
        self.0.iter().map(|(n, v)| (n.as_ref(), v))
    }

    /// Whether these are exactly the fields of a domain message, in order:
    /// `v`, `kind`, `id`, `corr`, `data`.
    pub fn is_domain_message(&self) -> bool {
        self.0.len() == 5
            && self
                .0
                .iter()
                .zip([F_V, F_KIND, F_ID, F_CORR, F_DATA])
                .all(|((name, _), expected)| name == expected)
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Decodes the envelope in `data`, checking it agrees with the plain fields.
    pub fn decode_envelope(&self) -> Result<Envelope, String> {
        let data = self
            .get(F_DATA)
            .ok_or_else(|| "entry has no `data` field".to_owned())?;
        let envelope = proto::decode(data).map_err(|e| e.to_string())?;
        if let Some(kind) = self.get_str(F_KIND)
            && kind != envelope.event.kind()
        {
            return Err(format!(
                "entry kind `{kind}` does not match its envelope's `{}`",
                envelope.event.kind()
            ));
        }
        Ok(envelope)
    }
}

/// One entry read from a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The entry id.
    pub id: StreamId,
    /// Its fields.
    pub fields: Arc<Fields>,
}

/// An entry delivered to a consumer, with how many times it has been delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    /// The entry id.
    pub id: StreamId,
    /// Its fields; `None` when the entry was trimmed away while pending.
    pub fields: Option<Arc<Fields>>,
    /// Delivery count, including this delivery.
    pub deliveries: u32,
}

/// Reference to a delivered entry, to acknowledge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckRef {
    /// The stream it was read from.
    pub topic: Topic,
    /// The consumer group that read it.
    pub group: Arc<str>,
    /// The entry id.
    pub id: StreamId,
}

/// One entry to append.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// The stream to append to.
    pub topic: Topic,
    /// The entry's fields.
    pub fields: Fields,
    /// Whether to also append a copy to `soc.audit` (every domain message is audited).
    pub audit: bool,
}

impl Outgoing {
    /// A domain message: its topic follows from the event, and it is audited.
    pub fn event(envelope: &Envelope) -> Result<Outgoing, BusError> {
        Ok(Outgoing {
            topic: Topic::of(&envelope.event),
            fields: Fields::for_envelope(envelope)?,
            audit: true,
        })
    }
}

/// An atomic unit of work on the bus: optionally ack an input, optionally claim a dedupe key,
/// then append outputs (and their audit copies).
///
/// Applied all or nothing. A failed ack (the input was already acked) or a taken dedupe key
/// skips the outputs. Because of that fence, a commit can be retried after any failure without
/// duplicating its outputs; a commit with neither an ack nor a dedupe key cannot be built.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    ack: Option<AckRef>,
    dedupe_key: Option<String>,
    outputs: Vec<Outgoing>,
}

impl Commit {
    /// Acks `input` and appends `outputs`.
    pub fn ack(input: AckRef, outputs: Vec<Outgoing>) -> Commit {
        Commit {
            ack: Some(input),
            dedupe_key: None,
            outputs,
        }
    }

    /// Appends `outputs` unless `dedupe_key` was seen before (within the dedupe TTL).
    pub fn dedupe(dedupe_key: String, outputs: Vec<Outgoing>) -> Commit {
        Commit {
            ack: None,
            dedupe_key: Some(dedupe_key),
            outputs,
        }
    }

    /// Moves a delivered entry to `soc.dead` with the reason, and acks it. The entry's own
    /// fields are kept (at most [`MAX_FIELDS`] minus the dead-letter ones).
    pub fn dead_letter(input: AckRef, delivered: &Delivered, reason: &str) -> Commit {
        const DEAD_FIELDS: usize = 7;
        let original = delivered.fields.as_deref().cloned().unwrap_or_default();
        let truncated = original.len() > MAX_FIELDS - DEAD_FIELDS;
        let mut fields = Fields(
            original
                .0
                .into_iter()
                .take(MAX_FIELDS - DEAD_FIELDS)
                .collect(),
        );
        if truncated {
            fields.push("dead_truncated", "fields beyond the limit were dropped");
        }
        fields.push("dead_reason", reason.to_owned());
        fields.push("dead_from", input.topic.name());
        fields.push("dead_id", input.id.to_string());
        fields.push("dead_group", input.group.to_string());
        fields.push("dead_deliveries", delivered.deliveries.to_string());
        fields.push("dead_at_ms", proto::now_ms().to_string());
        Commit::ack(
            input,
            vec![Outgoing {
                topic: Topic::Dead,
                fields,
                audit: false,
            }],
        )
    }

    /// The input this commit acks.
    pub fn ack_ref(&self) -> Option<&AckRef> {
        self.ack.as_ref()
    }

    /// The dedupe key this commit claims.
    pub fn dedupe_key(&self) -> Option<&str> {
        self.dedupe_key.as_deref()
    }

    /// The entries this commit appends.
    pub fn outputs(&self) -> &[Outgoing] {
        &self.outputs
    }

    /// Checks what both backends require of every commit: each output has 1 to
    /// [`MAX_FIELDS`] fields.
    pub fn validate(&self) -> Result<(), BusError> {
        for out in &self.outputs {
            if out.fields.is_empty() || out.fields.len() > MAX_FIELDS {
                return Err(BusError::Invalid(format!(
                    "an entry for {} has {} fields (1 to {MAX_FIELDS} allowed)",
                    out.topic,
                    out.fields.len()
                )));
            }
        }
        Ok(())
    }

    /// The parts, by value (so a backend can move them instead of copying).
    pub(crate) fn into_parts(self) -> (Option<AckRef>, Option<String>, Vec<Outgoing>) {
        (self.ack, self.dedupe_key, self.outputs)
    }
}

/// What happened to one commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Ack, outputs and audit copies were written.
    Applied,
    /// The dedupe key was already taken: nothing was written.
    Duplicate,
    /// The input had already been acked (by this or another consumer): nothing was written.
    AlreadyAcked,
}

/// Called once with the outcome of a submitted batch.
pub type CommitCallback = Box<dyn FnOnce(Result<Vec<Outcome>, BusError>) + Send>;

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
    pub fn retention_of(&self, topic: Topic) -> Retention {
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

/// State of one consumer group, for idleness checks and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupState {
    /// The stream.
    pub topic: Topic,
    /// The group.
    pub group: String,
    /// Entries delivered but not yet acked.
    pub pending: u64,
    /// Whether entries exist that the group has not read yet.
    pub has_unread: bool,
    /// Entries not yet read by the group, when the backend knows (Redis's `lag` is unknown
    /// after trims or deletions).
    pub lag: Option<u64>,
}

impl GroupState {
    /// Nothing pending and nothing unread.
    pub fn is_idle(&self) -> bool {
        self.pending == 0 && !self.has_unread
    }
}

/// Errors of the bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Redis could not be reached or the connection broke.
    #[error("redis unavailable: {0}")]
    Unavailable(#[source] ::redis::RedisError),
    /// Redis answered with an error.
    #[error("redis error: {0}")]
    Redis(#[source] ::redis::RedisError),
    /// The bus bridge's buffer is full (Redis is down or slow): the work was refused, not lost.
    #[error("bus bridge buffer full ({0} commits waiting): redis is unreachable or too slow")]
    Backpressure(usize),
    /// The bus is shutting down.
    #[error("bus is shut down")]
    Closed,
    /// An answer did not have the expected shape.
    #[error("unexpected bus protocol data: {0}")]
    Protocol(String),
    /// A setting is invalid.
    #[error("invalid bus configuration: {0}")]
    Config(String),
    /// A commit breaks the bus's rules; nothing of it was written.
    #[error("invalid commit: {0}")]
    Invalid(String),
}

impl BusError {
    /// Whether retrying later can help (connection trouble or backpressure).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            BusError::Unavailable(_) | BusError::Backpressure(_) | BusError::Closed
        )
    }
}

impl From<::redis::RedisError> for BusError {
    fn from(e: ::redis::RedisError) -> Self {
        // Server states that pass: loading a dataset, a busy script, a failover, a replica
        // answering, memory full until something is trimmed or freed.
        const PASSING: [&str; 7] = [
            "LOADING",
            "BUSY",
            "TRYAGAIN",
            "MASTERDOWN",
            "READONLY",
            "OOM",
            "CLUSTERDOWN",
        ];
        if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
            || e.is_unrecoverable_error()
            || e.code().is_some_and(|code| PASSING.contains(&code))
        {
            BusError::Unavailable(e)
        } else {
            BusError::Redis(e)
        }
    }
}

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
    pub async fn touch(&mut self, ids: &[StreamId]) -> Result<(), BusError> {
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
    pub async fn reconnect(&mut self) -> Result<(), BusError> {
        match &mut self.inner {
            ConsumerImpl::Memory(_) => Ok(()),
            ConsumerImpl::Redis(r) => r.reconnect().await,
        }
    }
}

/// The consumer name for a role in this process: `host:pid:role`.
pub fn consumer_name(role: &str) -> String {
    format!(
        "{}:{}:{role}",
        gethostname::gethostname().to_string_lossy(),
        std::process::id()
    )
}

/// Whether a consumer name belongs to a process of this host that has exited.
pub(crate) fn is_dead_local_consumer(name: &str, me: &str) -> bool {
    let host = gethostname::gethostname();
    let host = host.to_string_lossy();
    let mut parts = name.rsplitn(3, ':');
    let (Some(_role), Some(pid), Some(their_host)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    if name == me || their_host != host {
        return false;
    }
    match pid.parse::<u32>() {
        Ok(pid) if pid != std::process::id() => !process_alive(pid),
        _ => false,
    }
}

#[cfg(target_os = "linux")]
fn process_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(not(target_os = "linux"))]
fn process_alive(_pid: u32) -> bool {
    // Without a cheap liveness check, leave other processes' entries to XAUTOCLAIM.
    true
}

#[cfg(test)]
mod tests {
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
