//! `hera-migrate seed-demo`: demo organizations, users, GL accounts, fiscal
//! periods and balanced v1 transactions, made with set-based SQL.
//! (Stub: being written.)
use serde::Serialize;
use sqlx::PgPool;

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct SeedParams {
    pub organizations: u32,
    pub transactions: u64,
    pub lines: u32,
    pub from: chrono::NaiveDate,
    pub to: chrono::NaiveDate,
    pub seed: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SeedReport {
    pub organizations: Vec<SeededOrganization>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SeededOrganization {
    pub id: uuid::Uuid,
    pub code: String,
}

pub async fn seed_demo(_pool: &PgPool, _params: &SeedParams) -> Result<SeedReport> {
    Err(Error::Unimplemented("seed-demo"))
}

impl std::fmt::Display for SeedReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} organizations", self.organizations.len())
    }
}
