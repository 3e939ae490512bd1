//! An OpenAI-compatible chat client for one endpoint: one leg of a gateway call.
//!
//! The request body is built in one place ([`Endpoint::body`]) from the caller's
//! [`ChatRequest`] plus the endpoint's configured quirks, so every leg of a failover sends the
//! same conversation and tools. Streaming answers (SSE) are assembled into one [`Answer`]: text
//! deltas concatenated, tool calls rebuilt from their `index`/`id`/`name` chunk and the
//! `arguments` fragments that follow, the usage chunk kept. A stream that ends before
//! `[DONE]` is a [`AttemptErrorKind::BrokenStream`]: the gateway retries the whole request
//! elsewhere, so a caller never sees half an answer.
//!
//! Failures are classified for the gateway: connection errors, timeouts, 408/429/5xx, broken
//! streams and unparseable bodies are retryable; other 4xx mean the request itself is wrong
//! and are [`AttemptErrorKind::Rejected`], as is llama.cpp's 500 for a tool call whose
//! arguments the model wrote as broken JSON (the server is healthy; the answer is not).
//!
//! An endpoint whose URL is [`super::canned::IN_PROCESS_URL`] sends nothing: the body is built
//! the same way and answered by the canned model in this process, and the answer parsed as a
//! server's would be (dry runs). State: a connection pool per endpoint, nothing a restart needs.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::{StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::names::Names;
use super::{
    AttemptError, AttemptErrorKind, ChatRequest, EndpointConfig, FunctionCall, Speaker, ToolCall,
    ToolChoice, Usage,
};

/// Longest server message kept in an error.
const MAX_ERROR_TEXT: usize = 300;

/// Most bytes of an error body read (the rest is not even received).
const MAX_ERROR_BODY: usize = 8 << 10;

/// Most tool calls one answer may carry.
pub(crate) const MAX_TOOL_CALLS: usize = 128;

/// A configured endpoint with its own connection pool.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// Configuration.
    pub config: EndpointConfig,
    transport: Transport,
    chat_url: String,
    models_url: String,
}

/// How an endpoint's requests travel.
#[derive(Debug, Clone)]
enum Transport {
    /// An OpenAI-compatible server over HTTP(S).
    Http(reqwest::Client),
    /// The canned-answer model in this process ([`super::canned::IN_PROCESS_URL`]): the body
    /// is built and the answer parsed as for a server, without a socket or a TLS setup.
    Canned,
}

/// One leg's answer, before the gateway adds its own timings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Answer {
    /// Text, without reasoning.
    pub content: Option<String>,
    /// The model's reasoning (a reasoning field, or a leading think block).
    pub reasoning: Option<String>,
    /// Tool calls.
    pub tool_calls: Vec<ToolCall>,
    /// Finish reason.
    pub finish_reason: Option<String>,
    /// Token counts.
    pub usage: Usage,
    /// Model the server reported.
    pub model: String,
    /// From the leg's start to its first token (or the whole answer when not streaming).
    pub ttft: Duration,
}

impl Endpoint {
    /// An endpoint for `config` (validated by [`super::LlmConfig::validate`]).
    pub(crate) fn new(config: EndpointConfig) -> Result<Self, AttemptError> {
        let transport = if super::canned::is_in_process(&config.url) {
            Transport::Canned
        } else {
            Transport::Http(
                reqwest::Client::builder()
                    .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
                    .pool_idle_timeout(Duration::from_secs(60))
                    .tcp_nodelay(true)
                    .build()
                    .map_err(|e| {
                        attempt(&config.name, AttemptErrorKind::Connect, &error_chain(&e))
                    })?,
            )
        };
        let base = config.url.trim_end_matches('/');
        Ok(Self {
            chat_url: format!("{base}/chat/completions"),
            models_url: format!("{base}/models"),
            transport,
            config,
        })
    }

    /// The endpoint's name.
    pub(crate) fn name(&self) -> &str {
        &self.config.name
    }

    /// The JSON body this endpoint is sent for `req`. Tool names go out in the wire alphabet
    /// ([`Names`]); [`Endpoint::chat`] maps the calls back.
    pub(crate) fn body(&self, req: &ChatRequest) -> Value {
        let c = &self.config;
        let names = Names::of(&req.tools);
        let mut messages: Vec<Value> = req
            .messages
            .iter()
            .map(|m| {
                let mut m = m.clone();
                for call in &mut m.tool_calls {
                    call.function.name = names.wire(&call.function.name);
                }
                serde_json::to_value(m).unwrap_or(Value::Null)
            })
            .collect();
        let stream = req.stream || c.stream;
        let mut body = json!({
            "model": req.model.as_deref().unwrap_or(&c.model),
            "stream": stream,
        });
        let mut stop = c.stop.clone();
        let wire_choice = |choice: &ToolChoice| match choice {
            ToolChoice::Function(name) => ToolChoice::Function(names.wire(name)).to_json(),
            other => other.to_json(),
        };
        if !req.tools.is_empty() {
            let tools: Vec<_> = req
                .tools
                .iter()
                .map(|t| {
                    let mut t = t.clone();
                    t.function.name = names.wire(&t.function.name);
                    t
                })
                .collect();
            body["tools"] = serde_json::to_value(&tools).unwrap_or(Value::Null);
            stop.extend(c.tool_stop.iter().cloned());
            let ends_with_assistant = req
                .messages
                .last()
                .is_some_and(|m| m.role == Speaker::Assistant && m.tool_calls.is_empty());
            if let Some(prefill) = c.tool_prefill.as_deref().filter(|_| !ends_with_assistant) {
                messages.push(json!({"role": "assistant", "content": prefill}));
            }
            let choice = c.tool_choice.as_deref().map(ToolChoice::parse);
            if let Some(choice) = choice.as_ref().or(req.tool_choice.as_ref())
                && c.sends_tool_choice()
            {
                body["tool_choice"] = wire_choice(choice);
            }
        } else if let Some(choice) = req.tool_choice.as_ref().filter(|_| c.sends_tool_choice()) {
            body["tool_choice"] = wire_choice(choice);
        }
        body["messages"] = Value::Array(messages);
        if !stop.is_empty() {
            body["stop"] = json!(stop);
        }
        if let Some(schema) = req
            .response_format
            .as_ref()
            .filter(|_| c.sends_json_schema())
        {
            body["response_format"] = json!({
                "type": "json_schema",
                "json_schema": {"name": schema.name, "schema": schema.schema, "strict": true},
            });
        }
        if let Some(n) = req.max_tokens {
            body["max_tokens"] = json!(n.saturating_add(c.reasoning_budget()));
        }
        if let Some((key, value)) = c.thinking().and_then(|on| c.profile.thinking_switch(on)) {
            body[key] = value;
        }
        if let Some(t) = req.temperature {
            body["temperature"] = json!(t);
        }
        if stream {
            body["stream_options"] = json!({"include_usage": true});
        }
        if let Value::Object(map) = &mut body {
            for (k, v) in &c.extra_body {
                map.insert(k.clone(), v.clone());
            }
        }
        body
    }

    fn post(&self, http: &reqwest::Client, body: &Value) -> reqwest::RequestBuilder {
        let builder = http.post(&self.chat_url).json(body);
        self.authorize(builder)
    }

    fn authorize(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.config.api_key {
            Some(key) => builder.bearer_auth(key.expose()),
            None => builder,
        }
    }

    fn err(&self, kind: AttemptErrorKind, message: impl ToString) -> AttemptError {
        attempt(&self.config.name, kind, &message.to_string())
    }

    /// Sends `req` and assembles the answer; gives up at `until` (or the endpoint's own leg
    /// timeout, whichever is first).
    pub(crate) async fn chat(
        &self,
        req: &ChatRequest,
        until: Instant,
    ) -> Result<Answer, AttemptError> {
        let until = until.min(Instant::now() + Duration::from_millis(self.config.timeout_ms));
        match tokio::time::timeout_at(until, self.chat_leg(req)).await {
            Ok(result) => result,
            Err(_) => Err(self.err(AttemptErrorKind::Timeout, "leg timeout")),
        }
    }

    async fn chat_leg(&self, req: &ChatRequest) -> Result<Answer, AttemptError> {
        let started = Instant::now();
        let idle = Duration::from_millis(self.config.idle_timeout_ms);
        let stream = req.stream || self.config.stream;
        let body = self.body(req);
        let http = match &self.transport {
            Transport::Http(http) => http,
            Transport::Canned => {
                let bytes = super::canned::completion(&body).to_string().into_bytes();
                let mut answer = parse_completion(&bytes, started.elapsed())
                    .map_err(|e| self.err(AttemptErrorKind::Protocol, e))?;
                Names::of(&req.tools).restore(&mut answer.tool_calls);
                return Ok(answer);
            }
        };
        // A streamed answer starts with headers at once; a plain one sends them with the whole
        // answer, so only the leg timeout bounds it.
        let send = self.post(http, &body).send();
        let response = if stream {
            tokio::time::timeout(idle, send)
                .await
                .map_err(|_| self.err(AttemptErrorKind::Timeout, "no response headers"))?
        } else {
            send.await
        }
        .map_err(|e| self.transport_error(&e))?;
        let response = self.check_status(response).await?;
        let mut answer = if stream {
            self.read_stream(response, started, idle).await?
        } else {
            let bytes = self.read_body(response, idle).await?;
            let ttft = started.elapsed();
            parse_completion(&bytes, ttft).map_err(|e| self.err(AttemptErrorKind::Protocol, e))?
        };
        Names::of(&req.tools).restore(&mut answer.tool_calls);
        Ok(answer)
    }

    fn transport_error(&self, e: &reqwest::Error) -> AttemptError {
        let kind = if e.is_timeout() {
            AttemptErrorKind::Timeout
        } else {
            AttemptErrorKind::Connect
        };
        self.err(kind, error_chain(e))
    }

    async fn check_status(
        &self,
        response: reqwest::Response,
    ) -> Result<reqwest::Response, AttemptError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let code = status.as_u16();
        let text = read_capped(response, MAX_ERROR_BODY, Duration::from_secs(2)).await;
        // 401/403/404 mean this endpoint is misconfigured (key, model, path): another one may
        // answer. Other 4xx mean the request itself is wrong everywhere. So does llama.cpp's
        // 500 for a tool call the model wrote with broken arguments: the server is fine, the
        // model's answer is not, and the same conversation would break the same way elsewhere.
        let model_wrote_garbage = code == 500 && text.contains("Failed to parse tool call");
        let kind = if model_wrote_garbage {
            AttemptErrorKind::Rejected(code)
        } else if matches!(code, 401 | 403 | 404 | 408 | 429) || status.is_server_error() {
            AttemptErrorKind::Status(code)
        } else {
            AttemptErrorKind::Rejected(code)
        };
        Err(self.err(kind, truncate(text.trim(), MAX_ERROR_TEXT)))
    }

    async fn read_body(
        &self,
        response: reqwest::Response,
        idle: Duration,
    ) -> Result<Vec<u8>, AttemptError> {
        let limit = self.config.max_response_bytes;
        let mut body = Vec::new();
        let mut chunks = response.bytes_stream();
        loop {
            let chunk = tokio::time::timeout(idle, chunks.next())
                .await
                .map_err(|_| self.err(AttemptErrorKind::Timeout, "body stalled"))?;
            match chunk {
                None => return Ok(body),
                Some(Err(e)) => return Err(self.err(AttemptErrorKind::Connect, error_chain(&e))),
                Some(Ok(bytes)) => {
                    if body.len() + bytes.len() > limit {
                        return Err(self.err(
                            AttemptErrorKind::Protocol,
                            format!("response larger than {limit} bytes"),
                        ));
                    }
                    body.extend_from_slice(&bytes);
                }
            }
        }
    }

    async fn read_stream(
        &self,
        response: reqwest::Response,
        started: Instant,
        idle: Duration,
    ) -> Result<Answer, AttemptError> {
        let limit = self.config.max_response_bytes;
        let mut seen = 0usize;
        let bytes = response
            .bytes_stream()
            .map_err(|e| error_chain(&e))
            .and_then(move |chunk: bytes::Bytes| {
                seen += chunk.len();
                let result = if seen > limit {
                    Err(format!("response larger than {limit} bytes"))
                } else {
                    Ok(chunk)
                };
                std::future::ready(result)
            });
        let mut events = std::pin::pin!(bytes.eventsource());
        let mut assembly = StreamAssembly::default();
        loop {
            let next = tokio::time::timeout(idle, events.next())
                .await
                .map_err(|_| self.err(AttemptErrorKind::Timeout, "stream stalled"))?;
            let event = match next {
                None => {
                    return Err(self.err(AttemptErrorKind::BrokenStream, "ended before [DONE]"));
                }
                Some(Err(e)) => return Err(self.err(AttemptErrorKind::BrokenStream, e)),
                Some(Ok(event)) => event,
            };
            let data = event.data.trim();
            if data == "[DONE]" {
                return Ok(assembly.finish());
            }
            if data.is_empty() {
                continue;
            }
            let chunk: ChunkWire = serde_json::from_str(data).map_err(|e| {
                self.err(AttemptErrorKind::Protocol, format!("bad stream chunk: {e}"))
            })?;
            if let Some(message) = chunk.error_message() {
                return Err(self.err(AttemptErrorKind::BrokenStream, message));
            }
            assembly
                .push(chunk, started)
                .map_err(|e| self.err(AttemptErrorKind::Protocol, e))?;
        }
    }

    /// The circuit breaker's probe: whether `GET /models` answers 2xx within the probe
    /// timeout. Every OpenAI-compatible server has it, and it checks the key and path too: a
    /// misconfigured endpoint (401, 404) stays open, and says why in its failures.
    pub(crate) async fn probe(&self) -> bool {
        self.models().await.is_ok()
    }

    /// The model ids the endpoint serves (`GET /models`).
    pub(crate) async fn models(&self) -> Result<Vec<String>, AttemptError> {
        let http = match &self.transport {
            Transport::Http(http) => http,
            Transport::Canned => return Ok(vec![super::canned::MODEL.to_owned()]),
        };
        let timeout = Duration::from_millis(self.config.probe_timeout_ms);
        let request = self.authorize(http.get(&self.models_url)).timeout(timeout);
        let response = request.send().await.map_err(|e| self.transport_error(&e))?;
        let response = self.check_status(response).await?;
        let bytes = tokio::time::timeout(timeout, self.read_body(response, timeout))
            .await
            .map_err(|_| self.err(AttemptErrorKind::Timeout, "model list stalled"))??;
        let list: ModelsWire = serde_json::from_slice(&bytes)
            .map_err(|e| self.err(AttemptErrorKind::Protocol, format!("bad model list: {e}")))?;
        Ok(list.data.into_iter().map(|m| m.id).collect())
    }
}

fn attempt(endpoint: &str, kind: AttemptErrorKind, message: &str) -> AttemptError {
    AttemptError {
        endpoint: endpoint.to_owned(),
        kind,
        message: message.to_owned(),
    }
}

/// Up to `cap` bytes of a body, as text (lossy), within `timeout`.
async fn read_capped(response: reqwest::Response, cap: usize, timeout: Duration) -> String {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    let read = async {
        while let Some(Ok(chunk)) = chunks.next().await {
            let room = cap.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= cap {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(timeout, read).await;
    String::from_utf8_lossy(&body).into_owned()
}

/// The error and its sources, on one line (reqwest's own message hides the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s.to_owned(),
    }
}

/// Why a server's answer is not a completion.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProtocolError {
    /// Not the completion JSON.
    #[error("bad completion: {0}")]
    Json(#[from] serde_json::Error),
    /// A completion without a choice.
    #[error("completion without choices")]
    NoChoice,
    /// More tool calls than the bound.
    #[error("more than {MAX_TOOL_CALLS} tool calls")]
    TooManyCalls,
}

/// Parses a non-streamed completion body.
pub(crate) fn parse_completion(bytes: &[u8], ttft: Duration) -> Result<Answer, ProtocolError> {
    let wire: CompletionWire = serde_json::from_slice(bytes)?;
    let choice = wire
        .choices
        .into_iter()
        .next()
        .ok_or(ProtocolError::NoChoice)?;
    let message = choice.message;
    let tool_calls = message
        .tool_calls
        .into_iter()
        .enumerate()
        .map(|(i, c)| ToolCall {
            id: c
                .id
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| format!("call_{i}")),
            kind: "function".to_owned(),
            function: FunctionCall {
                name: c.function.name.unwrap_or_default(),
                arguments: c
                    .function
                    .arguments
                    .map(Arguments::into_text)
                    .unwrap_or_default(),
            },
        })
        .collect();
    let (content, inline) = split_reasoning(message.content);
    Ok(Answer {
        content,
        reasoning: join_reasoning(message.reasoning_content.or(message.reasoning), inline),
        tool_calls,
        finish_reason: choice.finish_reason,
        usage: wire.usage.map(UsageWire::into_usage).unwrap_or_default(),
        model: wire.model.unwrap_or_default(),
        ttft,
    })
}

/// Splits a leading think block off an answer's text: `<think>...</think>` (or only the
/// closing tag, where the chat template opened the block in the prompt). An unclosed block is
/// all reasoning: the model ran out of tokens before it answered.
pub(crate) fn split_reasoning(content: Option<String>) -> (Option<String>, Option<String>) {
    const OPEN: &str = "<think>";
    const CLOSE: &str = "</think>";
    let Some(text) = content else {
        return (None, None);
    };
    let trimmed = text.trim_start();
    let (reasoning, rest) = if let Some(after) = trimmed.strip_prefix(OPEN) {
        match after.find(CLOSE) {
            Some(end) => (&after[..end], Some(&after[end + CLOSE.len()..])),
            None => (after, None),
        }
    } else if let Some(end) = trimmed
        .find(CLOSE)
        .filter(|end| !trimmed[..*end].contains('{'))
    {
        (&trimmed[..end], Some(&trimmed[end + CLOSE.len()..]))
    } else {
        return (Some(text), None);
    };
    let rest = rest
        .map(|r| r.trim_start().to_owned())
        .filter(|r| !r.is_empty());
    (rest, Some(reasoning.trim().to_owned()))
}

/// The reasoning a field carried and the reasoning inline in the text, as one.
fn join_reasoning(field: Option<String>, inline: Option<String>) -> Option<String> {
    match (field.filter(|f| !f.is_empty()), inline) {
        (Some(f), Some(i)) => Some(format!("{f}\n{i}")),
        (f, i) => f.or(i),
    }
}

/// Folds stream chunks into one answer.
#[derive(Debug, Default)]
pub(crate) struct StreamAssembly {
    content: Option<String>,
    reasoning: Option<String>,
    calls: Vec<PartialCall>,
    finish_reason: Option<String>,
    usage: Usage,
    model: String,
    ttft: Option<Duration>,
}

#[derive(Debug, Default)]
struct PartialCall {
    index: u64,
    id: Option<String>,
    name: String,
    arguments: String,
}

impl StreamAssembly {
    /// Adds one chunk received `started.elapsed()` after the leg began. Refuses an answer
    /// with more than [`MAX_TOOL_CALLS`] tool calls.
    pub(crate) fn push(&mut self, chunk: ChunkWire, started: Instant) -> Result<(), ProtocolError> {
        if let Some(model) = chunk.model.filter(|m| !m.is_empty()) {
            self.model = model;
        }
        if let Some(usage) = chunk.usage {
            self.usage = usage.into_usage();
        }
        for choice in chunk.choices {
            let delta = choice.delta;
            let reasoning = delta.reasoning_content.or(delta.reasoning);
            let has_token = delta.content.as_deref().is_some_and(|c| !c.is_empty())
                || reasoning.as_deref().is_some_and(|c| !c.is_empty())
                || !delta.tool_calls.is_empty();
            if has_token && self.ttft.is_none() {
                self.ttft = Some(started.elapsed());
            }
            if let Some(text) = delta.content {
                self.content.get_or_insert_with(String::new).push_str(&text);
            }
            if let Some(text) = reasoning.filter(|t| !t.is_empty()) {
                self.reasoning
                    .get_or_insert_with(String::new)
                    .push_str(&text);
            }
            for fragment in delta.tool_calls {
                let index = fragment.index.unwrap_or(0);
                let at = match self.calls.iter().position(|c| c.index == index) {
                    Some(at) => at,
                    None if self.calls.len() >= MAX_TOOL_CALLS => {
                        return Err(ProtocolError::TooManyCalls);
                    }
                    None => {
                        self.calls.push(PartialCall {
                            index,
                            ..PartialCall::default()
                        });
                        self.calls.len() - 1
                    }
                };
                let call = &mut self.calls[at];
                if let Some(id) = fragment.id.filter(|id| !id.is_empty()) {
                    call.id = Some(id);
                }
                if let Some(name) = fragment.function.name {
                    call.name.push_str(&name);
                }
                if let Some(args) = fragment.function.arguments {
                    call.arguments.push_str(&args.into_text());
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(reason);
            }
        }
        Ok(())
    }

    /// The assembled answer.
    pub(crate) fn finish(self) -> Answer {
        let mut calls = self.calls;
        calls.sort_by_key(|c| c.index);
        let (content, inline) = split_reasoning(self.content);
        Answer {
            content,
            reasoning: join_reasoning(self.reasoning, inline),
            tool_calls: calls
                .into_iter()
                .map(|c| ToolCall {
                    id: c.id.unwrap_or_else(|| format!("call_{}", c.index)),
                    kind: "function".to_owned(),
                    function: FunctionCall {
                        name: c.name,
                        arguments: c.arguments,
                    },
                })
                .collect(),
            finish_reason: self.finish_reason,
            usage: self.usage,
            model: self.model,
            ttft: self.ttft.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
struct CompletionWire {
    #[serde(default)]
    choices: Vec<ChoiceWire>,
    usage: Option<UsageWire>,
    model: Option<String>,
}

/// `usage`, with the details servers add (OpenAI, vLLM and llama.cpp name them alike).
#[derive(Deserialize, Default)]
pub(crate) struct UsageWire {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetailsWire>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetailsWire>,
}

#[derive(Deserialize, Default)]
struct PromptDetailsWire {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
struct CompletionDetailsWire {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

impl UsageWire {
    fn into_usage(self) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            cached_tokens: self
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
            reasoning_tokens: self
                .completion_tokens_details
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
        }
    }
}

/// Tool-call arguments: JSON text as OpenAI specifies, or a JSON object as some servers send
/// (Ollama's own API); either way the model's JSON, as text.
#[derive(Deserialize)]
#[serde(untagged)]
enum Arguments {
    Text(String),
    Json(Value),
}

impl Arguments {
    fn into_text(self) -> String {
        match self {
            Arguments::Text(text) => text,
            Arguments::Json(Value::Null) => String::new(),
            Arguments::Json(value) => value.to_string(),
        }
    }
}

#[derive(Deserialize)]
struct ChoiceWire {
    message: MessageWire,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct MessageWire {
    content: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default, deserialize_with = "calls_or_null")]
    tool_calls: Vec<CallWire>,
}

/// A `tool_calls` list, where `null` means none.
fn calls_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<CallWire>, D::Error> {
    Ok(Option::<Vec<CallWire>>::deserialize(d)?.unwrap_or_default())
}

#[derive(Deserialize)]
struct CallWire {
    #[serde(default)]
    index: Option<u64>,
    id: Option<String>,
    #[serde(default)]
    function: FunctionWire,
}

#[derive(Deserialize, Default)]
struct FunctionWire {
    name: Option<String>,
    arguments: Option<Arguments>,
}

/// One `chat.completion.chunk`.
#[derive(Deserialize)]
pub(crate) struct ChunkWire {
    #[serde(default)]
    choices: Vec<ChunkChoiceWire>,
    usage: Option<UsageWire>,
    model: Option<String>,
    error: Option<Value>,
}

impl ChunkWire {
    fn error_message(&self) -> Option<String> {
        let error = self.error.as_ref()?;
        Some(
            error
                .get("message")
                .and_then(Value::as_str)
                .map_or_else(|| error.to_string(), str::to_owned),
        )
    }
}

#[derive(Deserialize)]
struct ChunkChoiceWire {
    #[serde(default)]
    delta: DeltaWire,
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct DeltaWire {
    content: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default, deserialize_with = "calls_or_null")]
    tool_calls: Vec<CallWire>,
}

#[derive(Deserialize)]
struct ModelsWire {
    #[serde(default)]
    data: Vec<ModelWire>,
}

#[derive(Deserialize)]
struct ModelWire {
    id: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::{JsonSchema, Message, Tool};

    fn endpoint(quirks: impl FnOnce(&mut EndpointConfig)) -> Endpoint {
        let mut config = EndpointConfig {
            name: "primary".into(),
            url: "http://127.0.0.1:1/v1/".into(),
            model: "smollm2".into(),
            ..EndpointConfig::default()
        };
        quirks(&mut config);
        Endpoint::new(config).unwrap()
    }

    fn weather_request() -> ChatRequest {
        ChatRequest {
            messages: vec![Message::system("s"), Message::user("weather in Paris?")],
            tools: vec![Tool::function(
                "get_weather",
                "weather",
                json!({"type": "object", "properties": {"city": {"type": "string"}}}),
            )],
            tool_choice: Some(ToolChoice::Auto),
            ..ChatRequest::default()
        }
    }

    #[tokio::test]
    async fn the_in_process_canned_model_answers_through_the_body_and_the_parser() {
        let ep = endpoint(|c| c.url = crate::llm::canned::IN_PROCESS_URL.into());
        assert!(matches!(ep.transport, Transport::Canned));
        let req = ChatRequest {
            messages: vec![Message::system("s"), Message::user("alert")],
            response_format: Some(JsonSchema {
                name: "sentinel_answer".into(),
                schema: json!({"type": "object"}),
            }),
            ..ChatRequest::default()
        };
        let answer = ep
            .chat(&req, Instant::now() + Duration::from_secs(5))
            .await
            .unwrap();
        let content: Value = serde_json::from_str(answer.content.as_deref().unwrap()).unwrap();
        assert_eq!(content, crate::llm::canned::answer_for("sentinel_answer"));
        assert_eq!(answer.model, "canned");
        assert!(answer.usage.prompt_tokens > 0, "{:?}", answer.usage);
        // An unknown schema gets `{}` (the role's validation refuses it).
        let unknown = ChatRequest {
            response_format: Some(JsonSchema {
                name: "nobody".into(),
                schema: json!({"type": "object"}),
            }),
            ..req
        };
        let answer = ep
            .chat(&unknown, Instant::now() + Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(answer.content.as_deref(), Some("{}"));
        assert_eq!(ep.models().await.unwrap(), vec!["canned".to_owned()]);
    }

    #[test]
    fn body_applies_quirks_only_where_they_belong() {
        let ep = endpoint(|c| {
            c.stop = vec!["<|im_end|>".into()];
            c.tool_stop = vec!["</tool_call>".into()];
            c.tool_prefill = Some("<tool_call>\n".into());
            c.tool_choice = Some("required".into());
            c.extra_body.insert("top_k".into(), json!(1));
        });
        assert_eq!(ep.chat_url, "http://127.0.0.1:1/v1/chat/completions");
        let body = ep.body(&weather_request());
        assert_eq!(body["model"], "smollm2");
        assert_eq!(body["tool_choice"], "required");
        assert_eq!(body["stop"], json!(["<|im_end|>", "</tool_call>"]));
        assert_eq!(body["top_k"], 1);
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3);
        assert_eq!(
            messages[2],
            json!({"role": "assistant", "content": "<tool_call>\n"})
        );

        // Without tools: no tool stop, no prefill; a per-request model wins.
        let plain = ChatRequest {
            messages: vec![Message::user("hi")],
            model: Some("other".into()),
            stream: true,
            response_format: Some(JsonSchema {
                name: "v".into(),
                schema: json!({"type": "object"}),
            }),
            ..ChatRequest::default()
        };
        let body = ep.body(&plain);
        assert_eq!(body["model"], "other");
        assert_eq!(body["stop"], json!(["<|im_end|>"]));
        assert_eq!(body["messages"].as_array().unwrap().len(), 1);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["response_format"]["json_schema"]["name"], "v");
        assert!(body.get("tools").is_none());

        // Without quirks, the caller's choice goes through untouched.
        let body = endpoint(|_| {}).body(&weather_request());
        assert_eq!(body["tool_choice"], "auto");
        assert!(body.get("stop").is_none());
    }

    #[test]
    fn streamed_tool_call_fragments_are_reassembled() {
        let chunks = [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":null}}],"model":"m"}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1","type":"function","function":{"name":"get_weather","arguments":"{"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"city\": "}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"c2","function":{"name":"lookup","arguments":"{}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"finish_reason":"tool_calls","delta":{}}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":194,"completion_tokens":29,"total_tokens":223}}"#,
        ];
        let started = Instant::now();
        let mut assembly = StreamAssembly::default();
        for c in chunks {
            assembly
                .push(serde_json::from_str(c).unwrap(), started)
                .unwrap();
        }
        let answer = assembly.finish();
        assert_eq!(answer.tool_calls.len(), 2);
        assert_eq!(answer.tool_calls[0].id, "c1");
        assert_eq!(answer.tool_calls[0].function.name, "get_weather");
        assert_eq!(
            answer.tool_calls[0].function.arguments,
            r#"{"city": "Paris"}"#
        );
        assert_eq!(answer.tool_calls[1].function.name, "lookup");
        assert_eq!(answer.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(answer.usage.prompt_tokens, 194);
        assert_eq!(answer.usage.completion_tokens, 29);
        assert_eq!(answer.model, "m");
        assert_eq!(answer.content, None);
    }

    #[test]
    fn think_blocks_are_split_off_and_an_unclosed_one_leaves_no_answer() {
        let split = |s: &str| split_reasoning(Some(s.to_owned()));
        assert_eq!(
            split("<think>\nhm\n</think>\n\n{\"a\":1}"),
            (Some("{\"a\":1}".into()), Some("hm".into()))
        );
        // The template opened the block in the prompt: only the closing tag comes back.
        assert_eq!(
            split("hm</think>{\"a\":1}"),
            (Some("{\"a\":1}".into()), Some("hm".into()))
        );
        // Cut off while thinking: reasoning, no answer.
        assert_eq!(split("<think>so the"), (None, Some("so the".into())));
        // A `</think>` inside the JSON answer is the answer's.
        assert_eq!(
            split("{\"r\":\"</think>\"}"),
            (Some("{\"r\":\"</think>\"}".into()), None)
        );
        assert_eq!(split("{}"), (Some("{}".into()), None));
    }

    #[test]
    fn arguments_as_an_object_and_reasoning_fields_parse() {
        let body = br#"{"choices":[{"message":{"role":"assistant","content":"","reasoning":"r","tool_calls":[{"function":{"name":"f","arguments":{"host":"web-01"}}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":9,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":7},"completion_tokens_details":{"reasoning_tokens":2}}}"#;
        let answer = parse_completion(body, Duration::ZERO).unwrap();
        assert_eq!(
            answer.tool_calls[0].function.arguments,
            r#"{"host":"web-01"}"#
        );
        assert_eq!(answer.tool_calls[0].id, "call_0");
        assert_eq!(answer.reasoning.as_deref(), Some("r"));
        assert_eq!(answer.usage.cached_tokens, 7);
        assert_eq!(answer.usage.reasoning_tokens, 2);
    }

    #[test]
    fn completions_parse_and_garbage_is_an_error() {
        let body = br#"{"choices":[{"finish_reason":"stop","index":0,"message":{"role":"assistant","content":"Hi"}}],"model":"smollm2","usage":{"completion_tokens":2,"prompt_tokens":9}}"#;
        let answer = parse_completion(body, Duration::ZERO).unwrap();
        assert_eq!(answer.content.as_deref(), Some("Hi"));
        assert_eq!(answer.usage.prompt_tokens, 9);
        assert!(parse_completion(b"{\"choices\":[]}", Duration::ZERO).is_err());
        assert!(parse_completion(b"<html>", Duration::ZERO).is_err());
    }
}
