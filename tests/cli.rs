//! The `soc-runtime` binary as a user runs it: help, errors, the dev tickets on both backends,
//! SIGTERM drains, and SIGKILL mid-run followed by a restart keeps exactly-once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure should fail the test loudly"
)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use soc_runtime::bus::bridge;
use soc_runtime::bus::{Bus, BusConfig, Topic};
use soc_runtime::supervisor::REACTIVE_ROLES;

const BIN: &str = env!("CARGO_BIN_EXE_soc-runtime");

fn soc() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("SOC_BUS")
        .env_remove("SOC_REDIS_URL")
        .env_remove("SOC_BUS_NAMESPACE")
        .env_remove("SOC_ALERTS")
        .env_remove("SOC_HTTP_ADDR")
        // Commands that keep state by default (backtest's last-backtest.json) keep it in a
        // scratch directory, never in the checkout.
        .env(
            "SOC_DATA_DIR",
            std::env::temp_dir().join("soc-runtime-cli-tests"),
        )
        .env("SOC_LOG", "warn");
    cmd
}

/// Longest a CLI run may take before the test kills it and fails (they take seconds).
const RUN_LIMIT: Duration = Duration::from_secs(180);

/// Runs the command to completion, failing the test (and killing the process) past the limit.
fn run(cmd: &mut Command) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let pid = child.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(RUN_LIMIT) {
        Ok(output) => output.expect("the binary runs"),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("soc-runtime did not finish within {RUN_LIMIT:?}");
        }
    }
}

/// `run --until-idle --http off` over `feed`, returning the output and the JSON summary.
fn run_feed(
    dir: &Path,
    feed: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Output, serde_json::Value) {
    let json = dir.join(format!("summary-{}.json", fastrand::u32(..)));
    let mut cmd = soc();
    cmd.args(["run", "--until-idle", "--http", "off"])
        .arg("--alerts")
        .arg(feed)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--summary-json")
        .arg(&json)
        .args(extra)
        .envs(env.iter().copied());
    let out = run(&mut cmd);
    let summary = std::fs::read_to_string(&json)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(serde_json::Value::Null);
    (out, summary)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn summary(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A read-only view of a Redis bus namespace.
async fn redis_bus(url: &str, namespace: &str) -> Bus {
    let (writer, _queue) = bridge::queue(1);
    let config = BusConfig {
        namespace: namespace.to_owned(),
        ..BusConfig::default()
    };
    Bus::redis(url, config, writer).await.unwrap()
}

#[test]
fn help_explains_the_commands_flags_and_environment() {
    let out = run(soc().arg("--help"));
    assert!(out.status.success());
    let help = text(&out.stdout);
    for needle in [
        "run",
        "bench",
        "--alerts",
        "--bus",
        "--redis-url",
        "--data-dir",
        "--until-idle",
        "--summary-json",
        "--http",
        "SOC_REDIS_URL",
        "Exit status",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
    let out = run(soc().args(["bench", "bus", "--help"]));
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("--events"));
}

/// `bench memory --cases 0` has nothing to fold or recall: refused with exit 2 (it panicked
/// picking a ticket to recall).
#[test]
fn bench_memory_refuses_zero_cases() {
    let out = run(soc().args(["bench", "memory", "--cases", "0"]));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--cases"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_input_gets_a_clear_error_and_exit_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("soc.toml");
    std::fs::write(&config, "[bus]\nbakend = \"redis\"\n").unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = busy.local_addr().unwrap().to_string();
    let dead_redis = format!("redis://127.0.0.1:{}", common::free_port());
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--alerts", "/nonexistent/feed.jsonl"],
            "cannot open alerts file /nonexistent/feed.jsonl",
        ),
        (vec!["--config", config.to_str().unwrap()], "bakend"),
        (
            vec!["--bus", "redis", "--redis-url", &dead_redis],
            "is redis-server running?",
        ),
        (vec!["--http", &busy], "cannot listen on"),
        (vec!["--http", "localhost"], "http.addr `localhost`"),
        (vec!["--bus", "kafka"], "invalid value 'kafka'"),
    ];
    for (args, expected) in cases {
        let out = run(soc()
            .args(["run", "--until-idle", "--data-dir", data])
            .args(&args));
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{args:?}: expected `{expected}` in:\n{stderr}"
        );
    }
}

#[test]
fn malformed_lines_are_reported_with_their_line_numbers_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(common::synthetic_feed(dir.path(), "m", 3)).unwrap();
    let lines: Vec<&str> = good.lines().collect();
    let feed = dir.path().join("mixed.jsonl");
    std::fs::write(
        &feed,
        format!(
            "{}\n{{not json\n{}\n{}\n{}\n",
            lines[0], lines[1], r#"{"ticket_id":"x"}"#, lines[2]
        ),
    )
    .unwrap();
    let (out, s) = run_feed(dir.path(), &feed, &[], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(s["alerts_in"], 3);
    assert_eq!(s["malformed_lines"], 2);
    let lines: Vec<u64> = s["malformed_examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [2, 4]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("line 2: invalid JSON"), "{stdout}");
    // The last run's summary is also kept in the data dir.
    assert!(dir.path().join("data/last-run.json").exists());
}

#[test]
fn a_feed_that_breaks_off_fails_the_run_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let whole = std::fs::read(common::dev_tickets()).unwrap();
    let feed = dir.path().join("truncated.jsonl.gz");
    std::fs::write(&feed, &whole[..whole.len() / 2]).unwrap();
    let (out, s) = run_feed(dir.path(), &feed, &[], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        s["alerts_in"].as_u64().unwrap() > 0,
        "what was read was processed"
    );
    let error = s["feed_error"].as_str().unwrap();
    assert!(
        error.contains("reading the feed failed after line"),
        "{error}"
    );
    assert!(text(&out.stdout).contains("FEED ERROR"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_feed_neither_blocks_startup_nor_exit() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("feed.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let url = common::redis_url();
    let namespace = common::Namespace::new(&url, "cli-fifo");
    let ns = namespace.name().to_owned();
    let json = dir.path().join("summary.json");
    let mut cmd = soc();
    cmd.args([
        "run",
        "--http",
        "off",
        "--bus",
        "redis",
        "--redis-url",
        &url,
    ])
    .arg("--alerts")
    .arg(&fifo)
    .arg("--data-dir")
    .arg(dir.path().join("data"))
    .arg("--summary-json")
    .arg(&json)
    .env("SOC_BUS_NAMESPACE", &ns);
    // Starts although no writer has opened the FIFO yet.
    let child = spawn_running(&mut cmd);
    let lines = std::fs::read_to_string(common::synthetic_feed(dir.path(), "f", 3)).unwrap();
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    std::io::Write::write_all(&mut writer, lines.as_bytes()).unwrap();
    // Lines are processed as they come, although the stream has not ended.
    let bus = redis_bus(&url, &ns).await;
    common::wait_for(
        "the streamed alerts triaged",
        Duration::from_secs(60),
        || async { (bus.len(Topic::Triage).await.unwrap() == 3).then_some(()) },
    )
    .await;
    // The writer stays open, so the reader thread is blocked in read(): exit must not wait.
    signal(&child, "-TERM");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "exit status {:?}", out.status);
    assert_eq!(summary(&json)["alerts_in"], 3);
    drop(writer);
}

fn dev_run(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let (out, summary) = run_feed(dir, &common::dev_tickets(), extra, env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    summary
}

fn assert_dev_summary(s: &serde_json::Value) {
    assert_eq!(s["alerts_in"], 9869);
    assert_eq!(s["malformed_lines"], 0);
    assert_eq!(s["roles"]["sentinel"]["processed"], 9869);
    assert_eq!(s["roles"]["sentinel"]["committed"], 9869);
    assert_eq!(s["dead_lettered"], 0);
    let escalated = s["escalated"].as_u64().unwrap();
    assert!(escalated > 0 && escalated < 9869, "escalated {escalated}");
    // The whole chain for every escalated case: an IR plan, then Threat Intel's report.
    assert_eq!(s["roles"]["ir_lead"]["processed"].as_u64(), Some(escalated));
    assert_eq!(
        s["roles"]["threat_intel"]["processed"].as_u64(),
        Some(escalated)
    );
    assert!(s["elapsed_s"].as_f64().unwrap() > 0.0);
    assert_eq!(s["exit"]["reason"], "idle");
}

#[test]
fn the_dev_tickets_run_until_idle_on_memory_and_the_calendar_roles_report_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = dev_run(dir.path(), &[], &[]);
    assert_dev_summary(&s);
    let report = |role: &str| {
        let o = run(soc()
            .args(["report", role, "--window", "1h", "--json", "--data-dir"])
            .arg(dir.path().join("data")));
        assert!(o.status.success(), "{}", text(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    // The detection engineer names the noisiest benign rules with counts: ClamAV updates on
    // the mail servers lead (2,218 tickets in the dev set, none escalated by anyone).
    let tuning = &report("detection_eng")["body"];
    let noisy = tuning["noisy_rules"].as_array().unwrap();
    assert!(noisy.len() >= 5, "{tuning}");
    assert_eq!(noisy[0]["rule_id"], "W-Sys-Cav", "{}", noisy[0]);
    assert_eq!(noisy[0]["fired"], 2218);
    assert_eq!(noisy[0]["closed"], 2218);
    assert!(
        noisy[0]["recommendation"]
            .as_str()
            .unwrap()
            .contains("suppress")
    );
    assert_eq!(noisy[0]["sample_tickets"].as_array().unwrap().len(), 3);
    assert!(
        tuning["report_id"]
            .as_str()
            .unwrap()
            .starts_with("detection_eng:")
    );
    // The shift summary counts what the run did.
    let shift = &report("soc_manager")["body"];
    assert_eq!(shift["alerts"], 9869);
    assert_eq!(shift["escalated"], s["escalated"]);
    assert_eq!(
        shift["closed"].as_u64().unwrap() + shift["escalated"].as_u64().unwrap(),
        9869
    );
    assert_eq!(shift["actions_proposed"], s["actions_proposed"]);
    // The hunter finds hosts escalated again and again, and closed tickets beside them.
    let hunt = &report("threat-hunter")["body"];
    let titles: Vec<&str> = hunt["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["title"].as_str().unwrap())
        .collect();
    assert!(titles.iter().any(|t| t.contains("escalated")), "{titles:?}");
    assert!(
        titles.iter().any(|t| t.contains("closed tickets next to")),
        "{titles:?}"
    );
    // The campaign detector prints its campaigns as an array; each ties three or more cases.
    // The dev tickets carry no public IP, domain or hash, so nothing ties cases into a
    // campaign (the clustering itself is tested with planted campaigns in tests/memory.rs and
    // calendar's unit tests); it must still have read the whole run's audit.
    let campaigns = report("campaign_detector");
    assert_eq!(campaigns, serde_json::json!([]), "{campaigns}");
    let o = run(soc()
        .args([
            "report",
            "campaign_detector",
            "--window",
            "1h",
            "--data-dir",
        ])
        .arg(dir.path().join("data")));
    let said = text(&o.stdout);
    let events: u64 = said
        .split("no campaign among the ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{said}"));
    assert!(events >= 9869 * 2, "{said}");
    // Its scheduled window (06:00 or 18:00 New York, 12 h; 06:00 EST is 11:00 UTC) ended long
    // before this run: nothing in it.
    let o = run(soc()
        .args([
            "report",
            "threat-hunter",
            "--json",
            "--at",
            "2020-01-01T12:00:00Z",
            "--data-dir",
        ])
        .arg(dir.path().join("data")));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let old: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        old["body"]["report_id"],
        "threat_hunter:2020-01-01T11:00:00+00:00"
    );
    assert!(old["body"]["findings"].as_array().unwrap().is_empty());
    let bad = run(soc().args(["report", "threat-hunter", "--at", "yesterday"]));
    assert_eq!(bad.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_tickets_run_until_idle_on_redis_and_a_rerun_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::redis_url();
    let namespace = common::Namespace::new(&url, "cli-dev");
    let ns = namespace.name().to_owned();
    let env = [("SOC_BUS_NAMESPACE", ns.as_str())];
    let args = ["--bus", "redis", "--redis-url", url.as_str()];
    let first = dev_run(dir.path(), &args, &env);
    assert_dev_summary(&first);
    assert_eq!(first["bus"], "redis");
    // The calendar roles caught up on their latest windows (soc_manager's 8 h and
    // threat_hunter's 12 h windows always ended less than a window ago).
    let reports = redis_bus(&url, &ns)
        .await
        .len(Topic::Reports)
        .await
        .unwrap();
    assert!(reports >= 2, "{reports} reports");
    let again = dev_run(dir.path(), &args, &env);
    assert_eq!(again["alerts_in"], 0);
    assert_eq!(again["duplicates_dropped"], 9869);
    assert_eq!(again["escalated"], 0);
    let bus = redis_bus(&url, &ns).await;
    assert_eq!(bus.len(Topic::Alerts).await.unwrap(), 9869);
    // The rerun's catch-up found its windows already reported: nothing new.
    assert_eq!(bus.len(Topic::Reports).await.unwrap(), reports);
    let counts = common::audit_counts(&bus).await;
    let triaged = counts.keys().filter(|(k, _)| k == "AlertTriaged").count();
    assert_eq!(triaged, 9869);
    assert!(counts.values().all(|n| *n == 1 || *n <= 4));
}

/// Spawns `soc-runtime run` and waits until it logs that it is running.
fn spawn_running(cmd: &mut Command) -> Child {
    let mut child = cmd
        .env("SOC_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = lines.next().expect("running line").unwrap();
        if line.contains("soc-runtime running") {
            break;
        }
        assert!(Instant::now() < deadline, "no running line");
    }
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    child
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_cleanly_leaving_nothing_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::redis_url();
    let namespace = common::Namespace::new(&url, "cli-term");
    let ns = namespace.name().to_owned();
    let feed = common::synthetic_feed(dir.path(), "term", 3000);
    let mut cmd = soc();
    cmd.args([
        "run",
        "--bus",
        "redis",
        "--redis-url",
        &url,
        "--http",
        "127.0.0.1:0",
    ])
    .arg("--alerts")
    .arg(&feed)
    .arg("--data-dir")
    .arg(dir.path().join("data"))
    .env("SOC_BUS_NAMESPACE", &ns);
    let child = spawn_running(&mut cmd);
    let bus = redis_bus(&url, &ns).await;
    common::wait_for("some triage", Duration::from_secs(60), || async {
        (bus.len(Topic::Triage).await.unwrap() > 100).then_some(())
    })
    .await;
    signal(&child, "-TERM");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "exit status {:?}", out.status);
    assert!(text(&out.stdout).contains("stopped on request"));
    let groups: Vec<(Topic, &str)> = REACTIVE_ROLES.iter().map(|r| (r.input, r.name)).collect();
    for state in bus.group_states(&groups).await.unwrap() {
        assert_eq!(state.pending, 0, "in flight after SIGTERM: {state:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_then_restart_until_idle_keeps_exactly_once() {
    let n = 5000;
    let redis = common::RedisServer::start(true);
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap();
    let feed = common::synthetic_feed(dir.path(), "kill", n);
    // No claiming by idle time: only taking over the dead process's consumers (its pid is
    // gone) can recover what it had read and not committed.
    let config = dir.path().join("soc.toml");
    std::fs::write(&config, "[bus.settings]\nclaim_idle_ms = 3600000\n").unwrap();
    let base = |cmd: &mut Command| {
        cmd.args([
            "run",
            "--bus",
            "redis",
            "--redis-url",
            &url,
            "--http",
            "off",
        ])
        .arg("--alerts")
        .arg(&feed)
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"));
    };
    let bus = redis_bus(&url, "").await;

    let mut first = soc();
    base(&mut first);
    let mut child = spawn_running(&mut first);
    let at_kill = common::wait_for("triage under way", Duration::from_secs(60), || async {
        let n = bus.len(Topic::Triage).await.unwrap();
        (n >= 300).then_some(n)
    })
    .await;
    child.kill().unwrap(); // SIGKILL: no drain, no flush
    child.wait().unwrap();
    let triaged_at_kill = bus.len(Topic::Triage).await.unwrap();
    assert!(
        triaged_at_kill < n as u64,
        "the run finished before the kill ({at_kill} triaged); the test proves nothing"
    );

    let json = dir.path().join("second.json");
    let mut second = soc();
    base(&mut second);
    let out = run(second.arg("--until-idle").arg("--summary-json").arg(&json));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = summary(&json);
    assert!(
        s["duplicates_dropped"].as_u64().unwrap() > 0,
        "the feed was re-read"
    );
    let redone = s["roles"]["sentinel"]["committed"].as_u64().unwrap();
    assert!(
        redone < n as u64,
        "the killed run's triage persisted ({redone} redone)"
    );
    assert_eq!(
        s["alerts_in"].as_u64().unwrap() + s["duplicates_dropped"].as_u64().unwrap(),
        n as u64
    );
    common::assert_exactly_once(&bus, &common::ticket_ids("kill", n)).await;

    // The verdict store the two runs projected (the first killed mid-run, its projector with
    // it) holds one triage per alert, and equals a rebuild from the audit.
    let verdicts = |path: std::path::PathBuf| async move {
        let store = soc_runtime::store::Store::open(&path).await.unwrap();
        let rows = store.verdicts().await.unwrap();
        store.close().await;
        rows
    };
    let live = verdicts(dir.path().join("data").join("soc.db")).await;
    let triaged = live.iter().filter(|v| v.kind == "AlertTriaged").count();
    assert_eq!(triaged, n, "one triage verdict per alert");
    assert!(s["store"]["projected"]["rows"].as_u64().unwrap() > 0);
    let rebuilt_dir = dir.path().join("rebuilt");
    let out = run(soc()
        .args(["memory", "rebuild", "--redis-url", &url, "--data-dir"])
        .arg(&rebuilt_dir));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("verdict rows"),
        "{}",
        text(&out.stdout)
    );
    let rebuilt = verdicts(rebuilt_dir.join("soc.db")).await;
    assert_eq!(live.len(), rebuilt.len());
    assert!(live == rebuilt, "the live verdicts differ from the rebuild");
    // Case memory too: every row of every projected table.
    let live = common::dump_store(&dir.path().join("data").join("soc.db")).await;
    let rebuilt = common::dump_store(&rebuilt_dir.join("soc.db")).await;
    assert!(live.len() > 4 * n, "{} rows", live.len());
    assert_eq!(live.len(), rebuilt.len());
    let differing: Vec<_> = live
        .iter()
        .zip(&rebuilt)
        .filter(|(a, b)| a != b)
        .take(3)
        .collect();
    assert!(
        differing.is_empty(),
        "the live store differs from the rebuild: {differing:?}"
    );
}

#[test]
fn backtest_scores_the_dev_tickets_per_site_and_gates_on_a_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("summary.json");
    let report = dir.path().join("report.html");
    let output = run(soc()
        .arg("backtest")
        .arg("--tickets")
        .arg(common::dev_tickets())
        .arg("--out")
        .arg(&out)
        .arg("--report")
        .arg(&report));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("precision") && stdout.contains("santos"),
        "{stdout}"
    );
    let s = summary(&out);
    // 9,869 tickets, 279 of them escalated by the analysts (the dataset's README).
    assert_eq!(s["tickets"], 9869);
    let c = &s["confusion"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap();
    assert_eq!(n(&c["tp"]) + n(&c["fp"]) + n(&c["fn"]) + n(&c["tn"]), 9869);
    assert_eq!(n(&c["tp"]) + n(&c["fn"]), 279);
    let sites = s["per_site"].as_object().unwrap();
    assert_eq!(sites.len(), 5);
    let site_total: u64 = sites.values().map(|v| n(&v["tickets"])).sum();
    assert_eq!(site_total, 9869);
    for key in ["precision", "recall", "f1", "elapsed_s"] {
        assert!(s[key].is_number(), "{key}: {s}");
    }
    assert_eq!(
        n(&s["roles"]["sentinel"]["engaged"]),
        9869,
        "sentinel triaged every ticket"
    );
    // The report shows the same figures, self-contained.
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(
        html.contains(&format!("<td class=\"tp\">{}</td>", n(&c["tp"]))),
        "{html}"
    );
    assert!(html.contains(&format!("<td class=\"tn\">{}</td>", n(&c["tn"]))));
    for site in sites.keys() {
        assert!(html.contains(&format!("<th>{site}</th>")), "{site}");
    }
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external assets"
    );

    // One site, and the gate: a run passes its own baseline and fails a better one.
    let site = |baseline: &Path| {
        run(soc()
            .args(["backtest", "--sites", "santos", "--tickets"])
            .arg(common::dev_tickets())
            .arg("--baseline")
            .arg(baseline))
    };
    let santos_out = dir.path().join("santos.json");
    let santos = run(soc()
        .args(["backtest", "--sites", "santos", "--tickets"])
        .arg(common::dev_tickets())
        .arg("--out")
        .arg(&santos_out));
    assert!(santos.status.success());
    assert_eq!(summary(&santos_out)["tickets"], 1911);
    assert_eq!(
        site(&santos_out).status.code(),
        Some(0),
        "a run passes its own baseline"
    );
    let mut santos_better = summary(&santos_out);
    santos_better["recall"] = serde_json::json!(santos_better["recall"].as_f64().unwrap() + 0.2);
    let better_path = dir.path().join("better.json");
    std::fs::write(&better_path, santos_better.to_string()).unwrap();
    let gated = site(&better_path);
    assert_eq!(gated.status.code(), Some(1));
    assert!(
        text(&gated.stderr).contains("recall fell"),
        "{}",
        text(&gated.stderr)
    );

    // Bad input: a file without labels is refused with its line number.
    let unlabelled = dir.path().join("unlabelled.jsonl");
    std::fs::write(&unlabelled, "{\"ticket_id\":\"x-1\",\"site\":\"x\"}\n").unwrap();
    let bad = run(soc().arg("backtest").arg("--tickets").arg(&unlabelled));
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("line 1") && text(&bad.stderr).contains("ground_truth"));
}

#[test]
fn leave_one_site_out_estimates_judgment_on_unseen_sites_without_seeing_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("loso.json");
    // As the measurement runs: the vendors' rulesets from the config, the analysts' feedback
    // four hours after each ticket; every parameter fitted inside each fold.
    let output = run(soc()
        .args(["backtest", "--leave-one-site-out", "--feedback-delay", "4h"])
        .arg("--config")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("ops/backtest-ait-ads.toml"))
        .arg("--tickets")
        .arg(common::dev_tickets())
        .arg("--out")
        .arg(&out)
        .current_dir(env!("CARGO_MANIFEST_DIR")));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let s = summary(&out);
    assert_eq!(s["tickets"], 9869);
    assert_eq!(s["selection"]["leave_one_site_out"], true);
    assert_eq!(s["priors"]["replays"], 5);
    // Each of the five replays had the other four sites as history, and fitted on them.
    assert_eq!(s["priors"]["history_tickets"], 4 * 9869);
    let fits = s["priors"]["fits"].as_array().unwrap();
    assert_eq!(fits.len(), 5);
    assert!(
        fits.iter()
            .all(|f| f.as_str().unwrap().contains("fitted on")),
        "{fits:?}"
    );
    let f = |k: &str| s[k].as_f64().unwrap();
    // A regression floor under the estimate the README reports (F1 0.84, recall 0.83).
    assert!(f("f1") >= 0.78 && f("recall") >= 0.78, "{s}");
    assert_eq!(s["per_site"].as_object().unwrap().len(), 5);
    // Calibrated: better than always saying the base rate, with a reliability table.
    let c = &s["calibration"];
    assert!(
        c["brier"].as_f64().unwrap() < c["brier_base_rate"].as_f64().unwrap(),
        "{c}"
    );
    assert_eq!(c["bins"].as_array().unwrap().len(), 10);
    assert_eq!(s["cold_start"].as_array().unwrap().len(), 4);

    // The same backtest on the cases the runtime groups the raw alerts into, labelled by the
    // ticket with the same grouping key: the same matrix on every site.
    let grouped_out = dir.path().join("grouped.json");
    let output = run(soc()
        .args(["backtest", "--leave-one-site-out", "--feedback-delay", "4h"])
        .arg("--config")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("ops/backtest-ait-ads.toml"))
        .arg("--alerts")
        .arg(common::datasets_dir().join("ait-ads/alerts-dev.csv.gz"))
        .arg("--labels")
        .arg(common::dev_tickets())
        .arg("--out")
        .arg(&grouped_out)
        .current_dir(env!("CARGO_MANIFEST_DIR")));
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("into 9869 cases, 9869 of them labelled"),
        "{}",
        text(&output.stderr)
    );
    let g = summary(&grouped_out);
    for key in [
        "tickets",
        "confusion",
        "per_site",
        "calibration",
        "cold_start",
    ] {
        assert_eq!(g[key], s[key], "{key}");
    }

    // A history holding the replayed tickets themselves gives them nothing: they are left
    // out of it, so the run equals one without history.
    let shaw_only = dir.path().join("shaw.jsonl");
    {
        use std::io::{BufRead, Write};
        let gz = std::io::BufReader::new(flate2::read::MultiGzDecoder::new(
            std::fs::File::open(common::dev_tickets()).unwrap(),
        ));
        let mut out = std::fs::File::create(&shaw_only).unwrap();
        for line in gz.lines().map(Result::unwrap) {
            if line.contains(r#""site":"shaw""#) {
                writeln!(out, "{line}").unwrap();
            }
        }
    }
    let plain = dir.path().join("plain.json");
    let same = dir.path().join("same.json");
    for (path, extra) in [(&plain, None), (&same, Some(&shaw_only))] {
        let mut cmd = soc();
        cmd.args(["backtest", "--sites", "shaw", "--tickets"])
            .arg(common::dev_tickets())
            .arg("--out")
            .arg(path);
        if let Some(h) = extra {
            cmd.arg("--history").arg(h);
        }
        let o = run(&mut cmd);
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
    let (plain, same) = (summary(&plain), summary(&same));
    assert_eq!(same["priors"]["history_tickets"], 0);
    assert_eq!(plain["confusion"], same["confusion"]);

    // Feedback is deterministic (each disposition counts only from its time), and reported.
    let runs: Vec<serde_json::Value> = (0..2)
        .map(|i| {
            let path = dir.path().join(format!("feedback-{i}.json"));
            let o = run(soc()
                .args([
                    "backtest",
                    "--sites",
                    "santos",
                    "--feedback-delay",
                    "4h",
                    "--tickets",
                ])
                .arg(common::dev_tickets())
                .arg("--out")
                .arg(&path));
            assert!(o.status.success(), "{}", text(&o.stderr));
            summary(&path)
        })
        .collect();
    assert_eq!(runs[0]["confusion"], runs[1]["confusion"]);
    assert_eq!(runs[0]["priors"]["feedback_delay_s"], 14400.0);
    // A zero delay would let a ticket count its own disposition: refused.
    let zero = run(soc()
        .args(["backtest", "--feedback-delay", "0s", "--tickets"])
        .arg(common::dev_tickets()));
    assert_eq!(zero.status.code(), Some(2));
    assert!(
        text(&zero.stderr).contains("longer than zero"),
        "{}",
        text(&zero.stderr)
    );
    let bad = run(soc()
        .args(["backtest", "--feedback-delay", "soon", "--tickets"])
        .arg(common::dev_tickets()));
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("--feedback-delay"),
        "{}",
        text(&bad.stderr)
    );
    let bad = run(soc()
        .args(["backtest", "--precedent", "maybe", "--tickets"])
        .arg(common::dev_tickets()));
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("on or off"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn a_dry_run_sends_the_riskier_alerts_through_the_model_path_to_a_canned_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dry.json");
    let o = run(soc()
        .args(["backtest", "--sites", "santos", "--dry-run", "--tickets"])
        .arg(common::dev_tickets())
        .arg("--out")
        .arg(&out));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let s = summary(&out);
    assert_eq!(s["tickets"], 1911);
    assert_eq!(s["priors"]["model"], "canned (dry run)");
    let sentinel = &s["roles"]["sentinel"];
    let by_model = sentinel["reasoners"]["llm"].as_u64().unwrap_or(0);
    let by_rules = sentinel["reasoners"]["rules"].as_u64().unwrap_or(0);
    // Hybrid: the riskier alerts go to the model, the rest stay with rules.
    assert!(by_model > 0 && by_rules > 0, "{sentinel}");
    assert_eq!(by_model + by_rules, 1911);
    // One chat request per model decision (the canned answers validate, also while tools
    // are on offer: no repairs).
    let model_decisions: u64 = s["roles"]
        .as_object()
        .unwrap()
        .values()
        .map(|r| r["reasoners"]["llm"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        s["priors"]["model_requests"].as_u64().unwrap(),
        model_decisions
    );
    assert!(sentinel["tokens_in"].as_u64().unwrap() > 0);
    // A model configuration is the dry run's own.
    let both = run(soc()
        .args([
            "backtest",
            "--dry-run",
            "--config",
            "ops/soc.example.toml",
            "--tickets",
        ])
        .arg(common::dev_tickets()));
    assert_eq!(both.status.code(), Some(2), "{}", text(&both.stderr));
}

#[test]
fn case_memory_commands_read_the_last_runs_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let before = run(soc()
        .args(["case", "why", "cm-00001", "--data-dir"])
        .arg(&data));
    assert_eq!(before.status.code(), Some(2), "no store yet");
    assert!(
        text(&before.stderr).contains("no store"),
        "{}",
        text(&before.stderr)
    );

    let feed = common::synthetic_feed(dir.path(), "cm", 300);
    let (out, summary) = run_feed(dir.path(), &feed, &[], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(summary["store"]["projected"]["errors"], 0);

    let why = run(soc()
        .args(["case", "why", "cm-00007", "--data-dir"])
        .arg(&data));
    assert!(why.status.success(), "{}", text(&why.stderr));
    let trace = text(&why.stdout);
    assert!(
        trace.contains("AlertReceived") && trace.contains("AlertTriaged"),
        "{trace}"
    );
    // An escalated case tells the whole story: the plan's steps with their evidence, the
    // proposals, each step at its alert time, and each cited text once.
    let escalated: String = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = soc_runtime::store::Store::open(&data.join("soc-memory.db"))
            .await
            .unwrap();
        let (ticket,): (String,) =
            sqlx::query_as("SELECT ticket FROM proposals ORDER BY ticket LIMIT 1")
                .fetch_one(store.pool())
                .await
                .unwrap();
        store.close().await;
        ticket
    });
    let why = run(soc()
        .args(["case", "why", &escalated, "--data-dir"])
        .arg(&data));
    assert!(why.status.success(), "{}", text(&why.stderr));
    let story = text(&why.stdout);
    for part in [
        "IR plan (SEV-",
        "      because ",
        "proposed block_ip on 203.0.113.",
        "IRPlan",
    ] {
        assert!(story.contains(part), "{part:?} missing from:\n{story}");
    }
    let role_lines: Vec<&str> = story
        .lines()
        .filter(|l| l.contains("sentinel") || l.contains("ir_lead"))
        .collect();
    assert!(!role_lines.is_empty());
    assert!(
        role_lines
            .iter()
            .all(|l| l.trim_start().starts_with("2026-01-01T00:05:00Z")),
        "steps in alert time:\n{story}"
    );
    let why_json = run(soc()
        .args(["case", "why", &escalated, "--json", "--data-dir"])
        .arg(&data));
    let view: serde_json::Value = serde_json::from_slice(&why_json.stdout).unwrap();
    assert!(!view["plan"]["containment"].as_array().unwrap().is_empty());
    assert!(
        !view["plan"]["containment"][0]["evidence"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(!view["proposals"].as_array().unwrap().is_empty());
    let triage = view["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "AlertTriaged")
        .unwrap();
    let rationale = triage["details"][0].as_str().unwrap();
    assert_eq!(
        story.matches(rationale).count(),
        1,
        "the triage's rationale is printed once:\n{story}"
    );

    // cm-00257 shares host-2 with other cases (hosts repeat every 17 tickets).
    let recall = run(soc()
        .args(["case", "recall", "cm-00257", "--json", "--data-dir"])
        .arg(&data));
    assert!(recall.status.success(), "{}", text(&recall.stderr));
    let found: serde_json::Value = serde_json::from_slice(&recall.stdout).unwrap();
    let found = found.as_array().unwrap();
    assert!(!found.is_empty());
    assert!(
        found.iter().all(|r| r["ticket"] != "cm-00257"),
        "not itself"
    );
    assert!(
        found
            .iter()
            .all(|r| !r["shared"].as_array().unwrap().is_empty()),
        "each says why"
    );

    let campaigns = run(soc().args(["campaigns", "--json", "--data-dir"]).arg(&data));
    assert!(campaigns.status.success(), "{}", text(&campaigns.stderr));
    assert!(
        serde_json::from_slice::<serde_json::Value>(&campaigns.stdout)
            .unwrap()
            .is_array()
    );

    let unknown = run(soc().args(["case", "why", "nope", "--data-dir"]).arg(&data));
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown.stderr).contains("no case nope"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_dispositions_score_the_roles_trends() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A labelled feed: the run ignores the labels; the import records them.
    let feed = common::synthetic_feed(dir.path(), "tr", 400);
    let labelled = dir.path().join("labelled.jsonl");
    let mut out = std::fs::File::create(&labelled).unwrap();
    for (i, line) in std::fs::read_to_string(&feed).unwrap().lines().enumerate() {
        let truth = if i % 7 == 0 { "escalate" } else { "close" };
        let line = line.trim_end_matches('}');
        writeln!(out, r#"{line},"ground_truth":"{truth}"}}"#).unwrap();
    }
    drop(out);
    let (run_out, _) = run_feed(dir.path(), &labelled, &[], &[]);
    assert!(run_out.status.success(), "{}", text(&run_out.stderr));

    let import = run(soc()
        .args(["memory", "import", "--tickets"])
        .arg(&labelled)
        .arg("--data-dir")
        .arg(&data));
    assert!(import.status.success(), "{}", text(&import.stderr));
    assert!(
        text(&import.stdout).contains("recorded 400"),
        "{}",
        text(&import.stdout)
    );

    let trends = run(soc()
        .args(["memory", "trends", "--json", "--data-dir"])
        .arg(&data));
    assert!(trends.status.success(), "{}", text(&trends.stderr));
    let trends: serde_json::Value = serde_json::from_slice(&trends.stdout).unwrap();
    let sentinel = trends
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["role"] == "sentinel")
        .unwrap()
        .clone();
    assert_eq!(sentinel["decisions"], 400);
    assert_eq!(sentinel["judged"], 400);

    // The same agreement, counted here from the verdict store's rows.
    let store = soc_runtime::store::Store::open(&data.join(soc_runtime::store::MEMORY_FILE))
        .await
        .unwrap();
    let rows = store.verdicts().await.unwrap();
    store.close().await;
    let triage: Vec<_> = rows.iter().filter(|r| r.kind == "AlertTriaged").collect();
    assert!(
        triage.iter().all(|r| r.ground_truth.is_some()),
        "every verdict shows its label"
    );
    let agreed = triage
        .iter()
        .filter(|r| {
            (r.verdict == "true_positive") == (r.ground_truth.as_deref() == Some("escalate"))
        })
        .count();
    assert_eq!(sentinel["agreed"], agreed as u64);
    let accuracy = sentinel["accuracy"].as_f64().unwrap();
    assert!((accuracy - agreed as f64 / 400.0).abs() < 1e-9);

    // The next run starts from those dispositions: the rules reasoner's priors (a new
    // in-memory run starts a new projection, and keeps what was imported).
    let (again, _) = run_feed(dir.path(), &feed, &[], &[]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    let store = soc_runtime::store::Store::open(&data.join(soc_runtime::store::MEMORY_FILE))
        .await
        .unwrap();
    assert_eq!(store.dispositions().await.unwrap().len(), 400);
    // The import queued each as a `DispositionRecorded`; the run put them all on the bus.
    let (queued, unsent): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(*) - COUNT(sent_ms) FROM outbox \
         WHERE dedupe_key LIKE 'disposition:%:history'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!((queued, unsent), (400, 0));
    let rationales: Vec<(String,)> = sqlx::query_as(
        "SELECT json_extract(body, '$.body.rationale') FROM case_events \
         WHERE kind = 'AlertTriaged'",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    store.close().await;
    assert_eq!(rationales.len(), 400);
    // Each triage cites the site's own dispositions of its rule, as imported.
    let cited = |rule: usize| {
        let (mut e, mut n) = (0, 0);
        for i in (rule..400).step_by(common::RULES.len()) {
            n += 1;
            e += usize::from(i % 7 == 0);
        }
        format!("rule@site R{rule}: {e} of {n} escalated")
    };
    let citing = (0..common::RULES.len())
        .map(|r| {
            let text = cited(r);
            rationales.iter().filter(|(x,)| x.contains(&text)).count()
        })
        .sum::<usize>();
    assert_eq!(citing, 400, "{:?}", rationales.first());
}

#[test]
fn approvers_hash_password_makes_a_hash_the_config_accepts() {
    use std::io::Write;
    let hash_of = |input: &str| {
        let mut child = soc()
            .args(["approvers", "hash-password"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    // NIST SP 800-63B's manner: long enough, not common, no composition rules.
    for (weak, why) in [
        ("short\n", "at least 12"),
        ("eleven char\n", "at least 12"),
        ("password1234\n", "common or easily guessed"),
        ("aaaaaaaaaaaaaaaa\n", "common or easily guessed"),
    ] {
        let refused = hash_of(weak);
        assert!(!refused.status.success(), "{weak:?} was accepted");
        assert!(
            text(&refused.stderr).contains(why),
            "{weak:?}: {}",
            text(&refused.stderr)
        );
        assert!(text(&refused.stdout).is_empty(), "no hash for {weak:?}");
    }
    let out = hash_of("tulip quarry anchor violet\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let hash = text(&out.stdout).trim().to_owned();
    assert!(soc_runtime::approvals::verify_password(
        "tulip quarry anchor violet",
        &hash
    ));
    // The hash goes into the config as is, and the config validates.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("soc.toml");
    std::fs::write(
        &config,
        format!(
            "[[approvals.approvers]]\nname = \"ana\"\npassword_hash = \"{hash}\"\n\
             roles = [\"IR Lead On-Call\"]\n"
        ),
    )
    .unwrap();
    let parsed = soc_runtime::app::config::Config::load(Some(&config)).unwrap();
    parsed.validate().unwrap();
    let empty = hash_of("\n");
    assert_eq!(empty.status.code(), Some(2));
    assert!(text(&empty.stderr).contains("no password on stdin"));
}

/// Pending entries per consumer of `group` on `stream`, from XPENDING's summary.
async fn pending_by_consumer(url: &str, stream: &str, group: &str) -> Vec<(String, u64)> {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let reply: redis::Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query_async(&mut conn)
        .await
        .unwrap();
    let redis::Value::Array(parts) = reply else {
        return Vec::new();
    };
    let Some(redis::Value::Array(consumers)) = parts.get(3) else {
        return Vec::new();
    };
    consumers
        .iter()
        .filter_map(|c| {
            let (name, count): (String, String) = redis::from_redis_value(c.clone()).ok()?;
            Some((name, count.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_the_roles_and_a_killed_ones_pending_work_goes_to_the_other() {
    let n = 3000;
    let redis = common::RedisServer::start(false);
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap();
    let feed = common::synthetic_feed(dir.path(), "scale", n);
    // Entries idle for 1.5 s on any consumer are claimed (XAUTOCLAIM) by a live one.
    let config = dir.path().join("soc.toml");
    std::fs::write(&config, "[bus.settings]\nclaim_idle_ms = 1500\n").unwrap();
    let process = |roles: &str, name: &str| {
        let mut cmd = soc();
        cmd.args([
            "run",
            "--bus",
            "redis",
            "--redis-url",
            &url,
            "--http",
            "off",
            "--roles",
            roles,
        ])
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join(name))
        .arg("--summary-json")
        .arg(dir.path().join(format!("{name}.json")));
        cmd
    };
    let workers = "sentinel,tier2,ir_lead,threat_intel";
    let mut first = spawn_running(&mut process(workers, "w1"));
    let mut second = spawn_running(&mut process(workers, "w2"));
    let mut source = spawn_running(process("source", "source").arg("--alerts").arg(&feed));
    let bus = redis_bus(&url, "").await;

    // Stop the first worker while both workers hold entries they have read and not committed
    // (the groups are sharing the work at that moment), then kill it: no drain, no flush.
    let pid_of = |consumer: &str| consumer.split(':').nth(1).map(str::to_owned);
    let (first_pid, second_pid) = (first.id().to_string(), second.id().to_string());
    let groups = [
        ("soc.alerts", "sentinel"),
        ("soc.triage", "tier2"),
        ("soc.cases", "ir_lead"),
        ("soc.cases", "threat_intel"),
    ];
    let held = common::wait_for(
        "both workers holding pending entries",
        Duration::from_secs(60),
        || async {
            if bus.len(Topic::Triage).await.unwrap() < 200 {
                return None;
            }
            signal(&first, "-STOP");
            let (mut held, mut other) = (0, 0);
            for (stream, group) in groups {
                for (consumer, n) in pending_by_consumer(&url, stream, group).await {
                    match pid_of(&consumer) {
                        Some(p) if p == first_pid => held += n,
                        Some(p) if p == second_pid => other += n,
                        _ => {}
                    }
                }
            }
            if held == 0 || other == 0 {
                signal(&first, "-CONT");
                return None;
            }
            Some(held)
        },
    )
    .await;
    first.kill().unwrap();
    first.wait().unwrap();
    let triaged_at_kill = bus.len(Topic::Triage).await.unwrap();
    assert!(
        triaged_at_kill < n as u64,
        "the work was done before the kill; the test proves nothing"
    );

    // The second worker claims what the first held, and finishes everything.
    let role_groups: Vec<(Topic, &str)> = soc_runtime::supervisor::REACTIVE_ROLES
        .iter()
        .map(|r| (r.input, r.name))
        .collect();
    common::wait_for("all work done", Duration::from_secs(120), || async {
        let triaged = bus.len(Topic::Triage).await.unwrap();
        let idle = bus
            .group_states(&role_groups)
            .await
            .unwrap()
            .iter()
            .all(|s| s.is_idle());
        (triaged == n as u64 && idle).then_some(())
    })
    .await;
    for (stream, group) in groups {
        let left: u64 = pending_by_consumer(&url, stream, group)
            .await
            .iter()
            .filter(|(c, _)| pid_of(c).as_deref() == Some(first_pid.as_str()))
            .map(|(_, n)| n)
            .sum();
        assert_eq!(
            left, 0,
            "{group}: the killed worker's entries were not claimed"
        );
    }
    common::assert_exactly_once(&bus, &common::ticket_ids("scale", n)).await;

    // The second worker committed part of the work and finished what the first held.
    signal(&second, "-TERM");
    signal(&source, "-TERM");
    assert!(second.wait().unwrap().success());
    assert!(source.wait().unwrap().success());
    let s = summary(&dir.path().join("w2.json"));
    let by_second = s["roles"]["sentinel"]["committed"].as_u64().unwrap();
    assert!(
        by_second > 0 && by_second <= n as u64,
        "the second worker triaged {by_second} of {n}; the first held {held} entries at its kill"
    );
    eprintln!(
        "scale-out: the first worker held {held} entries when killed, {triaged_at_kill} of {n} \
         triaged by then; the second worker triaged {by_second}"
    );
    let src = summary(&dir.path().join("source.json"));
    assert_eq!(src["alerts_in"].as_u64().unwrap(), n as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_is_one_trace_across_two_processes_and_every_role() {
    let (endpoint, spans, _receiver) = common::otlp_receiver().await;
    let redis = common::RedisServer::start(false);
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap();
    let feed = common::synthetic_feed(dir.path(), "tr", 6);
    let process = |roles: &str, name: &str| {
        let mut cmd = soc();
        cmd.args([
            "run",
            "--bus",
            "redis",
            "--redis-url",
            &url,
            "--http",
            "off",
        ])
        .args(["--roles", roles])
        .arg("--data-dir")
        .arg(dir.path().join(name))
        .env("SOC_OTLP_ENDPOINT", &endpoint);
        cmd
    };
    let mut front = spawn_running(
        process("source,sentinel,tier2", "front")
            .arg("--alerts")
            .arg(&feed),
    );
    let mut back = spawn_running(&mut process("ir_lead,threat_intel", "back"));
    let bus = redis_bus(&url, "").await;
    // Wait for an escalated case to be attributed by Threat Intel (the last role).
    let (ticket, trace) =
        common::wait_for("an attributed case", Duration::from_secs(60), || async {
            let envelopes: Vec<_> = bus
                .read_all(Topic::Audit)
                .await
                .unwrap()
                .into_iter()
                .filter_map(|e| e.fields.decode_envelope().ok())
                .collect();
            let ticket = envelopes
                .iter()
                .find(|e| matches!(e.event, soc_runtime::proto::Event::ThreatIntelReport(_)))?
                .correlation_id
                .clone();
            let received = envelopes.iter().find(|e| {
                e.correlation_id == ticket
                    && matches!(e.event, soc_runtime::proto::Event::AlertReceived(_))
            })?;
            let tp = soc_runtime::proto::Traceparent::parse(received.traceparent.as_deref()?)?;
            Some((ticket, format!("{:032x}", tp.trace_id)))
        })
        .await;
    // Both processes drain on SIGTERM and flush their spans on the way out.
    signal(&front, "-TERM");
    signal(&back, "-TERM");
    assert!(front.wait().unwrap().success());
    assert!(back.wait().unwrap().success());

    let spans = spans.lock().clone();
    let trace: Vec<&common::ReceivedSpan> = spans.iter().filter(|s| s.trace_id == trace).collect();
    let names: std::collections::BTreeSet<&str> = trace.iter().map(|s| s.name.as_str()).collect();
    for name in ["ingest", "sentinel", "tier2", "ir_lead", "threat_intel"] {
        assert!(
            names.contains(name),
            "{ticket}: no {name} span in {names:?}"
        );
    }
    // One root (the ingestion); every other span's parent is in the same trace.
    let ids: std::collections::HashSet<&str> = trace.iter().map(|s| s.span_id.as_str()).collect();
    let roots: Vec<_> = trace.iter().filter(|s| s.parent.is_empty()).collect();
    assert_eq!(roots.len(), 1, "{roots:?}");
    assert_eq!(roots[0].name, "ingest");
    for s in &trace {
        assert!(
            s.parent.is_empty() || ids.contains(s.parent.as_str()),
            "orphan {s:?}"
        );
    }
    // The chain crosses the processes: triage in one, response in the other.
    let instance = |name: &str| {
        trace
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.instance.clone())
            .unwrap()
    };
    assert!(instance("sentinel").ends_with(&format!(":{}", front.id())));
    assert!(instance("ir_lead").ends_with(&format!(":{}", back.id())));
    let span = |name: &str| *trace.iter().find(|s| s.name == name).unwrap();
    assert_eq!(span("sentinel").parent, span("ingest").span_id);
    assert_eq!(span("tier2").parent, span("sentinel").span_id);
    assert_eq!(span("ir_lead").parent, span("tier2").span_id);
    assert!(
        span("ir_lead")
            .attributes
            .iter()
            .any(|(k, v)| k == "ticket" && *v == ticket)
    );
    eprintln!(
        "trace {trace_id}: {} spans from 2 processes: {names:?}",
        trace.len(),
        trace_id = trace[0].trace_id
    );
}

#[test]
fn a_collector_that_is_down_never_stops_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let feed = common::synthetic_feed(dir.path(), "down", 200);
    // Nothing listens there: every export fails.
    let closed = format!("http://127.0.0.1:{}/v1/traces", common::free_port());
    let json = dir.path().join("summary.json");
    let out = run(soc()
        .args(["run", "--until-idle", "--http", "off", "--alerts"])
        .arg(&feed)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--summary-json")
        .arg(&json)
        .env("SOC_OTLP_ENDPOINT", &closed));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = summary(&json);
    assert_eq!(s["alerts_in"], 200);
    assert_eq!(s["roles"]["sentinel"]["committed"], 200);
}

#[test]
fn roles_are_checked_and_until_idle_needs_the_source() {
    for (args, says) in [
        (
            &["--bus", "redis", "--roles", "tier2", "--until-idle"][..],
            "--until-idle needs the alert source",
        ),
        (
            &["--bus", "redis", "--roles", "tier2,janitor"][..],
            "unknown role \"janitor\"",
        ),
        (
            &["--roles", "tier2", "--http", "off"][..],
            "use --bus redis",
        ),
    ] {
        let out = run(soc().arg("run").args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(text(&out.stderr).contains(says), "{}", text(&out.stderr));
    }
}

#[test]
fn logs_are_plain_or_json_lines_and_a_bad_filter_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let feed = common::synthetic_feed(dir.path(), "logs", 20);
    // Written to a pipe (as to a file or journald): no colour codes.
    let (out, s) = run_feed(dir.path(), &feed, &[], &[("SOC_LOG", "info")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(s["alerts_in"], 20);
    let plain = text(&out.stderr);
    assert!(plain.contains("soc-runtime running"), "{plain}");
    assert!(
        !plain.contains('\u{1b}'),
        "ANSI codes in piped logs: {plain:?}"
    );

    // --log-format json (or SOC_LOG_FORMAT): every line is one JSON object.
    for how in [&["--log-format", "json"][..], &[]] {
        let env: &[(&str, &str)] = if how.is_empty() {
            &[("SOC_LOG", "info"), ("SOC_LOG_FORMAT", "json")]
        } else {
            &[("SOC_LOG", "info")]
        };
        let (out, _) = run_feed(dir.path(), &feed, how, env);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let lines: Vec<serde_json::Value> = text(&out.stderr)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
            .collect();
        assert!(
            lines
                .iter()
                .any(|l| l["fields"]["message"] == "soc-runtime running (Ctrl-C drains and stops)"),
            "{lines:?}"
        );
        assert!(lines.iter().all(|l| l["level"].is_string()));
    }

    // A filter that does not parse is refused, saying what to fix; nothing runs.
    let out = run(soc()
        .args(["run", "--until-idle", "--http", "off", "--alerts"])
        .arg(&feed)
        .env("SOC_LOG", "soc_runtime=loud"));
    assert_eq!(out.status.code(), Some(2));
    let said = text(&out.stderr);
    assert!(
        said.contains("SOC_LOG") && said.contains("soc_runtime=loud") && said.contains("info"),
        "{said}"
    );
    let out = run(soc().args(["run", "--log-format", "xml"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("json"), "{}", text(&out.stderr));
}

#[test]
fn on_redis_the_demo_feed_runs_only_when_asked() {
    let url = common::redis_url();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ns = format!("demo-{}:", fastrand::u32(..));
    // No feed on Redis: refused before anything is published, saying what to do.
    let out = run(soc()
        .args([
            "run",
            "--until-idle",
            "--http",
            "off",
            "--bus",
            "redis",
            "--redis-url",
        ])
        .arg(&url)
        .arg("--data-dir")
        .arg(&data)
        .env("SOC_BUS_NAMESPACE", &ns));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let said = text(&out.stderr);
    assert!(
        said.contains("--alerts") && said.contains("--demo"),
        "{said}"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bus = rt.block_on(redis_bus(&url, &ns));
    assert_eq!(rt.block_on(bus.len(Topic::Alerts)).unwrap(), 0);

    // Asked for: the demo feed runs there like any feed.
    let json = dir.path().join("summary.json");
    let out = run(soc()
        .args([
            "run",
            "--until-idle",
            "--http",
            "off",
            "--bus",
            "redis",
            "--demo",
            "--redis-url",
        ])
        .arg(&url)
        .arg("--data-dir")
        .arg(&data)
        .arg("--summary-json")
        .arg(&json)
        .env("SOC_BUS_NAMESPACE", &ns));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = summary(&json);
    assert!(s["alerts_in"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(
        rt.block_on(bus.len(Topic::Alerts)).unwrap(),
        s["alerts_in"].as_u64().unwrap()
    );

    // --demo and --alerts together make no sense.
    let out = run(soc().args(["run", "--demo", "--alerts", "x.jsonl"]));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_feed_with_not_one_usable_alert_fails_and_says_what_it_looks_like() {
    let dir = tempfile::tempdir().unwrap();
    // An OCSF Detection Finding per line: recognised, not read by this version.
    let ocsf = dir.path().join("findings.json");
    let finding = r#"{"class_uid":2004,"time":1700000000000,"finding_info":{"title":"Suspicious login","uid":"f-1"},"severity_id":4}"#;
    std::fs::write(&ocsf, format!("{finding}\n{finding}\n")).unwrap();
    let (out, s) = run_feed(dir.path(), &ocsf, &[], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let error = s["feed_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("none of the 2 lines")
            && error.contains("OCSF")
            && error.contains("ticket_id"),
        "{s}"
    );
    assert_eq!(s["malformed_lines"], 2);

    // A feed with some good lines is not failed for its bad ones (here a Suricata record in
    // a ticket feed).
    let eve_line = vendor_record("suricata-eve-alert.json");
    let mixed = dir.path().join("mixed.jsonl");
    let good = std::fs::read_to_string(common::synthetic_feed(dir.path(), "mx", 3)).unwrap();
    std::fs::write(&mixed, format!("{good}{eve_line}\n")).unwrap();
    let (out, s) = run_feed(dir.path(), &mixed, &[], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        (s["alerts_in"].as_u64(), s["malformed_lines"].as_u64()),
        (Some(3), Some(1))
    );
}

/// A vendor's alert record from `tests/fixtures/vendors/` (credited there), as one line.
fn vendor_record(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/vendors")
        .join(name);
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

/// A Suricata `eve.json` and a Wazuh `alerts.json`, as files: their alerts are grouped into
/// cases (host, rule, hour), repeats counted.
#[test]
fn eve_json_and_wazuh_alerts_json_files_become_cases() {
    let dir = tempfile::tempdir().unwrap();
    // Suricata's documented alert (twice: a repeat) and a DNS event (not an alert).
    let alert = vendor_record("suricata-eve-alert.json");
    let dns = r#"{"timestamp":"2009-11-24T21:27:10.000000","event_type":"dns","src_ip":"192.168.2.7","dest_ip":"192.168.2.1"}"#;
    let eve = dir.path().join("eve.json");
    std::fs::write(&eve, format!("{alert}\n{alert}\n{dns}\n")).unwrap();
    let (out, s) = run_feed(dir.path(), &eve, &[], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        (
            s["alerts_in"].as_u64(),
            s["malformed_lines"].as_u64(),
            s["skipped_records"].as_u64()
        ),
        (Some(1), Some(0), Some(1)),
        "{s}"
    );

    let wazuh = vendor_record("wazuh-alert.json");
    let other_host = wazuh.replace(
        r#""agent":{"id":"000","name":"ip-10-0-0-10"}"#,
        r#""agent":{"id":"001","name":"db-1"}"#,
    );
    assert_ne!(other_host, wazuh);
    let file = dir.path().join("alerts.json");
    std::fs::write(&file, format!("{wazuh}\n{wazuh}\n{other_host}\n")).unwrap();
    let (out, s) = run_feed(dir.path(), &file, &[], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        (s["alerts_in"].as_u64(), s["malformed_lines"].as_u64()),
        (Some(2), Some(0)),
        "{s}"
    );
}

/// The raw alerts of the dev sites, as a SIEM exports them, grouped by the runtime before any
/// role sees them: the same cases as the dev tickets, decided the same way.
#[test]
fn the_raw_dev_alerts_are_grouped_into_the_dev_tickets_cases_and_decided_alike() {
    let dir = tempfile::tempdir().unwrap();
    let raw = common::datasets_dir().join("ait-ads/alerts-dev.csv.gz");
    let (out, grouped) = run_feed(dir.path(), &raw, &[], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tickets = dev_run(dir.path(), &[], &[]);
    assert_eq!(grouped["alerts_in"], 9_869, "{grouped}");
    assert_eq!(grouped["malformed_lines"], 0);
    assert_eq!(
        grouped["escalated"], tickets["escalated"],
        "{grouped}\n{tickets}"
    );
    assert_eq!(grouped["actions_proposed"], tickets["actions_proposed"]);
}

/// Elastic Security and OCSF records are recognised like EVE and Wazuh; any other JSON source is
/// read by a field mapping in the config; a forced format that does not fit is refused, record
/// by record and reason by reason, and fails the run.
#[test]
fn elastic_ocsf_and_mapped_json_become_cases_and_a_wrong_format_fails_loudly() {
    let dir = tempfile::tempdir().unwrap();
    for (name, fixture) in [
        ("ecs", "ecs-alert.json"),
        ("ocsf", "ocsf-detection-finding.json"),
    ] {
        let record = vendor_record(fixture);
        let file = dir.path().join(format!("{name}.json"));
        std::fs::write(&file, format!("{record}\n{record}\n")).unwrap();
        let (out, s) = run_feed(&dir.path().join(name), &file, &[], &[]);
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        assert_eq!(
            (s["alerts_in"].as_u64(), s["malformed_lines"].as_u64()),
            (Some(1), Some(0)),
            "{name}: {s}"
        );
    }

    // An EDR's own JSON, read by a mapping: two hosts, one of them twice in an hour.
    let edr = dir.path().join("edr.jsonl");
    std::fs::write(
        &edr,
        [
            r#"{"kind":"detection","ts":1700000000000,"dev":{"name":"web-1"},"rule":{"id":"R7","title":"Beacon"},"sev":"high"}"#,
            r#"{"kind":"heartbeat","ts":1700000001000}"#,
            r#"{"kind":"detection","ts":1700000060000,"dev":{"name":"web-1"},"rule":{"id":"R7","title":"Beacon"},"sev":"high"}"#,
            r#"{"kind":"detection","ts":1700000090000,"dev":{"name":"db-1"},"rule":{"id":"R7","title":"Beacon"},"sev":"high"}"#,
            r#"{"kind":"detection","ts":"soon","dev":{"name":"db-1"},"rule":{"id":"R7","title":"Beacon"}}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let config = dir.path().join("edr.toml");
    std::fs::write(
        &config,
        r#"
        [feed]
        format = "mapped"
        site = "hq"
        [feed.mapping]
        source = "edr"
        only = { kind = ["detection"] }
        time = "ts"
        host = "dev.name"
        rule_id = "rule.id"
        rule_name = "rule.title"
        severity = "sev"
        "#,
    )
    .unwrap();
    let config_arg = config.to_str().unwrap();
    let (out, s) = run_feed(
        &dir.path().join("edr"),
        &edr,
        &["--config", config_arg],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        (
            s["alerts_in"].as_u64(),
            s["skipped_records"].as_u64(),
            s["malformed_lines"].as_u64()
        ),
        (Some(2), Some(1), Some(1)),
        "{s}"
    );
    assert_eq!(
        s["rejected"]["time is missing or not a time"]["sample"]["line"], 5,
        "{s}"
    );

    // Forced to the wrong format: every line refused with its reason, and the run fails.
    let eve = dir.path().join("eve.json");
    std::fs::write(&eve, vendor_record("suricata-eve-alert.json") + "\n").unwrap();
    let (out, s) = run_feed(
        &dir.path().join("wrong"),
        &eve,
        &["--alerts-format", "wazuh"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{s}");
    assert_eq!(s["rejected"]["rule.id is missing"]["count"], 1, "{s}");
    assert!(text(&out.stderr).contains("--alerts-format"));

    // A mapped format with no mapping is a configuration error, said before anything runs.
    let bare = dir.path().join("bare.toml");
    std::fs::write(&bare, "[feed]\nformat = \"mapped\"\n").unwrap();
    let (out, _) = run_feed(
        &dir.path().join("bare"),
        &edr,
        &["--config", bare.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("[feed.mapping]"),
        "{}",
        text(&out.stderr)
    );
}

/// `bench ingest` measures the real grouping path: its counts are the feed's, whatever the
/// speed (which no test asserts).
#[test]
fn bench_ingest_reports_the_cases_and_alerts_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("raw.csv");
    std::fs::write(
        &csv,
        "site,time,name,ip,host,rule_id\n\
         fox,1642212000,scan,10.0.0.9,web,S-Scan\n\
         fox,1642212001,scan,10.0.0.9,web,S-Scan\n\
         fox,1642212002,scan,10.0.0.9,db,S-Scan\n\
         fox,x,scan,10.0.0.9,db,S-Scan\n",
    )
    .unwrap();
    let out = run(soc()
        .args(["bench", "ingest", "--json", "--alerts"])
        .arg(&csv));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&r["raw_alerts"], &r["cases"], &r["rejected"], &r["backend"]),
        (
            &serde_json::json!(3),
            &serde_json::json!(2),
            &serde_json::json!(1),
            &serde_json::json!("memory")
        ),
        "{r}"
    );
    assert!(r["end_to_end_per_s"].as_f64().unwrap() > 0.0);
}

/// A followed file, rotated twice (once while the runtime runs, once while it is down after a
/// SIGKILL), with lines written to the old file after its rename: every alert exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_file_across_rotations_and_a_sigkill_gives_every_alert_exactly_once() {
    let n = 3000;
    let redis = common::RedisServer::start(false);
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap();
    let all = std::fs::read_to_string(common::synthetic_feed(dir.path(), "follow", n)).unwrap();
    let lines: Vec<&str> = all.lines().collect();
    let part = |from: usize, to: usize| lines[from..to].join("\n") + "\n";
    let feed = dir.path().join("feed.jsonl");
    let append = |path: &Path, text: &str| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    };
    append(&feed, &part(0, 1000));
    let config = dir.path().join("soc.toml");
    std::fs::write(&config, "[bus.settings]\nclaim_idle_ms = 3600000\n").unwrap();
    let base = |cmd: &mut Command| {
        cmd.args(["run", "--follow", "--bus", "redis", "--redis-url", &url])
            .args(["--http", "off", "--alerts"])
            .arg(&feed)
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path().join("data"));
    };
    let bus = redis_bus(&url, "").await;
    let alerts_at_least = |at_least: u64| {
        let bus = bus.clone();
        async move {
            common::wait_for("alerts published", Duration::from_secs(60), || async {
                let n = bus.len(Topic::Alerts).await.unwrap();
                (n >= at_least).then_some(n)
            })
            .await
        }
    };

    let mut first = soc();
    base(&mut first);
    let mut child = spawn_running(&mut first);
    alerts_at_least(500).await;
    // Rotated while running: the writer finishes the old file after the rename.
    append(&feed, &part(1000, 1500));
    std::fs::rename(&feed, dir.path().join("feed.jsonl.1")).unwrap();
    append(&dir.path().join("feed.jsonl.1"), &part(1500, 1800));
    append(&feed, &part(1800, 2300));
    alerts_at_least(1850).await;
    child.kill().unwrap(); // SIGKILL: no drain, nothing saved on the way out
    child.wait().unwrap();
    // Rotated again while it is down.
    append(&feed, &part(2300, 2600));
    std::fs::rename(&feed, dir.path().join("feed.jsonl.2")).unwrap();
    append(&feed, &part(2600, 3000));

    let json = dir.path().join("second.json");
    let mut second = soc();
    base(&mut second);
    let out = run(second.arg("--until-idle").arg("--summary-json").arg(&json));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = summary(&json);
    assert!(
        s["alerts_in"].as_u64().unwrap() < n as u64,
        "the restart resumed rather than re-read everything: {s}"
    );
    common::assert_exactly_once(&bus, &common::ticket_ids("follow", n)).await;
}

/// Deciding each case at its first alert, as a stream first shows it, misses escalations;
/// Sentinel's re-assessment when the whole case follows as an update wins them back.
#[test]
fn cases_decided_at_their_first_alert_are_re_assessed_on_their_update() {
    let dir = tempfile::tempdir().unwrap();
    let backtest = |updates: bool| {
        let out = dir.path().join(format!("first-{updates}.json"));
        let mut cmd = soc();
        cmd.args(["backtest", "--sites", "shaw", "--feedback-delay", "4h"])
            .args(["--at-first-alert", "--tickets"])
            .arg(common::dev_tickets())
            .arg("--history")
            .arg(common::dev_tickets())
            .arg("--config")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("ops/backtest-ait-ads.toml"))
            .arg("--out")
            .arg(&out)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if updates {
            cmd.arg("--updates");
        }
        let output = run(&mut cmd);
        assert!(output.status.success(), "{}", text(&output.stderr));
        summary(&out)
    };
    let early = backtest(false);
    let reassessed = backtest(true);
    assert_eq!(early["selection"]["at_first_alert"], true);
    assert_eq!(reassessed["selection"]["updates"], true);
    let recall = |s: &serde_json::Value| s["recall"].as_f64().unwrap();
    assert!(
        recall(&reassessed) > recall(&early),
        "re-assessment found nothing: {} vs {}",
        recall(&reassessed),
        recall(&early)
    );
    // Only cases that were below the threshold are triaged again, each once.
    let tp = |s: &serde_json::Value| s["confusion"]["tp"].as_u64().unwrap();
    assert!(tp(&reassessed) > tp(&early));
    assert_eq!(reassessed["tickets"], early["tickets"]);
}

/// `bench memory --write-audit` writes the synthetic log to an empty namespace's audit (and
/// refuses one that has entries), and `memory rebuild` folds it: one case and one triage
/// verdict per synthetic case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_synthetic_audit_is_written_once_and_rebuilds_into_its_cases() {
    let url = common::redis_url();
    let namespace = common::Namespace::new(&url, "cli-synthetic");
    let write = || {
        run(soc().args([
            "bench",
            "memory",
            "--cases",
            "40",
            "--write-audit",
            &url,
            "--namespace",
            namespace.name(),
        ]))
    };
    let out = write();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("wrote 80 audit entries (40 cases)"),
        "{}",
        text(&out.stdout)
    );
    let again = write();
    assert!(!again.status.success(), "a second write was accepted");
    assert!(
        text(&again.stderr).contains("holds 80 entries already"),
        "{}",
        text(&again.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let out = run(soc()
        .env("SOC_BUS_NAMESPACE", namespace.name())
        .args(["memory", "rebuild", "--redis-url", &url, "--data-dir"])
        .arg(dir.path()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("from 80 audit entries: 40 verdict rows"),
        "{}",
        text(&out.stdout)
    );
    // The rebuilt store is its file: no log left beside it to hold the rows.
    let log = std::fs::metadata(dir.path().join("soc.db-wal")).map_or(0, |m| m.len());
    assert_eq!(log, 0, "the rebuild left {log} bytes of write-ahead log");
    let store = soc_runtime::store::Store::open(&dir.path().join("soc.db"))
        .await
        .unwrap();
    let cases: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cases")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(cases, 40);
    store.close().await;
}
