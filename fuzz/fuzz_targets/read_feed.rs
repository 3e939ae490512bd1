//! An untrusted feed read whole (grouped at its end) and as a stream (grouped as it comes):
//! no panic, whatever the bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    soc_runtime::ingest::fuzz::read_feed(data);
});
