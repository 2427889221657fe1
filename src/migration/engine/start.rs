//! StartMigration: a checked request becomes a run row, executed here.
use serde_json::{Value, json};
use sqlx::types::Json;
use uuid::Uuid;

use super::{Engine, lease::Lease};
use crate::{
    auth::Access,
    db::scope,
    error::{Error, Result},
    migration::{
        input::{self, Mapping},
        preview::Preview,
    },
};

/// The plan as the preview makes it, without its time estimate (no calibration).
const PLAN: &str = "SELECT hera_migration_preview_candidates_v2($1, $2, $3, 1, $4, $5, $6, '{}')";
const FIND_BY_REQUEST: &str = "SELECT id, metadata -> 'requested' FROM universal_transactions
    WHERE organization_id = $1 AND transaction_type = 'MIGRATION_RUN' AND metadata ->> 'request_id' = $2";
const CREATE: &str = "SELECT hera_migration_create_run_v2($1, $2, $3, $4)";
/// `requested`: the parameters as sent, which a retry with the same
/// `request_id` must match (UpdateMigration changes `parameters` later).
const RECORD_PLAN: &str = "SELECT hera_migration_update_run_v2($1, jsonb_build_object(
            'total_candidates', $2::bigint, 'state_changes', 1, 'requested', $3::jsonb,
            'prediction', $4::jsonb))";

/// A checked StartMigration request.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub from_date: chrono::NaiveDate,
    pub to_date: chrono::NaiveDate,
    pub batch_size: i32,
    pub mappings: Vec<Mapping>,
    pub candidate_statuses: Vec<String>,
    pub request_id: String,
    pub expected_plan_fingerprint: String,
    pub post_to_open_period: bool,
    pub max_transactions_per_second: Option<f64>,
    pub dry_run: bool,
}

impl StartRequest {
    fn policy(&self) -> &'static str {
        if self.post_to_open_period {
            "POST_TO_OPEN_PERIOD"
        } else {
            "SKIP"
        }
    }

    /// The parameters as the run records them (and idempotency compares them).
    fn parameters(&self) -> Value {
        json!({
            "from_date": self.from_date,
            "to_date": self.to_date,
            "batch_size": self.batch_size,
            "smart_code_mappings": self.mappings,
            "candidate_statuses": self.candidate_statuses,
            "dry_run": self.dry_run,
            "closed_period_policy": self.policy(),
            "max_transactions_per_second": self.max_transactions_per_second,
            "batch_delay_ms": 0,
        })
    }
}

/// The fields of a StartMigration request, as the caller sent them.
#[derive(Debug, Clone, Default)]
pub struct StartFields<'a> {
    pub from_date: &'a str,
    pub to_date: &'a str,
    pub batch_size: i32,
    pub mappings: Vec<(String, String)>,
    pub candidate_statuses: &'a [String],
    pub request_id: &'a str,
    pub expected_plan_fingerprint: &'a str,
    pub post_to_open_period: bool,
    pub max_transactions_per_second: Option<f64>,
    pub dry_run: bool,
}

/// Checks the fields of a start request, naming the first bad one.
pub fn start_request(fields: StartFields<'_>) -> Result<StartRequest> {
    let (from_date, to_date) = input::date_range(fields.from_date, fields.to_date)?;
    if let Some(rate) = fields.max_transactions_per_second {
        input::rate("max_transactions_per_second", rate)?;
    }
    Ok(StartRequest {
        from_date,
        to_date,
        batch_size: input::batch("batch_size", fields.batch_size)?,
        mappings: input::mappings(fields.mappings)?,
        candidate_statuses: input::candidate_statuses(fields.candidate_statuses)?,
        request_id: fields.request_id.trim().to_owned(),
        expected_plan_fingerprint: fields.expected_plan_fingerprint.trim().to_owned(),
        post_to_open_period: fields.post_to_open_period,
        max_transactions_per_second: fields.max_transactions_per_second,
        dry_run: fields.dry_run,
    })
}

impl Engine {
    /// Creates a run (or finds the one this `request_id` created) and starts
    /// executing it. ABORTED while the organization has another active run;
    /// FAILED_PRECONDITION when the plan no longer has the expected fingerprint.
    pub async fn start(&self, access: &Access, request: &StartRequest) -> Result<Uuid> {
        let organization_id = access.organization_id;
        let parameters = request.parameters();
        let mut tx = scope::begin(&self.inner.pool, organization_id).await?;
        // One start at a time per organization, across replicas.
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtextextended('hera-migrate:start:' || $1::text, 0))",
        )
        .bind(organization_id)
        .execute(&mut *tx)
        .await?;
        if let Some(id) = find_by_request(&mut tx, organization_id, request, &parameters).await? {
            return Ok(id);
        }
        if let Some(active) = crate::migration::runs::active(&mut tx, organization_id, None).await?
        {
            return Err(Error::Aborted(format!(
                "organization {organization_id} already has an active migration {active}"
            )));
        }
        // Taken before the run exists, so that no other server adopts it.
        let lease = Lease::try_acquire(&self.inner.admin, organization_id)
            .await?
            .ok_or_else(|| {
                Error::Aborted(format!(
                    "organization {organization_id}'s previous migration is still ending on another server; try again"
                ))
            })?;
        let plan = checked_plan(&mut tx, organization_id, request).await?;
        let mut recorded = parameters.clone();
        recorded["plan_fingerprint"] = json!(plan.plan_fingerprint);
        let id: Uuid = sqlx::query_scalar(CREATE)
            .bind(organization_id)
            .bind(access.user_id)
            .bind(&recorded)
            .bind((!request.request_id.is_empty()).then_some(&request.request_id))
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query(RECORD_PLAN)
            .bind(id)
            .bind(plan.total_candidates)
            .bind(&parameters)
            .bind(Json(&plan.prediction))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let run = crate::migration::runs::get(&self.inner.pool, organization_id, id).await?;
        self.launch(&run, lease, Some(super::current_trace()));
        Ok(id)
    }
}

/// The run this `request_id` already started, if any; ALREADY_EXISTS when it
/// was started with other parameters.
async fn find_by_request(
    tx: &mut scope::OrgTransaction,
    organization_id: Uuid,
    request: &StartRequest,
    parameters: &Value,
) -> Result<Option<Uuid>> {
    if request.request_id.is_empty() {
        return Ok(None);
    }
    let existing: Option<(Uuid, Value)> = sqlx::query_as(FIND_BY_REQUEST)
        .bind(organization_id)
        .bind(&request.request_id)
        .fetch_optional(&mut **tx)
        .await?;
    let Some((id, recorded)) = existing else {
        return Ok(None);
    };
    if &recorded == parameters {
        Ok(Some(id))
    } else {
        Err(Error::AlreadyExists(format!(
            "request_id: {} already started migration {id} with other parameters",
            request.request_id
        )))
    }
}

/// The plan (its fingerprint, candidate count and prediction);
/// FAILED_PRECONDITION when the caller expected another fingerprint.
async fn checked_plan(
    tx: &mut scope::OrgTransaction,
    organization_id: Uuid,
    request: &StartRequest,
) -> Result<Preview> {
    let Json(plan): Json<Preview> = sqlx::query_scalar(PLAN)
        .bind(organization_id)
        .bind(request.from_date)
        .bind(request.to_date)
        .bind(Json(&request.mappings))
        .bind(&request.candidate_statuses)
        .bind(request.policy())
        .fetch_one(&mut **tx)
        .await?;
    if !request.expected_plan_fingerprint.is_empty()
        && request.expected_plan_fingerprint != plan.plan_fingerprint
    {
        return Err(Error::FailedPrecondition(format!(
            "expected_plan_fingerprint: the plan has changed since it was previewed (it is now {})",
            plan.plan_fingerprint
        )));
    }
    Ok(plan)
}
