//! Replays the committed fuzz corpus on stable, as part of `cargo test`.
//!
//! Every file of `fuzz/corpus/TARGET/` goes through the same body the fuzz target `TARGET` runs:
//! `fuzz/src/lib.rs` is included here as a module, so the fuzzer and this test share one source
//! and nothing fuzz-only enters the library. An input the fuzzer once found crashing, added to the
//! corpus with its fix, stays fixed without nightly or cargo-fuzz. See `fuzz/README.md`.

#[path = "../fuzz/src/lib.rs"]
mod targets;

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("corpus")
}

#[test]
fn every_target_has_a_corpus_and_every_corpus_a_target() {
    let dirs: BTreeSet<String> = std::fs::read_dir(corpus_dir())
        .expect("fuzz/corpus/ is committed")
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let targets: BTreeSet<String> = targets::TARGETS
        .iter()
        .map(|(name, _)| (*name).to_string())
        .collect();
    assert_eq!(dirs, targets);
}

#[test]
fn every_corpus_file_passes_its_target() {
    let mut failures = Vec::new();
    for (name, body) in targets::TARGETS {
        let dir = corpus_dir().join(name);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{} is empty", dir.display());
        for file in files {
            let data = std::fs::read(&file).unwrap();
            // The panic message is printed by the default hook; the file is named here.
            if catch_unwind(AssertUnwindSafe(|| body(&data))).is_err() {
                failures.push(file.display().to_string());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "corpus files that fail their target: {failures:#?}"
    );
}
