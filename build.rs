//! Compiles the API contract with the pure-Rust `protox` (no `protoc` needed) and
//! writes the descriptor set that server reflection serves.
use std::{env, path::PathBuf};

const PROTO_ROOT: &str = "proto";
const PROTOS: &[&str] = &[
    "proto/hera/migration/v2/migration.proto",
    "proto/hera/migration/v2/rollout.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("hera_migration_descriptor.bin");

    let file_descriptors = protox::compile(PROTOS, [PROTO_ROOT])?;
    std::fs::write(
        &descriptor_path,
        prost::Message::encode_to_vec(&file_descriptors),
    )?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(file_descriptors)?;

    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    Ok(())
}
