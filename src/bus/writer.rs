//! Redis connections, the namespace's key names and the bridge's writer: one call of the
//! commit script per batch of commits. Below both the bridge ([`super::bridge`]), which owns
//! the writer, and the backend ([`super::redis`]), which reads.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client};

use super::commit::{Commit, Outcome};
use super::config::{BusConfig, Retention};
use super::error::BusError;
use super::wire::Topic;
use crate::secret::redact_url;

/// The commit script (`scripts/commit.lua`): applies a batch of commits, each fenced by its
/// ack or its dedupe key.
///
/// For each commit, `XACK` runs first: when it acks nothing (the entry was already acked, by a
/// crashed-and-restarted or a competing consumer) the outputs are skipped. Likewise a dedupe key
/// that is already set skips them. Then every output is `XADD`ed to its stream and, when
/// audited, to `soc.audit` with the topic and the entry id it got. Scripts run atomically, and
/// the shebang makes Redis refuse the whole script up front when out of memory.
///
/// Lua's own overhead used to cost more than the commands (every argument becomes an interned
/// Lua string): per-batch constants travel once in a header, outputs name streams by index,
/// and the usual five-field entry is added without building a table.
pub(crate) const COMMIT_SCRIPT: &str = include_str!("scripts/commit.lua");

/// The trim script (`scripts/trim.lua`): trims one stream to its retention, never past the
/// oldest entry one of its consumer groups still needs.
pub(crate) const TRIM_SCRIPT: &str = include_str!("scripts/trim.lua");

/// Most entries one trim call drops from a stream kept by length.
const TRIM_BATCH: u64 = 10_000;

/// How long a plain query may take before the connection is considered broken.
pub(super) const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting may take.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Key names of one namespace.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    streams: [String; 7],
    dedupe_prefix: String,
}

impl Keys {
    /// Keys under `namespace`.
    pub(crate) fn new(namespace: &str) -> Self {
        Self {
            streams: Topic::ALL.map(|t| format!("{namespace}{}", t.name())),
            dedupe_prefix: format!("{namespace}soc.dedupe:"),
        }
    }

    /// The key of a stream.
    pub(crate) fn stream(&self, topic: Topic) -> &str {
        &self.streams[topic.index()]
    }
}

/// The bridge's side: writes a batch of commits with one script call.
pub(crate) struct Writer {
    client: Client,
    conn: Option<MultiplexedConnection>,
    keys: Keys,
    config: BusConfig,
    script_sha: String,
    /// How batches are made durable, found when the connection is made.
    plan: DurablePlan,
    durable_key: String,
}

impl Writer {
    /// A writer for `url`; connects lazily.
    pub(crate) fn new(url: &str, config: BusConfig) -> Result<Self, BusError> {
        let client = Client::open(url)
            .map_err(|e| BusError::Config(format!("bad redis url `{}`: {e}", redact_url(url))))?;
        let keys_namespace = config.namespace.clone();
        Ok(Self {
            client,
            conn: None,
            keys: Keys::new(&config.namespace),
            config,
            script_sha: redis::Script::new(COMMIT_SCRIPT).get_hash().to_owned(),
            plan: DurablePlan::Nothing,
            durable_key: format!("{}soc.durable", keys_namespace),
        })
    }

    /// Waits until everything this connection wrote is durable as planned: a marker write
    /// (so the wait covers commits a retry found already applied), then `WAITAOF` or `WAIT`.
    async fn make_durable(&self, conn: &MultiplexedConnection) -> Result<(), BusError> {
        let timeout = self.config.durability_timeout_ms;
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&self.durable_key)
            .arg(crate::proto::now_ms())
            .arg("PX")
            .arg(60_000)
            .ignore();
        match self.plan {
            DurablePlan::Nothing => return Ok(()),
            DurablePlan::Wait { replicas } => {
                pipe.cmd("WAIT").arg(replicas).arg(timeout);
                let (got,): (u32,) = pipe.query_async(&mut conn.clone()).await?;
                if got < replicas {
                    return Err(BusError::NotDurable(format!(
                        "WAIT: {got} of {replicas} replicas acknowledged within {timeout} ms"
                    )));
                }
            }
            DurablePlan::WaitAof { replicas } => {
                pipe.cmd("WAITAOF").arg(1).arg(replicas).arg(timeout);
                let ((local, got),): ((u32, u32),) = pipe.query_async(&mut conn.clone()).await?;
                if local < 1 || got < replicas {
                    return Err(BusError::NotDurable(format!(
                        "WAITAOF: the local AOF fsynced {local} of 1, replicas {got} of \
                         {replicas}, within {timeout} ms"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Writes each chunk of commits with one script call, all calls pipelined on the one
    /// connection (Redis runs them in order). The outer error means no connection; an inner
    /// `Unavailable` means that chunk's fate is unknown. Either way the connection is dropped
    /// and the next call reconnects; retrying any chunk is safe (its commits are fenced).
    pub(crate) async fn write_many(
        &mut self,
        chunks: &[&[&Commit]],
    ) -> Result<Vec<Result<Vec<Outcome>, BusError>>, BusError> {
        let conn = match self.conn.clone() {
            Some(conn) => conn,
            None => {
                let mut conn = connect(&self.client, QUERY_TIMEOUT).await?;
                load_script(&mut conn).await?;
                self.plan = durability_plan(&mut conn, &self.config).await?;
                self.conn = Some(conn.clone());
                conn
            }
        };
        let cmds: Vec<redis::Cmd> = chunks
            .iter()
            .map(|chunk| {
                let mut cmd = redis::cmd("EVALSHA");
                cmd.arg(&self.script_sha).arg(0);
                self.push_args(&mut cmd, chunk);
                cmd
            })
            .collect();
        let replies = futures_util::future::join_all(cmds.iter().map(|cmd| {
            let mut conn = conn.clone();
            async move { cmd.query_async::<Vec<i64>>(&mut conn).await }
        }))
        .await;
        let mut results = Vec::with_capacity(chunks.len());
        let mut reloaded = false;
        for ((reply, cmd), chunk) in replies.into_iter().zip(&cmds).zip(chunks) {
            let reply = match reply {
                Err(e) if e.code() == Some("NOSCRIPT") => {
                    // The server restarted or flushed its scripts: load it again, retry.
                    if !reloaded {
                        reloaded = true;
                        if let Err(e) = load_script(&mut conn.clone()).await {
                            self.conn = None;
                            results.push(Err(e));
                            continue;
                        }
                    }
                    cmd.query_async::<Vec<i64>>(&mut conn.clone()).await
                }
                other => other,
            };
            let result = reply
                .map_err(BusError::from)
                .and_then(|statuses| outcomes(statuses, chunk.len()));
            if let Err(BusError::Unavailable(_)) = &result {
                self.conn = None;
            }
            results.push(result);
        }
        if self.plan != DurablePlan::Nothing && results.iter().any(Result::is_ok) {
            // Nothing counts as accepted until it is durable as configured.
            if let Err(e) = self.make_durable(&conn).await {
                if !matches!(e, BusError::NotDurable(_)) {
                    self.conn = None;
                }
                let reason = match e {
                    BusError::NotDurable(reason) => reason,
                    other => other.to_string(),
                };
                for result in results.iter_mut().filter(|r| r.is_ok()) {
                    *result = Err(BusError::NotDurable(reason.clone()));
                }
            }
        }
        Ok(results)
    }

    fn push_args(&self, cmd: &mut redis::Cmd, commits: &[&Commit]) {
        cmd.arg(commits.len()).arg(self.config.dedupe_ttl_s);
        for topic in Topic::ALL {
            cmd.arg(self.keys.stream(topic));
        }
        for topic in Topic::ALL {
            cmd.arg(topic.name());
        }
        for commit in commits {
            match commit.ack_ref() {
                Some(ack) => cmd
                    .arg(ack.topic.index() + 1)
                    .arg(&*ack.group)
                    .arg(ack.id.to_string()),
                None => cmd.arg(0).arg("").arg(""),
            };
            match commit.dedupe_key() {
                Some(key) => cmd.arg(format!("{}{key}", self.keys.dedupe_prefix)),
                None => cmd.arg(""),
            };
            cmd.arg(commit.outputs().len());
            for out in commit.outputs() {
                cmd.arg(out.topic.index() + 1).arg(u8::from(out.audit));
                if out.fields.is_domain_message() {
                    cmd.arg("D");
                    for (_, value) in out.fields.iter() {
                        cmd.arg(value.as_ref());
                    }
                } else {
                    cmd.arg(out.fields.len());
                    for (name, value) in out.fields.iter() {
                        cmd.arg(name).arg(value.as_ref());
                    }
                }
            }
        }
    }
}

/// How the writer makes a batch durable before it counts as accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DurablePlan {
    /// Applied in memory counts (the server's own persistence setting applies).
    Nothing,
    /// `WAIT` for this many replicas.
    Wait {
        /// Replicas that must acknowledge.
        replicas: u32,
    },
    /// `WAITAOF`: the local AOF fsynced, and this many replicas' AOF.
    WaitAof {
        /// Replicas whose AOF must be fsynced.
        replicas: u32,
    },
}

impl std::fmt::Display for DurablePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DurablePlan::Nothing => f.write_str(
                "none beyond the server's own persistence (no WAITAOF with AOF on, no replicas to WAIT for)",
            ),
            DurablePlan::Wait { replicas } => write!(f, "WAIT for {replicas} replica(s)"),
            DurablePlan::WaitAof { replicas } => {
                write!(f, "WAITAOF: the local AOF fsynced and {replicas} replica(s)'")
            }
        }
    }
}

/// What `config.durability` asks of the server on `conn`, given what it can do.
pub(super) async fn durability_plan(
    conn: &mut MultiplexedConnection,
    config: &BusConfig,
) -> Result<DurablePlan, BusError> {
    use super::config::Durability;
    if config.durability == Durability::None {
        return Ok(DurablePlan::Nothing);
    }
    let info: Vec<redis::Value> = redis::cmd("COMMAND")
        .arg("INFO")
        .arg("WAITAOF")
        .query_async(conn)
        .await?;
    let has_waitaof = !matches!(info.first(), None | Some(redis::Value::Nil));
    let persistence: String = redis::cmd("INFO")
        .arg("persistence")
        .query_async(conn)
        .await?;
    let aof_on = persistence.lines().any(|l| l.trim() == "aof_enabled:1");
    let replicas = config.wait_replicas;
    match config.durability {
        Durability::Aof if !(has_waitaof && aof_on) => Err(BusError::Config(format!(
            "bus.durability = \"aof\" needs a server with WAITAOF (Redis 7.2+, Valkey) and \
             appendonly yes; this one has WAITAOF: {has_waitaof}, AOF on: {aof_on}"
        ))),
        _ if has_waitaof && aof_on => Ok(DurablePlan::WaitAof { replicas }),
        _ if replicas > 0 => Ok(DurablePlan::Wait { replicas }),
        _ => Ok(DurablePlan::Nothing),
    }
}

pub(super) async fn connect(
    client: &Client,
    response_timeout: Duration,
) -> Result<MultiplexedConnection, BusError> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(response_timeout));
    Ok(client
        .get_multiplexed_async_connection_with_config(&config)
        .await?)
}

fn outcomes(statuses: Vec<i64>, expected: usize) -> Result<Vec<Outcome>, BusError> {
    if statuses.len() != expected {
        return Err(BusError::Protocol(format!(
            "commit script returned {} statuses for {expected} commits",
            statuses.len()
        )));
    }
    statuses
        .into_iter()
        .map(|s| match s {
            1 => Ok(Outcome::Applied),
            2 => Ok(Outcome::Duplicate),
            3 => Ok(Outcome::AlreadyAcked),
            other => Err(BusError::Protocol(format!("commit status {other}"))),
        })
        .collect()
}

async fn load_script(conn: &mut MultiplexedConnection) -> Result<(), BusError> {
    for script in [COMMIT_SCRIPT, TRIM_SCRIPT] {
        let _: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(script)
            .query_async(conn)
            .await?;
    }
    Ok(())
}

pub(super) async fn check_version(conn: &mut MultiplexedConnection) -> Result<(), BusError> {
    let info: String = redis::cmd("INFO").arg("server").query_async(conn).await?;
    let version = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("0")
        .trim()
        .to_owned();
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 7 {
        return Err(BusError::Config(format!(
            "redis 7.0 or newer is required, the server runs {version}"
        )));
    }
    Ok(())
}

/// How long the maintainer's probe waits for Redis before calling it unreachable.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the maintainer found on one round.
#[derive(Debug)]
pub(crate) enum Probed {
    /// Redis answered and took a write.
    Ok,
    /// Redis did not answer in time, or the connection failed.
    Unreachable(String),
    /// Redis answered but refused a write (out of memory, read-only replica, ...).
    Refusing(String),
}

/// The bridge's second connection: probes Redis with a small write every round, so trouble
/// shows within seconds even while no commit is being written (or one hangs), and trims the
/// streams to their retention.
pub(crate) struct Maintainer {
    client: Client,
    conn: Option<MultiplexedConnection>,
    keys: Keys,
    config: BusConfig,
    probe_key: String,
    trim_sha: String,
    /// Per stream: whether retention is held back by a group's unread or unacked entries.
    held: [bool; 7],
}

impl Maintainer {
    /// A maintainer for `url`; connects lazily.
    pub(crate) fn new(url: &str, config: BusConfig) -> Result<Self, BusError> {
        let client = Client::open(url)
            .map_err(|e| BusError::Config(format!("bad redis url `{}`: {e}", redact_url(url))))?;
        Ok(Self {
            client,
            conn: None,
            keys: Keys::new(&config.namespace),
            probe_key: format!("{}soc.bridge.probe", config.namespace),
            config,
            trim_sha: redis::Script::new(TRIM_SCRIPT).get_hash().to_owned(),
            held: [false; 7],
        })
    }

    /// Writes the probe key, within [`PROBE_TIMEOUT`].
    pub(crate) async fn probe(&mut self) -> Probed {
        let attempt = tokio::time::timeout(PROBE_TIMEOUT, async {
            let mut conn = match self.conn.clone() {
                Some(conn) => conn,
                None => {
                    let conn = connect(&self.client, PROBE_TIMEOUT).await?;
                    self.conn = Some(conn.clone());
                    conn
                }
            };
            redis::cmd("SET")
                .arg(&self.probe_key)
                .arg(crate::proto::now_ms())
                .arg("PX")
                .arg(60_000)
                .query_async::<()>(&mut conn)
                .await
                .map_err(BusError::from)
        })
        .await;
        match attempt {
            Ok(Ok(())) => Probed::Ok,
            Ok(Err(e)) if e.is_refusal() || !e.is_transient() => Probed::Refusing(e.to_string()),
            Ok(Err(e)) => {
                self.conn = None;
                Probed::Unreachable(e.to_string())
            }
            Err(_) => {
                self.conn = None;
                Probed::Unreachable(format!(
                    "redis did not answer within {} s",
                    PROBE_TIMEOUT.as_secs()
                ))
            }
        }
    }

    /// Trims each stream with a retention to it, never past an entry a consumer group still
    /// needs; logs once when a group's backlog holds retention
    /// back, and once when it no longer does. Trouble is logged; the next call tries again.
    pub(crate) async fn trim(&mut self, trimmed: &std::sync::atomic::AtomicU64) {
        let Some(conn) = self.conn.clone() else {
            return;
        };
        let now_ms = u64::try_from(crate::proto::now_ms()).unwrap_or(0);
        for topic in Topic::ALL {
            let (kind, arg) = match self.config.retention_of(topic) {
                Retention::Keep => continue,
                Retention::MaxLen(n) => ("MAXLEN", n.to_string()),
                Retention::MaxAgeSecs(s) => (
                    "MINID",
                    format!("{}-0", now_ms.saturating_sub(s.saturating_mul(1000))),
                ),
            };
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(&self.trim_sha)
                .arg(1)
                .arg(self.keys.stream(topic))
                .arg(kind)
                .arg(&arg)
                .arg(TRIM_BATCH);
            let mut reply = cmd
                .query_async::<(u64, u8, String)>(&mut conn.clone())
                .await;
            if matches!(&reply, Err(e) if e.code() == Some("NOSCRIPT")) {
                if let Err(e) = load_script(&mut conn.clone()).await {
                    tracing::warn!(error = %e, "cannot load the trim script");
                    return;
                }
                reply = cmd.query_async(&mut conn.clone()).await;
            }
            match reply {
                Ok((dropped, held, floor)) => {
                    trimmed.fetch_add(dropped, std::sync::atomic::Ordering::Relaxed);
                    let held = held == 1;
                    if held != self.held[topic.index()] {
                        self.held[topic.index()] = held;
                        if held {
                            tracing::warn!(stream = topic.name(), retention = %arg, from = %floor,
                                "retention held back: a consumer group has not read or acked \
                                 these entries yet, so the stream keeps them past its retention \
                                 until the group catches up (nothing unread is trimmed)");
                        } else {
                            tracing::info!(
                                stream = topic.name(),
                                "retention applies again: the groups caught up"
                            );
                        }
                    }
                }
                Err(e) => tracing::warn!(stream = topic.name(), error = %e, "cannot trim a stream"),
            }
        }
    }

    /// The streams whose retention is held back now.
    pub(crate) fn held(&self) -> Vec<&'static str> {
        Topic::ALL
            .into_iter()
            .filter(|t| self.held[t.index()])
            .map(Topic::name)
            .collect()
    }
}
