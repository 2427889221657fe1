//! The run store: every read and write of a run's row. Each write is one of
//! the SQL functions in `sql/functions/run.sql` (or the rollback's begin in
//! `rollback.sql`), so psql and the service change a run the same way. Every
//! read is scoped to the caller's organization: a run of another organization
//! is simply not found.
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool, types::Json};
use uuid::Uuid;

mod batch;
mod events;
mod list;
mod prepare;

pub use batch::{AfterBatch, after_batch, keep_dry_run_position, lease_generation, take_lease};
pub use events::{append_event, events_after, latest_event, latest_of, rollback_began_after};
pub use list::{PageToken, list, page_size};
pub use prepare::{
    mark_trial_balance_pending, read_trial_balance, record_plan, record_trial_balance,
};

use super::{Parameters, Run, RunState};
use crate::{
    db::scope,
    error::{Error, Refusal, Result},
};

const RUN_COLUMNS: &str = "SELECT id, organization_id, metadata, created_at, updated_at,
           hera_migration_latest_event_v2(id, organization_id, metadata, updated_at)
      FROM universal_transactions";
const CREATE: &str = "SELECT hera_migration_create_run_v2($1, $2, $3, $4)";
const CREATE_ALIASING: &str = "SELECT hera_migration_create_alias_run_v2($1, $2, $3, $4, $5)";
/// Request ids are per kind of run: a start's and an application of aliases'
/// never meet.
const FIND_BY_REQUEST: &str = "SELECT id, coalesce(metadata -> 'requested', 'null') FROM universal_transactions
    WHERE organization_id = $1 AND transaction_type = 'MIGRATION_RUN' AND metadata ->> 'request_id' = $2
      AND (metadata ->> 'phase' = 'ALIASING') = $3";
const SERIALIZE_STARTS: &str =
    "SELECT pg_advisory_xact_lock(hashtextextended('hera-migrate:start:' || $1::text, 0))";
const PATCH: &str = "SELECT hera_migration_update_run_v2($1, $2)";
const SET_STATE: &str = "SELECT hera_migration_set_state_v2($1, $2, $3, $4, $5)";
const SET_PARAMETERS: &str = "SELECT hera_migration_set_parameters_v2($1, $2, $3)";
const BEGIN_ROLLBACK: &str = "SELECT hera_migration_begin_rollback_v2($1, $2, $3, $4)";
const LOCK: &str = "SELECT metadata ->> 'state', coalesce(metadata ->> 'phase', 'EXECUTION'),
           coalesce((metadata #>> '{parameters,dry_run}')::boolean, false),
           metadata #>> '{rollback,request_id}',
           coalesce(jsonb_array_length(metadata #> '{rollback,refused}'), 0)::bigint
      FROM universal_transactions
     WHERE organization_id = $1 AND id = $2 AND transaction_type = 'MIGRATION_RUN'
       FOR UPDATE";
const STATE_AND_PARAMETERS: &str = "SELECT metadata ->> 'state', metadata -> 'parameters'
      FROM universal_transactions WHERE id = $1 AND organization_id = $2";
const RUNNING_EVERYWHERE: &str = include_str!("../../../../sql/queries/running_runs.sql");
const ACTIVE: &str = "SELECT id FROM universal_transactions
    WHERE organization_id = $1 AND transaction_type = 'MIGRATION_RUN' AND id IS DISTINCT FROM $2
      AND metadata ->> 'state' IN ('RUNNING', 'PAUSED') LIMIT 1";

type RunRow = (Uuid, Uuid, Value, DateTime<Utc>, DateTime<Utc>, Value);

fn from_row(
    (id, organization_id, metadata, created_at, updated_at, latest): RunRow,
) -> Result<Run> {
    let unreadable = |e: serde_json::Error| {
        Error::FailedPrecondition(format!("migration {id} has an unreadable record: {e}"))
    };
    Ok(Run {
        id,
        organization_id,
        created_at,
        updated_at,
        record: serde_json::from_value(metadata).map_err(unreadable)?,
        latest: serde_json::from_value(latest).map_err(unreadable)?,
    })
}

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
    let row = row.ok_or_else(|| Error::RunNotFound {
        organization_id,
        id,
    })?;
    from_row(row)
}

/// Creates a run of `parameters`, RUNNING in phase EXECUTION; its id.
pub async fn create(
    conn: &mut PgConnection,
    organization_id: Uuid,
    actor: Uuid,
    parameters: &Parameters,
    request_id: Option<&str>,
) -> Result<Uuid> {
    Ok(sqlx::query_scalar(CREATE)
        .bind(organization_id)
        .bind(actor)
        .bind(Json(parameters))
        .bind(request_id)
        .fetch_one(conn)
        .await?)
}

/// Creates an application of reporting aliases to the transactions
/// `migration_id` skipped (organization-wide without one), RUNNING in phase
/// ALIASING; its id. The SQL checks the mappings and counts what is eligible.
pub async fn create_aliasing(
    conn: &mut PgConnection,
    organization_id: Uuid,
    actor: Uuid,
    parameters: &Parameters,
    migration_id: Option<Uuid>,
    request_id: Option<&str>,
) -> Result<Uuid> {
    Ok(sqlx::query_scalar(CREATE_ALIASING)
        .bind(organization_id)
        .bind(actor)
        .bind(Json(parameters))
        .bind(migration_id)
        .bind(request_id)
        .fetch_one(conn)
        .await?)
}

/// Holds, until the transaction ends, the organization's right to create a
/// run: one creation at a time, across replicas, so that a retried request
/// finds the run its first attempt created.
pub async fn serialize_starts(conn: &mut PgConnection, organization_id: Uuid) -> Result<()> {
    sqlx::query(SERIALIZE_STARTS)
        .bind(organization_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The run a `request_id` created (an application of aliases when
/// `aliasing`, else a start), with the parameters it was asked for.
pub async fn find_by_request(
    conn: &mut PgConnection,
    organization_id: Uuid,
    request_id: &str,
    aliasing: bool,
) -> Result<Option<(Uuid, Value)>> {
    Ok(sqlx::query_as(FIND_BY_REQUEST)
        .bind(organization_id)
        .bind(request_id)
        .bind(aliasing)
        .fetch_optional(conn)
        .await?)
}

/// Merges `patch` into the run's metadata (not its state: see `set_state`).
pub async fn patch(conn: &mut PgConnection, id: Uuid, patch: Value) -> Result<()> {
    sqlx::query(PATCH)
        .bind(id)
        .bind(patch)
        .execute(conn)
        .await?;
    Ok(())
}

/// Moves the run to `state`, if it is in one of `from` (any, when empty).
/// Whether it moved.
pub async fn set_state(
    conn: &mut PgConnection,
    id: Uuid,
    state: RunState,
    actor: Option<Uuid>,
    message: Option<&str>,
    from: &[RunState],
) -> Result<bool> {
    let from: Option<Vec<&str>> =
        (!from.is_empty()).then(|| from.iter().map(|s| s.as_str()).collect());
    Ok(sqlx::query_scalar(SET_STATE)
        .bind(id)
        .bind(state.as_str())
        .bind(actor)
        .bind(message)
        .bind(from)
        .fetch_one(conn)
        .await?)
}

/// Merges `changes` into the run's parameters (UpdateMigration).
pub async fn set_parameters(
    conn: &mut PgConnection,
    id: Uuid,
    changes: Value,
    actor: Uuid,
) -> Result<()> {
    sqlx::query(SET_PARAMETERS)
        .bind(id)
        .bind(changes)
        .bind(actor)
        .execute(conn)
        .await?;
    Ok(())
}

/// Turns the (locked) run into a rollback: RUNNING in phase ROLLBACK.
pub async fn begin_rollback(
    conn: &mut PgConnection,
    id: Uuid,
    actor: Uuid,
    reason: &str,
    request_id: &str,
) -> Result<()> {
    sqlx::query(BEGIN_ROLLBACK)
        .bind(id)
        .bind(actor)
        .bind(reason)
        .bind(request_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// What the controls and a rollback decide on: a run's row, locked.
pub struct LockedRun {
    pub state: RunState,
    pub phase: super::Phase,
    pub dry_run: bool,
    /// The request id of its rollback, once one began.
    pub rollback_request_id: Option<String>,
    /// Originals whose restore the database refused in its rollback.
    pub rollback_refused: i64,
}

/// LOCK's columns: state, phase, dry run, rollback request id, refused restores.
type LockedRow = (Option<String>, String, bool, Option<String>, i64);

/// Locks run `id`'s row; NOT_FOUND outside the organization.
pub async fn lock(conn: &mut PgConnection, organization_id: Uuid, id: Uuid) -> Result<LockedRun> {
    let row: Option<LockedRow> = sqlx::query_as(LOCK)
        .bind(organization_id)
        .bind(id)
        .fetch_optional(conn)
        .await?;
    let (state, phase, dry_run, rollback_request_id, rollback_refused) =
        row.ok_or_else(|| Error::RunNotFound {
            organization_id,
            id,
        })?;
    Ok(LockedRun {
        // A state that is not one of ours is not running any more.
        state: state
            .as_deref()
            .map_or(Some(RunState::Running), RunState::parse)
            .unwrap_or(RunState::Failed),
        phase: serde_json::from_value(Value::String(phase)).unwrap_or_default(),
        dry_run,
        rollback_request_id,
        rollback_refused,
    })
}

/// The run's state and parameters as its row holds them now.
pub async fn state_and_parameters(
    pool: &PgPool,
    organization_id: Uuid,
    id: Uuid,
) -> Result<(RunState, Parameters)> {
    let mut tx = scope::begin_read_only(pool, organization_id).await?;
    let (state, Json(parameters)): (Option<String>, Json<Parameters>) =
        sqlx::query_as(STATE_AND_PARAMETERS)
            .bind(id)
            .bind(organization_id)
            .fetch_one(&mut *tx)
            .await?;
    tx.rollback().await?;
    let state = state
        .as_deref()
        .and_then(RunState::parse)
        .unwrap_or(RunState::Failed);
    Ok((state, parameters))
}

/// Every run recorded RUNNING, in every organization, as (id, organization):
/// read through `admin`, the login role, which row security does not scope.
pub async fn running_everywhere(admin: &PgPool) -> Result<Vec<(Uuid, Uuid)>> {
    Ok(sqlx::query_as(RUNNING_EVERYWHERE).fetch_all(admin).await?)
}

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
        Some(other) => Err(Error::refused(
            Refusal::RunAlreadyActive,
            format!("organization {organization_id} has an active migration {other}; {meanwhile}"),
        )
        .naming("active_migration_id", other)),
        None => Ok(()),
    }
}
