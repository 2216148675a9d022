//! Compiles the protobuf contract in `proto/` with protox (pure Rust, so no system `protoc` is
//! needed) and writes the descriptor set that server reflection serves.

use std::path::{Path, PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    // The migrations are embedded by `sqlx::migrate!`: a new one must rebuild the crate.
    println!("cargo:rerun-if-changed=migrations");
    // The PostgreSQL half of the test suite is compiled as ignored (reported by `cargo test` as
    // "ignored", with the reason) when no test database is configured: the count of tests that
    // passed never includes tests that did not run. See tests/api/helpers.rs.
    println!("cargo::rustc-check-cfg=cfg(lefi_no_test_postgres)");
    println!("cargo:rerun-if-env-changed=LEFI_TEST_POSTGRES_URL");
    if std::env::var("LEFI_TEST_POSTGRES_URL").is_ok_and(|url| !url.is_empty()) {
        // Configured: the PostgreSQL tests run.
    } else {
        println!("cargo:rustc-cfg=lefi_no_test_postgres");
    }
    let mut files = Vec::new();
    collect_protos(Path::new("proto"), &mut files)?;
    files.sort();
    let fds = protox::compile(&files, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // Reflection serves the contract as written.
    std::fs::write(out_dir.join("lefi_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .generate_default_stubs(true)
        // A BenefitRecord is sent as the register stored it (see src/grpc/wire.rs): the generated
        // messages hold `wire::BenefitRecord`, which is either the fields (as generated for the
        // copy `BenefitRecordFields`) or the encoding stored at ingest.
        .extern_path(".lefi.v1.BenefitRecord", "crate::grpc::wire::BenefitRecord")
        // prost with lefi's decode errors: INVALID_ARGUMENT MESSAGE_MALFORMED (src/grpc/codec.rs).
        .codec_path("crate::grpc::codec::LefiCodec")
        // `prost::Name` on every message: the CLI prints `--json` by the message's own full name.
        .compile_fds_with_config(with_record_fields(fds)?, {
            let mut config = tonic_prost_build::Config::new();
            config.enable_type_names();
            config
        })?;
    Ok(())
}

/// `fds` with a copy of `lefi.v1.BenefitRecord` named `BenefitRecordFields` beside it: the
/// generated struct of the record's fields, which `wire::BenefitRecord` wraps.
fn with_record_fields(
    mut fds: prost_types::FileDescriptorSet,
) -> Result<prost_types::FileDescriptorSet, Box<dyn std::error::Error>> {
    let file = fds
        .file
        .iter_mut()
        .find(|f| f.package() == "lefi.v1" && f.message_type.iter().any(|m| m.name() == "BenefitRecord"))
        .ok_or("proto: lefi.v1.BenefitRecord not found")?;
    let original = file
        .message_type
        .iter()
        .position(|m| m.name() == "BenefitRecord")
        .ok_or("proto: lefi.v1.BenefitRecord not found")?;
    let mut fields = file.message_type[original].clone();
    fields.name = Some("BenefitRecordFields".to_string());
    let copy = file.message_type.len();
    file.message_type.push(fields);
    // prost-build looks every message's documentation up by its position in the file
    // (path 4 = message_type, then the index): the copy gets the original's.
    let [original, copy] = [original, copy].map(|i| i32::try_from(i).unwrap_or(i32::MAX));
    if let Some(info) = file.source_code_info.as_mut() {
        let copies: Vec<_> = info
            .location
            .iter()
            .filter(|l| l.path.starts_with(&[4, original]))
            .map(|l| {
                let mut l = l.clone();
                l.path[1] = copy;
                l
            })
            .collect();
        info.location.extend(copies);
    }
    Ok(fds)
}

fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}
