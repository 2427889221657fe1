//! ApplyReportingAliases: metadata-only v2 aliases on v1 transactions (by
//! default, what a run skipped because their period was closed), applied by
//! a run of its own in phase ALIASING on the same engine as an execution and
//! a rollback: leased, batched (`hera_migration_alias_batch_v2`, each batch
//! one short transaction that also advances the run's cursor), paced,
//! pausable, and resumed after a crash from its last committed batch. The
//! batch that finds the end records one ALIAS audit row. Applying twice
//! changes nothing the second time; a rollback of the aliased run removes
//! them.
use serde::Deserialize;
use sqlx::{PgPool, types::Json};
use uuid::Uuid;

use super::Engine;
use crate::{
    auth::Access,
    db::scope,
    error::{Error, Result},
    migration::{
        input::{self, Mapping},
        run::{Parameters, Phase, Run, RunState, SetAside, store},
    },
};

const RECORDED: &str = "SELECT metadata FROM universal_transactions
    WHERE organization_id = $1 AND id = $2 AND transaction_type = 'MIGRATION_OPERATION'
      AND metadata ->> 'operation_type' = 'ALIAS'";

/// A checked ApplyReportingAliases request.
#[derive(Debug, Clone)]
pub struct AliasRequest {
    /// The run whose skipped transactions to alias; None: organization-wide.
    pub migration_id: Option<Uuid>,
    pub mappings: Vec<Mapping>,
    pub request_id: String,
    pub batch_size: i32,
    pub max_transactions_per_second: Option<f64>,
}

pub fn alias_request(
    migration_id: &str,
    mappings: impl IntoIterator<Item = (String, String)>,
    request_id: &str,
    batch_size: i32,
    max_transactions_per_second: Option<f64>,
) -> Result<AliasRequest> {
    let migration_id = match migration_id.trim() {
        "" => None,
        id => Some(input::id("migration_id", id)?),
    };
    if let Some(rate) = max_transactions_per_second {
        input::rate("max_transactions_per_second", rate)?;
    }
    Ok(AliasRequest {
        migration_id,
        // An alias without a target is refused by the SQL that applies them
        // (hera_migration_alias_mappings_v2), before anything is written.
        mappings: input::mappings(mappings)?,
        request_id: input::request_id(request_id)?,
        batch_size: input::batch("batch_size", batch_size)?,
        max_transactions_per_second,
    })
}

/// What an application of aliases did, per mapping (its ALIAS audit row).
#[derive(Debug, Clone, Deserialize)]
pub struct Applied {
    /// The ALIASING run that applied them.
    #[serde(skip)]
    pub aliasing_run_id: Uuid,
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

impl Engine {
    /// Applies the aliases and answers once the application has ended, or
    /// answers what this `request_id`'s application did (waiting for it if
    /// it is still under way, here or on another server). ABORTED while
    /// another run of the organization is active (its batches lock the same
    /// rows), and for an application that was paused, cancelled or failed.
    pub async fn apply_aliases(&self, access: &Access, request: &AliasRequest) -> Result<Applied> {
        let id = self.begin_aliasing(access, request).await?;
        let run = self.ended(access.organization_id, id).await?;
        applied(&self.inner.pool, &run).await
    }

    /// The ALIASING run of this request: found, or created and launched here.
    async fn begin_aliasing(&self, access: &Access, request: &AliasRequest) -> Result<Uuid> {
        let organization_id = access.organization_id;
        let mut tx = scope::begin(&self.inner.pool, organization_id).await?;
        store::serialize_starts(&mut tx, organization_id).await?;
        let request_id = (!request.request_id.is_empty()).then_some(request.request_id.as_str());
        if let Some(request_id) = request_id
            && let Some((id, _)) =
                store::find_by_request(&mut tx, organization_id, request_id, true).await?
        {
            return Ok(id);
        }
        let aliased = match request.migration_id {
            Some(id) => Some(self.aliasable(organization_id, id).await?),
            None => None,
        };
        let lease = self.claim(&mut tx, organization_id).await?;
        let parameters = Parameters {
            batch_size: request.batch_size,
            smart_code_mappings: request.mappings.clone(),
            max_transactions_per_second: request.max_transactions_per_second,
            ..aliased.map(scope_of).unwrap_or_default()
        };
        let id = store::create_aliasing(
            &mut tx,
            organization_id,
            access.user_id,
            &parameters,
            request.migration_id,
            request_id,
        )
        .await?;
        let started = store::latest_event(&mut tx, organization_id, id).await?;
        tx.commit().await?;
        self.inner.announce(&[started]);
        let run = store::get(&self.inner.pool, organization_id, id).await?;
        self.launch(&run, lease, Some(super::current_trace()));
        Ok(id)
    }

    /// The run whose skipped transactions are to be aliased; FAILED_PRECONDITION
    /// for one rolled back (or being rolled back), or no migration at all.
    async fn aliasable(&self, organization_id: Uuid, id: Uuid) -> Result<Run> {
        let run = store::get(&self.inner.pool, organization_id, id).await?;
        match (run.record.phase, run.record.state) {
            (Phase::Aliasing, _) => Err(Error::FailedPrecondition(format!(
                "migration_id: {id} is an application of reporting aliases, not a migration"
            ))),
            (Phase::Rollback, _) | (_, RunState::RolledBack) => Err(Error::FailedPrecondition(
                format!("migration_id: migration {id} is rolled back (or being rolled back)"),
            )),
            _ => Ok(run),
        }
    }

    /// Waits until run `id` has ended; ABORTED if it pauses meanwhile (the
    /// call would otherwise wait for a person) or the server stops.
    async fn ended(&self, organization_id: Uuid, id: Uuid) -> Result<Run> {
        loop {
            let run = store::get(&self.inner.pool, organization_id, id).await?;
            match run.record.state {
                RunState::Running => {}
                RunState::Paused => {
                    return Err(Error::Aborted(format!(
                        "the reporting aliases' run {id} is PAUSED after {} batch(es); resume it \
                         (ResumeMigration), then call again with the same request_id",
                        run.record.counters.batches
                    )));
                }
                _ => return Ok(run),
            }
            if self.inner.shutdown.is_cancelled() {
                return Err(Error::Unavailable(format!(
                    "the server is stopping; the reporting aliases' run {id} goes on: call again \
                     with the same request_id"
                )));
            }
            // Until an event says it no longer runs (the row then says how).
            let mut events = self.events(organization_id, id, run.latest.sequence);
            while let Some(Ok(event)) = events.recv().await {
                if event.state != RunState::Running {
                    break;
                }
            }
        }
    }
}

/// An aliasing run's dates and statuses: those of the run it aliases.
fn scope_of(aliased: Run) -> Parameters {
    let parameters = aliased.record.parameters;
    Parameters {
        from_date: parameters.from_date,
        to_date: parameters.to_date,
        candidate_statuses: parameters.candidate_statuses,
        ..Parameters::default()
    }
}

/// What an ended ALIASING run did, from its ALIAS audit row.
async fn applied(pool: &PgPool, run: &Run) -> Result<Applied> {
    let aliasing = run.record.aliasing.clone().unwrap_or_default();
    let operation_id = match (run.record.state, aliasing.operation_id) {
        (RunState::Succeeded, Some(operation_id)) => operation_id,
        (state, _) => {
            return Err(Error::Aborted(format!(
                "the reporting aliases' run {} is {} after aliasing {} transaction(s): {}",
                run.id,
                state.as_str(),
                run.record.counters.migrated,
                run.record.message.clone().unwrap_or_default()
            )));
        }
    };
    let mut tx = scope::begin_read_only(pool, run.organization_id).await?;
    let Json(mut applied): Json<Applied> = sqlx::query_scalar(RECORDED)
        .bind(run.organization_id)
        .bind(operation_id)
        .fetch_one(&mut *tx)
        .await?;
    tx.rollback().await?;
    applied.aliasing_run_id = run.id;
    Ok(applied)
}
