//! The phases a run executes in batches, each with its batch function in
//! `sql/functions/` (readable, testable and runnable from psql).
use crate::migration::progress::RunState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reverse and repost (`hera_migration_execute_batch_v2`).
    Execution,
    /// Put the originals back (`hera_migration_rollback_batch_v2`).
    Rollback,
}

impl Phase {
    pub fn parse(text: &str) -> Self {
        match text {
            "ROLLBACK" => Self::Rollback,
            _ => Self::Execution,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Execution => "EXECUTION",
            Self::Rollback => "ROLLBACK",
        }
    }

    /// One batch: `$1` the run, `$2` a batch size overriding the run's (or NULL).
    pub fn batch_sql(self) -> &'static str {
        match self {
            Self::Execution => "SELECT hera_migration_execute_batch_v2($1, $2)",
            Self::Rollback => "SELECT hera_migration_rollback_batch_v2($1, $2)",
        }
    }

    /// The state of a run whose phase found nothing left to do.
    pub fn completed(self) -> RunState {
        match self {
            Self::Execution => RunState::Succeeded,
            Self::Rollback => RunState::RolledBack,
        }
    }

    /// The span of the phase as a whole.
    pub fn span_name(self) -> &'static str {
        match self {
            Self::Execution => "migration.execution",
            Self::Rollback => "migration.rollback",
        }
    }
}
