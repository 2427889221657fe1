//! Application wiring.
