//! Protocol conformance per server profile (vLLM, Ollama, hosted OpenAI-compatible, llama.cpp):
//! a case runs through the whole chain (alert source, Sentinel and Tier 2 asking the model
//! with tools, the store) against a RECORDED STAND-IN that answers as each server's own
//! documentation shows (`common::recorded`; the fixtures credit their sources). vLLM needs a
//! GPU and Ollama is in no registry here, so recordings are the allowed stand-in for them;
//! what llama.cpp can do is tested against the real server in `tests/llm.rs`.
//!
//! Each run checks what the profile sends (the thinking switch, the reasoning budget, tool
//! names in the strict alphabet, `tool_choice` only where honoured) and what comes back
//! (reasoning kept out of the answer but recorded, tool calls mapped to their internal names
//! and run, arguments as text or object, cached tokens counted, every answer valid).

#![allow(
    clippy::disallowed_methods,
    reason = "tests own and abort the tasks they spawn"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure should fail the test loudly"
)]

mod common;

use common::recorded::{RecordedServer, Script, recording};
use serde_json::Value;
use soc_runtime::app::config::Config;
use soc_runtime::app::runtime::Runtime;
use soc_runtime::llm::{EndpointConfig, Profile};
use soc_runtime::supervisor::RuntimeOptions;

/// One conformance run.
struct Case {
    server: &'static str,
    profile: Profile,
    thinking: Option<bool>,
    stream: bool,
    tool_call: Option<&'static str>,
    answer: &'static str,
    /// Whether the answer recording carries reasoning.
    reasoning: bool,
    /// Tool calls per tool-call answer.
    calls: usize,
    /// Whether the recording reports cached prompt tokens.
    cached: bool,
}

fn model_of(server: &str) -> String {
    let models = recording(server, "models");
    models.body["data"][0]["id"].as_str().unwrap().to_owned()
}

fn strict(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Runs one alert per ticket through a runtime (memory bus, `llm` mode) whose one model
/// endpoint is `endpoint`, until idle; the data dir stays while the returned guard lives.
async fn run_alerts(
    endpoint: EndpointConfig,
    tickets: &[&str],
) -> (tempfile::TempDir, soc_runtime::app::runtime::RunReport) {
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("feed.jsonl");
    let lines: Vec<String> = tickets
        .iter()
        .enumerate()
        .map(|(i, ticket)| {
            serde_json::json!({
                "ticket_id": ticket, "site": "profiles", "source": "wazuh", "rule_id": "5710",
                "rule_name": "sshd: attempt to login using a non-existent user",
                "host": format!("web-0{}", i + 1), "src_ips": ["203.0.113.7"],
                "first_seen": "2022-01-15T10:00:00Z", "last_seen": "2022-01-15T10:05:00Z",
                "alert_count": 3
            })
            .to_string()
        })
        .collect();
    std::fs::write(&feed, lines.join("\n") + "\n").unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        alerts: Some(feed),
        ..Config::default()
    };
    config.http.addr = "off".into();
    config.llm.endpoints = vec![endpoint];
    config.reasoning.mode = soc_runtime::app::config::ReasoningMode::Llm;
    let options = RuntimeOptions {
        until_idle: true,
        ..RuntimeOptions::default()
    };
    let report = Runtime::start(config, options).await.unwrap().wait().await;
    (dir, report)
}

async fn run(case: Case) {
    let label = format!(
        "{}/{} (thinking {:?}, stream {})",
        case.server, case.answer, case.thinking, case.stream
    );
    let has_models = case.server != "llamacpp";
    let server = RecordedServer::start(Script {
        tool_call: case.tool_call.map(|s| recording(case.server, s)),
        answer: recording(case.server, case.answer),
        models: has_models.then(|| recording(case.server, "models")),
    })
    .await;
    let endpoint = EndpointConfig {
        name: "primary".into(),
        url: server.url.clone(),
        model: if has_models {
            model_of(case.server)
        } else {
            "smollm2".into()
        },
        profile: case.profile,
        thinking: case.thinking,
        stream: case.stream,
        ..EndpointConfig::default()
    };
    let (dir, report) = run_alerts(endpoint, &["prof-1"]).await;
    assert!(report.is_success(), "{label}: {}", report.summary.render());

    // Every answer validated.
    let v = report.summary.model_validation.clone().unwrap();
    assert!(v.valid >= 1 && v.invalid == 0, "{label}: {v:?}");
    let llm = report.summary.llm.clone().unwrap();
    let primary = llm.endpoint("primary").unwrap();
    assert_eq!(
        primary.account.reasoned > 0,
        case.reasoning,
        "{label}: answers with reasoning {}",
        primary.account.reasoned
    );
    assert_eq!(primary.account.tokens_cached > 0, case.cached, "{label}");

    // What went out.
    let requests = server.requests();
    assert!(!requests.is_empty(), "{label}");
    let thinking = case.thinking.or(case.profile.default_thinking());
    for body in &requests {
        for tool in body["tools"].as_array().into_iter().flatten() {
            let name = tool["function"]["name"].as_str().unwrap();
            assert!(strict(name), "{label}: tool name {name} on the wire");
        }
        for m in body["messages"].as_array().unwrap() {
            for call in m["tool_calls"].as_array().into_iter().flatten() {
                let name = call["function"]["name"].as_str().unwrap();
                assert!(strict(name), "{label}: {name} sent back");
            }
        }
        match thinking.and_then(|on| case.profile.thinking_switch(on)) {
            Some((key, value)) => assert_eq!(body[key], value, "{label}: {key}"),
            None => {
                assert!(body.get("chat_template_kwargs").is_none(), "{label}");
                assert!(body.get("reasoning_effort").is_none(), "{label}");
            }
        }
        let max_tokens = body["max_tokens"].as_u64().unwrap();
        assert_eq!(
            max_tokens > 2048,
            thinking != Some(false),
            "{label}: max_tokens {max_tokens} leaves room for reasoning only when it may happen"
        );
        let offers_tools = body["tools"].as_array().is_some_and(|t| !t.is_empty());
        if offers_tools {
            assert_eq!(
                body.get("tool_choice").is_some(),
                case.profile != Profile::Ollama,
                "{label}: tool_choice"
            );
        }
        assert_eq!(body["stream"], case.stream, "{label}");
    }

    // What was recorded: the tool calls under their internal names, run; the reasoning
    // beside the answer, never in it.
    let store = soc_runtime::store::Store::open(&dir.path().join(soc_runtime::store::MEMORY_FILE))
        .await
        .unwrap();
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT body FROM case_events WHERE kind = 'AlertTriaged'")
            .fetch_all(store.pool())
            .await
            .unwrap();
    store.close().await;
    assert_eq!(rows.len(), 1, "{label}");
    let event: Value = serde_json::from_str(&rows[0].0).unwrap();
    let meta = &event["body"]["meta"];
    assert_eq!(meta["reasoner"], "llm", "{label}: {meta}");
    let record = meta["record"].as_array().unwrap();
    if case.tool_call.is_some() {
        let ran: Vec<&Value> = record
            .iter()
            .filter(|e| e["kind"] == "tool" && e["tool"] == "memory.host_activity")
            .collect();
        assert_eq!(ran.len(), case.calls, "{label}: {record:?}");
        for e in &ran {
            assert_eq!(e["outcome"], "ran", "{label}: {e}");
            let args: Value = serde_json::from_str(e["arguments"].as_str().unwrap()).unwrap();
            assert!(
                args["host"].as_str().unwrap().starts_with("web-0"),
                "{label}"
            );
        }
    }
    let reasoned = record
        .iter()
        .filter(|e| e["kind"] == "model" && e["reasoning"].as_str().is_some_and(|r| !r.is_empty()))
        .count();
    assert_eq!(reasoned > 0, case.reasoning, "{label}: {record:?}");
    for e in record.iter().filter(|e| e["kind"] == "model") {
        let out = e["output"].as_str().unwrap();
        assert!(
            !out.contains("<think>") && !out.contains("</think>"),
            "{label}: {out}"
        );
    }
    // The answer parsed is the role's payload, whatever the recording wrapped it in.
    let expected = soc_runtime::llm::canned::answer_for("sentinel_answer");
    assert_eq!(
        event["body"]["verdict"], expected["verdict"],
        "{label}: {event}"
    );
    assert_eq!(
        event["body"]["confidence"], expected["confidence"],
        "{label}: {event}"
    );
}

fn case(server: &'static str, profile: Profile, answer: &'static str) -> Case {
    Case {
        server,
        profile,
        thinking: None,
        stream: false,
        tool_call: None,
        answer,
        reasoning: false,
        calls: 1,
        cached: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vllm_reasoning_fields_think_blocks_and_tool_calls_through_the_chain() {
    common::logs();
    // Thinking off (the default): a model that thinks anyway (no reasoning parser) still
    // answers, its think block recorded and kept out of the answer.
    run(Case {
        tool_call: Some("tool_call"),
        reasoning: true,
        ..case("vllm", Profile::Vllm, "think_inline")
    })
    .await;
    // Thinking on: room for it in max_tokens, reasoning in `reasoning_content` (older vLLM)
    // and `reasoning` (newer), parallel tool calls.
    run(Case {
        thinking: Some(true),
        tool_call: Some("parallel_tool_calls"),
        calls: 2,
        reasoning: true,
        ..case("vllm", Profile::Vllm, "reasoning_field")
    })
    .await;
    run(Case {
        thinking: Some(true),
        reasoning: true,
        ..case("vllm", Profile::Vllm, "reasoning_field_new")
    })
    .await;
    // Streamed, both field names.
    for answer in ["reasoning_stream", "reasoning_stream_new"] {
        run(Case {
            thinking: Some(true),
            stream: true,
            tool_call: Some("tool_call"),
            reasoning: true,
            ..case("vllm", Profile::Vllm, answer)
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ollama_reasoning_and_tool_calls_without_tool_choice_through_the_chain() {
    common::logs();
    run(Case {
        tool_call: Some("tool_call"),
        reasoning: true,
        ..case("ollama", Profile::Ollama, "reasoning_field")
    })
    .await;
    run(Case {
        thinking: Some(true),
        stream: true,
        tool_call: Some("tool_call_stream"),
        reasoning: true,
        ..case("ollama", Profile::Ollama, "reasoning_field")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosted_openai_strict_tool_names_parallel_calls_and_structured_output_through_the_chain() {
    common::logs();
    run(Case {
        tool_call: Some("parallel_tool_calls"),
        calls: 2,
        ..case("openai", Profile::Openai, "json_schema")
    })
    .await;
    run(Case {
        stream: true,
        tool_call: Some("tool_call_stream"),
        ..case("openai", Profile::Openai, "json_schema")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llamacpp_reasoning_content_and_cached_tokens_through_the_chain() {
    common::logs();
    run(Case {
        thinking: Some(true),
        reasoning: true,
        ..case("llamacpp", Profile::Llamacpp, "reasoning_field")
    })
    .await;
    run(Case {
        cached: true,
        ..case("llamacpp", Profile::Llamacpp, "cached_tokens")
    })
    .await;
}

/// The failure the profiles exist for, made visible: a thinking model that spends its whole
/// budget thinking (an unclosed think block, cut off by `max_tokens`) never answers. Every
/// case goes to human review, the summary says FAILED with the ratio, and `--until-idle`
/// exits non-zero instead of reporting a quiet success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_where_most_answers_fail_validation_says_so_and_fails() {
    common::logs();
    let mut cut_off = recording("vllm", "think_inline");
    cut_off.body["choices"][0]["message"]["content"] =
        Value::String("<think>\nThe alert shows repeated failed logins, so".into());
    cut_off.body["choices"][0]["finish_reason"] = Value::String("length".into());
    let server = RecordedServer::start(Script {
        tool_call: None,
        answer: cut_off,
        models: Some(recording("vllm", "models")),
    })
    .await;
    let endpoint = EndpointConfig {
        name: "primary".into(),
        url: server.url.clone(),
        model: model_of("vllm"),
        profile: Profile::Vllm,
        ..EndpointConfig::default()
    };
    let (dir, report) = run_alerts(endpoint, &["cut-0", "cut-1", "cut-2"]).await;
    let v = report.summary.model_validation.clone().unwrap();
    assert_eq!((v.valid, v.invalid), (0, 3), "{v:?}");
    assert!(v.over_limit);
    assert!(!report.is_success(), "the run must fail");
    let text = report.summary.render();
    assert!(
        text.contains("3 invalid (100 %)") && text.contains("FAILED"),
        "{text}"
    );
    let llm = report.summary.llm.clone().unwrap();
    assert_eq!(llm.endpoint("primary").unwrap().account.invalid, 3);
    assert_eq!(llm.roles["sentinel"].invalid, 3);
    // Each case waits for a human, with the reason.
    let store = soc_runtime::store::Store::open(&dir.path().join(soc_runtime::store::MEMORY_FILE))
        .await
        .unwrap();
    let (review,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM cases WHERE needs_review = 1")
        .fetch_one(store.pool())
        .await
        .unwrap();
    store.close().await;
    assert_eq!(review, 3);
}

/// `llm check` against each recorded server: the configured model is on its list, a tool
/// offered under a dotted name comes back under it, the schema answer parses, and reasoning
/// is reported where the server sends it. A model the server does not list is unhealthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_check_per_profile_finds_the_model_tools_schema_and_reasoning() {
    for (server_name, profile, answer, reasoning) in [
        ("vllm", Profile::Vllm, "reasoning_field", true),
        ("ollama", Profile::Ollama, "reasoning_field", true),
        ("openai", Profile::Openai, "json_schema", false),
    ] {
        let server = RecordedServer::start(Script {
            tool_call: Some(recording(server_name, "tool_call")),
            answer: recording(server_name, answer),
            models: Some(recording(server_name, "models")),
        })
        .await;
        let endpoint = EndpointConfig {
            name: "primary".into(),
            url: server.url.clone(),
            model: model_of(server_name),
            profile,
            ..EndpointConfig::default()
        };
        let check = soc_runtime::llm::check::check(&endpoint).await;
        let text = check.to_string();
        assert!(check.is_healthy(), "{server_name}: {text}");
        assert_eq!(check.model_listed, Some(true), "{text}");
        assert!(
            text.contains("tool call: ok: soc.echo_host(")
                && text.contains("soc_echo_host on the wire"),
            "{text}"
        );
        assert_eq!(check.reasoning_seen, reasoning, "{text}");
        // The tool went out under its wire name.
        let offered: Vec<String> = server
            .requests()
            .iter()
            .flat_map(|b| b["tools"].as_array().cloned().unwrap_or_default())
            .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(offered, ["soc_echo_host"], "{server_name}");

        let unlisted = EndpointConfig {
            model: "default".into(),
            ..endpoint
        };
        let check = soc_runtime::llm::check::check(&unlisted).await;
        assert!(!check.is_healthy(), "{server_name}");
        assert_eq!(check.model_listed, Some(false));
    }
}
