//! AssessFailure: a run's diagnosis, read-only. It reads the run's record,
//! its whole event history (every page), what committed (the run's
//! MIGRATION_OPERATION rows), the validation suite run read-only with
//! `allow_partial` (`hera_migration_validate_v2`; nothing is recorded) and
//! the latest validation that was recorded; `advice` then decides what to do.
use chrono::{DateTime, Utc};
use sqlx::{PgPool, types::Json};
use uuid::Uuid;

use super::{
    advice::{self, Advice},
    history,
};
use crate::{
    db::scope,
    error::{Error, Result},
    migration::{
        progress::{EventKind, Progress},
        run::{Counters, Parameters, Phase, Run, RunState, SetAside, store},
        validation::{Check, Report},
    },
};

const OPERATIONS: &str = include_str!("../../sql/queries/incident_operations.sql");
const LATEST_VALIDATION: &str = include_str!("../../sql/queries/incident_validation.sql");
const VALIDATE: &str = "SELECT hera_migration_validate_v2($1, true)";
/// Events read from the history at a time.
const PAGE: i64 = 1000;

/// How this server's batches treat the business's row locks
/// (HERA_BATCH_LOCK_TIMEOUT_MS, HERA_BATCH_LOCK_RETRIES).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LockSettings {
    pub timeout_ms: u64,
    pub retries: u32,
}

/// What committed, as the run's MIGRATION_OPERATION rows record it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Committed {
    /// REVERSE_REPOST batches, and the originals they migrated.
    pub batches: i64,
    pub migrated: i64,
    /// ROLLBACK batches, and the originals they restored.
    pub rollback_batches: i64,
    pub restored: i64,
}

/// The run's failure: the ENDED event that recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub sequence: u64,
    pub at: DateTime<Utc>,
    pub phase: Phase,
    /// The batch that was being attempted (the last committed + 1).
    pub batch_number: i64,
    /// In the database's own words, as the executor recorded it.
    pub message: String,
}

/// A validation recorded for the run (a MIGRATION_VALIDATION row).
#[derive(Debug, Clone)]
pub struct RecordedValidation {
    pub id: Uuid,
    pub recorded_at: DateTime<Utc>,
    pub recorded_by: Option<Uuid>,
    pub report: Report,
}

/// A run's diagnosis.
#[derive(Debug, Clone)]
pub struct Assessment {
    pub run: Run,
    pub events: Vec<Progress>,
    pub committed: Committed,
    /// The run failed (it is FAILED now): how.
    pub failure: Option<Failure>,
    /// Candidates after the run's cursor (the completeness check's count).
    pub pending: i64,
    /// Originals of the run still migrated (reversed and reposted).
    pub still_migrated: i64,
    /// The validation suite now, read-only with allow_partial; None for an
    /// application of reporting aliases (which has none).
    pub checks: Option<Report>,
    pub latest_validation: Option<RecordedValidation>,
    pub lock: LockSettings,
    pub assessed_at: DateTime<Utc>,
    pub advice: Advice,
}

impl Assessment {
    pub fn id(&self) -> Uuid {
        self.run.id
    }

    pub fn organization_id(&self) -> Uuid {
        self.run.organization_id
    }

    pub fn state(&self) -> RunState {
        self.run.record.state
    }

    pub fn phase(&self) -> Phase {
        self.run.record.phase
    }

    pub fn dry_run(&self) -> bool {
        self.run.record.parameters.dry_run
    }

    pub fn parameters(&self) -> &Parameters {
        &self.run.record.parameters
    }

    pub fn counters(&self) -> Counters {
        self.run.record.counters
    }

    pub fn quarantined(&self) -> &[SetAside] {
        &self.run.record.quarantined
    }

    pub fn rollback_refused(&self) -> &[SetAside] {
        self.run
            .record
            .rollback
            .as_ref()
            .map(|r| r.refused.as_slice())
            .unwrap_or_default()
    }

    /// The last batch the run committed in its current phase (that took
    /// transactions: the one that finds the end takes none).
    pub fn last_batch_number(&self) -> i64 {
        if self.events.is_empty() {
            return self.run.latest.batch_number;
        }
        self.events
            .iter()
            .rev()
            .find(|e| e.kind == EventKind::Batch && e.phase == self.phase())
            .map_or(0, |e| e.batch_number)
    }

    /// The error the run failed with (empty unless it is FAILED).
    pub fn last_error(&self) -> &str {
        self.failure.as_ref().map_or("", |f| f.message.as_str())
    }

    pub fn count(&self, kind: EventKind) -> i64 {
        history::count(&self.events, kind)
    }

    /// A check of the suite by name.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.as_ref()?.checks.iter().find(|c| c.name == name)
    }

    /// The run's reversals and reposts balance and the trial balance is the
    /// one recorded before its first write (an application of aliases moves
    /// no amount).
    pub fn ledger_balanced(&self) -> bool {
        ["gl_balance", "trial_balance"]
            .iter()
            .all(|name| self.check(name).is_none_or(|c| c.result != "FAIL"))
    }

    /// The ledger's state in words.
    pub fn ledger_summary(&self) -> String {
        match (self.check("trial_balance"), self.check("gl_balance")) {
            (Some(tb), Some(gl)) => format!(
                "trial balance {}: {}; reversals and reposts {}: {}",
                tb.result, tb.summary, gl.result, gl.summary
            ),
            _ if self.phase() == Phase::Aliasing => {
                "an application of reporting aliases changes metadata only: no amount moved".into()
            }
            _ => "not checked".into(),
        }
    }
}

/// Assesses run `id` of `organization_id` (NOT_FOUND otherwise), writing nothing.
pub async fn assess(
    pool: &PgPool,
    organization_id: Uuid,
    id: Uuid,
    lock: LockSettings,
) -> Result<Assessment> {
    let run = store::get(pool, organization_id, id).await?;
    let events = every_event(pool, organization_id, id).await?;
    let mut tx = scope::begin_read_only(pool, organization_id).await?;
    let (batches, migrated, rollback_batches, restored): (i64, i64, i64, i64) =
        sqlx::query_as(OPERATIONS)
            .bind(organization_id)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
    let checks = match run.record.phase {
        Phase::Aliasing => None,
        _ => {
            let Json(raw): Json<serde_json::Value> = sqlx::query_scalar(VALIDATE)
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            Some(readable(raw, "the validation report")?)
        }
    };
    let latest: Option<(Uuid, DateTime<Utc>, Option<Uuid>, serde_json::Value)> =
        sqlx::query_as(LATEST_VALIDATION)
            .bind(organization_id)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    tx.rollback().await?;
    let latest_validation = match latest {
        Some((id, recorded_at, recorded_by, raw)) => Some(RecordedValidation {
            id,
            recorded_at,
            recorded_by,
            report: readable(raw, "the recorded validation")?,
        }),
        None => None,
    };
    let committed = Committed {
        batches,
        migrated,
        rollback_batches,
        restored,
    };
    let failure = failure(&run, &events);
    let detail = |name: &str| {
        let check = checks
            .as_ref()?
            .checks
            .iter()
            .find(|c| c.name == "completeness")?;
        check.details.get(name)?.as_str()?.parse::<i64>().ok()
    };
    let pending = detail("pending").unwrap_or(0);
    let still_migrated = match run.record.parameters.dry_run {
        true => 0,
        false => {
            detail("still_migrated").unwrap_or((committed.migrated - committed.restored).max(0))
        }
    };
    let mut assessment = Assessment {
        run,
        events,
        committed,
        failure,
        pending,
        still_migrated,
        checks,
        latest_validation,
        lock,
        assessed_at: Utc::now(),
        advice: Advice::default(),
    };
    assessment.advice = advice::advise(&assessment);
    Ok(assessment)
}

/// Every event of the run's history, page by page.
async fn every_event(pool: &PgPool, organization_id: Uuid, id: Uuid) -> Result<Vec<Progress>> {
    let mut events: Vec<Progress> = Vec::new();
    loop {
        let after = events.last().map_or(0, |e| e.sequence);
        let page = store::events_after(pool, organization_id, id, after, PAGE).await?;
        let full = page.len() as i64 == PAGE;
        events.extend(page);
        if !full {
            return Ok(events);
        }
    }
}

/// How a FAILED run failed: its latest FAILED end (or, for a run recorded
/// before events existed, its record's message).
fn failure(run: &Run, events: &[Progress]) -> Option<Failure> {
    if run.record.state != RunState::Failed {
        return None;
    }
    let message = run.record.message.clone().unwrap_or_default();
    Some(match history::failures(events).last() {
        Some(end) => Failure {
            sequence: end.sequence,
            at: end.emitted_at,
            phase: end.phase,
            batch_number: end.batch_number + 1,
            message: if end.message.is_empty() {
                message
            } else {
                end.message.clone()
            },
        },
        None => Failure {
            sequence: 0,
            at: run.record.finished_at.unwrap_or(run.updated_at),
            phase: run.record.phase,
            batch_number: run.latest.batch_number + 1,
            message,
        },
    })
}

fn readable(raw: serde_json::Value, what: &str) -> Result<Report> {
    serde_json::from_value(raw)
        .map_err(|e| Error::FailedPrecondition(format!("{what} is unreadable: {e}")))
}
