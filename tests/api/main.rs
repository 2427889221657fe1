//! Integration tests: the real server on a real port over a real PostgreSQL
//! (DATABASE_URL when set, else an embedded cluster), one fresh database each.
mod support;

mod aliases_sql;
mod aliasing;
mod api_surface;
mod architecture;
mod auth;
mod bench;
mod binary;
mod config;
mod dry_run;
mod engine;
mod environment;
mod events;
mod execute_batch;
mod grpcurl;
mod health;
mod hera_fixture;
mod hera_production;
mod incidents;
mod logs;
mod operator;
mod pacing;
mod performance;
mod preview;
mod replicas;
mod rollback;
mod rollback_sql;
mod runs;
mod schema;
mod seed_demo;
mod spans;
mod telemetry;
mod tls;
mod validation;
mod validation_sql;
