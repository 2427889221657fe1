//! hera-migrate: the gRPC control plane for HERA Finance DNA v2 migrations.
//!
//! Layout: `config` (flags and environment), `bench` (`hera-migrate bench`: the
//! benchmark, an edge of its own), `telemetry` (tracing and
//! OpenTelemetry), `metrics` (instruments, the Prometheus endpoint, OTLP
//! export), `auth` (tokens, membership, rights), `audit` (audit rows),
//! `db` (pool, embedded cluster, schema install), `migration` (the phases,
//! the engine, the run model and store), `operations` (environment checks and
//! performance measurements), `incidents` (a run's assessment and incident
//! report), `operator` (the operator's commands, clients of a server),
//! `service` (one method per RPC, tonic-free), `rollout_service` (the same for fleet rollouts), `server` (the tonic adapter: decode, call, encode; health,
//! reflection), `seed` (demo data), `startup`
//! (`Application::build` / `run_until_stopped`), `cli` (the binary's commands).
pub mod audit;
pub mod auth;
pub mod bench;
pub mod cli;
pub mod config;
pub mod db;
pub mod demo;
pub mod error;
pub mod faults;
pub mod incidents;
pub mod metrics;
pub mod migration;
pub mod operations;
pub mod operator;
pub mod proto;
pub mod rollout_service;
pub mod seed;
pub mod server;
pub mod service;
pub mod startup;
pub mod telemetry;
