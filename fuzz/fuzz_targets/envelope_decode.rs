//! Bus entries' `data` is untrusted: decoding any bytes must return, never panic or blow up.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = soc_runtime::proto::decode(data) {
        // What decodes must encode again.
        let _ = soc_runtime::proto::encode(&envelope).expect("decoded envelopes re-encode");
    }
});
