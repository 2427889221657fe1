//! `PreviewRollback`: what a rollback of a run would do, read-only, from
//! `hera_migration_preview_rollback_v2` (the same sets the rollback works
//! on), with the risks an operator weighs before an emergency rollback.
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::{PgPool, types::Json};
use uuid::Uuid;

use crate::{db::scope, error::Result};

const PREVIEW: &str = "SELECT hera_migration_preview_rollback_v2($1, $2)";

#[derive(Debug, Clone, Deserialize)]
pub struct RollbackPreview {
    #[serde(skip)]
    pub organization_id: Uuid,
    #[serde(skip)]
    pub migration_id: Uuid,
    pub state: String,
    pub originals: i64,
    pub copies: i64,
    pub aliases: i64,
    pub estimated_ms: i64,
    pub estimate_basis: String,
    pub periods: Vec<Period>,
    pub dependent_count: i64,
    pub dependent: Vec<Dependent>,
    #[serde(skip)]
    pub risks: Vec<String>,
    #[serde(skip, default = "Utc::now")]
    pub generated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Period {
    pub period_code: String,
    pub status: String,
    pub transactions: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Dependent {
    pub transaction_id: Uuid,
    #[serde(default)]
    pub transaction_code: Option<String>,
    #[serde(default)]
    pub smart_code: Option<String>,
    pub references_transaction_id: Uuid,
    pub reference: String,
    pub created_at: DateTime<Utc>,
}

/// Run `id`'s rollback as it would go now (NOT_FOUND for another
/// organization's run), in a READ ONLY transaction: nothing is written.
pub async fn preview_rollback(
    pool: &PgPool,
    organization_id: Uuid,
    id: Uuid,
) -> Result<RollbackPreview> {
    super::run::store::get(pool, organization_id, id).await?;
    let mut tx = scope::begin_read_only(pool, organization_id).await?;
    let Json(raw): Json<serde_json::Value> = sqlx::query_scalar(PREVIEW)
        .bind(organization_id)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    tx.rollback().await?;
    let mut preview: RollbackPreview = serde_json::from_value(raw).map_err(|e| {
        crate::error::Error::FailedPrecondition(format!("the rollback preview is unreadable: {e}"))
    })?;
    preview.organization_id = organization_id;
    preview.migration_id = id;
    preview.risks = risks(&preview);
    Ok(preview)
}

/// One sentence for each thing to weigh before rolling back.
fn risks(p: &RollbackPreview) -> Vec<String> {
    let mut risks = Vec::new();
    if matches!(p.state.as_str(), "RUNNING" | "PAUSED") {
        risks.push(format!(
            "the run is {}: only a forced rollback (which cancels it first) goes ahead",
            p.state
        ));
    }
    let closed: Vec<&Period> = p
        .periods
        .iter()
        .filter(|period| matches!(period.status.as_str(), "CLOSED" | "LOCKED"))
        .collect();
    for period in closed {
        risks.push(format!(
            "period {} is {} now: {} original(s) dated in it would be restored into it",
            period.period_code, period.status, period.transactions
        ));
    }
    if p.dependent_count > 0 {
        risks.push(format!(
            "{} business posting(s) made since the run name a transaction the rollback would \
             restore or void (see dependent_postings)",
            p.dependent_count
        ));
    }
    if p.originals == 0 && p.aliases == 0 {
        risks.push("nothing of the run's is in effect: the rollback would change nothing".into());
    }
    risks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preview(state: &str) -> RollbackPreview {
        RollbackPreview {
            organization_id: Uuid::nil(),
            migration_id: Uuid::nil(),
            state: state.into(),
            originals: 3,
            copies: 6,
            aliases: 0,
            estimated_ms: 10,
            estimate_basis: String::new(),
            periods: vec![Period {
                period_code: "2024-03".into(),
                status: "CLOSED".into(),
                transactions: 2,
            }],
            dependent_count: 1,
            dependent: Vec::new(),
            risks: Vec::new(),
            generated_at: Utc::now(),
        }
    }

    #[test]
    fn an_active_run_a_closed_period_and_a_dependent_posting_are_each_a_risk() {
        let said = risks(&preview("RUNNING"));
        assert_eq!(said.len(), 3, "{said:?}");
        assert!(said[0].contains("forced"), "{said:?}");
        assert!(said[1].contains("2024-03 is CLOSED"), "{said:?}");
        assert!(said[2].contains("1 business posting"), "{said:?}");
        assert_eq!(risks(&preview("SUCCEEDED")).len(), 2);
    }
}
