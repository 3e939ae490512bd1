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
}

impl Writer {
    /// A writer for `url`; connects lazily.
    pub(crate) fn new(url: &str, config: BusConfig) -> Result<Self, BusError> {
        let client = Client::open(url)
            .map_err(|e| BusError::Config(format!("bad redis url `{}`: {e}", redact_url(url))))?;
        Ok(Self {
            client,
            conn: None,
            keys: Keys::new(&config.namespace),
            config,
            script_sha: redis::Script::new(COMMIT_SCRIPT).get_hash().to_owned(),
        })
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
        Ok(results)
    }

    fn push_args(&self, cmd: &mut redis::Cmd, commits: &[&Commit]) {
        let now_ms = u64::try_from(crate::proto::now_ms()).unwrap_or(0);
        cmd.arg(commits.len()).arg(self.config.dedupe_ttl_s);
        for topic in Topic::ALL {
            cmd.arg(self.keys.stream(topic));
        }
        let trims = Topic::ALL.map(|topic| match self.config.retention_of(topic) {
            Retention::Keep => ("", String::new()),
            Retention::MaxLen(n) => ("MAXLEN", n.to_string()),
            Retention::MaxAgeSecs(s) => (
                "MINID",
                format!("{}-0", now_ms.saturating_sub(s.saturating_mul(1000))),
            ),
        });
        for (kind, _) in &trims {
            cmd.arg(*kind);
        }
        for (_, arg) in &trims {
            cmd.arg(arg);
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
    let _: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(COMMIT_SCRIPT)
        .query_async(conn)
        .await?;
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
