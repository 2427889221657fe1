//! Fleet rollouts: one migration across many organizations, in stages. A
//! platform operator names the organizations (or all with candidates) and
//! the stages (1 organization, then 10 %, then the rest, say); each stage
//! migrates its organizations, at most `max_concurrency` at once, validates
//! each run, and the rollout moves to the next stage only when every run of
//! this one succeeded and no validation FAILed (a WARN names what to look
//! at, not a defect). A failed run or validation stops the rollout FAILED,
//! and rolls back that stage's migrated runs when asked.
//!
//! The rollout belongs to the service like a run: its state is a row of
//! universal_transactions in the platform organization (rollout.sql), its
//! driver holds a lease on it (a session advisory lock, as a run's executor
//! does), and any server adopts a RUNNING or PAUSED rollout whose lease is
//! free. Every step is idempotent: an organization's run is started with a
//! request_id of the rollout's and the organization's, so a driver that
//! takes over finds the run instead of starting another.
mod control;
mod driver;
mod request;
mod store;
mod view;

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgPool;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use uuid::Uuid;

pub use control::{RolloutControl, RolloutSnapshots};
pub use request::{
    Cohort, DEFAULT_CONCURRENCY, MAX_CONCURRENCY, RolloutFields, RolloutRequest, StageSize,
    rollout_request,
};
pub use view::RolloutView;

use super::{engine::Engine, run::Parameters};
use crate::{
    auth::PlatformAccess,
    error::{Error, Refusal, Result},
};

/// How often a driver looks at the runs it waits for, and a watcher at the
/// rollout.
const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RolloutState {
    #[default]
    Running,
    Paused,
    Succeeded,
    Failed,
    Cancelled,
}

impl RolloutState {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Paused => "PAUSED",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
        }
    }
}

/// Where one organization of a rollout stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Standing {
    /// Its stage has not reached it.
    #[default]
    Pending,
    /// Its run is under way (or paused with the rollout).
    Migrating,
    /// Its run succeeded; its validation is under way.
    Validating,
    /// Its run succeeded and its validation did not FAIL.
    Passed,
    /// Its run failed, or its validation FAILed, or it could not start.
    Failed,
    /// Its run was rolled back because its stage failed.
    RolledBack,
    /// The rollout was cancelled while its run was under way.
    Cancelled,
}

impl Standing {
    /// Where its rollout leaves it (though a PASSED one is ROLLED_BACK when
    /// its stage fails and the rollout was asked to).
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            Self::Passed | Self::Failed | Self::RolledBack | Self::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Migrating => "MIGRATING",
            Self::Validating => "VALIDATING",
            Self::Passed => "PASSED",
            Self::Failed => "FAILED",
            Self::RolledBack => "ROLLED_BACK",
            Self::Cancelled => "CANCELLED",
        }
    }
}

/// One organization's entry in the rollout's row.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Member {
    pub stage: usize,
    pub standing: Standing,
    pub migration_id: Option<Uuid>,
    /// Its validation's overall result (PASS, WARN, FAIL).
    pub validation: Option<String>,
    pub message: Option<String>,
    /// Its run's candidates looked at and in all, recorded when it ended
    /// (a run under way is read live).
    pub processed: Option<i64>,
    pub total: Option<i64>,
}

/// What the rollout was asked, as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Asked {
    /// As listed (empty with all_with_candidates).
    pub organization_ids: Vec<Uuid>,
    pub all_with_candidates: bool,
    pub stages: Vec<StageSize>,
    pub parameters: Parameters,
    pub max_concurrency: u32,
    pub rollback_failed_stage: bool,
}

/// The rollout's row's metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recorded {
    pub state: RolloutState,
    /// The stage under way (stages.len() once every stage passed).
    pub stage: usize,
    pub stages: Vec<Vec<Uuid>>,
    pub organizations: BTreeMap<Uuid, Member>,
    pub request: Asked,
    pub started_by: Uuid,
    pub started_at: DateTime<Utc>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
}

/// A rollout as it reads now.
#[derive(Debug, Clone)]
pub struct Rollout {
    pub id: Uuid,
    pub platform_organization_id: Uuid,
    pub updated_at: DateTime<Utc>,
    pub recorded: Recorded,
}

#[derive(Clone)]
pub struct Rollouts {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    admin: PgPool,
    engine: Engine,
    shutdown: CancellationToken,
    drivers: TaskTracker,
    /// Rollouts driven by this process.
    driving: Mutex<HashSet<Uuid>>,
}

impl Rollouts {
    pub fn new(pool: PgPool, admin: PgPool, engine: Engine, shutdown: CancellationToken) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                admin,
                engine,
                shutdown,
                drivers: TaskTracker::new(),
                driving: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// Starts a rollout (or finds the one its request_id started) and drives
    /// it here; its id.
    pub async fn start(&self, access: &PlatformAccess, request: &RolloutRequest) -> Result<Uuid> {
        let platform = access.platform_organization_id;
        let asked = Asked {
            organization_ids: match &request.cohort {
                Cohort::Listed(listed) => listed.clone(),
                Cohort::AllWithCandidates => Vec::new(),
            },
            all_with_candidates: request.cohort == Cohort::AllWithCandidates,
            stages: request.stages.clone(),
            parameters: request.migration.parameters.clone(),
            max_concurrency: request.max_concurrency,
            rollback_failed_stage: request.rollback_failed_stage,
        };
        let asked_json = serde_json::to_value(&asked).expect("a request serializes");
        let organizations = self.organizations(request, platform).await?;
        let mut tx = crate::db::scope::begin(&self.inner.pool, platform).await?;
        store::serialize_starts(&mut tx, platform).await?;
        let request_id = Some(request.request_id.as_str()).filter(|id| !id.is_empty());
        if let Some(request_id) = request_id
            && let Some((id, recorded)) =
                store::find_by_request(&mut tx, platform, request_id).await?
        {
            if recorded != asked_json {
                return Err(Error::refused(
                    Refusal::RequestIdReused,
                    format!("request_id: {request_id:?} started rollout {id} with other fields"),
                )
                .naming("rollout_id", id));
            }
            return Ok(id);
        }
        let stages = request::resolve_stages(&organizations, &request.stages);
        let members: BTreeMap<String, Member> = stages
            .iter()
            .enumerate()
            .flat_map(|(stage, orgs)| {
                orgs.iter().map(move |org| {
                    let member = Member {
                        stage,
                        ..Member::default()
                    };
                    (org.to_string(), member)
                })
            })
            .collect();
        let metadata = json!({"request": asked_json, "stages": stages, "organizations": members});
        let id = store::create(&mut tx, platform, access.user_id, &metadata, request_id).await?;
        tx.commit().await?;
        self.inner.engine.metrics().rollout_started();
        tracing::info!(rollout_id = %id, organizations = organizations.len(), stages = stages.len(), "rollout started");
        self.adopt(id, platform).await?;
        Ok(id)
    }

    /// Rollout `id` of the operator's platform organization, with its runs' progress.
    pub async fn get(&self, access: &PlatformAccess, id: Uuid) -> Result<RolloutView> {
        let rollout = store::get(&self.inner.pool, access.platform_organization_id, id).await?;
        self.view(rollout).await
    }

    async fn view(&self, rollout: Rollout) -> Result<RolloutView> {
        let mut progress = BTreeMap::new();
        for (org, member) in &rollout.recorded.organizations {
            match (
                member.standing,
                member.migration_id,
                member.processed,
                member.total,
            ) {
                (Standing::Migrating, Some(run), _, _) => {
                    let latest = super::run::store::latest_of(&self.inner.pool, *org, run).await?;
                    progress.insert(
                        *org,
                        (latest.processed, latest.processed + latest.remaining),
                    );
                }
                (_, _, Some(processed), Some(total)) => {
                    progress.insert(*org, (processed, total));
                }
                _ => {}
            }
        }
        Ok(RolloutView { rollout, progress })
    }

    /// The organizations a rollout covers: those listed (each must exist
    /// and not be a platform organization), or all with candidates.
    async fn organizations(&self, request: &RolloutRequest, platform: Uuid) -> Result<Vec<Uuid>> {
        let listed = match &request.cohort {
            Cohort::Listed(listed) => listed,
            Cohort::AllWithCandidates => {
                let parameters = serde_json::to_value(&request.migration.parameters)
                    .expect("parameters serialize");
                let found = store::with_candidates(&self.inner.admin, &parameters).await?;
                if found.is_empty() {
                    return Err(Error::FailedPrecondition(
                        "all_with_candidates: no organization has a candidate of this migration"
                            .into(),
                    ));
                }
                return Ok(found);
            }
        };
        // One round trip for the whole list, however long.
        let flags = store::platform_flags(&self.inner.admin, listed).await?;
        for (i, org) in listed.iter().enumerate() {
            let field = format!("organization_ids[{i}]");
            match flags.get(org).copied() {
                None => return Err(Error::invalid(field, format!("no organization {org}"))),
                Some(true) => {
                    return Err(Error::invalid(
                        field,
                        format!(
                            "{org} is a platform organization ({platform} is yours): it has no ledger to migrate"
                        ),
                    ));
                }
                Some(false) => {}
            }
        }
        Ok(listed.clone())
    }

    /// Drives rollout `id` here unless this process or a live server does.
    async fn adopt(&self, id: Uuid, platform: Uuid) -> Result<bool> {
        if !self.inner.driving.lock().expect("registry").insert(id) {
            return Ok(false);
        }
        let Some(lease) = self.inner.engine.lease(id).await? else {
            self.inner.driving.lock().expect("registry").remove(&id);
            return Ok(false);
        };
        let driver = driver::Driver::new(self.inner.clone(), id, platform);
        let inner = self.inner.clone();
        self.inner.drivers.spawn(async move {
            inner.engine.metrics().rollouts_driven(1);
            driver.drive(lease).await;
            inner.engine.metrics().rollouts_driven(-1);
            inner.driving.lock().expect("registry").remove(&id);
        });
        Ok(true)
    }

    /// Takes over every RUNNING or PAUSED rollout whose driver is gone; how many.
    pub async fn adopt_orphans(&self) -> Result<usize> {
        let mut adopted = 0;
        for (id, platform) in store::active_everywhere(&self.inner.admin).await? {
            if self.adopt(id, platform).await? {
                adopted += 1;
            }
        }
        Ok(adopted)
    }

    /// Adopts orphaned rollouts now and every `interval`, until shutdown.
    pub fn adopt_orphans_periodically(&self, interval: Duration) {
        let rollouts = self.clone();
        self.inner.drivers.spawn(async move {
            loop {
                match rollouts.adopt_orphans().await {
                    Ok(0) => {}
                    Ok(adopted) => tracing::info!(adopted, "took over interrupted rollouts"),
                    Err(error) => tracing::warn!(%error, "looking for interrupted rollouts failed"),
                }
                tokio::select! {
                    () = rollouts.inner.shutdown.cancelled() => return,
                    () = tokio::time::sleep(interval) => {}
                }
            }
        });
    }

    /// Resolves once every driver has stopped (after shutdown).
    pub async fn stopped(&self) {
        self.inner.drivers.close();
        self.inner.drivers.wait().await;
    }
}
