//! `approvers`: helpers for the people who decide proposed actions.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;

#[derive(Subcommand)]
pub(crate) enum ApproversCommand {
    /// Read a password from stdin (its first line) and print its Argon2id hash, for
    /// `password_hash` in `[[approvals.approvers]]`. Refused, in the manner of NIST SP
    /// 800-63B, when shorter than 12 characters or a common or easily guessed value (no
    /// composition rules: a passphrase of unrelated words is best).
    HashPassword,
}

/// Runs an `approvers` command.
pub(crate) fn dispatch(command: ApproversCommand) -> anyhow::Result<ExitCode> {
    match command {
        ApproversCommand::HashPassword => hash_password(),
    }
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
    if let Err(why) = soc_runtime::approvals::check_password(password, "") {
        anyhow::bail!("refused: {why}");
    }
    let hash = soc_runtime::approvals::hash_password(password)?;
    println!("{hash}");
    Ok(ExitCode::SUCCESS)
}
