//! `soc-runtime bench llm`: what the gateway costs, against direct client calls in the same
//! run.
//!
//! - Overhead: an open-loop load (requests start on schedule whether or not earlier ones have
//!   finished) at each rate against a zero-latency upstream on loopback (an in-process HTTP
//!   server answering a fixed completion). The baseline is the same client
//!   (`Endpoint::chat`) called directly. For gateway calls the added latency is measured per
//!   request: the caller's whole wait minus the upstream leg the gateway timed inside it
//!   (queueing, the actor's mailbox, dispatch, the reply).
//! - Memory per queued request: the process's resident memory before and after `n` calls
//!   wait in the queue behind an upstream that never answers, divided by `n`. It includes each
//!   caller's waiting task and its copy of the prompt (a realistic role prompt, size printed).
//! - Real model (with `--model-url`): sequential calls with the same fixed amount of work
//!   (`ignore_eos`, fixed `max_tokens`, a distinct prompt each so the prompt cache cannot
//!   favour either side), direct and through the gateway alternately; mean latency and
//!   throughput of each, and their ratio.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use ractor::{Actor, ActorRef};
use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use crate::llm::client::Endpoint;
use crate::llm::gateway::{self, Gateway, Llm};
use crate::llm::stats::GatewayStats;
use crate::llm::{CallOptions, ChatRequest, EndpointConfig, LlmConfig, Message};

/// A fixed completion, as llama.cpp's server shapes it.
const COMPLETION: &str = r#"{"choices":[{"finish_reason":"stop","index":0,"message":{"role":"assistant","content":"benign: scheduled backup job"}}],"created":1795374516,"model":"bench","object":"chat.completion","usage":{"completion_tokens":7,"prompt_tokens":58,"total_tokens":65},"id":"chatcmpl-bench"}"#;
const MODELS: &str = r#"{"object":"list","data":[{"id":"bench","object":"model"}]}"#;

/// Benchmark errors.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Setup failed.
    #[error("llm benchmark setup: {0}")]
    Setup(String),
    /// Too many requests failed for the figures to mean anything.
    #[error("llm benchmark: {0}")]
    Failed(String),
}

/// Latency percentiles, microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Mean.
    pub mean_us: f64,
    /// Largest.
    pub max_us: f64,
}

impl Latency {
    fn of(mut samples: Vec<f64>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Self {
            p50_us: at(0.5),
            p99_us: at(0.99),
            mean_us: samples.iter().sum::<f64>() / samples.len() as f64,
            max_us: at(1.0),
        }
    }
}

/// One rate of the overhead benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct OverheadRun {
    /// Offered load, requests per second.
    pub rate: u64,
    /// Requests per side.
    pub requests: u64,
    /// Direct client calls: latency.
    pub direct: Latency,
    /// Through the gateway: latency.
    pub gateway: Latency,
    /// Through the gateway: the caller's wait minus the upstream leg, per request.
    pub added: Latency,
    /// `gateway.p99_us - direct.p99_us`.
    pub p99_difference_us: f64,
    /// Failed requests (both sides).
    pub errors: u64,
}

impl std::fmt::Display for OverheadRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |us: f64| us / 1e3;
        write!(
            f,
            "gateway overhead @ {:>5} req/s ({} requests each): added p50 {:.3} ms, p99 {:.3} ms \
             | end to end p50/p99: direct {:.3}/{:.3} ms, gateway {:.3}/{:.3} ms, p99 +{:.3} ms \
             | errors {}",
            self.rate,
            self.requests,
            ms(self.added.p50_us),
            ms(self.added.p99_us),
            ms(self.direct.p50_us),
            ms(self.direct.p99_us),
            ms(self.gateway.p50_us),
            ms(self.gateway.p99_us),
            ms(self.p99_difference_us),
            self.errors
        )
    }
}

/// Memory per queued request.
#[derive(Debug, Clone, Serialize)]
pub struct QueueMemory {
    /// Requests queued.
    pub queued: usize,
    /// Bytes of each request's messages.
    pub prompt_bytes: usize,
    /// Resident memory growth per queued request, bytes (callers' tasks and prompts included).
    pub rss_bytes_per_request: f64,
}

impl std::fmt::Display for QueueMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "memory per queued request: {:.0} bytes resident ({} queued; each carries a {} byte \
             prompt, i.e. {:.0} bytes beyond the prompt)",
            self.rss_bytes_per_request,
            self.queued,
            self.prompt_bytes,
            self.rss_bytes_per_request - self.prompt_bytes as f64
        )
    }
}

/// The real-model comparison.
#[derive(Debug, Clone, Serialize)]
pub struct ModelRun {
    /// Requests per side.
    pub requests: usize,
    /// Tokens generated per request.
    pub max_tokens: u32,
    /// Direct: latency.
    pub direct: Latency,
    /// Gateway: latency.
    pub gateway: Latency,
    /// Direct: requests per second.
    pub direct_rps: f64,
    /// Gateway: requests per second.
    pub gateway_rps: f64,
    /// Gateway mean latency / direct mean latency.
    pub latency_ratio: f64,
    /// Gateway throughput / direct throughput.
    pub throughput_ratio: f64,
    /// Median over pairs (one direct and one gateway call back to back) of gateway / direct
    /// latency: the figure least moved by drift on the machine.
    pub median_pair_ratio: f64,
}

impl std::fmt::Display for ModelRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "real model ({} requests each, {} tokens): direct {:.1} ms mean ({:.2} req/s), gateway \
             {:.1} ms mean ({:.2} req/s): latency x{:.4}, throughput x{:.4}, median pair x{:.4}",
            self.requests,
            self.max_tokens,
            self.direct.mean_us / 1e3,
            self.direct_rps,
            self.gateway.mean_us / 1e3,
            self.gateway_rps,
            self.latency_ratio,
            self.throughput_ratio,
            self.median_pair_ratio
        )
    }
}

/// A zero-latency OpenAI-compatible upstream on loopback; `/hang/v1/...` never answers.
struct Upstream {
    url: String,
    _server: AbortOnDropHandle<()>,
}

impl Upstream {
    async fn start() -> Result<Self, BenchError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| BenchError::Setup(format!("bind: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| BenchError::Setup(e.to_string()))?;
        let json = |body: &'static str| {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
        };
        let app = Router::new()
            .route(
                "/v1/chat/completions",
                post(move || async move { json(COMPLETION) }),
            )
            .route("/v1/models", get(move || async move { json(MODELS) }))
            .route(
                "/hang/v1/chat/completions",
                post(std::future::pending::<&'static str>),
            )
            .route("/hang/v1/models", get(move || async move { json(MODELS) }));
        #[allow(
            clippy::disallowed_methods,
            reason = "owned by the returned handle, aborted when the benchmark ends"
        )]
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            url: format!("http://{addr}"),
            _server: AbortOnDropHandle::new(server),
        })
    }
}

fn endpoint_config(url: String, max_in_flight: usize) -> EndpointConfig {
    EndpointConfig {
        name: "bench".into(),
        url,
        model: "bench".into(),
        max_in_flight,
        timeout_ms: 600_000,
        idle_timeout_ms: 600_000,
        ..EndpointConfig::default()
    }
}

/// A gateway actor for the benchmark; stopped on drop.
struct BenchGateway {
    llm: Llm,
    actor: ActorRef<gateway::Msg>,
    stats: Arc<GatewayStats>,
}

impl BenchGateway {
    async fn start(tag: &str, endpoint: EndpointConfig, queue: usize) -> Result<Self, BenchError> {
        let config = LlmConfig {
            endpoints: vec![endpoint],
            queue_capacity: queue,
            deadline_ms: 600_000,
            ..LlmConfig::default()
        };
        let stats = Arc::new(GatewayStats::new(&config));
        let name = format!("bench-{tag}-{}/{}", std::process::id(), gateway::NAME);
        let args = gateway::Args {
            leases: None,
            config,
            stats: stats.clone(),
        };
        let (actor, _) = Actor::spawn(Some(name.clone()), Gateway, args)
            .await
            .map_err(|e| BenchError::Setup(e.to_string()))?;
        Ok(Self {
            llm: Llm::new(name, Duration::from_secs(600)),
            actor,
            stats,
        })
    }
}

impl Drop for BenchGateway {
    fn drop(&mut self) {
        self.actor.stop(None);
    }
}

fn short_request(i: u64) -> ChatRequest {
    ChatRequest {
        messages: vec![
            Message::system("You are the SOC's tier 1 analyst. Answer with one word."),
            Message::user(format!(
                "Alert {i}: scheduled backup job touched /etc/shadow"
            )),
        ],
        max_tokens: Some(16),
        ..ChatRequest::default()
    }
}

/// Starts `rate` requests per second for `seconds`, open loop, and collects their results.
async fn open_loop<F, Fut, T>(rate: u64, seconds: f64, make: F) -> Vec<T>
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let total = (rate as f64 * seconds) as u64;
    let mut tasks = JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut issued = 0;
    while issued < total {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * rate as f64) as u64 + 1).min(total);
        while issued < due {
            tasks.spawn(make(issued));
            issued += 1;
        }
    }
    let mut out = Vec::with_capacity(total as usize);
    while let Some(result) = tasks.join_next().await {
        if let Ok(r) = result {
            out.push(r);
        }
    }
    out
}

/// Gateway overhead at each of `rates` for `seconds` each, against direct calls.
pub async fn overhead(rates: &[u64], seconds: f64) -> Result<Vec<OverheadRun>, BenchError> {
    let upstream = Upstream::start().await?;
    let config = endpoint_config(format!("{}/v1", upstream.url), 100_000);
    let direct =
        Arc::new(Endpoint::new(config.clone()).map_err(|e| BenchError::Setup(e.to_string()))?);
    let gw = BenchGateway::start("overhead", config, 1_000_000).await?;
    // Warm up connections and code paths.
    let _ = run_direct(&direct, 500, 0.5).await;
    let _ = run_gateway(&gw.llm, 500, 0.5).await;
    let mut runs = Vec::new();
    for &rate in rates {
        let (direct_lat, direct_errors) = run_direct(&direct, rate, seconds).await;
        let (gateway_lat, added, gateway_errors) = run_gateway(&gw.llm, rate, seconds).await;
        let errors = direct_errors + gateway_errors;
        let requests = (rate as f64 * seconds) as u64;
        if errors > requests / 100 {
            return Err(BenchError::Failed(format!(
                "{errors} of {} requests failed at {rate} req/s",
                requests * 2
            )));
        }
        let direct = Latency::of(direct_lat);
        let gateway = Latency::of(gateway_lat);
        runs.push(OverheadRun {
            rate,
            requests,
            p99_difference_us: gateway.p99_us - direct.p99_us,
            direct,
            gateway,
            added: Latency::of(added),
            errors,
        });
    }
    Ok(runs)
}

async fn run_direct(endpoint: &Arc<Endpoint>, rate: u64, seconds: f64) -> (Vec<f64>, u64) {
    let results = open_loop(rate, seconds, |i| {
        let endpoint = endpoint.clone();
        async move {
            let started = Instant::now();
            let ok = endpoint
                .chat(&short_request(i), started + Duration::from_secs(30))
                .await
                .is_ok();
            ok.then(|| started.elapsed().as_secs_f64() * 1e6)
        }
    })
    .await;
    let errors = results.iter().filter(|r| r.is_none()).count() as u64;
    (results.into_iter().flatten().collect(), errors)
}

async fn run_gateway(llm: &Llm, rate: u64, seconds: f64) -> (Vec<f64>, Vec<f64>, u64) {
    let results = open_loop(rate, seconds, |i| {
        let llm = llm.clone();
        async move {
            let started = Instant::now();
            let answer = llm
                .chat(short_request(i), CallOptions::case("bench", Some(5)))
                .await
                .ok()?;
            let total = started.elapsed();
            let added = total.saturating_sub(answer.upstream);
            Some((total.as_secs_f64() * 1e6, added.as_secs_f64() * 1e6))
        }
    })
    .await;
    let errors = results.iter().filter(|r| r.is_none()).count() as u64;
    let (total, added) = results.into_iter().flatten().unzip();
    (total, added, errors)
}

/// A role-sized prompt: system instructions plus a quoted alert, about 2 KiB.
fn role_request(i: usize) -> ChatRequest {
    let system = "You are Tier 2 in a security operations center. ".repeat(20);
    let alert = format!(
        "<alert>{{\"ticket\": \"T-{i}\", \"rule\": \"ssh brute force\", \"host\": \"web-01\", \
         \"src_ips\": [\"203.0.113.9\"], \"text\": \"{}\"}}</alert>",
        "Failed password for root from 203.0.113.9 port 52113 ssh2. ".repeat(16)
    );
    ChatRequest {
        messages: vec![Message::system(system), Message::user(alert)],
        max_tokens: Some(256),
        ..ChatRequest::default()
    }
}

fn prompt_bytes(request: &ChatRequest) -> usize {
    request
        .messages
        .iter()
        .map(|m| m.content.as_deref().map_or(0, str::len))
        .sum()
}

fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Memory per queued request, with `n` queued.
pub async fn queue_memory(n: usize) -> Result<QueueMemory, BenchError> {
    let upstream = Upstream::start().await?;
    let config = endpoint_config(format!("{}/hang/v1", upstream.url), 1);
    let gw = BenchGateway::start("memory", config, n + 1).await?;
    let before = resident_bytes().ok_or(BenchError::Setup("no /proc/self/statm".into()))?;
    let mut callers = JoinSet::new();
    for i in 0..n {
        let llm = gw.llm.clone();
        callers.spawn(async move {
            let _ = llm
                .chat(role_request(i), CallOptions::case("bench", Some(5)))
                .await;
        });
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while gw.stats.snapshot().queued < (n - 1) as u64 {
        if Instant::now() > deadline {
            return Err(BenchError::Failed("the queue did not fill".into()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = resident_bytes().ok_or(BenchError::Setup("no /proc/self/statm".into()))?;
    drop(gw);
    callers.abort_all();
    while callers.join_next().await.is_some() {}
    Ok(QueueMemory {
        queued: n,
        prompt_bytes: prompt_bytes(&role_request(0)),
        rss_bytes_per_request: after.saturating_sub(before) as f64 / n as f64,
    })
}

/// Direct vs gateway against a real model server at `url` (`.../v1`), `n` requests each.
pub async fn real_model(
    url: &str,
    model: &str,
    n: usize,
    max_tokens: u32,
) -> Result<ModelRun, BenchError> {
    let mut config = endpoint_config(url.to_owned(), 1);
    config.model = model.to_owned();
    config
        .extra_body
        .insert("ignore_eos".into(), serde_json::Value::Bool(true));
    let direct = Endpoint::new(config.clone()).map_err(|e| BenchError::Setup(e.to_string()))?;
    let gw = BenchGateway::start("model", config, 16).await?;
    let request = |i: usize, side: &str| ChatRequest {
        messages: vec![
            Message::system("You are a security analyst."),
            // The distinct part first: no request shares more of its prompt with the one
            // before it than any other does.
            Message::user(format!(
                "{side}{i:04}: summarise why alert {} on host web-{:02} matters.",
                1000 + i * 7,
                i % 97
            )),
        ],
        max_tokens: Some(max_tokens),
        temperature: Some(0.0),
        ..ChatRequest::default()
    };
    // Warm-up, one each.
    let until = || Instant::now() + Duration::from_secs(120);
    direct
        .chat(&request(9999, "warm"), until())
        .await
        .map_err(|e| BenchError::Failed(format!("the model server did not answer: {e}")))?;
    gw.llm
        .chat(request(9998, "warm"), CallOptions::case("bench", None))
        .await
        .map_err(|e| BenchError::Failed(format!("the gateway did not answer: {e}")))?;
    let (mut d, mut g) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let direct_call = async {
            let started = Instant::now();
            direct
                .chat(&request(i, "d"), until())
                .await
                .map_err(|e| BenchError::Failed(e.to_string()))?;
            Ok::<f64, BenchError>(started.elapsed().as_secs_f64() * 1e6)
        };
        let gateway_call = async {
            let started = Instant::now();
            gw.llm
                .chat(request(i, "g"), CallOptions::case("bench", None))
                .await
                .map_err(|e| BenchError::Failed(e.to_string()))?;
            Ok::<f64, BenchError>(started.elapsed().as_secs_f64() * 1e6)
        };
        // Alternate which side goes first, so drift and warm caches favour neither.
        if i % 2 == 0 {
            d.push(direct_call.await?);
            g.push(gateway_call.await?);
        } else {
            g.push(gateway_call.await?);
            d.push(direct_call.await?);
        }
    }
    let mut pairs: Vec<f64> = g.iter().zip(&d).map(|(g, d)| g / d).collect();
    pairs.sort_by(f64::total_cmp);
    let median_pair_ratio = pairs.get(pairs.len() / 2).copied().unwrap_or(1.0);
    let rps = |v: &[f64]| v.len() as f64 / (v.iter().sum::<f64>() / 1e6);
    let (direct_rps, gateway_rps) = (rps(&d), rps(&g));
    let (direct, gateway) = (Latency::of(d), Latency::of(g));
    Ok(ModelRun {
        requests: n,
        max_tokens,
        latency_ratio: gateway.mean_us / direct.mean_us,
        throughput_ratio: gateway_rps / direct_rps,
        median_pair_ratio,
        direct,
        gateway,
        direct_rps,
        gateway_rps,
    })
}
