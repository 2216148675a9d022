//! Fuzz target `org_number`: the body is `lefi_fuzz::org_number` (src/lib.rs), which `cargo test` also runs on
//! every file of corpus/org_number/.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lefi_fuzz::org_number(data));
