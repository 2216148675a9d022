//! Fuzz target `ndjson_fact`: the body is `lefi_fuzz::ndjson_fact` (src/lib.rs), which `cargo test` also runs on
//! every file of corpus/ndjson_fact/.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lefi_fuzz::ndjson_fact(data));
