//! The run engine. A run belongs to the service, not to the call that started
//! it: an executor task of the server drives its phase's batch function one
//! database transaction at a time and publishes a progress snapshot after each
//! batch. Callers only watch.
//!
//! Which server executes an organization's run is decided in PostgreSQL: the
//! executor holds a session advisory lock (its lease) on a connection of its
//! own. The lock lapses the moment that session ends (a crash, a kill -9, a
//! lost host once TCP keepalives give up), and every server looks for RUNNING
//! runs whose lease is free, so a run outlives the server executing it.
mod aliasing;
mod control;
mod events;
mod executor;
mod lease;
mod listening;
mod pacing;
mod report;
mod rollback;
pub mod sizing;
mod start;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use sqlx::PgPool;
use tokio::sync::{Notify, broadcast};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use uuid::Uuid;

pub use aliasing::{AliasCount, AliasRequest, Applied, alias_request};
pub use control::{Control, UpdateFields, UpdateRequest, update_request};
pub use events::Events;
pub use rollback::{RollbackFields, RollbackRequest, rollback_request};
pub use start::{StartFields, StartRequest, start_request};

pub use self::lease::Lease;
use self::{events::record_event, executor::Executor};
use super::{
    progress::{EventKind, Progress},
    run::{Run, RunState, store},
};
use crate::{
    config::{EngineSettings, OnInterrupted},
    db::scope,
    error::{Error, Refusal, Result},
    metrics::Recorder,
};

/// How long a start waits for a run that has recorded its end to let go of
/// the organization's lease (it commits its terminal event, then releases).
const ENDING_GRACE: Duration = Duration::from_secs(5);

/// A run executing here: the bell that wakes its executor (a paused one, or
/// one waiting between batches).
struct Active {
    wake: Arc<Notify>,
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    /// Scoped to an organization per transaction (row-level security).
    pool: PgPool,
    /// The login role: finds runs across organizations, holds leases.
    admin: PgPool,
    settings: EngineSettings,
    /// Runs executing in this process, by id.
    active: Mutex<HashMap<Uuid, Active>>,
    /// Cancelled at shutdown: executors stop after the batch in flight.
    shutdown: CancellationToken,
    executors: TaskTracker,
    /// Every event this process appends to any run's history, once
    /// committed: its watchers take them from here, and read the history
    /// only to catch up (see events.rs).
    events: broadcast::Sender<Arc<[Progress]>>,
    /// Where batches, waits and runs' lives are counted (a no-op when
    /// nothing reads them).
    metrics: Recorder,
}

impl Engine {
    pub fn new(
        pool: PgPool,
        admin: PgPool,
        settings: EngineSettings,
        shutdown: CancellationToken,
        metrics: Recorder,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                admin,
                settings,
                active: Mutex::new(HashMap::new()),
                shutdown,
                executors: TaskTracker::new(),
                events: broadcast::channel(events::APPENDED_BACKLOG).0,
                metrics,
            }),
        }
    }

    /// Where this server's instruments are (rollouts count there too).
    pub fn metrics(&self) -> &Recorder {
        &self.inner.metrics
    }

    /// How batches treat the business's row locks: how long one waits on a
    /// lock (ms), and how many retries before the run fails.
    pub fn lock_wait(&self) -> (u64, u32) {
        let settings = &self.inner.settings;
        (settings.batch_lock_timeout_ms, settings.batch_lock_retries)
    }

    /// A lease of this engine's kind on `id` (a rollout's, say: its driver
    /// holds one as an executor holds its organization's), unless a live
    /// session holds it.
    pub async fn lease(&self, id: Uuid) -> Result<Option<Lease>> {
        Lease::try_acquire(&self.inner.admin, id).await
    }

    /// How often servers look for work whose server is gone.
    pub fn lease_check_interval(&self) -> Duration {
        self.inner.settings.lease_check_interval()
    }

    /// Resolves once every executor has stopped (after the shutdown token is
    /// cancelled, each finishes the batch in flight).
    pub async fn stopped(&self) {
        self.inner.executors.close();
        self.inner.executors.wait().await;
    }

    /// Takes over every RUNNING run whose executing server is gone (its lease
    /// is free): resumes it from its last committed batch, or leaves it PAUSED
    /// with the reason when so configured. Returns how many it took.
    pub async fn adopt_orphans(&self) -> Result<usize> {
        let running = store::running_everywhere(&self.inner.admin).await?;
        let mut adopted = 0;
        for (id, organization_id) in running {
            if self.wake(id).is_some() {
                continue;
            }
            let Some(lease) = Lease::try_acquire(&self.inner.admin, organization_id).await? else {
                continue; // a live server executes it
            };
            let run = store::get(&self.inner.pool, organization_id, id).await?;
            if run.record.state != RunState::Running {
                continue; // it ended or paused meanwhile
            }
            adopted += 1;
            match self.inner.settings.on_interrupted {
                OnInterrupted::Resume => {
                    let event = serde_json::json!({
                        "kind": EventKind::TakenOver,
                        "message": format!(
                            "taken over by server {}: the server executing it went away; \
                             resuming after batch {}", server_name(), run.latest.batch_number),
                    });
                    record_event(&self.inner, organization_id, id, &event).await?;
                    self.launch(&run, lease, None);
                }
                OnInterrupted::Pause => {
                    tracing::warn!(migration_id = %id, %organization_id, "an interrupted run is left paused");
                    self.pause_interrupted(&run).await?;
                    lease.release().await;
                }
            }
        }
        Ok(adopted)
    }

    /// Adopts orphaned runs every lease check interval, until shutdown (a
    /// replica takes over the runs of one that died).
    pub fn adopt_orphans_periodically(&self) {
        let engine = self.clone();
        let interval = self.inner.settings.lease_check_interval();
        self.inner.executors.spawn(async move {
            loop {
                tokio::select! {
                    () = engine.inner.shutdown.cancelled() => return,
                    () = tokio::time::sleep(interval) => {}
                }
                match engine.adopt_orphans().await {
                    Ok(0) => {}
                    Ok(adopted) => tracing::info!(adopted, "took over interrupted migration runs"),
                    Err(error) => tracing::warn!(%error, "looking for interrupted runs failed"),
                }
            }
        });
    }

    /// Starts executing `run` here under `lease`; its execution span joins
    /// the trace of `parent` (the call that started or resumed it) if given.
    fn launch(&self, run: &Run, lease: Lease, parent: Option<opentelemetry::Context>) {
        let wake = Arc::new(Notify::new());
        self.inner
            .active
            .lock()
            .expect("registry")
            .insert(run.id, Active { wake: wake.clone() });
        let executor = Executor::new(self.inner.clone(), run, lease, wake);
        let span = executor.span(parent);
        let inner = self.inner.clone();
        let id = run.id;
        self.inner.executors.spawn(tracing::Instrument::instrument(
            async move {
                executor.run().await;
                inner.active.lock().expect("registry").remove(&id);
            },
            span,
        ));
    }

    /// The organization's lease for a new run (taken before the run exists,
    /// so that no other server adopts it meanwhile), under the start lock of
    /// `tx`. ABORTED while another run of the organization is active (it
    /// holds the organization and locks its rows), or still ending elsewhere.
    async fn claim(&self, tx: &mut scope::OrgTransaction, organization_id: Uuid) -> Result<Lease> {
        if let Some(active) = store::active(tx, organization_id, None).await? {
            return Err(Error::refused(
                Refusal::RunAlreadyActive,
                format!(
                    "organization {organization_id} already has an active migration {active}; a new run waits for it to end"
                ),
            )
            .naming("active_migration_id", active));
        }
        // No run is active, so whoever holds the lease is a run that has
        // recorded its end and is letting go (here or on another server):
        // a client that starts again on seeing the terminal event waits that
        // moment out instead of being refused.
        let deadline = tokio::time::Instant::now() + ENDING_GRACE;
        loop {
            if let Some(lease) = Lease::try_acquire(&self.inner.admin, organization_id).await? {
                return Ok(lease);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Aborted(format!(
                    "organization {organization_id}'s previous run is still ending (its server holds the organization's lease); try again"
                )));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The bell of a run executing here.
    fn wake(&self, id: Uuid) -> Option<Arc<Notify>> {
        let active = self.inner.active.lock().expect("registry");
        active.get(&id).map(|run| run.wake.clone())
    }
}

/// This server, as events name it: its host and process.
fn server_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".to_owned());
    format!("{host}/{}", std::process::id())
}

/// The OpenTelemetry context of the current span: an RPC handler's is its
/// request span, a child of the caller's trace when the call carried one.
fn current_trace() -> opentelemetry::Context {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    tracing::Span::current().context()
}
