//! A rollout's row and events in universal_transactions (rollout.sql).
use serde::Deserialize as _;
use serde_json::Value;
use sqlx::{PgConnection, PgPool, types::Json};
use uuid::Uuid;

use super::{Inner, Recorded, Rollout, RolloutState, Standing};
use crate::{
    db::scope,
    error::{Error, Result},
    metrics::Recorder,
};

const CREATE: &str = "SELECT hera_migration_create_rollout_v2($1, $2, $3, $4)";
const STEP: &str = "SELECT hera_migration_rollout_step_v2($1, $2, $3, $4, $5)";
const GET: &str = "SELECT id, organization_id, metadata, updated_at FROM universal_transactions
                    WHERE id = $1 AND organization_id = $2 AND transaction_type = 'MIGRATION_ROLLOUT'";
const FIND_BY_REQUEST: &str = "SELECT id, metadata -> 'request' FROM universal_transactions
                                WHERE organization_id = $1 AND transaction_type = 'MIGRATION_ROLLOUT'
                                  AND metadata ->> 'request_id' = $2";
/// One creation at a time per platform organization, so that a retried
/// request finds the rollout its first attempt created.
const SERIALIZE_STARTS: &str =
    "SELECT pg_advisory_xact_lock(hashtextextended('hera-migrate:rollout-start:' || $1::text, 0))";
const ACTIVE: &str = include_str!("../../../sql/queries/active_rollouts.sql");
const WITH_CANDIDATES: &str =
    "SELECT organization_id FROM hera_migration_rollout_organizations_v2($1)";
const ORGANIZATIONS: &str = "SELECT id, lower(coalesce(organization_type, '')) = 'platform'
                               FROM core_organizations WHERE id = ANY ($1)";

pub async fn serialize_starts(conn: &mut PgConnection, platform: Uuid) -> Result<()> {
    sqlx::query(SERIALIZE_STARTS)
        .bind(platform)
        .execute(conn)
        .await?;
    Ok(())
}

/// The rollout a request_id created, with the request it recorded.
pub async fn find_by_request(
    conn: &mut PgConnection,
    platform: Uuid,
    request_id: &str,
) -> Result<Option<(Uuid, Value)>> {
    Ok(sqlx::query_as(FIND_BY_REQUEST)
        .bind(platform)
        .bind(request_id)
        .fetch_optional(conn)
        .await?)
}

pub async fn create(
    conn: &mut PgConnection,
    platform: Uuid,
    actor: Uuid,
    metadata: &Value,
    request_id: Option<&str>,
) -> Result<Uuid> {
    Ok(sqlx::query_scalar(CREATE)
        .bind(platform)
        .bind(actor)
        .bind(metadata)
        .bind(request_id)
        .fetch_one(conn)
        .await?)
}

/// One change of a rollout and its event (rollout.sql), in its own
/// transaction scoped to the platform organization; once committed, an end
/// it records (the rollout's, or an organization's) is counted.
pub async fn step(
    inner: &Inner,
    rollout: &Rollout,
    organization: Option<Uuid>,
    patch: Value,
    event: Value,
    actor: Option<Uuid>,
) -> Result<()> {
    let mut tx = scope::begin(&inner.pool, rollout.platform_organization_id).await?;
    sqlx::query(STEP)
        .bind(rollout.id)
        .bind(organization)
        .bind(&patch)
        .bind(Some(event).filter(|event| !event.is_null()))
        .bind(actor)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    count_ends(inner.engine.metrics(), organization, &patch);
    Ok(())
}

/// The end a step's patch records, if any: an organization settled, or the
/// rollout ended.
fn count_ends(metrics: &Recorder, organization: Option<Uuid>, patch: &Value) {
    if organization.is_some() {
        if let Ok(standing) = Standing::deserialize(&patch["standing"])
            && standing.is_settled()
        {
            metrics.rollout_organization(standing.as_str());
        }
    } else if let Ok(state) = RolloutState::deserialize(&patch["state"])
        && state.is_terminal()
    {
        metrics.rollout_ended(state.as_str());
    }
}

/// Rollout `id` of platform organization `platform`; NOT_FOUND otherwise.
pub async fn get(pool: &PgPool, platform: Uuid, id: Uuid) -> Result<Rollout> {
    let mut tx = scope::begin_read_only(pool, platform).await?;
    let row: Option<(Uuid, Uuid, Json<Recorded>, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as(GET)
            .bind(id)
            .bind(platform)
            .fetch_optional(&mut *tx)
            .await?;
    tx.rollback().await?;
    let Some((id, platform_organization_id, Json(recorded), updated_at)) = row else {
        return Err(Error::NotFound(format!(
            "rollout_id: no rollout {id} in platform organization {platform}"
        )));
    };
    Ok(Rollout {
        id,
        platform_organization_id,
        updated_at,
        recorded,
    })
}

/// Every rollout RUNNING or PAUSED: (id, platform organization).
pub async fn active_everywhere(admin: &PgPool) -> Result<Vec<(Uuid, Uuid)>> {
    Ok(sqlx::query_as(ACTIVE).fetch_all(admin).await?)
}

/// The organizations with a candidate of `parameters`, by code.
pub async fn with_candidates(admin: &PgPool, parameters: &Value) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar(WITH_CANDIDATES)
        .bind(parameters)
        .fetch_all(admin)
        .await?)
}

/// Of `organizations`, those that exist, each with whether it is a platform organization.
pub async fn platform_flags(
    admin: &PgPool,
    organizations: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, bool>> {
    let rows: Vec<(Uuid, bool)> = sqlx::query_as(ORGANIZATIONS)
        .bind(organizations)
        .fetch_all(admin)
        .await?;
    Ok(rows.into_iter().collect())
}
