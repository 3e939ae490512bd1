//! Rebuilds the crate when a migration changes: `sqlx::migrate!` embeds `migrations/` at compile
//! time, and stable Rust does not tell cargo to watch the files it read.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
