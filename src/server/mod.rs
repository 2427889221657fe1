//! The gRPC side: the `MigrationService` adapter, the error-to-status table,
//! and the health probe. Only this module knows tonic.
pub mod authn;
pub mod convert;
pub mod convert_incidents;
pub mod convert_operations;
pub mod convert_pacing;
pub mod decode;
pub mod grpc;
pub mod grpc_operations;
pub mod health;
pub mod status;
pub mod stream;
pub mod tls;

pub use grpc::GrpcMigrationService;
