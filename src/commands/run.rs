//! `run` (the default): the SOC itself, until a signal or, with `--until-idle`, until done.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use soc_runtime::app::config::{Backend, Config};
use soc_runtime::app::runtime::Runtime;
use soc_runtime::supervisor::RuntimeOptions;

#[derive(Args, Clone, Default)]
pub(crate) struct RunArgs {
    /// Config file (TOML; unknown keys are errors). See ops/soc.example.toml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Alert feed, plain or gzip: ticket-format JSON lines, or raw alerts grouped into cases
    /// (Suricata eve.json, Wazuh alerts.json, Elastic/ECS or OCSF JSON lines, the AIT-ADS raw
    /// alert CSV), recognised from the first record. Default: the bundled demo feed, on the
    /// in-memory bus only (on Redis it needs --demo).
    #[arg(long, value_name = "FILE")]
    alerts: Option<PathBuf>,
    /// Read --alerts as this format instead of recognising it (`mapped`: by [feed.mapping]
    /// in the config).
    #[arg(long, value_enum, value_name = "FORMAT")]
    alerts_format: Option<soc_runtime::ingest::format::FeedFormat>,
    /// Follow --alerts as it grows, across rotations (renamed and re-created, or truncated),
    /// resuming after a restart from the position saved in --data-dir without repeating a case.
    #[arg(long)]
    follow: bool,
    /// Run the bundled demo feed on Redis too, or beside [xsoar]: its alerts go into the
    /// streams, and proposals follow, like any other alert's.
    #[arg(long, conflicts_with = "alerts")]
    demo: bool,
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

/// The run's configuration: the file, `SOC_*` variables, then the flags.
pub(crate) fn config(args: &RunArgs) -> anyhow::Result<Config> {
    let mut config = super::load_config(args.config.as_deref())?;
    if let Some(alerts) = &args.alerts {
        config.alerts = Some(alerts.clone());
    }
    if args.demo {
        config.demo = true;
    }
    if let Some(format) = args.alerts_format {
        config.feed.format = format;
    }
    if args.follow {
        config.feed.follow = true;
    }
    if let Some(bus) = args.bus {
        config.bus.backend = bus;
    }
    if let Some(url) = &args.redis_url {
        config.bus.redis_url = url.clone();
    }
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(http) = &args.http {
        config.http.addr = http.clone();
    }
    if let Some(roles) = &args.roles {
        config.supervisor.roles = soc_runtime::app::config::SupervisorConfig::parse_roles(roles)?;
    }
    if args.until_idle && !config.supervisor.runs("source") {
        anyhow::bail!(
            "--until-idle needs the alert source in this process (--roles ...,source): a \
             process without it cannot tell when the feed is done"
        );
    }
    Ok(config)
}

/// Runs the SOC with `config` (from [`config`]) until it stops; prints its summary.
pub(crate) async fn run(args: RunArgs, config: Config) -> anyhow::Result<ExitCode> {
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
    if let Some(v) = report
        .summary
        .model_validation
        .as_ref()
        .filter(|v| v.over_limit)
    {
        tracing::warn!(
            valid = v.valid,
            invalid = v.invalid,
            limit = v.limit,
            "most of the model's answers did not validate: their cases await human review; check the endpoint with `soc-runtime llm check`"
        );
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
