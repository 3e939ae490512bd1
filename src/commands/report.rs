//! `report`: one calendar role's report, now, over the store's record of its window.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::{StoreArgs, open_store};

#[derive(Args)]
pub(crate) struct ReportArgs {
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

pub(crate) async fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
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
