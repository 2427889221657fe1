//! StartMigration: a checked request becomes a run row, executed here.
use serde_json::{Value, json};
use sqlx::types::Json;
use uuid::Uuid;

use super::{Engine, sizing};
use crate::{
    auth::Access,
    db::scope,
    error::{Error, Refusal, Result},
    migration::{
        input,
        preview::Preview,
        progress::EventKind,
        run::{ClosedPeriodPolicy, Parameters, store},
        signals::{self, Setting, Signal},
    },
};

/// The plan as the preview makes it, without its time estimate (no calibration).
const PLAN: &str = "SELECT hera_migration_preview_candidates_v2($1, $2, $3, 1, $4, $5, $6, '{}')";

/// A checked StartMigration request: the run's parameters, every default
/// applied, and what makes the start idempotent and safe.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub parameters: Parameters,
    pub request_id: String,
    pub expected_plan_fingerprint: String,
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
    pub target_batch_ms: Option<u32>,
    pub min_batch_size: Option<i32>,
    pub max_batch_size: Option<i32>,
    /// The database signals to listen to otherwise than by default.
    pub signals: Vec<(Option<Signal>, Setting)>,
}

/// Checks the fields of a start request, naming the first bad one.
pub fn start_request(fields: StartFields<'_>) -> Result<StartRequest> {
    let (from_date, to_date) = input::date_range(fields.from_date, fields.to_date)?;
    if let Some(rate) = fields.max_transactions_per_second {
        input::rate("max_transactions_per_second", rate)?;
    }
    let (target_batch_ms, min_batch_size, max_batch_size) = sizing::checked(
        fields.target_batch_ms,
        fields.min_batch_size,
        fields.max_batch_size,
    )?;
    let adaptive = target_batch_ms.is_some_and(|ms| ms > 0);
    Ok(StartRequest {
        parameters: Parameters {
            from_date,
            to_date,
            // With a target, batch_size is where sizing starts.
            batch_size: match fields.batch_size {
                0 if adaptive => sizing::DEFAULT_START,
                size => input::batch("batch_size", size)?,
            },
            smart_code_mappings: input::mappings(fields.mappings)?,
            candidate_statuses: input::candidate_statuses(fields.candidate_statuses)?,
            closed_period_policy: if fields.post_to_open_period {
                ClosedPeriodPolicy::PostToOpenPeriod
            } else {
                ClosedPeriodPolicy::Skip
            },
            dry_run: fields.dry_run,
            max_transactions_per_second: fields.max_transactions_per_second,
            batch_delay_ms: 0,
            target_batch_ms: target_batch_ms.filter(|ms| *ms > 0),
            min_batch_size,
            max_batch_size,
            signals: signals::checked(fields.signals)?,
            plan_fingerprint: String::new(),
        },
        request_id: input::request_id(fields.request_id)?,
        expected_plan_fingerprint: fields.expected_plan_fingerprint.trim().to_owned(),
    })
}

impl Engine {
    /// Creates a run (or finds the one this `request_id` created) and starts
    /// executing it. ABORTED while the organization has another active run;
    /// FAILED_PRECONDITION when the plan no longer has the expected
    /// fingerprint. Only a start that expects a fingerprint waits for the
    /// plan (a full read of the candidates); any other streams at once, and
    /// its executor checks the plan before the first write (PLANNED).
    pub async fn start(&self, access: &Access, request: &StartRequest) -> Result<Uuid> {
        let organization_id = access.organization_id;
        // What the caller asked for, which a retry with the same request_id
        // must match (UpdateMigration changes the run's parameters later).
        let requested = serde_json::to_value(&request.parameters).expect("parameters serialize");
        let mut tx = scope::begin(&self.inner.pool, organization_id).await?;
        store::serialize_starts(&mut tx, organization_id).await?;
        if let Some(id) = find_by_request(&mut tx, organization_id, request, &requested).await? {
            return Ok(id);
        }
        let lease = self.claim(&mut tx, organization_id).await?;
        let plan = if request.expected_plan_fingerprint.is_empty() {
            None
        } else {
            Some(checked_plan(&mut tx, organization_id, request).await?)
        };
        let parameters = Parameters {
            plan_fingerprint: plan
                .as_ref()
                .map(|plan| plan.plan_fingerprint.clone())
                .unwrap_or_default(),
            ..request.parameters.clone()
        };
        let request_id = (!request.request_id.is_empty()).then_some(request.request_id.as_str());
        let id = store::create(
            &mut tx,
            organization_id,
            access.user_id,
            &parameters,
            request_id,
        )
        .await?;
        store::patch(&mut tx, id, json!({ "requested": requested })).await?;
        if let Some(plan) = &plan {
            store::record_plan(&mut tx, id, &recorded_plan(plan)).await?;
        }
        let outlook = match &plan {
            Some(plan) => plan_summary(plan),
            None => "the plan is checked before the first write".to_owned(),
        };
        let started = json!({
            "kind": EventKind::Started,
            "message": format!("{}; {outlook}", request_summary(access.user_id, &parameters)),
            "actor": access.user_id,
        });
        let event = store::append_event(&mut tx, id, &started, Some(access.user_id)).await?;
        tx.commit().await?;
        self.inner.announce(&[event]);
        let run = store::get(&self.inner.pool, organization_id, id).await?;
        self.launch(&run, lease, Some(super::current_trace()));
        Ok(id)
    }
}

/// "started by <user>: 2024-01-01 to 2024-12-31, ...": what the run will do,
/// as asked.
fn request_summary(actor: Uuid, parameters: &Parameters) -> String {
    let pace = match parameters.max_transactions_per_second {
        Some(rate) => format!(", at most {rate} transactions/s"),
        None => String::new(),
    };
    format!(
        "started by {actor}: {} to {}, batches of {}{pace}, statuses {}, closed periods {}",
        parameters.from_date,
        parameters.to_date,
        parameters.batch_size,
        parameters.candidate_statuses.join(", "),
        parameters.closed_period_policy.as_str(),
    )
}

/// What a run records of its checked plan (`hera_migration_record_plan_v2`).
pub(super) fn recorded_plan(plan: &Preview) -> Value {
    json!({
        "total_candidates": plan.total_candidates,
        "prediction": plan.prediction,
        "plan_fingerprint": plan.plan_fingerprint,
    })
}

/// "<n> candidate(s), predicted ...": what the plan predicts.
pub(super) fn plan_summary(plan: &Preview) -> String {
    let p = &plan.prediction;
    format!(
        "{} candidate(s), predicted {} migrated, {} skipped ({} closed period, {} unmapped), {} \
         quarantined",
        plan.total_candidates,
        p.migrated,
        p.skipped_closed + p.skipped_unmapped,
        p.skipped_closed,
        p.skipped_unmapped,
        p.quarantined,
    )
}

/// The run this `request_id` already started, if any; ALREADY_EXISTS when it
/// was started with other parameters.
async fn find_by_request(
    tx: &mut scope::OrgTransaction,
    organization_id: Uuid,
    request: &StartRequest,
    requested: &Value,
) -> Result<Option<Uuid>> {
    if request.request_id.is_empty() {
        return Ok(None);
    }
    let Some((id, recorded)) =
        store::find_by_request(tx, organization_id, &request.request_id, false).await?
    else {
        return Ok(None);
    };
    if &recorded == requested {
        Ok(Some(id))
    } else {
        Err(Error::refused(
            Refusal::RequestIdReused,
            format!(
                "request_id: {} already started migration {id} with other parameters",
                request.request_id
            ),
        )
        .naming("migration_id", id))
    }
}

/// The plan (its fingerprint, candidate count and prediction);
/// FAILED_PRECONDITION when the caller expected another fingerprint.
async fn checked_plan(
    tx: &mut scope::OrgTransaction,
    organization_id: Uuid,
    request: &StartRequest,
) -> Result<Preview> {
    let plan = plan(tx, organization_id, &request.parameters).await?;
    if request.expected_plan_fingerprint != plan.plan_fingerprint {
        return Err(Error::refused(
            Refusal::PlanChanged,
            format!(
                "expected_plan_fingerprint: the plan has changed since it was previewed (it is now {})",
                plan.plan_fingerprint
            ),
        )
        .naming("plan_fingerprint", &plan.plan_fingerprint));
    }
    Ok(plan)
}

/// The plan of a run with these parameters, as the preview makes it
/// (without its time estimate).
pub(super) async fn plan(
    conn: &mut sqlx::PgConnection,
    organization_id: Uuid,
    parameters: &Parameters,
) -> Result<Preview> {
    let Json(plan): Json<Preview> = sqlx::query_scalar(PLAN)
        .bind(organization_id)
        .bind(parameters.from_date)
        .bind(parameters.to_date)
        .bind(Json(&parameters.smart_code_mappings))
        .bind(&parameters.candidate_statuses)
        .bind(parameters.closed_period_policy.as_str())
        .fetch_one(conn)
        .await?;
    Ok(plan)
}
