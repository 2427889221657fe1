//! The migration service, one method per RPC, knowing nothing of gRPC: it
//! takes the verified caller and checked domain requests, admits the caller
//! through the guard, and answers in domain types. The gRPC adapter
//! (`server::grpc`), the tests and any other front end call it the same way.
use uuid::Uuid;

use crate::{
    audit::ChainVerdict,
    auth::{Access, Caller, Guard, Operation},
    error::Result,
    incidents::{self, Assessment, Incident, IncidentRequest, LockSettings},
    migration::{
        engine::{
            AliasRequest, Applied, Control, Engine, Events, RollbackRequest, StartRequest,
            UpdateRequest,
        },
        preview::{self, Preview, PreviewQuery},
        rollback_preview::{self, RollbackPreview},
        run::{PageToken, Run, RunState, store},
        validation::{self, Report},
    },
    operations::{Environment, Operations, PerformanceReport, PerformanceRequest},
};

/// A ListMigrations request, checked.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// Empty: every state.
    pub states: Vec<RunState>,
    /// Asked only for states no run is ever in: nothing to list.
    pub nothing: bool,
    pub page_size: i64,
    pub after: Option<PageToken>,
}

#[derive(Clone)]
pub struct MigrationService {
    pool: sqlx::PgPool,
    guard: std::sync::Arc<Guard>,
    engine: Engine,
    operations: Operations,
}

impl MigrationService {
    pub fn new(
        pool: sqlx::PgPool,
        guard: std::sync::Arc<Guard>,
        engine: Engine,
        operations: Operations,
    ) -> Self {
        Self {
            pool,
            guard,
            engine,
            operations,
        }
    }

    pub async fn preview(
        &self,
        caller: Caller,
        org: Uuid,
        query: &PreviewQuery,
    ) -> Result<Preview> {
        let access = self
            .admit(caller, org, Operation::PreviewCandidates)
            .await?;
        preview::preview(&self.pool, org, access.user_id, query).await
    }

    /// Starts a run (or finds the one its request_id started); its events
    /// from its first.
    pub async fn start(&self, caller: Caller, org: Uuid, request: &StartRequest) -> Result<Events> {
        let operation = Operation::StartMigration;
        let access = self.admit(caller, org, operation).await?;
        let id = self.engine.start(&access, request).await?;
        self.events_of(&access, operation, id, 0).await
    }

    /// A run's events after `after_sequence` (0: all), then live until it ends.
    pub async fn watch(
        &self,
        caller: Caller,
        org: Uuid,
        id: Uuid,
        after_sequence: u64,
    ) -> Result<Events> {
        let operation = Operation::WatchMigration;
        let access = self.admit(caller, org, operation).await?;
        self.events_of(&access, operation, id, after_sequence).await
    }

    pub async fn get(&self, caller: Caller, org: Uuid, id: Uuid) -> Result<Run> {
        let operation = Operation::GetMigration;
        let access = self.admit(caller, org, operation).await?;
        let outcome = store::get(&self.pool, org, id).await;
        self.found(&access, operation, id, outcome).await
    }

    pub async fn list(
        &self,
        caller: Caller,
        org: Uuid,
        query: &ListQuery,
    ) -> Result<(Vec<Run>, Option<PageToken>)> {
        self.admit(caller, org, Operation::ListMigrations).await?;
        if query.nothing {
            return Ok((Vec::new(), None));
        }
        store::list(&self.pool, org, &query.states, query.page_size, query.after).await
    }

    pub async fn control(
        &self,
        caller: Caller,
        org: Uuid,
        id: Uuid,
        control: Control,
    ) -> Result<Run> {
        let operation = match control {
            Control::Pause => Operation::PauseMigration,
            Control::Resume => Operation::ResumeMigration,
            Control::Cancel => Operation::CancelMigration,
        };
        let access = self.admit(caller, org, operation).await?;
        let outcome = self.engine.control(&access, id, control).await;
        self.found(&access, operation, id, outcome).await
    }

    pub async fn update(
        &self,
        caller: Caller,
        org: Uuid,
        id: Uuid,
        update: &UpdateRequest,
    ) -> Result<Run> {
        let operation = Operation::UpdateMigration;
        let access = self.admit(caller, org, operation).await?;
        let outcome = self.engine.update(&access, id, update).await;
        self.found(&access, operation, id, outcome).await
    }

    pub async fn apply_aliases(
        &self,
        caller: Caller,
        org: Uuid,
        request: &AliasRequest,
    ) -> Result<Applied> {
        let operation = Operation::ApplyReportingAliases;
        let access = self.admit(caller, org, operation).await?;
        let outcome = self.engine.apply_aliases(&access, request).await;
        let id = request.migration_id.unwrap_or_default();
        self.found(&access, operation, id, outcome).await
    }

    /// Validates a run; `allow_partial` judges one that stopped before its
    /// end on the part it did.
    pub async fn validate(
        &self,
        caller: Caller,
        org: Uuid,
        id: Uuid,
        allow_partial: bool,
    ) -> Result<Report> {
        let operation = Operation::ValidateMigration;
        let access = self.admit(caller, org, operation).await?;
        let outcome = validation::validate(&self.pool, &access, id, allow_partial).await;
        self.found(&access, operation, id, outcome).await
    }

    /// Recomputes the organization's audit chain; read-only, and writes no
    /// audit row of its own (verifying must not move what it verifies).
    pub async fn verify_audit_chain(&self, caller: Caller, org: Uuid) -> Result<ChainVerdict> {
        self.admit(caller, org, Operation::VerifyAuditChain).await?;
        crate::audit::verify_chain(&self.pool, org).await
    }

    /// What a rollback of run `id` would do, read-only.
    pub async fn preview_rollback(
        &self,
        caller: Caller,
        org: Uuid,
        id: Uuid,
    ) -> Result<RollbackPreview> {
        let operation = Operation::PreviewRollback;
        let access = self.admit(caller, org, operation).await?;
        let outcome = rollback_preview::preview_rollback(&self.pool, org, id).await;
        self.found(&access, operation, id, outcome).await
    }

    /// Begins (or attaches to) a run's rollback; its events from the
    /// rollback's first.
    pub async fn rollback(
        &self,
        caller: Caller,
        org: Uuid,
        id: Uuid,
        request: &RollbackRequest,
    ) -> Result<Events> {
        let operation = Operation::RollbackMigration;
        let access = self.admit(caller, org, operation).await?;
        let outcome = self.engine.rollback(&access, id, request).await;
        self.found(&access, operation, id, outcome).await?;
        let began_after = store::rollback_began_after(&self.pool, org, id).await?;
        self.events_of(&access, operation, id, began_after).await
    }

    /// A run's diagnosis and the recommended next actions; writes nothing.
    pub async fn assess_failure(&self, caller: Caller, org: Uuid, id: Uuid) -> Result<Assessment> {
        let operation = Operation::AssessFailure;
        let access = self.admit(caller, org, operation).await?;
        let outcome = incidents::assess(&self.pool, org, id, self.lock_settings()).await;
        self.found(&access, operation, id, outcome).await
    }

    /// Records a run's incident report (or answers the one its request_id
    /// recorded; ALREADY_EXISTS when that had other content).
    pub async fn document_incident(
        &self,
        caller: Caller,
        org: Uuid,
        request: &IncidentRequest,
    ) -> Result<Incident> {
        let operation = Operation::DocumentIncident;
        let access = self.admit(caller, org, operation).await?;
        if let Some(recorded) =
            incidents::record::find(&self.pool, org, &request.request_id).await?
        {
            return recorded.answering(request);
        }
        let id = request.migration_id;
        let outcome = incidents::assess(&self.pool, org, id, self.lock_settings()).await;
        let assessment = self.found(&access, operation, id, outcome).await?;
        incidents::record::record(&self.pool, &access, request, &assessment).await
    }

    fn lock_settings(&self) -> LockSettings {
        let (timeout_ms, retries) = self.engine.lock_wait();
        LockSettings {
            timeout_ms,
            retries,
        }
    }

    /// Whether the caller may perform `asked` (always recorded).
    pub async fn check_security(
        &self,
        caller: Caller,
        org: Uuid,
        asked: Operation,
    ) -> Result<Access> {
        self.guard.check_security(caller, org, asked).await
    }

    /// The environment's checks: PASS, WARN, FAIL or UNKNOWN each, with a
    /// remedy for what does not pass.
    pub async fn check_environment(&self, caller: Caller, org: Uuid) -> Result<Environment> {
        let access = self.admit(caller, org, Operation::CheckEnvironment).await?;
        self.operations.environment(&access).await
    }

    /// Measures (rolling back every sample's writes) and records a baseline,
    /// or a test compared with the organization's latest baseline.
    pub async fn measure_performance(
        &self,
        caller: Caller,
        org: Uuid,
        request: &PerformanceRequest,
    ) -> Result<PerformanceReport> {
        let access = self
            .admit(caller, org, Operation::MeasurePerformance)
            .await?;
        self.operations.measure(&access, request).await
    }

    async fn admit(&self, caller: Caller, org: Uuid, operation: Operation) -> Result<Access> {
        self.guard.authorize(caller, org, operation).await
    }

    /// A run lookup's outcome; NOT_FOUND also leaves the probe on the record
    /// (another organization's run must not be found, nor sought unnoticed).
    async fn found<T>(
        &self,
        access: &Access,
        operation: Operation,
        id: Uuid,
        outcome: Result<T>,
    ) -> Result<T> {
        if let Err(error) = &outcome
            && error.is_not_found()
        {
            let what = format!("migration {id}");
            self.guard
                .record_not_found(access, operation, &what)
                .await?;
        }
        outcome
    }

    /// The events of a run of the caller's organization after `after`
    /// (NOT_FOUND, recorded, for another organization's).
    async fn events_of(
        &self,
        access: &Access,
        operation: Operation,
        id: Uuid,
        after: u64,
    ) -> Result<Events> {
        let outcome = store::get(&self.pool, access.organization_id, id).await;
        self.found(access, operation, id, outcome).await?;
        Ok(self.engine.events(access.organization_id, id, after))
    }
}
