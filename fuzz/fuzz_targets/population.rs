//! Fuzz target `population`: the body is `lefi_fuzz::population` (src/lib.rs), which `cargo test` also runs on
//! every file of corpus/population/.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lefi_fuzz::population(data));
