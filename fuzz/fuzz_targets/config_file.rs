//! Fuzz target `config_file`: the body is `lefi_fuzz::config_file` (src/lib.rs), which `cargo test` also runs on
//! every file of corpus/config_file/.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lefi_fuzz::config_file(data));
