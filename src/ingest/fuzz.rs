//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz, nightly): every decoder of
//! untrusted alert bytes, reachable from outside the crate. Not an API; each only must never
//! panic, whatever the bytes.

use std::io::Cursor;

use super::format::{Decoder, FeedFormat};
use super::jsonl::{FeedReader, parse_line};
use super::mapping::Mapping;
use super::native::Native;

/// One record through every decoder: the ticket line, the CSV row, Suricata EVE, Wazuh, the
/// ECS and OCSF mappings, format recognition and HTTP ingest's body framing.
pub fn decode_record(bytes: &[u8]) {
    let _ = parse_line(bytes);
    let _ = FeedFormat::recognise(bytes);
    for decoder in [
        Decoder::Csv,
        Decoder::Native(Native::Eve),
        Decoder::Native(Native::EveSensor),
        Decoder::Native(Native::Wazuh),
        Decoder::Mapped(Mapping::ecs()),
        Decoder::Mapped(Mapping::ocsf()),
    ] {
        let _ = decoder.parse(bytes);
    }
    let _ = super::http::split_body(bytes, FeedFormat::Auto);
    let _ = super::http::split_body(bytes, FeedFormat::AitCsv);
}

/// A whole feed, read as a file (grouped at its end) and as a stream (grouped as it comes).
pub fn read_feed(bytes: &[u8]) {
    let _ = FeedReader::new(Box::new(Cursor::new(bytes.to_vec()))).count();
    let _ = FeedReader::stream(Box::new(Cursor::new(bytes.to_vec()))).count();
}
