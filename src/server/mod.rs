//! The gRPC adapter.
