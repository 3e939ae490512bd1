//! The in-memory bus backend: the embedded default, and what tests and backtests run on.
//!
//! It models Redis Streams closely enough that one conformance suite passes on both: ids are
//! `ms-seq`, each group has a last-delivered id and a pending entries list (PEL) with owners and
//! delivery counts, reading own history and claiming count as deliveries, and a commit is
//! applied under one lock, so it is atomic in the same sense as the Redis script.
//!
//! Everything lives in this process: a restart of the process loses it (a restarted *actor*
//! loses nothing, since the state belongs to the bus, not to the actor).
//!
//! The projector reads the audit by range, not through a group, so it tells the bus how far
//! its store has committed ([`MemoryBus::audit_folded`]): a retention on the audit never drops
//! an entry past that mark, and a feed can wait for it ([`MemoryBus::folded_to`],
//! `bus.max_unfolded`).

use std::collections::{BTreeMap, VecDeque};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use foldhash::{HashMap, HashSet};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::commit::{AckRef, Commit, Delivered, Outcome};
use super::config::{BusConfig, Retention};
use super::group::{GroupState, is_dead_local_consumer};
use super::wire::{Entry, F_TOPIC, F_TOPIC_ID, Fields, StreamId, Topic};

/// The dedupe map is swept for expired keys once it reaches at least this size.
const DEDUPE_SWEEP_MIN: usize = 4096;

/// The in-memory bus.
pub(crate) struct MemoryBus {
    inner: Arc<Inner>,
}

struct Inner {
    config: BusConfig,
    state: Mutex<State>,
    /// One per topic, woken when entries are appended.
    appended: [Notify; 7],
    /// Readers blocked per topic; writers skip the wakeup when there are none.
    blocked: [AtomicUsize; 7],
    /// Woken when the projector has folded more of the audit.
    folded: Notify,
}

#[derive(Default)]
struct State {
    streams: [Stream; 7],
    /// Dedupe key -> when it expires.
    dedupe: HashMap<String, Instant>,
    /// Dedupe map size that triggers the next sweep of expired keys.
    dedupe_sweep_at: usize,
    /// The first audit entry the projector has not folded yet ([`MemoryBus::audit_folded`]):
    /// the audit's retention never trims from here on. The projector reads the audit by
    /// range, not through a group, so this is its place in the floor.
    audit_unfolded: StreamId,
}

#[derive(Default)]
struct Stream {
    entries: VecDeque<Stored>,
    last_id: StreamId,
    groups: HashMap<Arc<str>, Group>,
}

struct Stored {
    id: StreamId,
    fields: Arc<Fields>,
    /// For audit entries: the topic and id of the entry this one copies.
    audit_of: Option<(Topic, StreamId)>,
}

#[derive(Default)]
struct Group {
    last_delivered: StreamId,
    pel: BTreeMap<StreamId, Pending>,
    consumers: HashSet<Arc<str>>,
}

struct Pending {
    consumer: Arc<str>,
    delivered_at: Instant,
    deliveries: u32,
}

impl MemoryBus {
    /// An empty bus.
    pub(crate) fn new(config: BusConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(State::default()),
                appended: Default::default(),
                blocked: Default::default(),
                folded: Notify::new(),
            }),
        }
    }

    pub(super) fn config(&self) -> &BusConfig {
        &self.inner.config
    }

    pub(super) fn ensure_group(&self, topic: Topic, group: &str) {
        let mut state = self.inner.state.lock();
        state.streams[topic.index()]
            .groups
            .entry(Arc::from(group))
            .or_default();
    }

    /// Applies commits in order, each atomically (all under one lock).
    pub(super) fn apply(&self, commits: Vec<Commit>) -> Vec<Outcome> {
        // Allocate before taking the lock: the critical section only links entries in.
        let prepared: Vec<Prepared> = commits.into_iter().map(Prepared::from).collect();
        let mut touched = [false; 7];
        let outcomes = {
            let now = Instant::now();
            let now_ms = wall_ms();
            let mut state = self.inner.state.lock();
            prepared
                .into_iter()
                .map(|c| state.apply(c, &self.inner.config, now, now_ms, &mut touched))
                .collect()
        };
        self.wake(&touched);
        outcomes
    }

    /// The projector has folded the audit up to `upto`: a retention configured for the audit
    /// may drop those entries now (it never drops one the projector has not folded).
    pub(super) fn audit_folded(&self, upto: StreamId) {
        {
            let mut state = self.inner.state.lock();
            state.audit_unfolded = state.audit_unfolded.max(upto.next());
        }
        self.inner.folded.notify_waiters();
    }

    /// Waits until at most `limit` audit entries are not folded yet.
    pub(super) async fn folded_to(&self, limit: u64) {
        loop {
            let mut folded = pin!(self.inner.folded.notified());
            folded.as_mut().enable();
            if self.unfolded() <= limit {
                return;
            }
            folded.await;
        }
    }

    /// Audit entries the projector has not folded yet.
    fn unfolded(&self) -> u64 {
        let state = self.inner.state.lock();
        let audit = &state.streams[Topic::Audit.index()];
        let from = audit
            .entries
            .partition_point(|e| e.id < state.audit_unfolded);
        (audit.entries.len() - from) as u64
    }

    pub(super) fn append_raw(&self, topic: Topic, fields: Fields) -> StreamId {
        let id = {
            let mut state = self.inner.state.lock();
            // Raw appends do not trim, as on Redis.
            state.streams[topic.index()].append(
                Arc::new(fields),
                None,
                Retention::Keep,
                wall_ms(),
                None,
            )
        };
        self.inner.wake(topic.index());
        id
    }

    pub(super) fn range(
        &self,
        topic: Topic,
        start: StreamId,
        end: StreamId,
        count: usize,
    ) -> Vec<Entry> {
        let state = self.inner.state.lock();
        let stream = &state.streams[topic.index()];
        let from = stream.entries.partition_point(|e| e.id < start);
        stream
            .entries
            .range(from..)
            .take_while(|e| e.id <= end)
            .take(count)
            .map(Stored::to_entry)
            .collect()
    }

    pub(super) fn last_id(&self, topic: Topic) -> Option<StreamId> {
        self.inner.state.lock().streams[topic.index()]
            .entries
            .back()
            .map(|e| e.id)
    }

    pub(super) fn len(&self, topic: Topic) -> u64 {
        self.inner.state.lock().streams[topic.index()].entries.len() as u64
    }

    pub(super) fn group_states(&self, groups: &[(Topic, &str)]) -> Vec<GroupState> {
        let state = self.inner.state.lock();
        groups
            .iter()
            .map(|&(topic, name)| {
                let stream = &state.streams[topic.index()];
                let (pending, last_delivered) =
                    stream.groups.get(name).map_or((0, StreamId::ZERO), |g| {
                        (g.pel.len() as u64, g.last_delivered)
                    });
                let unread = stream.entries.len()
                    - stream.entries.partition_point(|e| e.id <= last_delivered);
                GroupState {
                    topic,
                    group: name.to_owned(),
                    pending,
                    has_unread: unread > 0,
                    lag: Some(unread as u64),
                }
            })
            .collect()
    }

    pub(super) fn consumer(&self, topic: Topic, group: &str, name: &str) -> MemoryConsumer {
        self.ensure_group(topic, group);
        MemoryConsumer {
            inner: self.inner.clone(),
            topic,
            group: Arc::from(group),
            name: Arc::from(name),
        }
    }

    fn wake(&self, touched: &[bool; 7]) {
        for (i, t) in touched.iter().enumerate() {
            if *t {
                self.inner.wake(i);
            }
        }
    }
}

/// A commit with its outputs already wrapped for sharing between topic and audit.
struct Prepared {
    ack: Option<AckRef>,
    dedupe_key: Option<String>,
    outputs: Vec<(Topic, Arc<Fields>, bool)>,
}

impl From<Commit> for Prepared {
    fn from(commit: Commit) -> Self {
        let (ack, dedupe_key, outputs) = commit.into_parts();
        Self {
            ack,
            dedupe_key,
            outputs: outputs
                .into_iter()
                .map(|o| (o.topic, Arc::new(o.fields), o.audit))
                .collect(),
        }
    }
}

impl Inner {
    /// Wakes the readers blocked on topic `i`, if any.
    ///
    /// A reader counts itself in `blocked` and enables its wakeup *before* looking for
    /// entries under the lock; a writer checks `blocked` *after* appending under the lock.
    /// So either the reader's look sees the entry, or the writer sees the reader.
    fn wake(&self, i: usize) {
        if self.blocked[i].load(Ordering::SeqCst) > 0 {
            self.appended[i].notify_waiters();
        }
    }
}

impl State {
    fn apply(
        &mut self,
        commit: Prepared,
        config: &BusConfig,
        now: Instant,
        now_ms: u64,
        touched: &mut [bool; 7],
    ) -> Outcome {
        if let Some(ack) = &commit.ack {
            let acked = self.streams[ack.topic.index()]
                .groups
                .get_mut(&*ack.group)
                .and_then(|g| g.pel.remove(&ack.id))
                .is_some();
            if !acked {
                return Outcome::AlreadyAcked;
            }
        }
        if let Some(key) = commit.dedupe_key {
            if self.dedupe.len() >= self.dedupe_sweep_at {
                // Expired keys go in amortized sweeps, as Redis expires its keys.
                self.dedupe.retain(|_, expiry| *expiry > now);
                self.dedupe_sweep_at = (self.dedupe.len() * 2).max(DEDUPE_SWEEP_MIN);
            }
            let expiry = now + Duration::from_secs(config.dedupe_ttl_s);
            match self.dedupe.entry(key) {
                std::collections::hash_map::Entry::Occupied(e) if *e.get() > now => {
                    return Outcome::Duplicate;
                }
                std::collections::hash_map::Entry::Occupied(mut e) => {
                    e.insert(expiry);
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(expiry);
                }
            }
        }
        for (topic, fields, audit) in commit.outputs {
            let stream = &mut self.streams[topic.index()];
            let id = stream.append(
                fields.clone(),
                None,
                config.retention_of(topic),
                now_ms,
                None,
            );
            touched[topic.index()] = true;
            if audit {
                self.streams[Topic::Audit.index()].append(
                    fields,
                    Some((topic, id)),
                    config.retention_of(Topic::Audit),
                    now_ms,
                    Some(self.audit_unfolded),
                );
                touched[Topic::Audit.index()] = true;
            }
        }
        Outcome::Applied
    }
}

impl Stream {
    fn append(
        &mut self,
        fields: Arc<Fields>,
        audit_of: Option<(Topic, StreamId)>,
        retention: Retention,
        now_ms: u64,
        reader: Option<StreamId>,
    ) -> StreamId {
        let id = if now_ms > self.last_id.ms {
            StreamId { ms: now_ms, seq: 0 }
        } else {
            self.last_id.next()
        };
        self.last_id = id;
        self.entries.push_back(Stored {
            id,
            fields,
            audit_of,
        });
        // Retention never passes the oldest entry a group still needs (pending, or not yet
        // read), as on Redis (`scripts/trim.lua`), nor the first one `reader` has not read.
        let floor = match (self.floor(), reader) {
            (Some(groups), Some(reader)) => Some(groups.min(reader)),
            (groups, reader) => groups.or(reader),
        };
        let needed = |e: &Stored| floor.is_some_and(|f| e.id >= f);
        match retention {
            Retention::Keep => {}
            Retention::MaxLen(max) => {
                while self.entries.len() as u64 > max
                    && self.entries.front().is_some_and(|e| !needed(e))
                {
                    self.entries.pop_front();
                }
            }
            Retention::MaxAgeSecs(secs) => {
                let min_ms = now_ms.saturating_sub(secs.saturating_mul(1000));
                while self
                    .entries
                    .front()
                    .is_some_and(|e| e.id.ms < min_ms && !needed(e))
                {
                    self.entries.pop_front();
                }
            }
        }
        id
    }

    /// The oldest entry id some group still needs: its oldest pending entry, else the first
    /// it has not read. `None` without groups.
    fn floor(&self) -> Option<StreamId> {
        self.groups
            .values()
            .map(|g| {
                g.pel
                    .keys()
                    .next()
                    .copied()
                    .unwrap_or_else(|| g.last_delivered.next())
            })
            .min()
    }

    fn fields_of(&self, id: StreamId) -> Option<Arc<Fields>> {
        let at = self.entries.partition_point(|e| e.id < id);
        self.entries
            .get(at)
            .filter(|e| e.id == id)
            .map(|e| e.to_entry().fields)
    }
}

impl Stored {
    fn to_entry(&self) -> Entry {
        let fields = match self.audit_of {
            None => self.fields.clone(),
            Some((topic, id)) => {
                let mut fields = (*self.fields).clone();
                fields.push(F_TOPIC, topic.name());
                fields.push(F_TOPIC_ID, id.to_string());
                Arc::new(fields)
            }
        };
        Entry {
            id: self.id,
            fields,
        }
    }
}

/// A consumer of the in-memory bus.
pub(crate) struct MemoryConsumer {
    inner: Arc<Inner>,
    topic: Topic,
    group: Arc<str>,
    name: Arc<str>,
}

impl MemoryConsumer {
    pub(super) fn read_own_pending(&mut self, after: StreamId, count: usize) -> Vec<Delivered> {
        let mut state = self.inner.state.lock();
        let now = Instant::now();
        let stream = &mut state.streams[self.topic.index()];
        let Some(group) = stream.groups.get_mut(&self.group) else {
            return Vec::new();
        };
        let mut ids = Vec::new();
        for (id, pending) in group.pel.range_mut(after.next()..) {
            if ids.len() == count {
                break;
            }
            if pending.consumer == self.name {
                pending.deliveries += 1;
                pending.delivered_at = now;
                ids.push((*id, pending.deliveries));
            }
        }
        ids.into_iter()
            .map(|(id, deliveries)| Delivered {
                id,
                fields: stream.fields_of(id),
                deliveries,
            })
            .collect()
    }

    pub(super) async fn read_new(
        &mut self,
        count: usize,
        block: Duration,
        stop: &CancellationToken,
    ) -> Vec<Delivered> {
        let batch = self.take_new(count);
        if !batch.is_empty() || block.is_zero() {
            return batch;
        }
        let deadline = Instant::now() + block;
        let inner = self.inner.clone();
        let i = self.topic.index();
        inner.blocked[i].fetch_add(1, Ordering::SeqCst);
        let _unblock = Unblock(&inner.blocked[i]);
        loop {
            let mut appended = pin!(inner.appended[i].notified());
            appended.as_mut().enable();
            let batch = self.take_new(count);
            if !batch.is_empty() {
                return batch;
            }
            // Waiting takes nothing from the stream, so giving up here loses nothing.
            tokio::select! {
                woken = tokio::time::timeout_at(deadline, appended) => {
                    if woken.is_err() {
                        return Vec::new();
                    }
                }
                () = stop.cancelled() => return Vec::new(),
            }
        }
    }

    fn take_new(&mut self, count: usize) -> Vec<Delivered> {
        let mut state = self.inner.state.lock();
        let now = Instant::now();
        let stream = &mut state.streams[self.topic.index()];
        let group = stream.groups.entry(self.group.clone()).or_default();
        let from = stream
            .entries
            .partition_point(|e| e.id <= group.last_delivered);
        let mut out = Vec::with_capacity(count.min(stream.entries.len() - from));
        for stored in stream.entries.range(from..).take(count) {
            group.pel.insert(
                stored.id,
                Pending {
                    consumer: self.name.clone(),
                    delivered_at: now,
                    deliveries: 1,
                },
            );
            group.last_delivered = stored.id;
            out.push(Delivered {
                id: stored.id,
                fields: Some(stored.to_entry().fields),
                deliveries: 1,
            });
        }
        if !out.is_empty() && !group.consumers.contains(&self.name) {
            group.consumers.insert(self.name.clone());
        }
        out
    }

    pub(super) fn autoclaim(
        &mut self,
        min_idle: Duration,
        cursor: StreamId,
        count: usize,
    ) -> (StreamId, Vec<Delivered>) {
        let mut state = self.inner.state.lock();
        let now = Instant::now();
        let stream = &mut state.streams[self.topic.index()];
        let Some(group) = stream.groups.get_mut(&self.group) else {
            return (StreamId::ZERO, Vec::new());
        };
        let mut claimed = Vec::new();
        let mut deleted = Vec::new();
        let mut next = StreamId::ZERO;
        // Like Redis, examine at most COUNT * 10 entries per call.
        let mut budget = count.saturating_mul(10);
        for (id, pending) in group.pel.range_mut(cursor..) {
            if claimed.len() == count || budget == 0 {
                next = *id;
                break;
            }
            budget -= 1;
            if now.duration_since(pending.delivered_at) < min_idle {
                continue;
            }
            match stream
                .entries
                .binary_search_by(|e| e.id.cmp(id))
                .ok()
                .map(|at| stream.entries[at].to_entry().fields)
            {
                None => deleted.push(*id),
                Some(fields) => {
                    pending.consumer = self.name.clone();
                    pending.delivered_at = now;
                    pending.deliveries += 1;
                    claimed.push(Delivered {
                        id: *id,
                        fields: Some(fields),
                        deliveries: pending.deliveries,
                    });
                }
            }
        }
        if !deleted.is_empty() {
            tracing::warn!(
                stream = %self.topic,
                group = %self.group,
                entries = deleted.len(),
                "pending entries were trimmed by retention before being processed; they are lost"
            );
        }
        for id in deleted {
            group.pel.remove(&id);
        }
        if !claimed.is_empty() {
            group.consumers.insert(self.name.clone());
        }
        (next, claimed)
    }

    pub(super) fn touch(&mut self, ids: &[StreamId]) {
        let mut state = self.inner.state.lock();
        let now = Instant::now();
        let stream = &mut state.streams[self.topic.index()];
        if let Some(group) = stream.groups.get_mut(&self.group) {
            for id in ids {
                if let Some(pending) = group.pel.get_mut(id) {
                    pending.consumer = self.name.clone();
                    pending.delivered_at = now;
                }
            }
        }
    }

    pub(super) fn reap_dead_consumers(&mut self, me: &str) -> Vec<Delivered> {
        let mut state = self.inner.state.lock();
        let now = Instant::now();
        let stream = &mut state.streams[self.topic.index()];
        let Some(group) = stream.groups.get_mut(&self.group) else {
            return Vec::new();
        };
        let dead: Vec<Arc<str>> = group
            .consumers
            .iter()
            .filter(|c| is_dead_local_consumer(c, me))
            .cloned()
            .collect();
        let mut claimed = Vec::new();
        for (id, pending) in group.pel.iter_mut() {
            if dead.contains(&pending.consumer) {
                pending.consumer = self.name.clone();
                pending.delivered_at = now;
                pending.deliveries += 1;
                claimed.push((*id, pending.deliveries));
            }
        }
        for name in &dead {
            if !group.pel.values().any(|p| &p.consumer == name) {
                group.consumers.remove(name);
            }
        }
        if !claimed.is_empty() {
            group.consumers.insert(self.name.clone());
        }
        claimed
            .into_iter()
            .map(|(id, deliveries)| Delivered {
                id,
                fields: stream.fields_of(id),
                deliveries,
            })
            .collect()
    }
}

/// Uncounts a blocked reader when its read ends (or is cancelled).
struct Unblock<'a>(&'a AtomicUsize);

impl Drop for Unblock<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn wall_ms() -> u64 {
    u64::try_from(crate::proto::now_ms()).unwrap_or(0)
}
