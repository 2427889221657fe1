//! The generated API types (from `proto/hera/migration/v2`).
#![allow(clippy::all, clippy::pedantic)]

tonic::include_proto!("hera.migration.v2");

/// The encoded descriptor set of our protos, served by server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/hera_migration_descriptor.bin"));
