//! Feed lines are untrusted: parsing any bytes must return an alert or a reason, never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = soc_runtime::ingest::jsonl::parse_line(data);
});
