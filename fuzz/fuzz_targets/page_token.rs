//! Fuzz target `page_token`: the body is `lefi_fuzz::page_token` (src/lib.rs), which `cargo test` also runs on
//! every file of corpus/page_token/.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lefi_fuzz::page_token(data));
