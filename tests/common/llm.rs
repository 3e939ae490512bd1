//! Real model servers for the LLM tests, and the one fault-injection upstream.
//!
//! [`ModelServer`] is llama.cpp's own server (xllamacpp) with SmolLM2-135M-Instruct, started by
//! `ops/llm/serve.py` on a port of the test's own and stopped by PID. `scripts/test` installs
//! both (`scripts/llm-setup`) and exports `SOC_LLM_PYTHON` and `SOC_LLM_MODEL`.
//!
//! [`FaultyUpstream`] sits in front of a real server and passes everything through, except the
//! faults a real server cannot produce on demand: a burst of 503s, and an SSE stream cut off
//! before `[DONE]`. It also counts the chat requests that reached it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use parking_lot::Mutex;
use soc_runtime::llm::EndpointConfig;

/// The one model the tests use, by the name the server answers to.
pub(crate) const MODEL: &str = "smollm2";

/// Serializes the tests that run a model: on two cores, two at once would starve each other
/// and turn latency-dependent checks (timeouts) into noise.
pub(crate) static MODEL_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn env_path(key: &str) -> PathBuf {
    let value = std::env::var(key).unwrap_or_else(|_| {
        panic!("{key} is not set: run the tests with scripts/test (it installs the model server), or eval \"$(scripts/llm-setup)\" first")
    });
    PathBuf::from(value)
}

/// A llama.cpp server with the test model, on its own port; killed on drop.
pub(crate) struct ModelServer {
    pub port: u16,
    child: Option<Child>,
}

impl ModelServer {
    /// Starts a server with `slots` parallel slots and waits until it answers.
    pub(crate) async fn start(slots: usize) -> ModelServer {
        Self::start_with_key(slots, None).await
    }

    /// Starts a server that wants `api_key` (if any) from its clients.
    pub(crate) async fn start_with_key(slots: usize, api_key: Option<&str>) -> ModelServer {
        Self::start_on(slots, api_key, 1).await
    }

    /// Starts a server computing on `threads` CPU threads (for tests whose model work is long
    /// and which run alone under `MODEL_LOCK`).
    pub(crate) async fn start_threads(slots: usize, threads: usize) -> ModelServer {
        Self::start_on(slots, None, threads).await
    }

    async fn start_on(slots: usize, api_key: Option<&str>, threads: usize) -> ModelServer {
        Self::start_at(super::free_port(), slots, api_key, threads).await
    }

    /// Starts a server on `port` (a box that comes back where it was).
    pub(crate) async fn start_on_port(port: u16, slots: usize) -> ModelServer {
        Self::start_at(port, slots, None, 2).await
    }

    async fn start_at(
        port: u16,
        slots: usize,
        api_key: Option<&str>,
        threads: usize,
    ) -> ModelServer {
        let python = env_path("SOC_LLM_PYTHON");
        let model = env_path("SOC_LLM_MODEL");
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let mut command = Command::new(python);
        command.arg(root.join("ops/llm/serve.py"));
        if let Some(key) = api_key {
            command
                .env("SOC_TEST_LLM_KEY", key)
                .args(["--api-key-env", "SOC_TEST_LLM_KEY"]);
        }
        let child = command
            .arg("--model")
            .arg(model)
            .args(["--port", &port.to_string()])
            .args(["--parallel", &slots.to_string()])
            .args(["--threads", &threads.to_string(), "--alias", MODEL])
            .arg("--chat-template")
            .arg(root.join("ops/llm/chatml-tools.jinja"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start ops/llm/serve.py");
        let server = ModelServer {
            port,
            child: Some(child),
        };
        // /health answers without a key.
        let health = format!("http://127.0.0.1:{port}/health");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(&health).send().await
                && r.status().is_success()
            {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "model server on {port} did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The OpenAI base URL (`.../v1`).
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// The server's root URL.
    pub(crate) fn root(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} failed");
    }

    /// SIGSTOP: the process stops answering but keeps its connections (a hung box).
    pub(crate) fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT.
    pub(crate) fn resume(&self) {
        self.signal("-CONT");
    }

    /// SIGKILL, and reap it.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Requests the server is processing right now (its own `/metrics`).
    pub(crate) async fn processing(&self, client: &reqwest::Client) -> Option<u64> {
        let text = client
            .get(format!("{}/metrics", self.root()))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("llamacpp:requests_processing "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
    }

    /// An endpoint config for this server, with the small model's tool quirks.
    pub(crate) fn endpoint(&self, name: &str) -> EndpointConfig {
        endpoint(name, &self.url())
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        // SIGKILL ends a stopped (SIGSTOP) process too.
        self.kill();
    }
}

/// An endpoint at `url` with the quirks SmolLM2 needs to call tools (see ../shared/LLM.md).
pub(crate) fn endpoint(name: &str, url: &str) -> EndpointConfig {
    EndpointConfig {
        name: name.to_owned(),
        url: url.to_owned(),
        model: MODEL.to_owned(),
        tool_prefill: Some("<tool_call>\n".to_owned()),
        tool_stop: vec!["</tool_call>".to_owned()],
        tool_choice: Some("required".to_owned()),
        ..EndpointConfig::default()
    }
}

/// A fault the real server cannot make on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Pass everything through.
    None,
    /// Answer every request (chat and model list) with HTTP 503 until another fault is
    /// injected.
    ServiceUnavailable,
    /// Cut the next streamed chat answer after this many bytes, before `[DONE]`, then pass
    /// through again.
    TruncateNextStreamAfter(usize),
}

struct Shared {
    upstream: String,
    fault: Mutex<Fault>,
    chat_requests: AtomicU64,
    client: reqwest::Client,
}

/// A pass-through proxy in front of a real server that injects [`Fault`]s.
pub(crate) struct FaultyUpstream {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    _server: tokio::task::JoinHandle<()>,
}

impl FaultyUpstream {
    /// A proxy to `upstream_root` (`http://127.0.0.1:port`).
    pub(crate) async fn start(upstream_root: &str) -> FaultyUpstream {
        let shared = Arc::new(Shared {
            upstream: upstream_root.to_owned(),
            fault: Mutex::new(Fault::None),
            chat_requests: AtomicU64::new(0),
            client: reqwest::Client::new(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .fallback(proxy)
            .with_state(shared.clone());
        #[allow(
            clippy::disallowed_methods,
            reason = "owned by the proxy, aborted on drop"
        )]
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FaultyUpstream {
            addr,
            shared,
            _server: server,
        }
    }

    /// The OpenAI base URL (`.../v1`).
    pub(crate) fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Injects `fault`.
    pub(crate) fn inject(&self, fault: Fault) {
        *self.shared.fault.lock() = fault;
    }

    /// Chat requests that reached the proxy (faulted or not).
    pub(crate) fn chat_requests(&self) -> u64 {
        self.shared.chat_requests.load(Ordering::SeqCst)
    }
}

impl Drop for FaultyUpstream {
    fn drop(&mut self) {
        self._server.abort();
    }
}

async fn proxy(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let is_chat = path.ends_with("/chat/completions");
    if is_chat {
        shared.chat_requests.fetch_add(1, Ordering::SeqCst);
    }
    let fault = *shared.fault.lock();
    if fault == Fault::ServiceUnavailable {
        return (StatusCode::SERVICE_UNAVAILABLE, "injected 503 burst").into_response();
    }
    let method = request.method().clone();
    let body = axum::body::to_bytes(request.into_body(), 16 << 20)
        .await
        .unwrap_or_default();
    let upstream = shared
        .client
        .request(method, format!("{}{path}", shared.upstream))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    let upstream = match upstream {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = upstream.status();
    let content_type = upstream
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| header::HeaderValue::from_static("application/json"));
    let stream = upstream.bytes_stream();
    let body = match fault {
        Fault::TruncateNextStreamAfter(limit) if is_chat => {
            *shared.fault.lock() = Fault::None;
            let cut = stream.scan(0usize, move |sent, chunk| {
                let next = chunk.ok().filter(|_| *sent < limit).map(|chunk| {
                    let keep = chunk.len().min(limit - *sent);
                    *sent += keep;
                    Ok::<_, std::io::Error>(chunk.slice(..keep))
                });
                std::future::ready(next)
            });
            Body::from_stream(cut)
        }
        _ => Body::from_stream(stream),
    };
    Response::builder()
        .status(status.as_u16())
        .header(header::CONTENT_TYPE, content_type)
        .body(body)
        .unwrap()
}
