//! The migration service, one method per RPC, knowing nothing of gRPC: it
//! takes the verified caller and checked domain requests, admits the caller
//! through the guard, and answers in domain types. The gRPC adapter
//! (`server::grpc`), the tests and any other front end call it the same way.
use tokio::sync::watch;
use uuid::Uuid;

use crate::{
    auth::{Access, Caller, Guard, Operation},
    error::{Error, Result},
    migration::{
        engine::{
            AliasRequest, Applied, Control, Engine, RollbackRequest, StartRequest, UpdateRequest,
        },
        preview::{self, Preview, PreviewQuery},
        progress::Progress,
        run::{PageToken, Run, RunState, store},
        validation::{self, Report},
    },
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
}

impl MigrationService {
    pub fn new(pool: sqlx::PgPool, guard: Guard, engine: Engine) -> Self {
        Self {
            pool,
            guard: std::sync::Arc::new(guard),
            engine,
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

    /// Starts a run; its progress from its first event.
    pub async fn start(
        &self,
        caller: Caller,
        org: Uuid,
        request: &StartRequest,
    ) -> Result<watch::Receiver<Progress>> {
        let operation = Operation::StartMigration;
        let access = self.admit(caller, org, operation).await?;
        let id = self.engine.start(&access, request).await?;
        self.progress_of(&access, operation, id).await
    }

    pub async fn watch(
        &self,
        caller: Caller,
        org: Uuid,
        id: Uuid,
    ) -> Result<watch::Receiver<Progress>> {
        let operation = Operation::WatchMigration;
        let access = self.admit(caller, org, operation).await?;
        self.progress_of(&access, operation, id).await
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

    /// Begins (or attaches to) a run's rollback; its progress from its first event.
    pub async fn rollback(
        &self,
        caller: Caller,
        org: Uuid,
        id: Uuid,
        request: &RollbackRequest,
    ) -> Result<watch::Receiver<Progress>> {
        let operation = Operation::RollbackMigration;
        let access = self.admit(caller, org, operation).await?;
        let outcome = self.engine.rollback(&access, id, request).await;
        self.found(&access, operation, id, outcome).await?;
        self.progress_of(&access, operation, id).await
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

    /// A capability declared in the API but not built: the caller's identity
    /// and rights are checked, then UNIMPLEMENTED naming it. The error to answer.
    pub async fn unbuilt(
        &self,
        caller: Caller,
        org: Uuid,
        operation: Operation,
        capability: &'static str,
    ) -> Error {
        match self.admit(caller, org, operation).await {
            Ok(_) => Error::Unimplemented(capability),
            Err(refused) => refused,
        }
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
        if let Err(Error::NotFound(_)) = &outcome {
            let what = format!("migration {id}");
            self.guard
                .record_not_found(access, operation, &what)
                .await?;
        }
        outcome
    }

    /// The progress of a run of the caller's organization: live when it
    /// executes here, else followed through its row (another server executes
    /// it, or it has ended).
    async fn progress_of(
        &self,
        access: &Access,
        operation: Operation,
        id: Uuid,
    ) -> Result<watch::Receiver<Progress>> {
        match self.engine.watch(id) {
            Some(updates) if updates.borrow().organization_id == access.organization_id => {
                Ok(updates)
            }
            _ => {
                let outcome = store::get(&self.pool, access.organization_id, id).await;
                let run = self.found(access, operation, id, outcome).await?;
                Ok(self.engine.follow(&run))
            }
        }
    }
}
