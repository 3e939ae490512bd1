//! `soc-runtime`: run the SOC, or measure it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use soc_runtime::config::{Backend, Config};
use soc_runtime::runtime::Runtime;
use soc_runtime::supervisor::RuntimeOptions;

/// mimalloc: the bus allocates and frees small buffers on every hop; glibc's allocator spent
/// about 15% of the in-memory bus benchmark in malloc/free.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ENV_HELP: &str = "\
Environment (overridden by flags, override the config file):
  SOC_BUS             memory | redis
  SOC_REDIS_URL       redis://[:password@]host:port[/db]
  SOC_BUS_NAMESPACE   key prefix, to share one Redis between deployments
  SOC_DATA_DIR        data directory
  SOC_ALERTS          alert feed file
  SOC_HTTP_ADDR       listen address, or `off`
  SOC_ROLES           parts this process runs (scale-out), e.g. `sentinel,tier2`
  SOC_OTLP_ENDPOINT   OTLP/HTTP traces endpoint, e.g. http://127.0.0.1:4318/v1/traces
                      (OTEL_EXPORTER_OTLP_ENDPOINT and ..._TRACES_ENDPOINT also work)
  SOC_LLM_PRIMARY_URL     OpenAI-compatible model server, up to /v1 (enables the LLM gateway)
  SOC_LLM_SECONDARY_URL   failover model server
  SOC_LLM_MODEL           model name sent to every endpoint
  SOC_LLM_API_KEY         bearer token for the endpoints (never logged)
  SOC_FALCON_CLIENT_ID      CrowdStrike Falcon API client id (read-only connector)
  SOC_FALCON_CLIENT_SECRET  its secret (never logged)
  SOC_APPROVALS_SESSION_KEY key signing approval sessions (>= 32 bytes; never logged)
  SOC_WEBEX_BOT_TOKEN       Webex bot token for IR plan cards (never logged)
  SOC_WEBEX_WEBHOOK_SECRET  secret of the card feedback webhook (never logged)
  SOC_XSOAR_URL             Cortex XSOAR API to poll for incidents
  SOC_XSOAR_API_KEY         its API key (never logged)
  SOC_XSOAR_API_KEY_ID      XSOAR 8 API key id (x-xdr-auth-id)
  SOC_LOG             log filter (e.g. `info`, `soc_runtime=debug`); RUST_LOG also works

Exit status: 0 after a clean stop (Ctrl-C, SIGTERM, --until-idle), 1 when a role kept
failing past its restart intensity or the feed could not be read to its end, 2 on bad
arguments or configuration, 130/143 on a second SIGINT/SIGTERM (no drain).";

/// An AI Security Operations Center: supervised role actors over a durable event bus.
///
/// With no arguments, runs a bundled demo feed on the in-memory bus until Ctrl-C, serving
/// the dashboard, /metrics and /healthz on http://127.0.0.1:8080.
#[derive(Parser)]
#[command(version, after_help = ENV_HELP, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the SOC (the default).
    Run(RunArgs),
    /// Measure performance against a baseline in the same run.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// The LLM endpoints.
    #[command(subcommand)]
    Llm(LlmCommand),
    /// Local stores built from the audit log.
    #[command(subcommand)]
    Memory(MemoryCommand),
    /// Case memory: a ticket's recorded trace, or the earlier cases it recalls.
    #[command(subcommand)]
    Case(CaseCommand),
    /// Campaigns: cases tied by shared rare infrastructure.
    Campaigns(CampaignArgs),
    /// Replay labelled tickets through the real roles (in-memory bus, no side effects) and
    /// score "escalated to the IR Lead" against the analysts' dispositions.
    Backtest(BacktestArgs),
    /// Approvers of proposed actions.
    #[command(subcommand)]
    Approvers(ApproversCommand),
    /// Run one calendar role's report now, over the store's record of its window: a shift
    /// summary (soc_manager), noisy-rule tuning (detection_eng), a hunt (threat_hunter) or
    /// the campaigns of the window (campaign_detector; --json prints them as an array).
    Report(ReportArgs),
}

#[derive(Subcommand)]
enum ApproversCommand {
    /// Read a password from stdin (its first line) and print its Argon2id hash, for
    /// `password_hash` in `[[approvals.approvers]]`.
    HashPassword,
}

#[derive(Args)]
struct ReportArgs {
    /// The calendar role.
    #[arg(value_enum)]
    role: soc_runtime::calendar::CalendarRole,
    /// Report as of this time (RFC 3339; default now): the window ends at the role's latest
    /// scheduled time at or before it.
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// The last DURATION up to --at (e.g. 24h, 7d), instead of the role's scheduled window.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    window: Option<std::time::Duration>,
    /// Time zone of the schedules.
    #[arg(long, default_value = soc_runtime::calendar::DEFAULT_TZ)]
    tz: String,
    #[command(flatten)]
    store: StoreArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum CaseCommand {
    /// Every event, verdict and decision recorded for the ticket, in order.
    Why(CaseArgs),
    /// Earlier cases sharing strong indicators with the ticket, best first, with why.
    Recall(CaseArgs),
}

#[derive(Args)]
struct CaseArgs {
    /// The ticket id.
    ticket: String,
    #[command(flatten)]
    store: StoreArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CampaignArgs {
    /// Only cases opened in the last this many days (of the newest case's time).
    #[arg(long, default_value_t = 14)]
    days: i64,
    #[command(flatten)]
    store: StoreArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Where the store is.
#[derive(Args)]
struct StoreArgs {
    /// Data directory holding the store (default from the config).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Config file (for data_dir).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum MemoryCommand {
    /// Rebuild the verdict store from soc.audit on Redis: forget its rows and checkpoint, fold
    /// the whole audit again. The result equals what the live projection wrote.
    Rebuild(MemoryArgs),
    /// Record analysts' dispositions (`ground_truth`: escalate | close) from a labelled
    /// tickets file: the verdict store and recall show them, trends score against them.
    Import(MemoryImportArgs),
    /// Per-role counts, confidence, tool calls, latency, tokens and accuracy against known
    /// dispositions (sentinel and tier2, on escalation).
    Trends(MemoryTrendsArgs),
}

#[derive(Args)]
struct MemoryImportArgs {
    /// Labelled tickets (JSONL, plain or gzip), as for `backtest --tickets`.
    #[arg(long, value_name = "FILE")]
    tickets: PathBuf,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
struct MemoryTrendsArgs {
    /// Only decisions made in the last this many days (0: all).
    #[arg(long, default_value_t = 0)]
    days: i64,
    #[command(flatten)]
    store: StoreArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct MemoryArgs {
    /// Config file (its [bus] section and data_dir; SOC_* variables apply on top).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Redis URL (default from the config).
    #[arg(long, value_name = "URL")]
    redis_url: Option<String>,
    /// Data directory holding the store (default from the config).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Args)]
struct BacktestArgs {
    /// Labelled tickets (JSONL, plain or gzip, with `ground_truth`: escalate | close), e.g.
    /// ../shared/datasets/ait-ads/tickets-dev.jsonl.gz.
    #[arg(long, value_name = "FILE")]
    tickets: PathBuf,
    /// Only these sites (comma-separated); all by default.
    #[arg(long, value_delimiter = ',', value_name = "SITE")]
    sites: Vec<String>,
    /// Replay a random sample of this many tickets.
    #[arg(long, value_name = "N")]
    sample: Option<usize>,
    /// With --sample: draw escalate and close tickets 50/50.
    #[arg(long, requires = "sample")]
    stratify: bool,
    /// Seed of the sample.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Write a self-contained HTML report (confusion matrix, per-site bars, latency).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Write every ticket's outcome as JSON lines (ticket, site, rule, host, triage's
    /// probability, whether it escalated, what the analysts decided).
    #[arg(long, value_name = "FILE")]
    decisions: Option<PathBuf>,
    /// A saved summary to compare against: exit 1 if F1 or recall fell by more than
    /// --max-drop.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// Largest tolerated drop of F1 or recall against --baseline.
    #[arg(long, default_value_t = 0.05, requires = "baseline")]
    max_drop: f64,
    /// Past labelled tickets whose dispositions are known before the replay (the rules
    /// reasoner's priors). Tickets that are also replayed are left out of it.
    #[arg(long, value_name = "FILE")]
    history: Option<PathBuf>,
    /// Let each replayed ticket's disposition become known this much ticket time after its
    /// last alert (e.g. 4h, 2d), as analysts close tickets; the score's fit simulates the same
    /// lag. Off by default; zero is refused (a ticket would see its own label).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    feedback_delay: Option<std::time::Duration>,
    /// Replay each site with the other sites' dispositions (of --history, or of --tickets)
    /// as history, and score all sites together.
    #[arg(long)]
    leave_one_site_out: bool,
    /// Give the roles a canned-answer model server instead of a model (hybrid reasoning): the
    /// whole model path runs, nothing is decided by a model.
    #[arg(long, conflicts_with = "config")]
    dry_run: bool,
    /// Config file whose [llm], [reasoning], [tools] and [rulesets] sections the replay uses
    /// (SOC_LLM_* variables apply on top); everything else is the backtest's own (memory bus,
    /// HTTP off, scratch stores, no site connectors: a live EDR knows nothing of a replayed
    /// ticket's time). Without it the roles use their rules reasoners and no vendor rulesets.
    /// ops/backtest-ait-ads.toml points [rulesets] at ../shared/datasets.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override `[reasoning] precedent`: give the model the case's precedent (on) or not
    /// (off), for an A/B run.
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    precedent: Option<bool>,
}

fn parse_on_off(value: &str) -> Result<bool, String> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("expected on or off, not {value:?}")),
    }
}

#[derive(Subcommand)]
enum LlmCommand {
    /// Ask each configured endpoint for its health, its model list and a one-line completion
    /// (directly, no failover). Exits 1 if any endpoint fails.
    Check(LlmCheckArgs),
}

#[derive(Args)]
struct LlmCheckArgs {
    /// Config file (its [llm] section; SOC_LLM_* variables apply on top).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Clone, Default)]
struct RunArgs {
    /// Config file (TOML; unknown keys are errors). See ops/soc.example.toml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Alert feed: JSONL, plain or gzip (default: the bundled demo feed).
    #[arg(long, value_name = "FILE")]
    alerts: Option<PathBuf>,
    /// Bus backend: in-process, or Redis Streams (durable, multi-process).
    #[arg(long, value_enum)]
    bus: Option<Backend>,
    /// Redis URL, for --bus redis (default redis://127.0.0.1:6379).
    #[arg(long, value_name = "URL")]
    redis_url: Option<String>,
    /// Directory for local state (default ./soc-data).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Exit 0 once the feed is drained and no work is pending.
    #[arg(long)]
    until_idle: bool,
    /// Also write the run summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    summary_json: Option<PathBuf>,
    /// HTTP listen address for /healthz, or `off` (default 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
    /// Run only these parts (scale-out), comma-separated: sentinel, tier2, ir_lead,
    /// threat_intel, source (the alert feed), calendar. Processes on one Redis share each
    /// role's work; a killed one's pending entries go to the others. Default: everything.
    #[arg(long, value_name = "LIST")]
    roles: Option<String>,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Bus throughput: publish -> consume -> atomic commit (with audit copies).
    Bus(BenchBusArgs),
    /// LLM gateway: added latency against direct client calls (zero-latency upstream), memory
    /// per queued request, and (with --model-url) the cost against a real model server.
    Llm(BenchLlmArgs),
    /// Case memory at scale (a scratch SQLite file): fold throughput, recall p50/p99,
    /// campaign clustering time.
    Memory(BenchMemoryArgs),
}

#[derive(Args)]
struct BenchMemoryArgs {
    /// Cases to build.
    #[arg(long, default_value_t = 100_000)]
    cases: u64,
    /// Recalls to time.
    #[arg(long, default_value_t = 1_000)]
    recalls: usize,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct BenchLlmArgs {
    /// Offered loads for the overhead measurement, requests per second.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
    rates: Vec<u64>,
    /// Seconds of load per rate and side.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Requests queued for the memory measurement.
    #[arg(long, default_value_t = 20_000)]
    queued: usize,
    /// A real OpenAI-compatible model server (`http://127.0.0.1:8081/v1`) to compare direct
    /// and gateway calls on.
    #[arg(long, value_name = "URL")]
    model_url: Option<String>,
    /// Model name for --model-url.
    #[arg(long, default_value = "smollm2")]
    model: String,
    /// Requests per side against the real model.
    #[arg(long, default_value_t = 30)]
    model_requests: usize,
    /// Tokens generated per real-model request.
    #[arg(long, default_value_t = 32)]
    model_tokens: u32,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct BenchBusArgs {
    /// Which backends to measure.
    #[arg(long, value_enum, default_value = "all")]
    backend: BenchBackend,
    /// Events per measurement.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Consumers (like role instances) reading the group.
    #[arg(long, default_value_t = 2)]
    consumers: usize,
    /// Rounds per measurement; the median is reported.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Redis URL for the Redis measurement.
    #[arg(long, default_value = "redis://127.0.0.1:6379", env = "SOC_REDIS_URL")]
    redis_url: String,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum BenchBackend {
    Memory,
    Redis,
    All,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let telemetry = init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Some(Command::Run(args)) => run(args).await,
            None => run(cli.run).await,
            Some(Command::Bench(BenchCommand::Bus(args))) => bench_bus(args).await,
            Some(Command::Bench(BenchCommand::Llm(args))) => bench_llm(args).await,
            Some(Command::Bench(BenchCommand::Memory(args))) => {
                let result = soc_runtime::bench::memory::run(args.cases, args.recalls).await?;
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&result)?);
                } else {
                    println!("{result}");
                }
                Ok(ExitCode::SUCCESS)
            }
            Some(Command::Llm(LlmCommand::Check(args))) => llm_check(args).await,
            Some(Command::Backtest(args)) => backtest(args).await,
            Some(Command::Memory(MemoryCommand::Rebuild(args))) => memory_rebuild(args).await,
            Some(Command::Memory(MemoryCommand::Import(args))) => memory_import(args).await,
            Some(Command::Memory(MemoryCommand::Trends(args))) => memory_trends(args).await,
            Some(Command::Case(CaseCommand::Why(args))) => case_why(args).await,
            Some(Command::Case(CaseCommand::Recall(args))) => case_recall(args).await,
            Some(Command::Campaigns(args)) => campaigns(args).await,
            Some(Command::Report(args)) => report(args).await,
            Some(Command::Approvers(ApproversCommand::HashPassword)) => hash_password(),
        }
    });
    // A feed reader blocked on a pipe or FIFO cannot be cancelled: do not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    // Export the spans still queued (a few seconds at most, whatever the collector does).
    telemetry.shutdown();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Logs, and traces when an OTLP endpoint is set (the environment, or `[telemetry]` in the
/// `run` config; a config that does not load is reported by `run` itself).
fn init_logging(cli: &Cli) -> soc_runtime::telemetry::Telemetry {
    let filter = std::env::var("SOC_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    // Only the SOC itself exports traces: a backtest or a report replaying history must not
    // fill the production collector.
    let config_file = match &cli.command {
        Some(Command::Run(args)) => Some(args.config.as_deref()),
        None => Some(cli.run.config.as_deref()),
        _ => None,
    };
    let endpoint = config_file.and_then(|file| {
        let telemetry = Config::load(file).map(|c| c.telemetry).unwrap_or_default();
        soc_runtime::telemetry::endpoint(|k| std::env::var(k).ok(), &telemetry)
    });
    soc_runtime::telemetry::init(&filter, endpoint.as_deref())
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(args.config.as_deref())?;
    config.apply_env(|k| std::env::var(k).ok())?;
    if let Some(alerts) = args.alerts {
        config.alerts = Some(alerts);
    }
    if let Some(bus) = args.bus {
        config.bus.backend = bus;
    }
    if let Some(url) = args.redis_url {
        config.bus.redis_url = url;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(http) = args.http {
        config.http.addr = http;
    }
    if let Some(roles) = &args.roles {
        config.supervisor.roles = soc_runtime::config::SupervisorConfig::parse_roles(roles)?;
    }
    if args.until_idle && !config.supervisor.runs("source") {
        anyhow::bail!(
            "--until-idle needs the alert source in this process (--roles ...,source): a \
             process without it cannot tell when the feed is done"
        );
    }
    let data_dir = config.data_dir.clone();
    let options = RuntimeOptions {
        until_idle: args.until_idle,
        faults: None,
        ..RuntimeOptions::default()
    };
    let runtime = Runtime::start(config, options).await?;
    tracing::info!(
        bus = runtime.bus().backend_name(),
        http = ?runtime.http_addr(),
        until_idle = args.until_idle,
        "soc-runtime running (Ctrl-C drains and stops)"
    );
    let drainer = runtime.drainer();
    let signals = async move {
        shutdown_signal().await;
        tracing::info!("signal received: draining (signal again to exit at once)");
        drainer.drain();
        let code = shutdown_signal().await;
        eprintln!("second signal: exiting without draining; pending work stays in the bus");
        #[allow(clippy::disallowed_methods, reason = "main decides the exit")]
        std::process::exit(code);
    };
    let report = tokio::select! {
        report = runtime.wait() => report,
        () = signals => unreachable!("the signal future exits the process"),
    };
    // stdout may be closed (`| head`): the summary files below still get written.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), report.summary.render().as_bytes());
    let json = serde_json::to_string_pretty(&report.summary)?;
    let last = data_dir.join("last-run.json");
    if let Err(e) = std::fs::write(&last, &json) {
        tracing::warn!(path = %last.display(), error = %e, "cannot write the run summary");
    }
    let mut code = if report.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    if let Some(path) = &args.summary_json
        && let Err(e) = std::fs::write(path, &json)
    {
        eprintln!("error: cannot write summary to {}: {e}", path.display());
        if report.is_success() {
            code = ExitCode::from(2);
        }
    }
    Ok(code)
}

/// Resolves on SIGINT or SIGTERM, with the exit status that signal conventionally gives
/// (130 or 143).
async fn shutdown_signal() -> i32 {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => 130,
                    _ = term.recv() => 143,
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                130
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        130
    }
}

async fn bench_bus(args: BenchBusArgs) -> anyhow::Result<ExitCode> {
    let mut results = Vec::new();
    if matches!(args.backend, BenchBackend::Memory | BenchBackend::All) {
        results
            .push(soc_runtime::bench::bus::memory(args.events, args.consumers, args.rounds).await?);
    }
    if matches!(args.backend, BenchBackend::Redis | BenchBackend::All) {
        let url = soc_runtime::bus::redis::redact_url(&args.redis_url);
        let result = soc_runtime::bench::bus::redis(
            &args.redis_url,
            args.events,
            args.consumers,
            args.rounds,
        )
        .await
        .with_context(|| format!("redis benchmark against {url}"))?;
        results.push(result);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        for r in &results {
            println!("{r}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn llm_check(args: LlmCheckArgs) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(args.config.as_deref())?;
    config.apply_env(|k| std::env::var(k).ok())?;
    config.validate()?;
    if config.llm.endpoints.is_empty() {
        anyhow::bail!(
            "no LLM endpoint is configured: set SOC_LLM_PRIMARY_URL (e.g. \
             http://127.0.0.1:8081/v1) or add [[llm.endpoints]] to the config file"
        );
    }
    let mut checks = Vec::new();
    for endpoint in &config.llm.endpoints {
        checks.push(soc_runtime::llm::check::check(endpoint).await);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        for c in &checks {
            print!("{c}");
        }
    }
    Ok(if checks.iter().all(|c| c.is_healthy()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn bench_llm(args: BenchLlmArgs) -> anyhow::Result<ExitCode> {
    use soc_runtime::bench::llm;
    if args.rates.contains(&0) || args.seconds <= 0.0 || args.queued < 2 {
        anyhow::bail!("--rates must be positive, --seconds above 0 and --queued at least 2");
    }
    let overhead = llm::overhead(&args.rates, args.seconds).await?;
    if !args.json {
        for run in &overhead {
            println!("{run}");
        }
    }
    let memory = llm::queue_memory(args.queued).await?;
    if !args.json {
        println!("{memory}");
    }
    let model = match &args.model_url {
        Some(url) => {
            let run = llm::real_model(url, &args.model, args.model_requests, args.model_tokens)
                .await
                .with_context(|| {
                    format!("real model at {}", soc_runtime::bus::redis::redact_url(url))
                })?;
            if !args.json {
                println!("{run}");
            }
            Some(run)
        }
        None => None,
    };
    if args.json {
        let all =
            serde_json::json!({"overhead": overhead, "queue_memory": memory, "real_model": model});
        println!("{}", serde_json::to_string_pretty(&all)?);
    }
    Ok(ExitCode::SUCCESS)
}

async fn backtest(args: BacktestArgs) -> anyhow::Result<ExitCode> {
    use soc_runtime::backtest::{self, Selection, SelectionSummary};
    // Read the baseline first: a typo there should not cost a whole replay.
    let baseline = match &args.baseline {
        Some(path) => Some(backtest::load_summary(path).map_err(anyhow::Error::msg)?),
        None => None,
    };
    if !(0.0..=1.0).contains(&args.max_drop) {
        anyhow::bail!("--max-drop must be between 0 and 1");
    }
    let tickets = backtest::load_tickets(&args.tickets)?;
    let selection = Selection {
        sites: args.sites.clone(),
        sample: args.sample,
        stratify: args.stratify,
        seed: args.seed,
    };
    let tickets = backtest::select(tickets, &selection);
    let mut config = Config::load(args.config.as_deref())?;
    config.apply_env(|k| std::env::var(k).ok())?;
    let data_dir = config.data_dir.clone();
    if let Some(on) = args.precedent {
        config.reasoning.precedent = on;
    }
    config.validate()?;
    if args.feedback_delay.is_some_and(|d| d.is_zero()) {
        anyhow::bail!(backtest::BacktestError::ZeroDelay);
    }
    let vendor = std::sync::Arc::new(soc_runtime::judgment::vendor::Vendor::load(
        &config.rulesets,
    )?);
    let priors = backtest::Setup {
        history: match &args.history {
            Some(path) => backtest::load_tickets(path)?,
            None => Vec::new(),
        },
        history_source: args.history.as_ref().map(|p| p.display().to_string()),
        feedback_delay_ms: match args.feedback_delay {
            Some(d) => Some(
                i64::try_from(d.as_millis())
                    .map_err(|_| anyhow::anyhow!("--feedback-delay is too long"))?,
            ),
            None => None,
        },
        dry_run: args.dry_run,
        model: (config.llm, config.reasoning),
        tools: config.tools,
        vendor,
        keep_assessments: args.decisions.is_some(),
    };
    let selection = SelectionSummary {
        file: args.tickets.display().to_string(),
        sites: args.sites,
        sample: args.sample,
        stratify: args.stratify,
        seed: args.seed,
        leave_one_site_out: args.leave_one_site_out,
    };
    let summary = if args.leave_one_site_out {
        backtest::leave_one_site_out(tickets, selection, &priors).await?
    } else {
        backtest::run(tickets, selection, &priors).await?
    };
    print!("{summary}");
    // The dashboard shows the latest backtest.
    let last = data_dir.join("last-backtest.json");
    let kept = std::fs::create_dir_all(&data_dir)
        .and_then(|()| std::fs::write(&last, serde_json::to_string_pretty(&summary)?));
    if let Err(e) = kept {
        tracing::warn!(path = %last.display(), error = %e, "cannot keep the backtest summary");
    }
    if let Some(path) = &args.out {
        std::fs::write(path, serde_json::to_string_pretty(&summary)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.decisions {
        let mut text = String::new();
        for d in &summary.decisions {
            text.push_str(&serde_json::to_string(d)?);
            text.push('\n');
        }
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.report {
        std::fs::write(path, backtest::report_html(&summary))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(baseline) = baseline {
        let fell = backtest::regressions(&summary, &baseline, args.max_drop);
        if !fell.is_empty() {
            for f in &fell {
                eprintln!("backtest gate: {f}");
            }
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn memory_rebuild(args: MemoryArgs) -> anyhow::Result<ExitCode> {
    use soc_runtime::store::{self, Store};
    let mut config = Config::load(args.config.as_deref())?;
    config.apply_env(|k| std::env::var(k).ok())?;
    if let Some(url) = args.redis_url {
        config.bus.redis_url = url;
        config.bus.backend = Backend::Redis;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    config.validate()?;
    if config.bus.backend != Backend::Redis {
        anyhow::bail!(
            "the in-memory bus keeps no audit between runs, so there is nothing to rebuild \
             from: use --redis-url (or SOC_BUS=redis)"
        );
    }
    let url = soc_runtime::bus::redis::redact_url(&config.bus.redis_url);
    // Read-only use: the writer queue is never flushed because nothing is written.
    let (writer, _queue) = soc_runtime::bus::bridge::queue(1);
    let bus =
        soc_runtime::bus::Bus::redis(&config.bus.redis_url, config.bus.settings.clone(), writer)
            .await
            .with_context(|| format!("cannot reach redis at {url}"))?;
    std::fs::create_dir_all(&config.data_dir)?;
    let path = config.data_dir.join(store::FILE);
    let store = Store::open(&path).await?;
    let projection = store::projection_name(&bus);
    store.bind_projection(&projection).await?;
    let started = std::time::Instant::now();
    store.reset(&projection).await?;
    let folded = store::catch_up(&bus, &store, &projection, None).await?;
    store.close().await;
    if folded.skipped > 0 {
        anyhow::bail!(
            "{} audit entries could not be decoded: the rebuilt store is incomplete",
            folded.skipped
        );
    }
    println!(
        "rebuilt {} from {} audit entries: {} verdict rows, checkpoint {} ({:.2} s)",
        path.display(),
        folded.entries,
        folded.rows,
        folded.checkpoint,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// `approvers hash-password`: the first line of stdin, hashed.
fn hash_password() -> anyhow::Result<ExitCode> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        anyhow::bail!("no password on stdin (give it as the first line)");
    }
    let hash = soc_runtime::approvals::hash_password(password).map_err(anyhow::Error::msg)?;
    println!("{hash}");
    Ok(ExitCode::SUCCESS)
}

/// Opens the store of the configured (or given) data directory, which must exist.
async fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    use soc_runtime::calendar;
    let at_ms = match &args.at {
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .with_context(|| format!("--at {t:?} is not an RFC 3339 time"))?
            .timestamp_millis(),
        None => soc_runtime::proto::now_ms(),
    };
    let length = match args.window {
        Some(d) if d.is_zero() => anyhow::bail!("--window must be longer than 0"),
        Some(d) => Some(i64::try_from(d.as_millis()).context("--window is too long")?),
        None => None,
    };
    let window = calendar::window_at(args.role, at_ms, &args.tz, length)?;
    let store = open_store(args.store).await?;
    let events = calendar::read_store(&store, &window).await?;
    store.close().await;
    let reports = calendar::reports(args.role, window, &events);
    if args.json {
        match reports.as_slice() {
            [one] if args.role != calendar::CalendarRole::CampaignDetector => {
                println!("{}", serde_json::to_string_pretty(one)?);
            }
            all => println!("{}", serde_json::to_string_pretty(all)?),
        }
    } else if reports.is_empty() {
        println!(
            "{}: no campaign among the {} events of the window",
            calendar::report_id(args.role, &window),
            events.len()
        );
    } else {
        for report in &reports {
            print!("{}", calendar::render(report, events.len()));
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn open_store(args: StoreArgs) -> anyhow::Result<soc_runtime::store::Store> {
    let mut cfg = Config::load(args.config.as_deref())?;
    cfg.apply_env(|k| std::env::var(k).ok())?;
    let dir = args.data_dir.unwrap_or(cfg.data_dir);
    // The Redis-backed store, or else the last in-memory run's.
    let mut path = dir.join(soc_runtime::store::FILE);
    if !path.exists() {
        path = dir.join(soc_runtime::store::MEMORY_FILE);
    }
    if !path.exists() {
        anyhow::bail!(
            "no store at {}: run the SOC first, or point --data-dir at its data directory",
            path.display()
        );
    }
    Ok(soc_runtime::store::Store::open(&path).await?)
}

async fn case_why(args: CaseArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(args.store).await?;
    let trace = soc_runtime::memory::why(store.pool(), &args.ticket).await?;
    store.close().await;
    if trace.is_empty() {
        anyhow::bail!("no case {} in the store", args.ticket);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&trace)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("case {}: {} recorded events", args.ticket, trace.len());
    for step in &trace {
        let at = chrono::DateTime::from_timestamp_millis(step.at_ms)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
            .unwrap_or_default();
        let body = &step.event["body"];
        let detail = [
            "verdict",
            "decision",
            "severity",
            "likely_actor",
            "rationale",
            "summary",
            "reason",
        ]
        .iter()
        .filter_map(|k| {
            body.get(*k)
                .filter(|v| !v.is_null())
                .map(|v| format!("{k}={v}"))
        })
        .collect::<Vec<_>>()
        .join("  ");
        println!("  {at}  {:<18} {:<13} {detail}", step.kind, step.role);
        if let Some(a) = body
            .get("assessment")
            .and_then(|a| serde_json::from_value::<soc_runtime::proto::Assessment>(a.clone()).ok())
        {
            print!("{}", render_assessment(&a));
        }
        if let Some(linked) = body.get("linked").and_then(|l| l.as_array())
            && !linked.is_empty()
        {
            let tickets: Vec<&str> = linked
                .iter()
                .filter_map(|l| l["case"]["ticket"].as_str())
                .collect();
            println!("      escalated with: {}", tickets.join(", "));
        }
        if step.kind == "DispositionRecorded" {
            println!(
                "      analysts: {} (by {}, from {})",
                body["disposition"], body["by"], body["origin"]
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The recorded assessment of a decision, as `case why` shows it.
fn render_assessment(a: &soc_runtime::proto::Assessment) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "      p(escalate) {:.3}, threshold {:.2}: {}",
        a.probability, a.threshold, a.policy
    );
    let _ = writeln!(
        out,
        "      vendor: {} ({} tier) from {}{}",
        a.vendor.category,
        a.vendor.tier,
        a.vendor.source,
        if a.vendor.attack.is_empty() {
            String::new()
        } else {
            format!("; ATT&CK {}", a.vendor.attack.join(", "))
        }
    );
    for p in &a.priors {
        let _ = writeln!(
            out,
            "      prior {:<22} {:<34} escalated {:>8.2}  closed {:>8.2}  rate {:.3}",
            p.level, p.key, p.escalated, p.closed, p.rate
        );
    }
    for s in &a.signals {
        let _ = writeln!(
            out,
            "      signal {:<12} {:>8.3} -> {:+.3} log-odds ({})",
            s.name, s.value, s.contribution, s.detail
        );
    }
    for c in &a.correlated {
        let _ = writeln!(
            out,
            "      on the host in the hour: {} {} ({}) p {:.3}",
            c.ticket, c.rule_id, c.source, c.probability
        );
    }
    for p in &a.precedents {
        let _ = writeln!(
            out,
            "      precedent: {} ({}, {} on {}) analysts {:?}: {}",
            p.ticket, p.site, p.rule_id, p.host, p.disposition, p.similarity
        );
    }
    for l in &a.linked {
        let _ = writeln!(
            out,
            "      links into this incident: {} ({}) p {:.3}",
            l.case.ticket, l.case.rule_id, l.probability
        );
    }
    out
}

async fn case_recall(args: CaseArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(args.store).await?;
    let found = soc_runtime::memory::recall(store.pool(), &args.ticket, Default::default()).await?;
    store.close().await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} earlier cases recalled for {}", found.len(), args.ticket);
    for r in &found {
        let outcome = match (&r.ground_truth, r.escalated) {
            (Some(truth), _) => format!("analysts: {truth}"),
            (None, true) => "escalated".to_owned(),
            (None, false) => "not escalated".to_owned(),
        };
        println!(
            "  {:<20} score {:>7.3}  {outcome:<18} shares {}",
            r.ticket,
            r.score,
            r.shared.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn campaigns(args: CampaignArgs) -> anyhow::Result<ExitCode> {
    use soc_runtime::memory::CampaignOptions;
    let store = open_store(args.store).await?;
    let to_ms = store.newest_case_ms().await?.unwrap_or(0);
    let options = CampaignOptions {
        from_ms: to_ms.saturating_sub(args.days.max(0).saturating_mul(86_400_000)),
        to_ms,
        ..CampaignOptions::default()
    };
    let found = soc_runtime::memory::campaigns(store.pool(), options).await?;
    store.close().await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} campaigns in the {} days up to the newest case",
        found.len(),
        args.days
    );
    for c in &found {
        println!(
            "  {}  {} cases: {}",
            c.id,
            c.cases.len(),
            c.cases.join(", ")
        );
        println!("      shared: {}", c.shared.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

async fn memory_import(args: MemoryImportArgs) -> anyhow::Result<ExitCode> {
    let tickets = soc_runtime::backtest::load_tickets(&args.tickets)?;
    let dispositions: Vec<_> = tickets.iter().map(|t| t.disposition(i64::MIN)).collect();
    let store = open_store(args.store).await?;
    let source = format!("import:{}", args.tickets.display());
    let written = store.import_dispositions(&dispositions, &source).await?;
    // Each also goes on the bus as a `DispositionRecorded` (relayed from the outbox by the next
    // run), so the audit keeps it and every process's reasoner learns it.
    let events: Vec<_> = tickets
        .iter()
        .filter_map(|t| {
            let alert = soc_runtime::ingest::jsonl::parse_line(t.feed_line().as_bytes()).ok()?;
            let envelope = soc_runtime::proto::Envelope::new_root(
                "memory-import",
                &t.id,
                soc_runtime::proto::Event::DispositionRecorded(
                    soc_runtime::proto::DispositionRecorded {
                        case: soc_runtime::proto::CaseContext::from_alert(&alert, ""),
                        disposition: t.ground_truth,
                        by: source.clone(),
                        origin: "history".into(),
                        known_at_ms: t.last_ms,
                        reason: None,
                    },
                ),
            );
            Some((format!("disposition:{}:history", t.id), envelope))
        })
        .collect();
    let queued = store.queue_outbox(&events).await?;
    store.close().await;
    println!(
        "recorded {written} dispositions from {} ({queued} queued for the bus)",
        args.tickets.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn memory_trends(args: MemoryTrendsArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(args.store).await?;
    let now = soc_runtime::proto::now_ms();
    let from = if args.days > 0 {
        now.saturating_sub(args.days.saturating_mul(86_400_000))
    } else {
        0
    };
    let trends = soc_runtime::memory::trends(store.pool(), from, i64::MAX).await?;
    store.close().await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&trends)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "  {:<14}{:>10}{:>12}{:>11}{:>14}{:>16}{:>10}{:>10}",
        "role",
        "decisions",
        "confidence",
        "tool calls",
        "mean wall ms",
        "tokens in/out",
        "judged",
        "accuracy"
    );
    for t in &trends {
        let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
        println!(
            "  {:<14}{:>10}{:>12}{:>11}{:>14.3}{:>16}{:>10}{:>10}",
            t.role,
            t.decisions,
            opt(t.mean_confidence),
            t.tool_calls,
            t.mean_wall_ms,
            format!("{}/{}", t.tokens_in, t.tokens_out),
            t.judged,
            opt(t.accuracy)
        );
    }
    Ok(ExitCode::SUCCESS)
}
