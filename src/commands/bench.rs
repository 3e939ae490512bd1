//! `bench bus | llm | memory`: performance against a baseline measured in the same run.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};

#[derive(Subcommand)]
pub(crate) enum BenchCommand {
    /// Bus throughput: publish -> consume -> atomic commit (with audit copies).
    Bus(BenchBusArgs),
    /// LLM gateway: added latency against direct client calls (zero-latency upstream), memory
    /// per queued request, and (with --model-url) the cost against a real model server.
    Llm(BenchLlmArgs),
    /// Raw alerts through ingest and grouping until their cases are on the bus, against only
    /// reading the file's lines; peak memory; cases per 1,000 raw alerts.
    Ingest(BenchIngestArgs),
    /// Case memory at scale (a scratch SQLite file): fold throughput, recall p50/p99,
    /// campaign clustering time.
    Memory(BenchMemoryArgs),
}

#[derive(Args)]
pub(crate) struct BenchIngestArgs {
    /// A raw alert file in any format --alerts reads (default: the AIT-ADS dev raw alerts,
    /// ../shared/datasets/ait-ads/alerts-dev.csv.gz).
    #[arg(long, value_name = "FILE")]
    alerts: Option<std::path::PathBuf>,
    /// Publish on Redis at this URL (a scratch namespace, deleted after) instead of the
    /// memory bus.
    #[arg(long, value_name = "URL")]
    redis_url: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub(crate) struct BenchMemoryArgs {
    /// Cases to build (at least 1).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    cases: u64,
    /// Recalls to time.
    #[arg(long, default_value_t = 1_000)]
    recalls: usize,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Instead of folding, write the synthetic audit of --cases cases to the Redis at this URL
    /// (the `soc.audit` stream of --namespace, which must be empty), then time
    /// `memory rebuild --redis-url URL` with `SOC_BUS_NAMESPACE` set to that namespace.
    #[arg(long, value_name = "REDIS_URL")]
    write_audit: Option<String>,
    /// The namespace --write-audit writes under.
    #[arg(long, default_value = "bench-memory:", requires = "write_audit")]
    namespace: String,
}

#[derive(Args)]
pub(crate) struct BenchLlmArgs {
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
pub(crate) struct BenchBusArgs {
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
pub(crate) enum BenchBackend {
    Memory,
    Redis,
    All,
}

/// Runs a `bench` command.
pub(crate) async fn dispatch(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Bus(args) => bench_bus(args).await,
        BenchCommand::Llm(args) => bench_llm(args).await,
        BenchCommand::Memory(args) => bench_memory(args).await,
        BenchCommand::Ingest(args) => bench_ingest(args).await,
    }
}

async fn bench_ingest(args: BenchIngestArgs) -> anyhow::Result<ExitCode> {
    let path = args.alerts.unwrap_or_else(|| {
        std::path::PathBuf::from(
            std::env::var("SOC_SHARED_DIR").unwrap_or_else(|_| "../shared".to_owned()),
        )
        .join("datasets/ait-ads/alerts-dev.csv.gz")
    });
    let result = soc_runtime::bench::ingest::run(&path, args.redis_url.as_deref()).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!("{result}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn bench_memory(args: BenchMemoryArgs) -> anyhow::Result<ExitCode> {
    if let Some(url) = &args.write_audit {
        let shown = soc_runtime::secret::redact_url(url);
        let started = std::time::Instant::now();
        let written = soc_runtime::bench::memory::write_audit(url, &args.namespace, args.cases)
            .await
            .with_context(|| format!("writing the synthetic audit to {shown}"))?;
        println!(
            "wrote {written} audit entries ({} cases) to {}soc.audit on {shown} in {:.1} s; \
             time the rebuild with: SOC_BUS_NAMESPACE={} soc-runtime memory rebuild \
             --redis-url {shown} --data-dir DIR",
            args.cases,
            args.namespace,
            started.elapsed().as_secs_f64(),
            args.namespace,
        );
        return Ok(ExitCode::SUCCESS);
    }
    let result = soc_runtime::bench::memory::run(args.cases, args.recalls).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!("{result}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn bench_bus(args: BenchBusArgs) -> anyhow::Result<ExitCode> {
    let mut results = Vec::new();
    if matches!(args.backend, BenchBackend::Memory | BenchBackend::All) {
        results
            .push(soc_runtime::bench::bus::memory(args.events, args.consumers, args.rounds).await?);
    }
    if matches!(args.backend, BenchBackend::Redis | BenchBackend::All) {
        let url = soc_runtime::secret::redact_url(&args.redis_url);
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
                    format!("real model at {}", soc_runtime::secret::redact_url(url))
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
