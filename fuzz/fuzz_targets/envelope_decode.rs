//! Bus entries' `data` is untrusted: decoding any bytes must return, never panic or blow up.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let whole = soc_runtime::proto::decode(data);
    if let Ok(envelope) = &whole {
        // What decodes must encode again.
        let _ = soc_runtime::proto::encode(envelope).expect("decoded envelopes re-encode");
    }
    // A scratch fold's decode (evidence read past) returns too, and whatever decodes whole
    // decodes without its evidence.
    let slim = soc_runtime::proto::decode_without_evidence(data);
    if whole.is_ok() {
        assert!(slim.is_ok(), "decodes whole but not without its evidence");
    }
});
