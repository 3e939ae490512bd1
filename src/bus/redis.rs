//! The Redis Streams bus backend: durable, shared by several processes.
//!
//! Writes (commits) go through the bus bridge ([`super::bridge`]), which owns one writer
//! connection and applies whole batches of commits with one call of the commit script
//! ([`super::writer`]). Reads
//! happen on each consumer's own connection, so a blocking `XREADGROUP` never delays anybody
//! else. Queries (ranges, lengths, group states) use a shared multiplexed connection.
//!
//! Requires Redis 7.0 or newer (script flags and `XAUTOCLAIM` deleted-id replies).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{Client, Value};
use tokio_util::sync::CancellationToken;

use crate::secret::redact_url;

use super::bridge::WriterHandle;
use super::commit::{Commit, CommitCallback, Delivered};
use super::config::BusConfig;
use super::error::BusError;
use super::group::{GroupState, is_dead_local_consumer};
use super::wire::{Entry, Fields, StreamId, Topic};
use super::writer::{CONNECT_TIMEOUT, Keys, QUERY_TIMEOUT, check_version, connect};

/// Deletes consumer ARGV[2] of group ARGV[1] on stream KEYS[1] if nothing is pending on it.
const DELETE_IDLE_CONSUMER: &str = r"
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then
  return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
return -1
";

/// An entry as read: its id and its fields (`None` when trimmed away while pending).
type RawEntry = (StreamId, Option<Arc<Fields>>);

/// How long to wait for an unblocked read before unblocking it again.
const UNBLOCK_RETRY: Duration = Duration::from_millis(50);
/// The Redis backend's shared part: configuration, a query connection, the writer handle.
pub(crate) struct RedisBus {
    client: Client,
    config: BusConfig,
    keys: Keys,
    /// Reconnects on its own after Redis comes back (the failing call still errors).
    query: ConnectionManager,
    writer: WriterHandle,
}

impl RedisBus {
    pub(super) async fn connect(
        url: &str,
        config: BusConfig,
        writer: WriterHandle,
    ) -> Result<Self, BusError> {
        let client = Client::open(url)
            .map_err(|e| BusError::Config(format!("bad redis url `{}`: {e}", redact_url(url))))?;
        let mut probe = connect(&client, QUERY_TIMEOUT).await?;
        check_version(&mut probe).await?;
        let plan = super::writer::durability_plan(&mut probe, &config).await?;
        tracing::info!(durability = %plan, "a commit counts as accepted once durable as this says");
        let query = client
            .get_connection_manager_with_config(
                ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(QUERY_TIMEOUT))
                    .set_number_of_retries(2),
            )
            .await?;
        Ok(Self {
            keys: Keys::new(&config.namespace),
            client,
            config,
            query,
            writer,
        })
    }

    pub(super) fn config(&self) -> &BusConfig {
        &self.config
    }

    pub(super) fn query_connection(&self) -> ConnectionManager {
        self.query.clone()
    }

    pub(super) fn enqueue(
        &self,
        commits: Vec<Commit>,
        done: CommitCallback,
    ) -> Result<(), BusError> {
        self.writer.enqueue(commits, done)
    }

    pub(super) async fn ensure_group(&self, topic: Topic, group: &str) -> Result<(), BusError> {
        ensure_group(&mut self.query.clone(), self.keys.stream(topic), group).await
    }

    pub(super) async fn append_raw(
        &self,
        topic: Topic,
        fields: Fields,
    ) -> Result<StreamId, BusError> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.keys.stream(topic)).arg("*");
        for (name, value) in fields.iter() {
            cmd.arg(name).arg(value.as_ref());
        }
        let id: String = cmd.query_async(&mut self.query.clone()).await?;
        id.parse()
    }

    pub(super) async fn range(
        &self,
        topic: Topic,
        start: StreamId,
        end: StreamId,
        count: usize,
    ) -> Result<Vec<Entry>, BusError> {
        let reply: Value = redis::cmd("XRANGE")
            .arg(self.keys.stream(topic))
            .arg(start.to_string())
            .arg(end.to_string())
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.query.clone())
            .await?;
        parse_entries(&reply)?
            .into_iter()
            .filter_map(|(id, fields)| fields.map(|fields| Ok(Entry { id, fields })))
            .collect()
    }

    pub(super) async fn last_id(&self, topic: Topic) -> Result<Option<StreamId>, BusError> {
        let reply: Value = redis::cmd("XREVRANGE")
            .arg(self.keys.stream(topic))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.query.clone())
            .await?;
        Ok(parse_entries(&reply)?.first().map(|(id, _)| *id))
    }

    pub(super) async fn len(&self, topic: Topic) -> Result<u64, BusError> {
        let len: u64 = redis::cmd("XLEN")
            .arg(self.keys.stream(topic))
            .query_async(&mut self.query.clone())
            .await?;
        Ok(len)
    }

    pub(super) async fn group_states(
        &self,
        groups: &[(Topic, &str)],
    ) -> Result<Vec<GroupState>, BusError> {
        let mut topics: Vec<Topic> = groups.iter().map(|(t, _)| *t).collect();
        topics.sort();
        topics.dedup();
        let mut pipe = redis::pipe();
        pipe.atomic();
        for topic in &topics {
            pipe.cmd("XINFO")
                .arg("GROUPS")
                .arg(self.keys.stream(*topic))
                .cmd("XREVRANGE")
                .arg(self.keys.stream(*topic))
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1);
        }
        let replies: Vec<Value> = pipe.query_async(&mut self.query.clone()).await?;
        let mut per_topic = HashMap::new();
        for (topic, pair) in topics.iter().zip(replies.chunks(2)) {
            let [infos, last] = pair else {
                return Err(BusError::Protocol("short XINFO GROUPS reply".into()));
            };
            let last_id = parse_entries(last)?.first().map(|(id, _)| *id);
            let mut by_group = HashMap::new();
            for info in as_array(infos)? {
                let info = flat_map(info)?;
                let name = info.get("name").and_then(|v| as_str(v)).unwrap_or_default();
                let pending = info.get("pending").and_then(|v| as_int(v)).unwrap_or(0);
                let lag = info
                    .get("lag")
                    .and_then(|v| as_int(v))
                    .and_then(|l| u64::try_from(l).ok());
                let delivered = info
                    .get("last-delivered-id")
                    .and_then(|v| as_str(v))
                    .unwrap_or("0-0")
                    .parse()?;
                by_group.insert(name.to_owned(), (pending, delivered, lag));
            }
            per_topic.insert(*topic, (last_id, by_group));
        }
        Ok(groups
            .iter()
            .map(|&(topic, group)| {
                let (last_id, by_group) = &per_topic[&topic];
                let (pending, delivered, lag) =
                    by_group
                        .get(group)
                        .copied()
                        .unwrap_or((0, StreamId::ZERO, None));
                GroupState {
                    topic,
                    group: group.to_owned(),
                    pending: u64::try_from(pending).unwrap_or(0),
                    has_unread: last_id.is_some_and(|last| last > delivered),
                    lag,
                }
            })
            .collect())
    }

    pub(super) async fn consumer(
        &self,
        topic: Topic,
        group: &str,
        name: &str,
    ) -> Result<RedisConsumer, BusError> {
        let mut consumer = RedisConsumer {
            client: self.client.clone(),
            conn: None,
            client_id: 0,
            unblocker: self.query.clone(),
            key: Arc::from(self.keys.stream(topic)),
            group: Arc::from(group),
            name: Arc::from(name),
            block: self.config.block(),
        };
        consumer.reconnect().await?;
        Ok(consumer)
    }
}

/// A consumer with its own connection (blocking reads hold it).
pub(crate) struct RedisConsumer {
    client: Client,
    conn: Option<MultiplexedConnection>,
    /// `CLIENT ID` of `conn`, to interrupt its blocking read from another connection.
    client_id: i64,
    /// Another connection, for `CLIENT UNBLOCK`.
    unblocker: ConnectionManager,
    key: Arc<str>,
    group: Arc<str>,
    name: Arc<str>,
    block: Duration,
}

impl RedisConsumer {
    fn conn(&mut self) -> Result<&mut MultiplexedConnection, BusError> {
        self.conn
            .as_mut()
            .ok_or_else(|| BusError::Protocol("consumer is not connected".into()))
    }

    pub(super) async fn reconnect(&mut self) -> Result<(), BusError> {
        self.conn = None;
        // A blocking read must not trip the response timeout.
        let mut conn = connect(&self.client, self.block + QUERY_TIMEOUT).await?;
        ensure_group(&mut conn, &self.key, &self.group).await?;
        self.client_id = redis::cmd("CLIENT")
            .arg("ID")
            .query_async(&mut conn)
            .await?;
        self.conn = Some(conn);
        Ok(())
    }

    pub(super) async fn read_new(
        &mut self,
        count: usize,
        block: Duration,
        stop: &CancellationToken,
    ) -> Result<Vec<Delivered>, BusError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&*self.group)
            .arg(&*self.name)
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(u64::try_from(block.as_millis()).unwrap_or(u64::MAX).max(1))
            .arg("STREAMS")
            .arg(&*self.key)
            .arg(">");
        if stop.is_cancelled() {
            return Ok(Vec::new());
        }
        let client_id = self.client_id;
        let mut unblocker = self.unblocker.clone();
        let conn = self.conn()?;
        let read = cmd.query_async::<Value>(conn);
        tokio::pin!(read);
        let reply = tokio::select! {
            reply = &mut read => reply?,
            () = stop.cancelled() => loop {
                // Never drop a blocking read half-way: entries Redis assigned to it would be
                // stranded. Unblock it instead; it answers at once, with or without entries.
                // The unblock travels on another connection and may overtake the read, so
                // repeat it until the read returns.
                let _: Result<i64, _> = redis::cmd("CLIENT")
                    .arg("UNBLOCK")
                    .arg(client_id)
                    .query_async(&mut unblocker)
                    .await;
                if let Ok(reply) = tokio::time::timeout(UNBLOCK_RETRY, &mut read).await {
                    break reply?;
                }
            },
        };
        Ok(parse_read_reply(&reply)?
            .into_iter()
            .map(|(id, fields)| Delivered {
                id,
                fields,
                deliveries: 1,
            })
            .collect())
    }

    pub(super) async fn read_own_pending(
        &mut self,
        after: StreamId,
        count: usize,
    ) -> Result<Vec<Delivered>, BusError> {
        let (key, group, name) = (self.key.clone(), self.group.clone(), self.name.clone());
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&*group)
            .arg(&*name)
            .arg("COUNT")
            .arg(count)
            .arg("STREAMS")
            .arg(&*key)
            .arg(after.to_string())
            .query_async(self.conn()?)
            .await?;
        let entries = parse_read_reply(&reply)?;
        self.with_counts(entries).await
    }

    pub(super) async fn autoclaim(
        &mut self,
        min_idle: Duration,
        cursor: StreamId,
        count: usize,
    ) -> Result<(StreamId, Vec<Delivered>), BusError> {
        let (key, group, name) = (self.key.clone(), self.group.clone(), self.name.clone());
        let reply: Value = redis::cmd("XAUTOCLAIM")
            .arg(&*key)
            .arg(&*group)
            .arg(&*name)
            .arg(u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX))
            .arg(cursor.to_string())
            .arg("COUNT")
            .arg(count)
            .query_async(self.conn()?)
            .await?;
        let parts = as_array(&reply)?;
        let (Some(next), Some(claimed)) = (parts.first(), parts.get(1)) else {
            return Err(BusError::Protocol("short XAUTOCLAIM reply".into()));
        };
        let next: StreamId = as_str(next).unwrap_or("0-0").parse()?;
        let entries = parse_entries(claimed)?;
        if let Some(deleted) = parts.get(2).and_then(|d| as_array(d).ok())
            && !deleted.is_empty()
        {
            tracing::warn!(
                stream = %self.key,
                group = %self.group,
                entries = deleted.len(),
                "pending entries were trimmed by retention before being processed; they are lost"
            );
        }
        Ok((next, self.with_counts(entries).await?))
    }

    pub(super) async fn touch(&mut self, ids: &[StreamId]) -> Result<(), BusError> {
        let mut pipe = redis::pipe();
        for chunk in ids.chunks(1000) {
            pipe.cmd("XCLAIM")
                .arg(&*self.key)
                .arg(&*self.group)
                .arg(&*self.name)
                .arg(0);
            for id in chunk {
                pipe.arg(id.to_string());
            }
            pipe.arg("JUSTID").ignore();
        }
        pipe.query_async::<()>(self.conn()?).await?;
        Ok(())
    }

    pub(super) async fn reap_dead_consumers(
        &mut self,
        me: &str,
    ) -> Result<Vec<Delivered>, BusError> {
        let (key, group) = (self.key.clone(), self.group.clone());
        let reply: Value = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&*key)
            .arg(&*group)
            .query_async(self.conn()?)
            .await?;
        let mut dead = Vec::new();
        for info in as_array(&reply)? {
            let info = flat_map(info)?;
            if let Some(name) = info.get("name").and_then(|v| as_str(v))
                && is_dead_local_consumer(name, me)
            {
                dead.push(name.to_owned());
            }
        }
        let mut claimed = Vec::new();
        for name in dead {
            loop {
                let pending: Value = redis::cmd("XPENDING")
                    .arg(&*key)
                    .arg(&*group)
                    .arg("-")
                    .arg("+")
                    .arg(1000)
                    .arg(&name)
                    .query_async(self.conn()?)
                    .await?;
                let ids: Vec<String> = as_array(&pending)?
                    .iter()
                    .filter_map(|p| {
                        as_array(p)
                            .ok()?
                            .first()
                            .and_then(as_str)
                            .map(str::to_owned)
                    })
                    .collect();
                if ids.is_empty() {
                    break;
                }
                let reply: Value = redis::cmd("XCLAIM")
                    .arg(&*key)
                    .arg(&*group)
                    .arg(me)
                    .arg(0)
                    .arg(&ids)
                    .query_async(self.conn()?)
                    .await?;
                let mut entries = parse_entries(&reply)?;
                // Entries trimmed away are not returned by XCLAIM; report them as gone.
                for id in &ids {
                    let id: StreamId = id.parse()?;
                    if !entries.iter().any(|(e, _)| *e == id) {
                        entries.push((id, None));
                    }
                }
                claimed.extend(self.with_counts(entries).await?);
                if ids.len() < 1000 {
                    break;
                }
            }
            // Only a consumer with nothing pending is removed, atomically: if the process was
            // alive after all (same host name, another pid namespace), nothing it read since
            // is destroyed with it.
            let _: i64 = redis::Script::new(DELETE_IDLE_CONSUMER)
                .key(&*key)
                .arg(&*group)
                .arg(&name)
                .invoke_async(self.conn()?)
                .await?;
        }
        claimed.sort_by_key(|d| d.id);
        Ok(claimed)
    }

    /// Attaches delivery counts (from `XPENDING`) to entries just delivered to this consumer.
    async fn with_counts(&mut self, entries: Vec<RawEntry>) -> Result<Vec<Delivered>, BusError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        // One exact lookup per id: a range query would also return this consumer's other
        // pending entries and could be cut off before reaching the ones asked about.
        let mut pipe = redis::pipe();
        for (id, _) in &entries {
            let id = id.to_string();
            pipe.cmd("XPENDING")
                .arg(&*self.key)
                .arg(&*self.group)
                .arg(&id)
                .arg(&id)
                .arg(1);
        }
        let replies: Vec<Value> = pipe.query_async(self.conn()?).await?;
        let counts = replies.iter().map(|reply| {
            as_array(reply)
                .ok()
                .and_then(|rows| rows.first())
                .and_then(|row| as_array(row).ok()?.get(3).and_then(as_int))
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        });
        Ok(entries
            .into_iter()
            .zip(counts)
            .map(|((id, fields), count)| Delivered {
                id,
                fields,
                // Not pending any more (acked meanwhile): it still counts as one delivery.
                deliveries: count.unwrap_or(1),
            })
            .collect())
    }
}

async fn ensure_group(
    conn: &mut impl redis::aio::ConnectionLike,
    key: &str,
    group: &str,
) -> Result<(), BusError> {
    let result: Result<Value, redis::RedisError> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(key)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn parse_read_reply(reply: &Value) -> Result<Vec<RawEntry>, BusError> {
    match reply {
        Value::Nil => Ok(Vec::new()),
        Value::Array(streams) => {
            let mut out = Vec::new();
            for stream in streams {
                let parts = as_array(stream)?;
                if let Some(entries) = parts.get(1) {
                    out.extend(parse_entries(entries)?);
                }
            }
            Ok(out)
        }
        Value::Map(streams) => {
            let mut out = Vec::new();
            for (_, entries) in streams {
                out.extend(parse_entries(entries)?);
            }
            Ok(out)
        }
        other => Err(BusError::Protocol(format!("XREADGROUP reply {other:?}"))),
    }
}

fn parse_entries(reply: &Value) -> Result<Vec<RawEntry>, BusError> {
    let mut out = Vec::new();
    for entry in as_array(reply)? {
        let parts = as_array(entry)?;
        let id: StreamId = parts
            .first()
            .and_then(as_str)
            .ok_or_else(|| BusError::Protocol("stream entry without id".into()))?
            .parse()?;
        let fields = match parts.get(1) {
            None | Some(Value::Nil) => None,
            Some(fields) => Some(Arc::new(parse_fields(fields)?)),
        };
        out.push((id, fields));
    }
    Ok(out)
}

fn parse_fields(reply: &Value) -> Result<Fields, BusError> {
    let items = as_array(reply)?;
    let mut fields = Fields::default();
    for pair in items.chunks(2) {
        if let [name, value] = pair {
            let name = String::from_utf8_lossy(as_bytes(name)?).into_owned();
            fields.push(name, bytes::Bytes::copy_from_slice(as_bytes(value)?));
        }
    }
    Ok(fields)
}

fn as_array(v: &Value) -> Result<&[Value], BusError> {
    match v {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::Nil => Ok(&[]),
        other => Err(BusError::Protocol(format!(
            "expected an array, got {other:?}"
        ))),
    }
}

fn as_bytes(v: &Value) -> Result<&[u8], BusError> {
    match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.as_bytes()),
        other => Err(BusError::Protocol(format!(
            "expected a string, got {other:?}"
        ))),
    }
}

fn as_str(v: &Value) -> Option<&str> {
    as_bytes(v).ok().and_then(|b| std::str::from_utf8(b).ok())
}

fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => as_str(other)?.parse().ok(),
    }
}

/// A flat `[k1, v1, k2, v2, ...]` (RESP2) or map (RESP3) reply as a map from key to value.
fn flat_map(v: &Value) -> Result<HashMap<String, &Value>, BusError> {
    match v {
        Value::Map(pairs) => Ok(pairs
            .iter()
            .filter_map(|(k, v)| Some((as_str(k)?.to_owned(), v)))
            .collect()),
        other => Ok(as_array(other)?
            .chunks(2)
            .filter_map(|pair| match pair {
                [k, v] => Some((as_str(k)?.to_owned(), v)),
                _ => None,
            })
            .collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_namespaced() {
        let keys = Keys::new("t1:");
        assert_eq!(keys.stream(Topic::Audit), "t1:soc.audit");
    }

    #[test]
    fn entries_parse_and_trimmed_entries_have_no_fields() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::BulkString(b"1-0".to_vec()),
                Value::Array(vec![
                    Value::BulkString(b"kind".to_vec()),
                    Value::BulkString(b"AlertReceived".to_vec()),
                ]),
            ]),
            Value::Array(vec![Value::BulkString(b"2-0".to_vec()), Value::Nil]),
        ]);
        let entries = parse_entries(&reply).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[0].1.as_ref().unwrap().get_str("kind"),
            Some("AlertReceived")
        );
        assert!(entries[1].1.is_none());
        assert!(parse_entries(&Value::Int(3)).is_err());
    }
}
