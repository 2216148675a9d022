//! Fuzz target `ingest_request`: the body is `lefi_fuzz::ingest_request` (src/lib.rs), which `cargo test` also runs on
//! every file of corpus/ingest_request/.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lefi_fuzz::ingest_request(data));
