//! The `MigrationService` adapter: decodes requests, calls the service layer,
//! encodes answers. RPCs whose capability is not built yet answer
//! UNIMPLEMENTED naming it, never a fake success.
use std::pin::Pin;

use sqlx::PgPool;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::{error::Error, proto::*};

/// A server stream of run events.
pub type ProgressStream = Pin<Box<dyn Stream<Item = Result<MigrationProgress, Status>> + Send>>;

pub struct GrpcMigrationService {
    #[allow(dead_code)] // read by the phases as they land
    pool: PgPool,
}

impl GrpcMigrationService {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

type Answer<T> = Result<Response<T>, Status>;

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
        _request: Request<PreviewCandidatesRequest>,
    ) -> Answer<PreviewCandidatesResponse> {
        not_yet("PreviewCandidates (the phase 1 preview)")
    }

    async fn start_migration(
        &self,
        _request: Request<StartMigrationRequest>,
    ) -> Answer<Self::StartMigrationStream> {
        not_yet("StartMigration (the phase 2 reverse + repost engine)")
    }

    async fn watch_migration(
        &self,
        _request: Request<WatchMigrationRequest>,
    ) -> Answer<Self::WatchMigrationStream> {
        not_yet("WatchMigration (the phase 2 engine's progress stream)")
    }

    async fn get_migration(&self, _request: Request<GetMigrationRequest>) -> Answer<Migration> {
        not_yet("GetMigration (the phase 2 engine's run records)")
    }

    async fn list_migrations(
        &self,
        _request: Request<ListMigrationsRequest>,
    ) -> Answer<ListMigrationsResponse> {
        not_yet("ListMigrations (the phase 2 engine's run records)")
    }

    async fn pause_migration(&self, _request: Request<PauseMigrationRequest>) -> Answer<Migration> {
        not_yet("PauseMigration (the phase 2 engine's run control)")
    }

    async fn resume_migration(
        &self,
        _request: Request<ResumeMigrationRequest>,
    ) -> Answer<Migration> {
        not_yet("ResumeMigration (the phase 2 engine's run control)")
    }

    async fn cancel_migration(
        &self,
        _request: Request<CancelMigrationRequest>,
    ) -> Answer<Migration> {
        not_yet("CancelMigration (the phase 2 engine's run control)")
    }

    async fn update_migration(
        &self,
        _request: Request<UpdateMigrationRequest>,
    ) -> Answer<Migration> {
        not_yet("UpdateMigration (the phase 2 engine's run control)")
    }

    async fn apply_reporting_aliases(
        &self,
        _request: Request<ApplyReportingAliasesRequest>,
    ) -> Answer<ApplyReportingAliasesResponse> {
        not_yet("ApplyReportingAliases (the phase 3 reporting aliases)")
    }

    async fn validate_migration(
        &self,
        _request: Request<ValidateMigrationRequest>,
    ) -> Answer<ValidationReport> {
        not_yet("ValidateMigration (the phase 4 validation suite)")
    }

    async fn rollback_migration(
        &self,
        _request: Request<RollbackMigrationRequest>,
    ) -> Answer<Self::RollbackMigrationStream> {
        not_yet("RollbackMigration (the rollback engine)")
    }

    async fn check_security(
        &self,
        _request: Request<CheckSecurityRequest>,
    ) -> Answer<CheckSecurityResponse> {
        not_yet("CheckSecurity (identity and roles)")
    }

    async fn check_environment(
        &self,
        _request: Request<CheckEnvironmentRequest>,
    ) -> Answer<CheckEnvironmentResponse> {
        not_yet("CheckEnvironment (the pre-migration environment checks)")
    }

    async fn measure_performance(
        &self,
        _request: Request<MeasurePerformanceRequest>,
    ) -> Answer<MeasurePerformanceResponse> {
        not_yet("MeasurePerformance (the performance baseline and test)")
    }

    async fn assess_failure(
        &self,
        _request: Request<AssessFailureRequest>,
    ) -> Answer<AssessFailureResponse> {
        not_yet("AssessFailure (the failure assessment)")
    }

    async fn document_incident(
        &self,
        _request: Request<DocumentIncidentRequest>,
    ) -> Answer<DocumentIncidentResponse> {
        not_yet("DocumentIncident (the incident record)")
    }
}
