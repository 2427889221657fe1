//! The migration engine, one file per phase. It knows nothing of gRPC.
pub mod engine;
pub mod input;
pub mod preview;
pub mod progress;
pub mod rollback_preview;
pub mod rollout;
pub mod run;
pub mod signals;
pub mod smart_code;
pub mod validation;
