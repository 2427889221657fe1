//! The `MigrationService` adapter: decodes requests, admits the caller
//! through the guard, calls the service layer, encodes answers. RPCs whose
//! capability is not built yet answer UNIMPLEMENTED naming it (after the
//! caller's identity and rights are checked), never a fake success.
use std::pin::Pin;

use sqlx::PgPool;
use tokio::sync::{mpsc, watch};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};

use super::{authn, convert};
use crate::{
    auth::{Access, Guard, Operation, access::parse_id},
    error::Error,
    migration::{
        aliases,
        engine::{self, Control, Engine},
        preview::{self, PreviewQuery},
        progress::Progress,
        run::{RunState, store},
        validation,
    },
    proto::*,
};

fn mapping_pairs(mappings: &[SmartCodeMapping]) -> impl Iterator<Item = (String, String)> + '_ {
    mappings
        .iter()
        .map(|m| (m.source_smart_code.clone(), m.target_smart_code.clone()))
}

/// A server stream of run events.
pub type ProgressStream = Pin<Box<dyn Stream<Item = Result<MigrationProgress, Status>> + Send>>;

pub struct GrpcMigrationService {
    pool: PgPool,
    guard: Guard,
    engine: Engine,
}

impl GrpcMigrationService {
    pub fn new(pool: PgPool, guard: Guard, engine: Engine) -> Self {
        Self {
            pool,
            guard,
            engine,
        }
    }

    /// A run lookup's outcome; NOT_FOUND also leaves the probe on the record
    /// (another organization's run must not be found, nor sought unnoticed).
    async fn found<T>(
        &self,
        access: &Access,
        operation: Operation,
        id: uuid::Uuid,
        outcome: crate::error::Result<T>,
    ) -> Result<T, Status> {
        match outcome {
            Err(error @ Error::NotFound(_)) => {
                let what = format!("migration {id}");
                self.guard
                    .record_not_found(access, operation, &what)
                    .await?;
                Err(error.into())
            }
            other => Ok(other?),
        }
    }

    /// Admits the caller, then says the capability is not built yet.
    async fn unbuilt<T, R>(
        &self,
        request: &Request<R>,
        organization_id: &str,
        operation: Operation,
        capability: &'static str,
    ) -> Answer<T> {
        self.admit(request, organization_id, operation).await?;
        not_yet(capability)
    }

    /// Pause, resume or cancel: checked input, steering right, the change.
    async fn control<T>(
        &self,
        request: &Request<T>,
        organization_id: &str,
        migration_id: &str,
        operation: Operation,
        control: Control,
    ) -> Answer<Migration> {
        let id = parse_id("migration_id", migration_id)?;
        let access = self.admit(request, organization_id, operation).await?;
        let outcome = self.engine.control(&access, id, control).await;
        let run = self.found(&access, operation, id, outcome).await?;
        Ok(Response::new(convert::migration(run)))
    }

    /// The progress stream of a run of the caller's organization, after
    /// `after_sequence`: live when it executes here, else followed through
    /// its row (another server executes it, or it has ended).
    async fn progress_of(
        &self,
        access: &Access,
        operation: Operation,
        id: uuid::Uuid,
        after_sequence: u64,
    ) -> Result<ProgressStream, Status> {
        let updates = match self.engine.watch(id) {
            Some(updates) if access_owns(&updates, access) => updates,
            _ => {
                let outcome = store::get(&self.pool, access.organization_id, id).await;
                let run = self.found(access, operation, id, outcome).await?;
                self.engine.follow(&run)
            }
        };
        Ok(progress_stream(updates, after_sequence))
    }

    /// The caller, checked for `operation` on `organization_id`.
    async fn admit<T>(
        &self,
        request: &Request<T>,
        organization_id: &str,
        operation: Operation,
    ) -> Result<Access, Status> {
        let caller = authn::caller(request)?;
        Ok(self
            .guard
            .authorize(caller, organization_id, operation)
            .await?)
    }
}

type Answer<T> = Result<Response<T>, Status>;

/// Whether a run executing here belongs to the caller's organization.
fn access_owns(updates: &watch::Receiver<Progress>, access: &Access) -> bool {
    updates.borrow().organization_id == access.organization_id
}

/// Streams a run's snapshots after `after_sequence`, always ending with the
/// terminal one. A producer task forwards them, so a slow watcher only skips
/// intermediate snapshots and never slows the run.
fn progress_stream(mut updates: watch::Receiver<Progress>, after_sequence: u64) -> ProgressStream {
    let (sender, stream) = mpsc::channel(8);
    tokio::spawn(async move {
        loop {
            let snapshot = updates.borrow_and_update().clone();
            let last = snapshot.state.is_terminal();
            if (snapshot.sequence > after_sequence || last)
                && sender.send(Ok(convert::progress(&snapshot))).await.is_err()
            {
                return; // the watcher went away; the run goes on
            }
            if last {
                return;
            }
            if updates.changed().await.is_err() {
                let stopping = Status::unavailable(
                    "the server is stopping; the run goes on and can be watched again",
                );
                let _ = sender.send(Err(stopping)).await;
                return;
            }
        }
    });
    Box::pin(ReceiverStream::new(stream))
}

fn not_yet<T>(capability: &'static str) -> Result<T, Status> {
    Err(Error::Unimplemented(capability).into())
}

#[tonic::async_trait]
impl migration_service_server::MigrationService for GrpcMigrationService {
    type StartMigrationStream = ProgressStream;
    type WatchMigrationStream = ProgressStream;
    type RollbackMigrationStream = ProgressStream;

    async fn preview_candidates(
        &self,
        request: Request<PreviewCandidatesRequest>,
    ) -> Answer<PreviewCandidatesResponse> {
        let message = request.get_ref();
        let query = PreviewQuery::parse(
            &message.from_date,
            &message.to_date,
            message.batch_limit,
            mapping_pairs(&message.smart_code_mappings),
            &message.candidate_statuses,
            message.closed_period_policy() == ClosedPeriodPolicy::PostToOpenPeriod,
        )?;
        let access = self
            .admit(
                &request,
                &message.organization_id,
                Operation::PreviewCandidates,
            )
            .await?;
        let plan =
            preview::preview(&self.pool, access.organization_id, access.user_id, &query).await?;
        Ok(Response::new(convert::preview(plan)))
    }

    async fn start_migration(
        &self,
        request: Request<StartMigrationRequest>,
    ) -> Answer<Self::StartMigrationStream> {
        let message = request.get_ref();
        let start = engine::start_request(engine::StartFields {
            from_date: &message.from_date,
            to_date: &message.to_date,
            batch_size: message.batch_size,
            mappings: mapping_pairs(&message.smart_code_mappings).collect(),
            candidate_statuses: &message.candidate_statuses,
            request_id: &message.request_id,
            expected_plan_fingerprint: &message.expected_plan_fingerprint,
            post_to_open_period: message.closed_period_policy()
                == ClosedPeriodPolicy::PostToOpenPeriod,
            max_transactions_per_second: message.max_transactions_per_second,
            dry_run: message.dry_run,
        })?;
        let access = self
            .admit(
                &request,
                &message.organization_id,
                Operation::StartMigration,
            )
            .await?;
        let id = self.engine.start(&access, &start).await?;
        let stream = self
            .progress_of(&access, Operation::StartMigration, id, 0)
            .await?;
        Ok(Response::new(stream))
    }

    async fn watch_migration(
        &self,
        request: Request<WatchMigrationRequest>,
    ) -> Answer<Self::WatchMigrationStream> {
        let message = request.get_ref();
        let id = parse_id("migration_id", &message.migration_id)?;
        let after = message.after_sequence;
        let access = self
            .admit(
                &request,
                &message.organization_id,
                Operation::WatchMigration,
            )
            .await?;
        let stream = self
            .progress_of(&access, Operation::WatchMigration, id, after)
            .await?;
        Ok(Response::new(stream))
    }

    async fn get_migration(&self, request: Request<GetMigrationRequest>) -> Answer<Migration> {
        let message = request.get_ref();
        let id = parse_id("migration_id", &message.migration_id)?;
        let access = self
            .admit(&request, &message.organization_id, Operation::GetMigration)
            .await?;
        let outcome = store::get(&self.pool, access.organization_id, id).await;
        let run = self
            .found(&access, Operation::GetMigration, id, outcome)
            .await?;
        Ok(Response::new(convert::migration(run)))
    }

    async fn list_migrations(
        &self,
        request: Request<ListMigrationsRequest>,
    ) -> Answer<ListMigrationsResponse> {
        let message = request.get_ref();
        let page_size = store::page_size(message.page_size)?;
        let after = store::PageToken::decode(&message.page_token)?;
        let asked: Vec<MigrationState> = message
            .states()
            .filter(|state| *state != MigrationState::Unspecified)
            .collect();
        let states: Vec<RunState> = asked
            .iter()
            .filter_map(|state| RunState::parse(state.as_str_name()))
            .collect();
        let access = self
            .admit(
                &request,
                &message.organization_id,
                Operation::ListMigrations,
            )
            .await?;
        // Only states no run is ever in (PENDING): nothing to list.
        let (page, next) = if !asked.is_empty() && states.is_empty() {
            (Vec::new(), None)
        } else {
            store::list(
                &self.pool,
                access.organization_id,
                &states,
                page_size,
                after,
            )
            .await?
        };
        Ok(Response::new(ListMigrationsResponse {
            migrations: page.into_iter().map(convert::migration).collect(),
            next_page_token: next.map(store::PageToken::encode).unwrap_or_default(),
        }))
    }

    async fn pause_migration(&self, request: Request<PauseMigrationRequest>) -> Answer<Migration> {
        let (org, id) = (
            &request.get_ref().organization_id,
            &request.get_ref().migration_id,
        );
        self.control(&request, org, id, Operation::PauseMigration, Control::Pause)
            .await
    }

    async fn resume_migration(
        &self,
        request: Request<ResumeMigrationRequest>,
    ) -> Answer<Migration> {
        let (org, id) = (
            &request.get_ref().organization_id,
            &request.get_ref().migration_id,
        );
        self.control(
            &request,
            org,
            id,
            Operation::ResumeMigration,
            Control::Resume,
        )
        .await
    }

    async fn cancel_migration(
        &self,
        request: Request<CancelMigrationRequest>,
    ) -> Answer<Migration> {
        let (org, id) = (
            &request.get_ref().organization_id,
            &request.get_ref().migration_id,
        );
        self.control(
            &request,
            org,
            id,
            Operation::CancelMigration,
            Control::Cancel,
        )
        .await
    }

    async fn update_migration(
        &self,
        request: Request<UpdateMigrationRequest>,
    ) -> Answer<Migration> {
        let message = request.get_ref();
        let id = parse_id("migration_id", &message.migration_id)?;
        let update = engine::update_request(
            message.batch_size,
            message.max_transactions_per_second,
            message.batch_delay_ms,
        )?;
        let operation = Operation::UpdateMigration;
        let access = self
            .admit(&request, &message.organization_id, operation)
            .await?;
        let outcome = self.engine.update(&access, id, &update).await;
        let run = self.found(&access, operation, id, outcome).await?;
        Ok(Response::new(convert::migration(run)))
    }

    async fn apply_reporting_aliases(
        &self,
        request: Request<ApplyReportingAliasesRequest>,
    ) -> Answer<ApplyReportingAliasesResponse> {
        let message = request.get_ref();
        let aliases = aliases::alias_request(
            &message.migration_id,
            mapping_pairs(&message.smart_code_mappings),
            &message.request_id,
        )?;
        let operation = Operation::ApplyReportingAliases;
        let access = self
            .admit(&request, &message.organization_id, operation)
            .await?;
        let outcome = aliases::apply(&self.pool, &access, &aliases).await;
        let id = aliases.migration_id.unwrap_or_default();
        let applied = self.found(&access, operation, id, outcome).await?;
        Ok(Response::new(convert::aliases(
            access.organization_id,
            applied,
        )))
    }

    async fn validate_migration(
        &self,
        request: Request<ValidateMigrationRequest>,
    ) -> Answer<ValidationReport> {
        let message = request.get_ref();
        let id = parse_id("migration_id", &message.migration_id)?;
        let operation = Operation::ValidateMigration;
        let access = self
            .admit(&request, &message.organization_id, operation)
            .await?;
        let outcome = validation::validate(&self.pool, &access, id).await;
        let report = self.found(&access, operation, id, outcome).await?;
        Ok(Response::new(convert::validation(
            access.organization_id,
            id,
            report,
        )))
    }

    async fn rollback_migration(
        &self,
        request: Request<RollbackMigrationRequest>,
    ) -> Answer<Self::RollbackMigrationStream> {
        let message = request.get_ref();
        let id = parse_id("migration_id", &message.migration_id)?;
        let rollback =
            engine::rollback_request(&message.reason, &message.request_id, message.force)?;
        let operation = Operation::RollbackMigration;
        let access = self
            .admit(&request, &message.organization_id, operation)
            .await?;
        let outcome = self.engine.rollback(&access, id, &rollback).await;
        self.found(&access, operation, id, outcome).await?;
        let stream = self.progress_of(&access, operation, id, 0).await?;
        Ok(Response::new(stream))
    }

    async fn check_security(
        &self,
        request: Request<CheckSecurityRequest>,
    ) -> Answer<CheckSecurityResponse> {
        let caller = authn::caller(&request)?;
        let CheckSecurityRequest {
            organization_id,
            operation,
        } = request.into_inner();
        let asked = match operation.trim() {
            "" => Operation::StartMigration,
            name => Operation::from_name(name).ok_or_else(|| {
                Error::invalid(
                    "operation",
                    format!("{name:?} is not an RPC of MigrationService"),
                )
            })?,
        };
        let access = self
            .guard
            .check_security(caller, &organization_id, asked)
            .await?;
        Ok(Response::new(CheckSecurityResponse {
            user_id: access.user_id.to_string(),
            organization_id: access.organization_id.to_string(),
            role: access.role.unwrap_or_default(),
            migration_allowed: access.migration_allowed,
            reasons: access.reasons,
            audit_transaction_id: access
                .audit_transaction_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
        }))
    }

    async fn check_environment(
        &self,
        request: Request<CheckEnvironmentRequest>,
    ) -> Answer<CheckEnvironmentResponse> {
        let organization_id = &request.get_ref().organization_id;
        self.unbuilt(
            &request,
            organization_id,
            Operation::CheckEnvironment,
            "CheckEnvironment (the pre-migration environment checks)",
        )
        .await
    }

    async fn measure_performance(
        &self,
        request: Request<MeasurePerformanceRequest>,
    ) -> Answer<MeasurePerformanceResponse> {
        let organization_id = &request.get_ref().organization_id;
        self.unbuilt(
            &request,
            organization_id,
            Operation::MeasurePerformance,
            "MeasurePerformance (the performance baseline and test)",
        )
        .await
    }

    async fn assess_failure(
        &self,
        request: Request<AssessFailureRequest>,
    ) -> Answer<AssessFailureResponse> {
        let organization_id = &request.get_ref().organization_id;
        self.unbuilt(
            &request,
            organization_id,
            Operation::AssessFailure,
            "AssessFailure (the failure assessment)",
        )
        .await
    }

    async fn document_incident(
        &self,
        request: Request<DocumentIncidentRequest>,
    ) -> Answer<DocumentIncidentResponse> {
        let organization_id = &request.get_ref().organization_id;
        self.unbuilt(
            &request,
            organization_id,
            Operation::DocumentIncident,
            "DocumentIncident (the incident record)",
        )
        .await
    }
}
