//! The gRPC side: the `MigrationService` adapter, the error-to-status table,
//! and the health probe. Only this module knows tonic.
pub mod grpc;
pub mod health;
pub mod status;

pub use grpc::GrpcMigrationService;
