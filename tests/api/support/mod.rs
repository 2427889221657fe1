//! The shared harness: a fresh database per test, the real server on a real
//! port, clients, a cuttable TCP proxy, and polling with deadlines.
pub mod app;
pub mod catalog;
pub mod database;
pub mod fixtures;
pub mod proxy;
pub mod rpcs;
pub mod wait;

pub use app::{TestApp, as_user, authorized};
pub use database::TestDatabase;
