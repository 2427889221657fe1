//! Operations: what an operator asks before and around a migration.
//! `CheckEnvironment` judges the database hera-migrate runs on (settings,
//! schema, indexes, isolation, connections, replicas and what PostgreSQL can
//! prove about backups); `MeasurePerformance` times what a migration and the
//! business depend on, records a baseline and compares tests with it.
//!
//! Catalog and statistics reads run on the login role's pool (in an owned
//! schema the service's own sessions work as `hera_migrate_app`, which may
//! read less); what a session of the service sees (its timeouts, its role) is
//! read on the service's pool. A read the database refuses for want of a
//! privilege is a check of result UNKNOWN naming what could not be read,
//! never an error and never a PASS.
mod backup;
mod connections;
mod environment;
mod installation;
pub mod performance;
mod samples;

use sqlx::PgPool;

use crate::{db::schema::SchemaInfo, error::Result};

pub use environment::Environment;
pub use performance::{Kind, Measurement, PerformanceReport, PerformanceRequest};

/// The result of one check or measurement.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Outcome {
    Pass,
    Warn,
    Fail,
    /// What the database cannot prove either way; never a PASS.
    Unknown,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Warn => "WARN",
            Self::Fail => "FAIL",
            Self::Unknown => "UNKNOWN",
        }
    }
}

/// One environment check: what was found, and what to do when it is not PASS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub result: Outcome,
    pub detail: String,
    /// Empty for a PASS.
    pub remedy: String,
}

impl Check {
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            result: Outcome::Pass,
            detail: detail.into(),
            remedy: String::new(),
        }
    }

    pub fn not_passing(
        name: impl Into<String>,
        result: Outcome,
        detail: impl Into<String>,
        remedy: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            result,
            detail: detail.into(),
            remedy: remedy.into(),
        }
    }

    /// A check whose facts could not be read (`why` says what and why).
    pub fn unreadable(name: impl Into<String>, why: &str) -> Self {
        let remedy = if why.starts_with("insufficient privilege") {
            "grant the login role hera-migrate connects as the privilege named (pg_monitor \
             covers the statistics views and settings), or check by hand"
        } else {
            "look into the database's answer in the detail, then check again"
        };
        Self::not_passing(name, Outcome::Unknown, why, remedy)
    }
}

/// What the operations read and where.
#[derive(Clone)]
pub struct Operations {
    /// The service's pool: scoped to one organization per transaction.
    pool: PgPool,
    /// The login role's pool: the catalog and statistics.
    admin: PgPool,
    schema: SchemaInfo,
    /// Every batch sets its own lock_timeout (HERA_BATCH_LOCK_TIMEOUT_MS).
    batch_lock_timeout_ms: u64,
}

impl Operations {
    pub fn new(
        pool: PgPool,
        admin: PgPool,
        schema: SchemaInfo,
        batch_lock_timeout_ms: u64,
    ) -> Self {
        Self {
            pool,
            admin,
            schema,
            batch_lock_timeout_ms,
        }
    }
}

/// A read's outcome: its value, or why it could not be read (a privilege
/// the role lacks, or another refusal of the database's). Lost connections
/// and the like stay errors.
pub(crate) type Readable<T> = std::result::Result<T, String>;

pub(crate) fn readable<T>(
    what: &str,
    read: std::result::Result<T, sqlx::Error>,
) -> Result<Readable<T>> {
    match read {
        Ok(value) => Ok(Ok(value)),
        Err(error) => match error.as_database_error() {
            Some(db) if db.code().as_deref() == Some("42501") => Ok(Err(format!(
                "insufficient privilege to read {what}: {}",
                db.message()
            ))),
            Some(db) => Ok(Err(format!("could not read {what}: {}", db.message()))),
            None => Err(error.into()),
        },
    }
}
