//! Phase 1: `PreviewCandidates`. The plan comes from the SQL function
//! `hera_migration_preview_candidates_v2` (the same answer a person gets in
//! psql), run in a READ ONLY transaction so that PostgreSQL itself guarantees
//! the preview writes nothing. While the organization has no batch timings
//! recorded, its time estimate comes from a calibration that writes a real
//! sample batch and rolls it back (`hera_migration_calibrate_v2`), in a
//! transaction of its own before the preview's.
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, types::Json};
use uuid::Uuid;

use super::input::{self, Mapping};
use crate::{db::scope, error::Result};

const PREVIEW: &str = "SELECT hera_migration_preview_candidates_v2($1, $2, $3, $4, $5, $6, $7, $8)";
const CALIBRATE: &str = "SELECT hera_migration_calibrate_v2($1, $2, $3, $4, $5, $6)";

/// A checked preview request.
#[derive(Debug, Clone)]
pub struct PreviewQuery {
    pub from_date: NaiveDate,
    pub to_date: NaiveDate,
    pub batch_limit: i32,
    pub mappings: Vec<Mapping>,
    pub candidate_statuses: Vec<String>,
    pub post_to_open_period: bool,
}

impl PreviewQuery {
    pub fn parse(
        from_date: &str,
        to_date: &str,
        batch_limit: i32,
        mappings: impl IntoIterator<Item = (String, String)>,
        candidate_statuses: &[String],
        post_to_open_period: bool,
    ) -> Result<Self> {
        let (from_date, to_date) = input::date_range(from_date, to_date)?;
        Ok(Self {
            from_date,
            to_date,
            batch_limit: input::batch("batch_limit", batch_limit)?,
            mappings: input::mappings(mappings)?,
            candidate_statuses: input::candidate_statuses(candidate_statuses)?,
            post_to_open_period,
        })
    }

    fn policy(&self) -> &'static str {
        if self.post_to_open_period {
            "POST_TO_OPEN_PERIOD"
        } else {
            "SKIP"
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Preview {
    pub organization_id: Uuid,
    pub total_candidates: i64,
    pub smart_code_breakdown: Vec<Breakdown>,
    pub not_migratable: Vec<NotMigratable>,
    pub fiscal_period_status: Vec<PeriodCount>,
    pub unbalanced_transactions: Unbalanced,
    pub estimated_processing_time_ms: i64,
    pub estimate_basis: String,
    pub risk_assessment: Risk,
    pub plan_fingerprint: String,
    pub candidate_ids: Vec<Uuid>,
    pub generated_at: DateTime<Utc>,
    pub candidate_statuses: Vec<String>,
    pub non_candidates: Vec<StatusCount>,
    pub prediction: Prediction,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StatusCount {
    pub status: String,
    pub transaction_count: i64,
}

/// What the batches of a run would do with the candidates.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Prediction {
    pub migrated: i64,
    pub skipped_closed: i64,
    pub skipped_unmapped: i64,
    pub quarantined: i64,
    pub quarantine: Vec<QuarantinePrediction>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct QuarantinePrediction {
    pub rule: String,
    pub transaction_count: i64,
    pub reason: String,
    pub transaction_ids: Vec<Uuid>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Breakdown {
    pub source_smart_code: String,
    pub target_smart_code: String,
    pub transaction_count: i64,
    /// NUMERIC as text: money never passes through a float.
    pub total_amount: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NotMigratable {
    pub source_smart_code: String,
    pub transaction_count: i64,
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PeriodCount {
    pub period_code: String,
    /// OPEN, CLOSED, LOCKED or UNASSIGNED.
    pub status: String,
    pub affected_transactions: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Unbalanced {
    pub count: i64,
    pub transaction_ids: Vec<Uuid>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Risk {
    /// LOW, MEDIUM or HIGH, each.
    pub data_integrity_risk: String,
    pub performance_impact: String,
    pub rollback_complexity: String,
    pub reasons: Vec<String>,
}

pub async fn preview(
    pool: &PgPool,
    organization_id: Uuid,
    actor: Uuid,
    query: &PreviewQuery,
) -> Result<Preview> {
    let calibration = calibrate(pool, organization_id, actor, query).await?;
    let mut tx = scope::begin_read_only(pool, organization_id).await?;
    let Json(preview): Json<Preview> = sqlx::query_scalar(PREVIEW)
        .bind(organization_id)
        .bind(query.from_date)
        .bind(query.to_date)
        .bind(query.batch_limit)
        .bind(Json(&query.mappings))
        .bind(&query.candidate_statuses)
        .bind(query.policy())
        .bind(calibration)
        .fetch_one(&mut *tx)
        .await?;
    tx.rollback().await?;
    Ok(preview)
}

/// The calibration's sample batch, written and rolled back (NULL when the
/// organization has batch timings recorded already).
async fn calibrate(
    pool: &PgPool,
    organization_id: Uuid,
    actor: Uuid,
    query: &PreviewQuery,
) -> Result<Option<serde_json::Value>> {
    let mut tx = scope::begin(pool, organization_id).await?;
    let calibration: Option<serde_json::Value> = sqlx::query_scalar(CALIBRATE)
        .bind(organization_id)
        .bind(query.from_date)
        .bind(query.to_date)
        .bind(&query.candidate_statuses)
        .bind(Json(&query.mappings))
        .bind(actor)
        .fetch_one(&mut *tx)
        .await?;
    tx.rollback().await?;
    Ok(calibration)
}
