//! Fuzz target `cursor`: the body is `lefi_fuzz::cursor` (src/lib.rs), which `cargo test` also runs on
//! every file of corpus/cursor/.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lefi_fuzz::cursor(data));
