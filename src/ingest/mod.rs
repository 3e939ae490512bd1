//! Alert feeds: parsing what sources deliver into [`crate::proto::Alert`]s.
//!
//! Everything here handles untrusted input: a malformed record is an error value with a reason,
//! never a panic, and never stops the feed.

pub(crate) mod follow;
pub mod format;
#[doc(hidden)]
pub mod fuzz;
pub mod group;
pub mod http;
pub mod jsonl;
pub mod mapping;
pub(crate) mod native;
pub(crate) mod pipe;
pub mod xsoar;

use std::io::{BufRead, BufReader};
use std::path::Path;

/// The bus commit that publishes a case a feed handed on: an `AlertReceived` under the dedupe
/// key `alert:<ticket>`, or for an update a `CaseUpdated` under `update:<ticket>:<count>` (so a
/// re-read publishes neither twice).
pub(crate) fn case_commit(
    alert: crate::proto::Alert,
    update: bool,
    via: &str,
    producer: &str,
) -> Result<crate::bus::Commit, crate::bus::BusError> {
    use crate::proto::{AlertReceived, CaseUpdated, Event};
    let ticket = alert.ticket_id.clone();
    let received_via = via.to_owned();
    let (key, event) = if update {
        (
            format!("update:{ticket}:{}", alert.alert_count),
            Event::CaseUpdated(CaseUpdated {
                alert,
                received_via,
            }),
        )
    } else {
        (
            format!("alert:{ticket}"),
            Event::AlertReceived(AlertReceived {
                alert,
                received_via,
            }),
        )
    };
    let envelope = crate::telemetry::ingested(producer, &ticket, event);
    Ok(crate::bus::Commit::dedupe(
        key,
        vec![crate::bus::Outgoing::event(&envelope)?],
    ))
}

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
