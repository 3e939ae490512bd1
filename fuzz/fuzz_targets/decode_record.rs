//! One untrusted record through every alert decoder: none may panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    soc_runtime::ingest::fuzz::decode_record(data);
});
