//! Fuzz target `personnummer`: the body is `lefi_fuzz::personnummer` (src/lib.rs), which `cargo test` also runs on
//! every file of corpus/personnummer/.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lefi_fuzz::personnummer(data));
