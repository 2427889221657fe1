//! A migration run, modelled once: a MIGRATION_RUN row of
//! `universal_transactions` whose metadata holds its record (zero tables).
//! Its state, phase and parameters are typed here, their defaults applied
//! once; every read and write of the row goes through `store`.
pub mod store;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use std::collections::BTreeMap;

use super::{
    input::{self, Mapping},
    signals,
};

pub use store::PageToken;

/// The states of a run, spelled as the API and the run's row spell them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunState {
    #[default]
    Running,
    Paused,
    Succeeded,
    Failed,
    Cancelled,
    RolledBack,
}

impl RunState {
    pub const ALL: [RunState; 6] = [
        Self::Running,
        Self::Paused,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
        Self::RolledBack,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Paused => "PAUSED",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
            Self::RolledBack => "ROLLED_BACK",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == text)
    }

    pub fn is_terminal(self) -> bool {
        !self.is_active()
    }

    /// Running or paused: the run holds its organization.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Running | Self::Paused)
    }
}

/// The phases a run executes in batches, each with its batch function in
/// `sql/functions/` (readable, testable and runnable from psql). Adding a
/// phase is a variant here and its SQL function, and its span in the
/// executor (tracing wants span names as literals).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Phase {
    /// Reverse and repost (`hera_migration_execute_batch_v2`).
    #[default]
    Execution,
    /// Put the originals back (`hera_migration_rollback_batch_v2`).
    Rollback,
    /// Apply reporting aliases, a run of its own
    /// (`hera_migration_alias_batch_v2`).
    Aliasing,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Execution => "EXECUTION",
            Self::Rollback => "ROLLBACK",
            Self::Aliasing => "ALIASING",
        }
    }

    /// One batch: `$1` the run, `$2` the batch size.
    pub fn batch_sql(self) -> &'static str {
        match self {
            Self::Execution => "SELECT hera_migration_execute_batch_v2($1, $2)",
            Self::Rollback => "SELECT hera_migration_rollback_batch_v2($1, $2)",
            Self::Aliasing => "SELECT hera_migration_alias_batch_v2($1, $2)",
        }
    }

    /// The state of a run whose phase found nothing left to do.
    pub fn completed(self) -> RunState {
        match self {
            Self::Execution => RunState::Succeeded,
            Self::Rollback => RunState::RolledBack,
            Self::Aliasing => RunState::Succeeded,
        }
    }
}

/// What a run does when a candidate's period takes no postings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClosedPeriodPolicy {
    #[default]
    Skip,
    PostToOpenPeriod,
}

impl ClosedPeriodPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "SKIP",
            Self::PostToOpenPeriod => "POST_TO_OPEN_PERIOD",
        }
    }
}

/// A run's parameters, as its row records them; every default is applied
/// when a request is decoded, so what is read here is what runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Parameters {
    pub from_date: NaiveDate,
    pub to_date: NaiveDate,
    pub batch_size: i32,
    pub smart_code_mappings: Vec<Mapping>,
    pub candidate_statuses: Vec<String>,
    pub closed_period_policy: ClosedPeriodPolicy,
    pub dry_run: bool,
    /// None: no limit.
    pub max_transactions_per_second: Option<f64>,
    pub batch_delay_ms: u32,
    /// Size batches to this work time (see `engine::sizing`); None or 0: every
    /// batch is `batch_size`, which is then where sizing starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_batch_ms: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_batch_size: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_batch_size: Option<i32>,
    /// The operator's settings of the database signals its pace listens to
    /// (see `migration::signals`); unlisted signals keep their defaults.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub signals: signals::Settings,
    /// The plan the run was started on (empty in what a request asked for).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub plan_fingerprint: String,
}

impl Default for Parameters {
    fn default() -> Self {
        Self {
            from_date: NaiveDate::MIN,
            to_date: NaiveDate::MAX,
            batch_size: input::DEFAULT_BATCH,
            smart_code_mappings: Vec::new(),
            candidate_statuses: vec![input::CANDIDATE_STATUSES[0].to_owned()],
            closed_period_policy: ClosedPeriodPolicy::Skip,
            dry_run: false,
            max_transactions_per_second: None,
            batch_delay_ms: 0,
            target_batch_ms: None,
            min_batch_size: None,
            max_batch_size: None,
            signals: signals::Settings::new(),
            plan_fingerprint: String::new(),
        }
    }
}

/// What a run's metadata holds (written by `hera_migration_create_run_v2`
/// and advanced by each batch).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RunRecord {
    pub state: RunState,
    pub phase: Phase,
    pub parameters: Parameters,
    pub started_by: Option<Uuid>,
    pub request_id: Option<String>,
    pub counters: Counters,
    pub quarantined_ids: Vec<Uuid>,
    /// The quarantined, with the rule that stood in the way and why.
    pub quarantined: Vec<SetAside>,
    pub total_candidates: Option<i64>,
    pub finished_at: Option<DateTime<Utc>>,
    pub message: Option<String>,
    /// Set once a rollback of the run has begun.
    pub rollback: Option<RollbackRecord>,
    /// An ALIASING run's application of aliases.
    pub aliasing: Option<AliasingRecord>,
}

/// An application of reporting aliases, as `hera_migration_alias_batch_v2`
/// advances it (its counters: processed looked at, migrated aliased,
/// skipped_unmapped already aliased, refused refused by the database).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AliasingRecord {
    pub alias_batch_id: Option<Uuid>,
    /// The run whose skipped transactions it aliases; None: organization-wide.
    pub migration_id: Option<Uuid>,
    /// The ALIAS audit row, once the last batch recorded it.
    pub operation_id: Option<Uuid>,
    pub refused: Vec<SetAside>,
}

/// A run's rollback, as `hera_migration_rollback_batch_v2` advances it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RollbackRecord {
    pub reason: Option<String>,
    pub request_id: Option<String>,
    pub counters: Counters,
    /// Originals whose restore the database refused (they stay migrated).
    pub refused: Vec<SetAside>,
}

/// A transaction set aside by a batch (quarantined), or whose restore was
/// refused: the rule and the reason, in the database's words where it spoke.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SetAside {
    pub transaction_id: Option<Uuid>,
    pub rule: String,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default)]
pub struct Counters {
    pub batches: i64,
    pub processed: i64,
    pub migrated: i64,
    pub skipped_closed: i64,
    pub skipped_unmapped: i64,
    pub quarantined: i64,
    /// Rollback only: originals whose restore is refused now.
    pub refused: i64,
}

/// A run's row, with its metadata parsed.
#[derive(Debug, Clone)]
pub struct Run {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub record: RunRecord,
    /// Its latest event (what GetMigration and ListMigrations show).
    pub latest: crate::migration::progress::Progress,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_know_when_they_end() {
        for state in RunState::ALL {
            assert_eq!(RunState::parse(state.as_str()), Some(state));
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                serde_json::json!(state.as_str())
            );
        }
        assert!(RunState::Cancelled.is_terminal());
        assert!(!RunState::Paused.is_terminal());
    }

    #[test]
    fn unbounded_dates_round_trip_through_a_runs_record() {
        let parameters = Parameters::default();
        let json = serde_json::to_value(&parameters).unwrap();
        let read: Parameters = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(read, parameters, "{json}");
    }

    #[test]
    fn a_record_reads_with_every_default_in_place() {
        let record: RunRecord = serde_json::from_value(serde_json::json!({
            "state": "ROLLED_BACK", "phase": "ROLLBACK",
            "parameters": {"from_date": "2024-01-01", "to_date": "2024-12-31",
                           "closed_period_policy": "POST_TO_OPEN_PERIOD"}
        }))
        .unwrap();
        assert_eq!(
            (record.state, record.phase),
            (RunState::RolledBack, Phase::Rollback)
        );
        let p = &record.parameters;
        assert_eq!(p.batch_size, input::DEFAULT_BATCH);
        assert_eq!(p.candidate_statuses, ["posted"]);
        assert_eq!(p.closed_period_policy, ClosedPeriodPolicy::PostToOpenPeriod);
        assert_eq!(p.from_date.to_string(), "2024-01-01");
    }
}
