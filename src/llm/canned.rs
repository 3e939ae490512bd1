//! The canned-answer model of `backtest --dry-run`: an OpenAI-compatible server on 127.0.0.1
//! that answers every role's schema with one fixed, valid answer. The whole model path runs
//! (gateway, client, reasoning loop, validation, accounting) without a model, so the plumbing
//! is checked in seconds. It decides nothing: its answers are constants, and a request for a
//! schema it does not know gets `{}`, which the role's validation refuses (the
//! `needs_human_review` path). Token counts are estimates (4 bytes a token).
//!
//! Two ways to reach it: [`IN_PROCESS_URL`] as an endpoint's URL answers in this process (the
//! gateway, its queue and accounting, the request body and the answer's parsing all run; no
//! socket, no TLS setup: what `backtest --dry-run` uses), and [`start`] serves it over HTTP on
//! 127.0.0.1 (the HTTP client's path too).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio_util::task::AbortOnDropHandle;

/// A running canned model; stops when dropped.
#[derive(Debug)]
pub struct CannedModel {
    /// Base URL, up to and including `/v1`.
    pub url: String,
    /// Chat requests answered.
    pub requests: Arc<AtomicU64>,
    _server: AbortOnDropHandle<()>,
}

/// An endpoint URL that answers with the canned model in this process.
pub const IN_PROCESS_URL: &str = "canned://in-process/v1";

/// The model name the canned model reports.
pub const MODEL: &str = "canned";

/// Whether `url` names the in-process canned model.
pub fn is_in_process(url: &str) -> bool {
    url.starts_with("canned:")
}

/// The fixed answer for a response schema name.
pub fn answer_for(schema: &str) -> Value {
    match schema {
        "sentinel_answer" => json!({
            "verdict": "suspicious",
            "confidence": 0.5,
            "priority": 5,
            "rationale": "dry run: a canned answer, not a model's"
        }),
        "tier2_answer" => json!({
            "decision": "close",
            "verdict": "suspicious",
            "confidence": 0.5,
            "summary": "dry run: a canned answer, not a model's",
            "next_steps": []
        }),
        "ir_lead_answer" => json!({
            "severity": "SEV-3",
            "summary": "dry run: a canned answer, not a model's",
            "containment": [],
            "eradication": [],
            "recovery": [],
            "notifications": []
        }),
        "threat_intel_answer" => json!({
            "likely_actor": null,
            "evidence": ["dry run: a canned answer, not a model's"],
            "attack_techniques": [],
            "iocs": [],
            "severity_adjustment": 0
        }),
        _ => json!({}),
    }
}

/// The answer schema a chat request asks for: its `response_format`'s name or, while tools
/// are on offer, the name the system prompt gives (empty when neither says).
pub fn schema_name(body: &Value) -> &str {
    body["response_format"]["json_schema"]["name"]
        .as_str()
        .or_else(|| {
            let system = body["messages"][0]["content"].as_str()?;
            let (_, after) = system.split_once("The answer's JSON Schema (")?;
            after.split_once(')').map(|(name, _)| name)
        })
        .unwrap_or_default()
}

/// Starts the canned model on an ephemeral port of 127.0.0.1.
pub async fn start() -> std::io::Result<CannedModel> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let requests = Arc::new(AtomicU64::new(0));
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .with_state(requests.clone());
    #[allow(
        clippy::disallowed_methods,
        reason = "owned by the returned CannedModel, aborted when it drops"
    )]
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "canned model server stopped");
        }
    });
    Ok(CannedModel {
        url: format!("http://{addr}/v1"),
        requests,
        _server: AbortOnDropHandle::new(server),
    })
}

async fn chat(State(requests): State<Arc<AtomicU64>>, Json(body): Json<Value>) -> Json<Value> {
    requests.fetch_add(1, Ordering::Relaxed);
    Json(completion(&body))
}

/// The chat completion the canned model answers `body` (an OpenAI chat request) with.
pub fn completion(body: &Value) -> Value {
    let content = answer_for(schema_name(body)).to_string();
    let prompt_tokens = body["messages"].to_string().len() / 4;
    json!({
        "id": "canned",
        "object": "chat.completion",
        "model": "canned",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": content.len() / 4}
    })
}

async fn models() -> Json<Value> {
    Json(json!({"object": "list", "data": [{"id": MODEL, "object": "model"}]}))
}
