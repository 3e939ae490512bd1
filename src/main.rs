//! `soc-runtime`: run the SOC, or measure it. Argument parsing and dispatch; each command is a
//! module of [`commands`].

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use soc_runtime::telemetry::LogFormat;

use commands::approvers::ApproversCommand;
use commands::backtest::BacktestArgs;
use commands::bench::BenchCommand;
use commands::case::{CampaignArgs, CaseCommand};
use commands::llm::LlmCommand;
use commands::memory::MemoryCommand;
use commands::report::ReportArgs;
use commands::run::RunArgs;

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
  SOC_LOG             log filter (e.g. `info`, `soc_runtime=debug`); RUST_LOG also works;
                      one that does not parse is an error
  SOC_LOG_FORMAT      text (default; coloured only on a terminal) | json

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
    /// Log lines as text (coloured only on a terminal) or JSON, one object per line.
    #[arg(
        long,
        value_enum,
        global = true,
        env = "SOC_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Run(cli.run));
    // The SOC's configuration also says where traces go: load it once, before logging starts.
    let config = match &command {
        Command::Run(args) => match commands::run::config(args) {
            Ok(config) => Some(config),
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    let telemetry = match init_logging(cli.log_format, config.as_ref()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
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
        match command {
            Command::Run(args) => match config {
                Some(config) => commands::run::run(args, config).await,
                None => unreachable!("a run's configuration is loaded above"),
            },
            Command::Bench(c) => commands::bench::dispatch(c).await,
            Command::Llm(c) => commands::llm::dispatch(c).await,
            Command::Backtest(args) => commands::backtest::backtest(args).await,
            Command::Memory(c) => commands::memory::dispatch(c).await,
            Command::Case(c) => commands::case::dispatch(c).await,
            Command::Campaigns(args) => commands::case::campaigns(args).await,
            Command::Report(args) => commands::report::report(args).await,
            Command::Approvers(c) => commands::approvers::dispatch(c),
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

/// Logs (`SOC_LOG`, then `RUST_LOG`, else `info`), and traces when an OTLP endpoint is set
/// (the environment, or `[telemetry]` of the run's config). Only the SOC itself exports
/// traces: a backtest or a report replaying history must not fill the production collector.
fn init_logging(
    format: LogFormat,
    run: Option<&soc_runtime::app::config::Config>,
) -> Result<soc_runtime::telemetry::Telemetry, soc_runtime::telemetry::TelemetryError> {
    let filter = std::env::var("SOC_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let endpoint = run.and_then(|config| {
        soc_runtime::telemetry::endpoint(|k| std::env::var(k).ok(), &config.telemetry)
    });
    soc_runtime::telemetry::init(&filter, format, endpoint.as_deref())
}
