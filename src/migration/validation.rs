//! Phase 4: `ValidateMigration`. The report comes from
//! `hera_migration_validate_v2` (the same answer psql gives), computed in a
//! READ ONLY transaction, then recorded as a VALIDATION audit row.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::{PgPool, types::Json};
use uuid::Uuid;

use crate::{auth::Access, db::scope, error::Result};

const VALIDATE: &str = "SELECT hera_migration_validate_v2($1, $2)";
const RECORD: &str = include_str!("../../sql/queries/validation_record.sql");

#[derive(Debug, Clone, Deserialize)]
pub struct Report {
    pub overall: String,
    #[serde(default)]
    pub sacred_six_status: Option<String>,
    #[serde(default)]
    pub rollback_status: Option<String>,
    pub validated_at: DateTime<Utc>,
    pub checks: Vec<Check>,
    /// The run was validated as a partial run (pending work a WARN, not a FAIL).
    #[serde(default)]
    pub allow_partial: bool,
    /// The VALIDATION audit row that records this report.
    #[serde(skip)]
    pub audit_transaction_id: Uuid,
    /// The audit chain as it stood before that row.
    #[serde(skip)]
    pub audit_anchor: crate::audit::Anchor,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Check {
    pub name: String,
    pub result: String,
    pub summary: String,
    #[serde(default)]
    pub details: BTreeMap<String, serde_json::Value>,
}

/// Validates run `id` of the caller's organization (NOT_FOUND otherwise) and
/// records the report. `allow_partial`: a run that stopped before its end is
/// judged on the part it did (see `hera_migration_check_completeness_v2`).
pub async fn validate(
    pool: &PgPool,
    access: &Access,
    id: Uuid,
    allow_partial: bool,
) -> Result<Report> {
    let organization_id = access.organization_id;
    super::run::store::get(pool, organization_id, id).await?;
    let mut tx = scope::begin_read_only(pool, organization_id).await?;
    let Json(mut raw): Json<serde_json::Value> = sqlx::query_scalar(VALIDATE)
        .bind(id)
        .bind(allow_partial)
        .fetch_one(&mut *tx)
        .await?;
    tx.rollback().await?;
    let mut report: Report = serde_json::from_value(raw.clone()).map_err(|e| {
        crate::error::Error::FailedPrecondition(format!("the validation report is unreadable: {e}"))
    })?;
    report.audit_transaction_id = Uuid::new_v4();
    let mut tx = scope::begin(pool, organization_id).await?;
    report.audit_anchor = crate::audit::anchor(&mut tx, organization_id).await?;
    raw["audit_anchor"] = serde_json::json!(report.audit_anchor);
    sqlx::query(RECORD)
        .bind(report.audit_transaction_id)
        .bind(organization_id)
        .bind(&report.overall)
        .bind(&raw)
        .bind(access.user_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let named = |result: &str| {
        report
            .checks
            .iter()
            .filter(|check| check.result == result)
            .map(|check| check.name.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    tracing::info!(
        migration_id = %id,
        organization_id = %organization_id,
        overall = %report.overall,
        failed = %named("FAIL"),
        warned = %named("WARN"),
        allow_partial,
        "migration validated"
    );
    Ok(report)
}
