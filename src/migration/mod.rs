//! The migration engine, one file per phase. It knows nothing of gRPC.
pub mod input;
pub mod preview;
pub mod runs;
pub mod smart_code;
