//! Alert feeds: parsing what sources deliver into [`crate::proto::Alert`]s.
//!
//! Everything here handles untrusted input: a malformed record is an error value with a reason,
//! never a panic, and never stops the feed.

pub(crate) mod follow;
pub mod format;
#[doc(hidden)]
pub mod fuzz;
pub(crate) mod group;
pub mod http;
pub mod jsonl;
pub mod mapping;
pub(crate) mod native;
pub mod xsoar;

use std::io::{BufRead, BufReader};
use std::path::Path;

/// Opens a text file, plain or gzip (detected by its magic bytes, not its name).
pub fn open_text(path: &Path) -> std::io::Result<Box<dyn BufRead + Send>> {
    let mut file = BufReader::new(std::fs::File::open(path)?);
    let gzip = file.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    Ok(if gzip {
        Box::new(BufReader::new(flate2::bufread::MultiGzDecoder::new(file)))
    } else {
        Box::new(file)
    })
}
