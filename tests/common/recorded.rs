//! A RECORDED STAND-IN for model servers this machine cannot run (vLLM needs a GPU, Ollama is
//! in no registry here, a hosted API is a cloud service): it answers with the responses each
//! server's own documentation shows (`tests/fixtures/llm/profiles/<server>/`, every file
//! credits its source). Only the payload differs: wherever a recording answers with the
//! fixtures' placeholder JSON, the stand-in puts the answer the asking role's schema needs
//! (`canned::answer_for`), so a case can run through the whole chain. Everything llama.cpp
//! can do is tested against the real llama.cpp server instead.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio_util::task::AbortOnDropHandle;

/// The placeholder answer the recordings carry.
pub(crate) const PLACEHOLDER: &str =
    r#"{"verdict":"escalate","confidence":0.9,"rationale":"recorded"}"#;

/// One recording.
#[derive(Debug, Clone)]
pub(crate) struct Recording {
    pub(crate) stream: bool,
    /// The completion, or the chunks.
    pub(crate) body: Value,
    pub(crate) source: String,
}

/// The recording `server/scenario`.
pub(crate) fn recording(server: &str, scenario: &str) -> Recording {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/llm/profiles")
        .join(server)
        .join(format!("{scenario}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text).unwrap();
    let stream = v["stream"].as_bool().unwrap();
    assert!(
        v["source"].as_str().is_some_and(|s| !s.is_empty()),
        "{} credits no source",
        path.display()
    );
    Recording {
        stream,
        body: if stream {
            v["chunks"].clone()
        } else {
            v["response"].clone()
        },
        source: v["source"].as_str().unwrap_or_default().to_owned(),
    }
}

/// What the stand-in answers: tool calls first (while the conversation has no tool result
/// yet and tools are on offer), then the answer.
#[derive(Debug, Clone)]
pub(crate) struct Script {
    pub(crate) tool_call: Option<Recording>,
    pub(crate) answer: Recording,
    pub(crate) models: Option<Recording>,
}

#[derive(Debug)]
struct Shared {
    script: Script,
    requests: Mutex<Vec<Value>>,
}

/// A running stand-in; stops when dropped.
pub(crate) struct RecordedServer {
    pub(crate) url: String,
    shared: Arc<Shared>,
    _server: AbortOnDropHandle<()>,
}

impl RecordedServer {
    pub(crate) async fn start(script: Script) -> RecordedServer {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            script,
            requests: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/models", get(models))
            .with_state(shared.clone());
        #[allow(
            clippy::disallowed_methods,
            reason = "owned by the returned RecordedServer, aborted when it drops"
        )]
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        RecordedServer {
            url: format!("http://{addr}/v1"),
            shared,
            _server: AbortOnDropHandle::new(server),
        }
    }

    /// The request bodies received, in order.
    pub(crate) fn requests(&self) -> Vec<Value> {
        self.shared.requests.lock().clone()
    }
}

/// Replaces the placeholder in every string of `v` with `answer`.
fn substitute(v: &mut Value, answer: &str) {
    match v {
        Value::String(s) if s.contains(PLACEHOLDER) => *s = s.replace(PLACEHOLDER, answer),
        Value::Array(items) => items.iter_mut().for_each(|i| substitute(i, answer)),
        Value::Object(map) => map.values_mut().for_each(|i| substitute(i, answer)),
        _ => {}
    }
}

/// Renames every string `from` in `v` to `to`.
fn rename(v: &mut Value, from: &str, to: &str) {
    match v {
        Value::String(s) if s == from => *s = to.to_owned(),
        Value::Array(items) => items.iter_mut().for_each(|i| rename(i, from, to)),
        Value::Object(map) => map.values_mut().for_each(|i| rename(i, from, to)),
        _ => {}
    }
}

/// Replaces the placeholder where a stream spreads it over several content deltas: the whole
/// text goes into the first content delta, the later ones are emptied.
fn substitute_streamed(chunks: &mut Value, answer: &str) {
    let Some(chunks) = chunks.as_array_mut() else {
        return;
    };
    let content = |c: &Value| {
        c["choices"][0]["delta"]["content"]
            .as_str()
            .map(str::to_owned)
    };
    let joined: String = chunks.iter().filter_map(content).collect();
    if !joined.contains(PLACEHOLDER) {
        return;
    }
    let mut first = true;
    for chunk in chunks.iter_mut() {
        if content(chunk).is_some_and(|c| !c.is_empty()) {
            let text = if first {
                joined.replace(PLACEHOLDER, answer)
            } else {
                String::new()
            };
            chunk["choices"][0]["delta"]["content"] = Value::String(text);
            first = false;
        }
    }
}

/// A non-streamed completion as the chunks a server would stream for it.
fn as_chunks(completion: &Value) -> Vec<Value> {
    let choice = &completion["choices"][0];
    let mut delta = choice["message"].clone();
    if let Some(calls) = delta.get_mut("tool_calls").and_then(Value::as_array_mut) {
        for (i, call) in calls.iter_mut().enumerate() {
            call["index"] = json!(i);
        }
    }
    vec![
        json!({"object": "chat.completion.chunk", "model": completion["model"],
               "choices": [{"index": 0, "delta": delta, "finish_reason": null}]}),
        json!({"object": "chat.completion.chunk", "model": completion["model"],
               "choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}]}),
        json!({"object": "chat.completion.chunk", "model": completion["model"], "choices": [],
               "usage": completion["usage"]}),
    ]
}

async fn chat(State(shared): State<Arc<Shared>>, axum::Json(body): axum::Json<Value>) -> Response {
    shared.requests.lock().push(body.clone());
    let schema = soc_runtime::llm::canned::schema_name(&body).to_owned();
    let offers_tools = body["tools"].as_array().is_some_and(|t| !t.is_empty());
    let has_result = body["messages"]
        .as_array()
        .is_some_and(|m| m.iter().any(|m| m["role"] == "tool"));
    let recording = match &shared.script.tool_call {
        Some(call) if offers_tools && !has_result => call.clone(),
        _ => shared.script.answer.clone(),
    };
    // `llm check`'s schema question is answered as its schema asks.
    let answer = if schema == "check_answer" {
        r#"{"ready":true}"#.to_owned()
    } else {
        soc_runtime::llm::canned::answer_for(&schema).to_string()
    };
    let mut out = recording.body.clone();
    // The recordings call `memory_host_activity`; where that is not offered (`llm check`
    // offers its own tool), the call goes to the first tool offered.
    let offered: Vec<&str> = body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    if let Some(first) = offered.first()
        && !offered.contains(&"memory_host_activity")
    {
        rename(&mut out, "memory_host_activity", first);
    }
    if recording.stream {
        substitute_streamed(&mut out, &answer);
    }
    substitute(&mut out, &answer);
    let stream = body["stream"].as_bool().unwrap_or(false);
    match (stream, recording.stream) {
        (false, false) => axum::Json(out).into_response(),
        (true, _) => {
            let chunks = if recording.stream {
                out.as_array().cloned().unwrap_or_default()
            } else {
                as_chunks(&out)
            };
            let mut sse = String::new();
            for c in chunks {
                sse.push_str(&format!("data: {c}\n\n"));
            }
            sse.push_str("data: [DONE]\n\n");
            ([(header::CONTENT_TYPE, "text/event-stream")], sse).into_response()
        }
        (false, true) => (
            axum::http::StatusCode::BAD_REQUEST,
            format!(
                "the recording from {} is a stream: set the endpoint to stream",
                recording.source
            ),
        )
            .into_response(),
    }
}

async fn models(State(shared): State<Arc<Shared>>) -> Response {
    match &shared.script.models {
        Some(r) => axum::Json(r.body.clone()).into_response(),
        None => axum::Json(json!({"object": "list", "data": [{"id": "recorded"}]})).into_response(),
    }
}
