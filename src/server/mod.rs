//! The gRPC side: the `MigrationService` and `RolloutService` adapters, the error-to-status table,
//! and the health probe. Only this module knows tonic.
pub mod authn;
pub mod convert;
pub mod convert_incidents;
pub mod convert_operations;
pub mod convert_pacing;
pub mod convert_rollouts;
pub mod decode;
pub mod decode_rollout;
pub mod grpc;
pub mod grpc_operations;
pub mod grpc_rollouts;
pub mod health;
pub mod status;
pub mod stream;
pub mod tls;

pub use grpc::GrpcMigrationService;
pub use grpc_rollouts::GrpcRolloutService;
