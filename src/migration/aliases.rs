//! Phase 3: `ApplyReportingAliases`. Metadata-only v2 aliases on v1
//! transactions (by default, what a run skipped), applied batch by batch, each
//! batch its own short transaction (`hera_migration_apply_reporting_aliases_batch_v2`),
//! then recorded as one ALIAS audit row. Applying twice changes nothing the
//! second time; a rollback of the run removes them.
use serde::Deserialize;
use serde_json::Value;
use sqlx::{PgPool, types::Json};
use uuid::Uuid;

use super::{
    input::{self, Mapping},
    run::{Phase, RunState, SetAside, store},
};
use crate::{
    auth::Access,
    db::scope,
    error::{Error, Result},
};

/// Transactions looked at per batch.
const BATCH: i32 = 1000;
const APPLY: &str =
    "SELECT hera_migration_apply_reporting_aliases_batch_v2($1, $2, $3, $4, $5, $6, $7)";
const RECORD: &str = "SELECT hera_migration_record_aliases_v2($1, $2, $3, $4, $5, $6, $7, $8, $9)";
const RECORDED: &str = "SELECT metadata FROM universal_transactions
    WHERE organization_id = $1 AND transaction_type = 'MIGRATION_OPERATION'
      AND metadata ->> 'operation_type' = 'ALIAS' AND metadata ->> 'request_id' = $2";

/// A checked ApplyReportingAliases request.
#[derive(Debug, Clone)]
pub struct AliasRequest {
    pub migration_id: Option<Uuid>,
    pub mappings: Vec<Mapping>,
    pub request_id: String,
}

pub fn alias_request(
    migration_id: &str,
    mappings: impl IntoIterator<Item = (String, String)>,
    request_id: &str,
) -> Result<AliasRequest> {
    let migration_id = match migration_id.trim() {
        "" => None,
        id => Some(input::id("migration_id", id)?),
    };
    // An alias without a target is refused by the SQL that applies them
    // (hera_migration_alias_mappings_v2), before anything is written.
    let mappings = input::mappings(mappings)?;
    Ok(AliasRequest {
        migration_id,
        mappings,
        request_id: request_id.trim().to_owned(),
    })
}

/// What an application of aliases did, per mapping.
#[derive(Debug, Clone, Deserialize)]
pub struct Applied {
    pub alias_batch_id: Uuid,
    pub transactions_aliased: i64,
    pub mappings: Vec<AliasCount>,
    /// Rows the database refused to alias, with its reason.
    #[serde(default)]
    pub refused: Vec<SetAside>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AliasCount {
    pub source_smart_code: String,
    pub target_smart_code: String,
    pub transactions_aliased: i64,
    pub already_aliased: i64,
}

#[derive(Debug, Deserialize)]
struct Batch {
    mappings: Value,
    #[serde(default)]
    refused: Vec<Value>,
    cursor: Option<Value>,
    done: bool,
}

/// Applies the aliases, or answers what this `request_id` already applied.
/// ABORTED while a run of the organization is active (its batches lock the
/// same rows).
pub async fn apply(pool: &PgPool, access: &Access, request: &AliasRequest) -> Result<Applied> {
    let organization_id = access.organization_id;
    if let Some(applied) = already_applied(pool, organization_id, &request.request_id).await? {
        return Ok(applied);
    }
    if let Some(id) = request.migration_id {
        let run = store::get(pool, organization_id, id).await?;
        if run.record.phase == Phase::Rollback || run.record.state == RunState::RolledBack {
            return Err(Error::FailedPrecondition(format!(
                "migration_id: migration {id} is rolled back (or being rolled back)"
            )));
        }
    }
    store::refuse_while_active(pool, organization_id, None, "aliases wait for it to end").await?;

    let alias_batch_id = Uuid::new_v4();
    let mappings = Json(&request.mappings);
    let (mut rows, mut refused, mut cursor, mut batches) =
        (Vec::new(), Vec::new(), None::<Value>, 0);
    loop {
        let span = tracing::info_span!("migration.aliases.batch", batch.number = batches + 1);
        let batch = async {
            let mut tx = scope::begin(pool, organization_id).await?;
            let Json(batch): Json<Batch> = sqlx::query_scalar(APPLY)
                .bind(organization_id)
                .bind(mappings)
                .bind(alias_batch_id)
                .bind(request.migration_id)
                .bind(&cursor)
                .bind(BATCH)
                .bind(access.user_id)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, Error>(batch)
        };
        let batch = tracing::Instrument::instrument(batch, span).await?;
        batches += 1;
        if batches % 100 == 0 {
            tracing::info!(%alias_batch_id, batches, "applying reporting aliases");
        }
        if let Value::Array(per_mapping) = batch.mappings {
            rows.extend(per_mapping);
        }
        refused.extend(batch.refused);
        cursor = batch.cursor;
        if batch.done {
            break;
        }
    }
    let mut tx = scope::begin(pool, organization_id).await?;
    let Json(applied): Json<Applied> = sqlx::query_scalar(RECORD)
        .bind(organization_id)
        .bind(alias_batch_id)
        .bind(request.migration_id)
        .bind(mappings)
        .bind(Value::Array(rows))
        .bind(batches)
        .bind(access.user_id)
        .bind((!request.request_id.is_empty()).then_some(&request.request_id))
        .bind(Value::Array(refused))
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(applied)
}

async fn already_applied(
    pool: &PgPool,
    organization_id: Uuid,
    request_id: &str,
) -> Result<Option<Applied>> {
    if request_id.is_empty() {
        return Ok(None);
    }
    let mut tx = scope::begin_read_only(pool, organization_id).await?;
    let recorded: Option<Json<Applied>> = sqlx::query_scalar(RECORDED)
        .bind(organization_id)
        .bind(request_id)
        .fetch_optional(&mut *tx)
        .await?;
    tx.rollback().await?;
    Ok(recorded.map(|Json(applied)| applied))
}
