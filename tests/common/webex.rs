//! A local Webex API for tests: records the messages posted to it (and can refuse the next
//! few with a 503, the fault a real Webex produces only when it is down), and answers the
//! attachment-action and people lookups the webhook makes from what the test registers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use parking_lot::Mutex;
use serde_json::{Value, json};

#[derive(Default)]
struct Recorded {
    /// (Authorization header, body) of each message accepted.
    messages: Mutex<Vec<(String, Value)>>,
    /// POST /v1/messages requests, refused or not.
    posts: AtomicUsize,
    /// Refuse this many more posts with a 503.
    fail_next: AtomicUsize,
    actions: Mutex<HashMap<String, Value>>,
    people: Mutex<HashMap<String, Value>>,
    /// Attachment-action lookups.
    lookups: AtomicUsize,
}

pub(crate) struct WebexRecorder {
    addr: SocketAddr,
    state: Arc<Recorded>,
    _server: tokio_util::task::AbortOnDropHandle<()>,
}

impl WebexRecorder {
    pub(crate) async fn start() -> WebexRecorder {
        let state = Arc::new(Recorded::default());
        let app = axum::Router::new()
            .route("/v1/messages", post(message))
            .route("/v1/attachment/actions/{id}", get(action))
            .route("/v1/people/{id}", get(person))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        #[allow(
            clippy::disallowed_methods,
            reason = "owned by the recorder, aborted on drop"
        )]
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        WebexRecorder {
            addr,
            state,
            _server: tokio_util::task::AbortOnDropHandle::new(server),
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Refuses the next `n` posted messages with 503.
    pub(crate) fn fail_next(&self, n: usize) {
        self.state.fail_next.store(n, Ordering::SeqCst);
    }

    /// The messages accepted: (Authorization header, body).
    pub(crate) fn messages(&self) -> Vec<(String, Value)> {
        self.state.messages.lock().clone()
    }

    /// Message posts received, refused ones included.
    pub(crate) fn posts(&self) -> usize {
        self.state.posts.load(Ordering::SeqCst)
    }

    pub(crate) fn lookups(&self) -> usize {
        self.state.lookups.load(Ordering::SeqCst)
    }

    /// Registers an attachment action (what a button press on a card created).
    pub(crate) fn add_action(
        &self,
        id: &str,
        message_id: &str,
        person: &str,
        room: &str,
        inputs: Value,
    ) {
        self.state.actions.lock().insert(
            id.to_owned(),
            json!({"id": id, "type": "submit", "messageId": message_id, "personId": person,
                   "roomId": room, "inputs": inputs, "created": "2026-11-23T10:00:00.000Z"}),
        );
    }

    pub(crate) fn add_person(&self, id: &str, email: &str) {
        self.state.people.lock().insert(
            id.to_owned(),
            json!({"id": id, "emails": [email], "displayName": email}),
        );
    }
}

async fn message(
    State(s): State<Arc<Recorded>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    s.posts.fetch_add(1, Ordering::SeqCst);
    let refuse = s
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if refuse {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"message": "Service Unavailable"})),
        );
    }
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut messages = s.messages.lock();
    messages.push((auth, body.clone()));
    let id = format!("msg-{}", messages.len());
    (
        StatusCode::OK,
        Json(json!({"id": id, "roomId": body["roomId"], "created": "2026-11-23T10:00:00.000Z"})),
    )
}

async fn action(
    State(s): State<Arc<Recorded>>,
    Path(id): Path<String>,
) -> (StatusCode, Json<Value>) {
    s.lookups.fetch_add(1, Ordering::SeqCst);
    match s.actions.lock().get(&id) {
        Some(a) => (StatusCode::OK, Json(a.clone())),
        None => (StatusCode::NOT_FOUND, Json(json!({"message": "not found"}))),
    }
}

async fn person(
    State(s): State<Arc<Recorded>>,
    Path(id): Path<String>,
) -> (StatusCode, Json<Value>) {
    match s.people.lock().get(&id) {
        Some(p) => (StatusCode::OK, Json(p.clone())),
        None => (StatusCode::NOT_FOUND, Json(json!({"message": "not found"}))),
    }
}
