//! The database: a pool over PostgreSQL (given by URL or embedded), and the
//! install of the schema and functions.
pub mod embedded;
