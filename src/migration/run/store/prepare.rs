//! What a run's executor records before its first write: the plan of a run
//! that streamed before it was checked, and the trial balance it reads beside
//! the batches (`sql/functions/run.sql`).
use serde_json::Value;
use sqlx::{PgConnection, types::Json};
use uuid::Uuid;

use crate::error::Result;

const RECORD_PLAN: &str = "SELECT hera_migration_record_plan_v2($1, $2)";
const MARK_TRIAL_BALANCE: &str = "SELECT hera_migration_record_trial_balance_v2($1)";
const RECORD_TRIAL_BALANCE: &str = "SELECT hera_migration_record_trial_balance_v2($1, $2)";
const READ_TRIAL_BALANCE: &str = "SELECT hera_migration_ledger_snapshot_v2($1)";

/// Records the checked plan (the preview's answer) of run `id`.
pub async fn record_plan(conn: &mut PgConnection, id: Uuid, plan: &Value) -> Result<()> {
    sqlx::query(RECORD_PLAN)
        .bind(id)
        .bind(Json(plan))
        .execute(conn)
        .await?;
    Ok(())
}

/// Marks the run's trial balance as being read (no batch takes it then);
/// false when it holds one already, or ran a batch (too late to read one).
pub async fn mark_trial_balance_pending(conn: &mut PgConnection, id: Uuid) -> Result<bool> {
    Ok(sqlx::query_scalar(MARK_TRIAL_BALANCE)
        .bind(id)
        .fetch_one(conn)
        .await?)
}

/// The organization's trial balance as a run's snapshot holds it, read in
/// the caller's transaction (and so as of its snapshot).
pub async fn read_trial_balance(conn: &mut PgConnection, organization_id: Uuid) -> Result<Value> {
    let Json(trial_balance) = sqlx::query_scalar(READ_TRIAL_BALANCE)
        .bind(organization_id)
        .fetch_one(conn)
        .await?;
    Ok(trial_balance)
}

/// Records what `read_trial_balance` read, in place of the mark.
pub async fn record_trial_balance(
    conn: &mut PgConnection,
    id: Uuid,
    trial_balance: &Value,
) -> Result<()> {
    sqlx::query(RECORD_TRIAL_BALANCE)
        .bind(id)
        .bind(Json(trial_balance))
        .execute(conn)
        .await?;
    Ok(())
}
