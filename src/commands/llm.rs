//! `llm check`: each configured model endpoint, asked directly.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub(crate) enum LlmCommand {
    /// Ask each configured endpoint for its health, its model list and a one-line completion
    /// (directly, no failover). Exits 1 if any endpoint fails.
    Check(LlmCheckArgs),
}

#[derive(Args)]
pub(crate) struct LlmCheckArgs {
    /// Config file (its [llm] section; SOC_LLM_* variables apply on top).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs an `llm` command.
pub(crate) async fn dispatch(command: LlmCommand) -> anyhow::Result<ExitCode> {
    match command {
        LlmCommand::Check(args) => llm_check(args).await,
    }
}

async fn llm_check(args: LlmCheckArgs) -> anyhow::Result<ExitCode> {
    let config = super::load_config(args.config.as_deref())?;
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
