//! A run's event history (`sql/functions/events.sql`): appended in the
//! transaction of the change it records, read back in sequence.
use serde_json::Value;
use sqlx::{PgConnection, PgPool, types::Json};
use uuid::Uuid;

use crate::{db::scope, error::Result, migration::progress::Progress};

const APPEND: &str = "SELECT hera_migration_append_event_v2($1, $2, $3)";
const AFTER: &str = "SELECT l.line_data FROM universal_transaction_lines l
    WHERE l.transaction_id = $1 AND l.organization_id = $2 AND l.line_type = 'MIGRATION_EVENT'
      AND l.line_number > $3
    ORDER BY l.line_number
    LIMIT $4";
const ROLLBACK_BEGAN: &str =
    "SELECT (coalesce(max(l.line_number), 1) - 1)::bigint FROM universal_transaction_lines l
    WHERE l.transaction_id = $1 AND l.organization_id = $2 AND l.line_type = 'MIGRATION_EVENT'
      AND l.line_data ->> 'kind' = 'ROLLBACK_STARTED'";

/// Appends an event to run `id`'s history in `conn`'s transaction (`event`:
/// its kind, message, health and what the writer measured); the event as
/// stored, with its sequence.
pub async fn append_event(
    conn: &mut PgConnection,
    id: Uuid,
    event: &Value,
    actor: Option<Uuid>,
) -> Result<Progress> {
    let Json(event): Json<Progress> = sqlx::query_scalar(APPEND)
        .bind(id)
        .bind(event)
        .bind(actor)
        .fetch_one(conn)
        .await?;
    Ok(event)
}

/// At most `limit` events of run `id` after sequence `after`, in order.
pub async fn events_after(
    pool: &PgPool,
    organization_id: Uuid,
    id: Uuid,
    after: u64,
    limit: i64,
) -> Result<Vec<Progress>> {
    let mut tx = scope::begin_read_only(pool, organization_id).await?;
    let events: Vec<Json<Progress>> = sqlx::query_scalar(AFTER)
        .bind(id)
        .bind(organization_id)
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
    tx.rollback().await?;
    Ok(events.into_iter().map(|Json(event)| event).collect())
}

/// The sequence after which run `id`'s latest rollback began.
pub async fn rollback_began_after(pool: &PgPool, organization_id: Uuid, id: Uuid) -> Result<u64> {
    let mut tx = scope::begin_read_only(pool, organization_id).await?;
    let sequence: i64 = sqlx::query_scalar(ROLLBACK_BEGAN)
        .bind(id)
        .bind(organization_id)
        .fetch_one(&mut *tx)
        .await?;
    tx.rollback().await?;
    Ok(u64::try_from(sequence).unwrap_or(0))
}

/// The latest event through the one SQL definition of it
/// (`hera_migration_latest_event_v2`: a run recorded before events existed
/// answers the one its record makes).
const LATEST: &str =
    "SELECT hera_migration_latest_event_v2(id, organization_id, metadata, updated_at)
      FROM universal_transactions
     WHERE id = $1 AND organization_id = $2 AND transaction_type = 'MIGRATION_RUN'";

/// Run `id`'s latest event, in `conn`'s transaction (after a change that
/// appended one in SQL, to log it).
pub async fn latest_event(
    conn: &mut PgConnection,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Progress> {
    let Json(event): Json<Progress> = sqlx::query_scalar(LATEST)
        .bind(id)
        .bind(organization_id)
        .fetch_one(conn)
        .await?;
    Ok(event)
}

/// Run `id`'s latest event, read alone (a watcher's check between events).
pub async fn latest_of(pool: &PgPool, organization_id: Uuid, id: Uuid) -> Result<Progress> {
    let mut tx = scope::begin_read_only(pool, organization_id).await?;
    let event = latest_event(&mut tx, organization_id, id).await?;
    tx.rollback().await?;
    Ok(event)
}
