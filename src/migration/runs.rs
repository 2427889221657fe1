//! Migration runs as the service reads them: MIGRATION_RUN rows of
//! `universal_transactions`, their state and counters in `metadata` (zero
//! tables). Every read is scoped to the caller's organization, so a run of
//! another organization is simply not found.
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::{
    db::scope,
    error::{Error, Result},
};

const RUN_COLUMNS: &str = "SELECT id, organization_id, metadata, created_at, updated_at
                             FROM universal_transactions";

/// A run's row, with its metadata parsed.
#[derive(Debug, Clone)]
pub struct Run {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub record: RunRecord,
}

/// What a run's metadata holds (written by `hera_migration_create_run_v2` and
/// advanced by each batch).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RunRecord {
    pub state: String,
    pub phase: String,
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
    /// State changes so far: with the batch counts, a run's event sequence.
    pub state_changes: Option<u64>,
    /// Set once a rollback of the run has begun.
    pub rollback: Option<RollbackRecord>,
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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Parameters {
    pub from_date: String,
    pub to_date: String,
    pub batch_size: i32,
    pub smart_code_mappings: Vec<Value>,
    pub candidate_statuses: Vec<String>,
    pub dry_run: bool,
    pub closed_period_policy: Option<String>,
    pub max_transactions_per_second: Option<f64>,
    pub batch_delay_ms: u32,
    pub plan_fingerprint: String,
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

impl Run {
    fn from_row((id, organization_id, metadata, created_at, updated_at): RunRow) -> Result<Self> {
        let record = serde_json::from_value(metadata).map_err(|e| {
            Error::FailedPrecondition(format!("migration {id} has an unreadable record: {e}"))
        })?;
        Ok(Self {
            id,
            organization_id,
            created_at,
            updated_at,
            record,
        })
    }
}

type RunRow = (Uuid, Uuid, Value, DateTime<Utc>, DateTime<Utc>);

/// The run `id` of `organization_id`; NOT_FOUND when it is not this
/// organization's (its existence elsewhere is not revealed).
pub async fn get(pool: &PgPool, organization_id: Uuid, id: Uuid) -> Result<Run> {
    let mut tx = scope::begin_read_only(pool, organization_id).await?;
    let row: Option<RunRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{RUN_COLUMNS} WHERE organization_id = $1 AND id = $2 AND transaction_type = 'MIGRATION_RUN'"
    )))
    .bind(organization_id)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.rollback().await?;
    let row = row.ok_or_else(|| {
        Error::NotFound(format!(
            "migration_id: no migration {id} in organization {organization_id}"
        ))
    })?;
    Run::from_row(row)
}

const ACTIVE: &str = "SELECT id FROM universal_transactions
    WHERE organization_id = $1 AND transaction_type = 'MIGRATION_RUN' AND id IS DISTINCT FROM $2
      AND metadata ->> 'state' IN ('RUNNING', 'PAUSED') LIMIT 1";

/// The organization's active (running or paused) run, other than `except`.
pub async fn active(
    conn: &mut PgConnection,
    organization_id: Uuid,
    except: Option<Uuid>,
) -> Result<Option<Uuid>> {
    Ok(sqlx::query_scalar(ACTIVE)
        .bind(organization_id)
        .bind(except)
        .fetch_optional(conn)
        .await?)
}

/// ABORTED naming the organization's active run (other than `except`), if
/// it has one: it holds the organization's lease and locks its rows.
/// `meanwhile` says what waits for it.
pub async fn refuse_while_active(
    pool: &PgPool,
    organization_id: Uuid,
    except: Option<Uuid>,
    meanwhile: &str,
) -> Result<()> {
    let mut tx = scope::begin_read_only(pool, organization_id).await?;
    let other = active(&mut tx, organization_id, except).await?;
    tx.rollback().await?;
    match other {
        Some(other) => Err(Error::Aborted(format!(
            "organization {organization_id} has an active migration {other}; {meanwhile}"
        ))),
        None => Ok(()),
    }
}

/// Where a listing page starts: after this (created_at, id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageToken {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

impl PageToken {
    pub fn encode(self) -> String {
        format!("{}_{}", self.created_at.timestamp_micros(), self.id)
    }

    pub fn decode(token: &str) -> Result<Option<Self>> {
        if token.is_empty() {
            return Ok(None);
        }
        let invalid = || Error::invalid("page_token", "is not a token this service returned");
        let (micros, id) = token.split_once('_').ok_or_else(invalid)?;
        let created_at = micros
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_micros)
            .ok_or_else(invalid)?;
        let id = Uuid::parse_str(id).map_err(|_| invalid())?;
        Ok(Some(Self { created_at, id }))
    }
}

pub const DEFAULT_PAGE: i64 = 50;
pub const MAX_PAGE: i64 = 500;

/// Runs of an organization, newest first, optionally only in `states`.
pub async fn list(
    pool: &PgPool,
    organization_id: Uuid,
    states: &[String],
    page_size: i64,
    after: Option<PageToken>,
) -> Result<(Vec<Run>, Option<PageToken>)> {
    let mut tx = scope::begin_read_only(pool, organization_id).await?;
    let rows: Vec<RunRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{RUN_COLUMNS}
          WHERE organization_id = $1 AND transaction_type = 'MIGRATION_RUN'
            AND (cardinality($2::text[]) = 0 OR metadata ->> 'state' = ANY ($2))
            AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
          ORDER BY created_at DESC, id DESC
          LIMIT $5"
    )))
    .bind(organization_id)
    .bind(states)
    .bind(after.map(|t| t.created_at))
    .bind(after.map(|t| t.id))
    .bind(page_size + 1)
    .fetch_all(&mut *tx)
    .await?;
    tx.rollback().await?;
    let more = rows.len() as i64 > page_size;
    let runs: Vec<Run> = rows
        .into_iter()
        .take(page_size as usize)
        .map(Run::from_row)
        .collect::<Result<_>>()?;
    let next = more.then(|| {
        let last = runs.last().expect("a full page");
        PageToken {
            created_at: last.created_at,
            id: last.id,
        }
    });
    Ok((runs, next))
}

/// A page size: 0 means the default, at most `MAX_PAGE`.
pub fn page_size(value: i32) -> Result<i64> {
    match i64::from(value) {
        0 => Ok(DEFAULT_PAGE),
        n @ 1..=MAX_PAGE => Ok(n),
        n => Err(Error::invalid(
            "page_size",
            format!("{n} is out of range (1 to {MAX_PAGE}, or 0 for {DEFAULT_PAGE})"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_garbage_is_named() {
        let token = PageToken {
            created_at: DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap(),
            id: Uuid::new_v4(),
        };
        assert_eq!(PageToken::decode(&token.encode()).unwrap(), Some(token));
        assert_eq!(PageToken::decode("").unwrap(), None);
        assert!(
            PageToken::decode("x_y")
                .unwrap_err()
                .to_string()
                .starts_with("page_token:")
        );
    }
}
