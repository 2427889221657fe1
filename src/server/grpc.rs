//! The `MigrationService` adapter: decodes each request (`decode`), calls the
//! tonic-free service (`crate::service`), encodes the answer (`convert`,
//! `convert_operations`).
//! Capabilities not built yet answer UNIMPLEMENTED naming them (after the
//! caller's identity and rights are checked), never a fake success.
use tonic::{Request, Response, Status};

use super::{
    authn, convert, convert_operations,
    decode::{self, Decoded},
    grpc_operations as operations,
    stream::{ProgressStream, progress_stream},
};
use crate::{migration::engine::Control, proto::*, service::MigrationService};

type Answer<T> = Result<Response<T>, Status>;

pub struct GrpcMigrationService {
    service: MigrationService,
}

impl GrpcMigrationService {
    pub fn new(service: MigrationService) -> Self {
        Self { service }
    }

    async fn control<T, R: From<Migration>>(
        &self,
        request: &Request<T>,
        (organization_id, migration_id): (&str, &str),
        control: Control,
    ) -> Answer<R> {
        let caller = authn::caller(request)?;
        let Decoded {
            organization_id,
            request: (id, control),
        } = decode::control(organization_id, migration_id, control)?;
        let run = self
            .service
            .control(caller, organization_id, id, control)
            .await?;
        Ok(Response::new(convert::migration(run).into()))
    }
}

#[tonic::async_trait]
impl migration_service_server::MigrationService for GrpcMigrationService {
    type StartMigrationStream = ProgressStream<StartMigrationResponse>;
    type WatchMigrationStream = ProgressStream<WatchMigrationResponse>;
    type RollbackMigrationStream = ProgressStream<RollbackMigrationResponse>;

    async fn preview_candidates(
        &self,
        request: Request<PreviewCandidatesRequest>,
    ) -> Answer<PreviewCandidatesResponse> {
        let Decoded {
            organization_id,
            request: query,
        } = decode::preview(request.get_ref())?;
        let caller = authn::caller(&request)?;
        let plan = self
            .service
            .preview(caller, organization_id, &query)
            .await?;
        Ok(Response::new(convert::preview(plan)))
    }

    async fn start_migration(
        &self,
        request: Request<StartMigrationRequest>,
    ) -> Answer<Self::StartMigrationStream> {
        let Decoded {
            organization_id,
            request: start,
        } = decode::start(request.get_ref())?;
        let caller = authn::caller(&request)?;
        let events = self.service.start(caller, organization_id, &start).await?;
        Ok(Response::new(progress_stream(events)))
    }

    async fn watch_migration(
        &self,
        request: Request<WatchMigrationRequest>,
    ) -> Answer<Self::WatchMigrationStream> {
        let message = request.get_ref();
        let (organization_id, id) = decode::run(&message.organization_id, &message.migration_id)?;
        let caller = authn::caller(&request)?;
        let after = message.after_sequence;
        let events = self
            .service
            .watch(caller, organization_id, id, after)
            .await?;
        Ok(Response::new(progress_stream(events)))
    }

    async fn get_migration(
        &self,
        request: Request<GetMigrationRequest>,
    ) -> Answer<GetMigrationResponse> {
        let message = request.get_ref();
        let (organization_id, id) = decode::run(&message.organization_id, &message.migration_id)?;
        let caller = authn::caller(&request)?;
        let run = self.service.get(caller, organization_id, id).await?;
        Ok(Response::new(convert::migration(run).into()))
    }

    async fn list_migrations(
        &self,
        request: Request<ListMigrationsRequest>,
    ) -> Answer<ListMigrationsResponse> {
        let Decoded {
            organization_id,
            request: query,
        } = decode::list(request.get_ref())?;
        let caller = authn::caller(&request)?;
        let (page, next) = self.service.list(caller, organization_id, &query).await?;
        Ok(Response::new(ListMigrationsResponse {
            migrations: page.into_iter().map(convert::migration).collect(),
            next_page_token: next.map(|token| token.encode()).unwrap_or_default(),
        }))
    }

    async fn pause_migration(
        &self,
        request: Request<PauseMigrationRequest>,
    ) -> Answer<PauseMigrationResponse> {
        let m = request.get_ref();
        let ids = (m.organization_id.as_str(), m.migration_id.as_str());
        self.control(&request, ids, Control::Pause).await
    }

    async fn resume_migration(
        &self,
        request: Request<ResumeMigrationRequest>,
    ) -> Answer<ResumeMigrationResponse> {
        let m = request.get_ref();
        let ids = (m.organization_id.as_str(), m.migration_id.as_str());
        self.control(&request, ids, Control::Resume).await
    }

    async fn cancel_migration(
        &self,
        request: Request<CancelMigrationRequest>,
    ) -> Answer<CancelMigrationResponse> {
        let m = request.get_ref();
        let ids = (m.organization_id.as_str(), m.migration_id.as_str());
        self.control(&request, ids, Control::Cancel).await
    }

    async fn update_migration(
        &self,
        request: Request<UpdateMigrationRequest>,
    ) -> Answer<UpdateMigrationResponse> {
        let Decoded {
            organization_id,
            request: (id, update),
        } = decode::update(request.get_ref())?;
        let caller = authn::caller(&request)?;
        let run = self
            .service
            .update(caller, organization_id, id, &update)
            .await?;
        Ok(Response::new(convert::migration(run).into()))
    }

    async fn apply_reporting_aliases(
        &self,
        request: Request<ApplyReportingAliasesRequest>,
    ) -> Answer<ApplyReportingAliasesResponse> {
        let Decoded {
            organization_id,
            request: aliases,
        } = decode::aliases(request.get_ref())?;
        let caller = authn::caller(&request)?;
        let applied = self
            .service
            .apply_aliases(caller, organization_id, &aliases)
            .await?;
        Ok(Response::new(convert::aliases(organization_id, applied)))
    }

    async fn validate_migration(
        &self,
        request: Request<ValidateMigrationRequest>,
    ) -> Answer<ValidateMigrationResponse> {
        let message = request.get_ref();
        let (organization_id, id) = decode::run(&message.organization_id, &message.migration_id)?;
        let caller = authn::caller(&request)?;
        let report = self
            .service
            .validate(caller, organization_id, id, message.allow_partial)
            .await?;
        let report = convert::validation(organization_id, id, report);
        Ok(Response::new(report.into()))
    }

    async fn rollback_migration(
        &self,
        request: Request<RollbackMigrationRequest>,
    ) -> Answer<Self::RollbackMigrationStream> {
        let Decoded {
            organization_id,
            request: (id, rollback),
        } = decode::rollback(request.get_ref())?;
        let caller = authn::caller(&request)?;
        let events = self
            .service
            .rollback(caller, organization_id, id, &rollback)
            .await?;
        Ok(Response::new(progress_stream(events)))
    }

    async fn preview_rollback(
        &self,
        request: Request<PreviewRollbackRequest>,
    ) -> Answer<PreviewRollbackResponse> {
        let m = request.get_ref();
        let (organization_id, id) = decode::run(&m.organization_id, &m.migration_id)?;
        let caller = authn::caller(&request)?;
        let plan = self.service.preview_rollback(caller, organization_id, id);
        Ok(Response::new(convert_operations::rollback_preview(
            plan.await?,
        )))
    }

    async fn check_security(
        &self,
        request: Request<CheckSecurityRequest>,
    ) -> Answer<CheckSecurityResponse> {
        let caller = authn::caller(&request)?;
        let Decoded {
            organization_id,
            request: asked,
        } = decode::check_security(request.get_ref())?;
        let access = self
            .service
            .check_security(caller, organization_id, asked)
            .await?;
        Ok(Response::new(convert::security(access)))
    }

    async fn check_environment(
        &self,
        request: Request<CheckEnvironmentRequest>,
    ) -> Answer<CheckEnvironmentResponse> {
        operations::check_environment(&self.service, request).await
    }

    async fn measure_performance(
        &self,
        request: Request<MeasurePerformanceRequest>,
    ) -> Answer<MeasurePerformanceResponse> {
        operations::measure_performance(&self.service, request).await
    }

    async fn assess_failure(
        &self,
        request: Request<AssessFailureRequest>,
    ) -> Answer<AssessFailureResponse> {
        operations::assess_failure(&self.service, request).await
    }

    async fn document_incident(
        &self,
        request: Request<DocumentIncidentRequest>,
    ) -> Answer<DocumentIncidentResponse> {
        operations::document_incident(&self.service, request).await
    }

    async fn verify_audit_chain(
        &self,
        request: Request<VerifyAuditChainRequest>,
    ) -> Answer<VerifyAuditChainResponse> {
        operations::verify_audit_chain(&self.service, request).await
    }
}
