//! Tracing and OpenTelemetry.
