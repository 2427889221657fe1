//! What a batch's transaction reads of its run's row, and the lease's fence:
//! the generation a server moves on when it takes a run, and reads again
//! (under the row's lock) before it commits anything of it.
use serde_json::Value;
use sqlx::{PgConnection, types::Json};
use uuid::Uuid;

use super::patch;
use crate::{error::Result, migration::run::Parameters};

const AFTER_BATCH: &str = "SELECT metadata -> 'parameters', metadata -> 'cursor',
           metadata -> 'counters', metadata -> 'quarantined_ids', metadata -> 'quarantined',
           (metadata #>> '{lease,generation}')::bigint
      FROM universal_transactions WHERE id = $1 AND organization_id = $2";
/// The run's lease generation, its row locked until the transaction ends.
const LEASE_GENERATION: &str = "SELECT (metadata #>> '{lease,generation}')::bigint
      FROM universal_transactions WHERE id = $1 AND organization_id = $2 FOR NO KEY UPDATE";
const TAKE_LEASE: &str = "SELECT hera_migration_take_lease_v2($1, $2)";

/// The run's row as a batch left it, in the batch's transaction: its pace
/// (which UpdateMigration may have changed) and, for a dry run, its position.
pub struct AfterBatch {
    pub parameters: Parameters,
    /// The generation of the executor the run's row names now (see
    /// hera_migration_take_lease_v2): the batch commits only if it is its own.
    pub lease_generation: Option<i64>,
    /// cursor, counters, quarantined_ids, quarantined: what a dry run keeps.
    position: Value,
}

type AfterBatchRow = (
    Json<Parameters>,
    Option<Value>,
    Option<Value>,
    Option<Value>,
    Option<Value>,
    Option<i64>,
);

pub async fn after_batch(
    conn: &mut PgConnection,
    organization_id: Uuid,
    id: Uuid,
) -> Result<AfterBatch> {
    let (Json(parameters), cursor, counters, quarantined_ids, quarantined, lease_generation): AfterBatchRow =
        sqlx::query_as(AFTER_BATCH)
            .bind(id)
            .bind(organization_id)
            .fetch_one(conn)
            .await?;
    let mut position = serde_json::Map::new();
    for (key, value) in [
        ("cursor", cursor),
        ("counters", counters),
        ("quarantined_ids", quarantined_ids),
        ("quarantined", quarantined),
    ] {
        if let Some(value) = value {
            position.insert(key.into(), value);
        }
    }
    Ok(AfterBatch {
        parameters,
        lease_generation,
        position: Value::Object(position),
    })
}

/// Run `id` is executed by `server` from now on: its lease generation moves
/// on (the fence of hera_migration_take_lease_v2), which it returns.
pub async fn take_lease(conn: &mut PgConnection, id: Uuid, server: &str) -> Result<i64> {
    Ok(sqlx::query_scalar(TAKE_LEASE)
        .bind(id)
        .bind(server)
        .fetch_one(conn)
        .await?)
}

/// Run `id`'s lease generation now, its row locked for the rest of the
/// transaction (so that no server can take the run before it commits).
pub async fn lease_generation(
    conn: &mut PgConnection,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar(LEASE_GENERATION)
        .bind(id)
        .bind(organization_id)
        .fetch_one(conn)
        .await?)
}

/// A dry run's batch rolls back; what it learnt (where the next batch
/// starts, the counts) is kept on the run's row, which is all a dry run writes.
pub async fn keep_dry_run_position(
    conn: &mut PgConnection,
    id: Uuid,
    after: &AfterBatch,
) -> Result<()> {
    patch(conn, id, after.position.clone()).await
}
