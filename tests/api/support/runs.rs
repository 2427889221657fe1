//! Runs through the API: a seeded organization on a live server, a start
//! request, and reading progress streams.
use hera_migrate::proto::*;
use sqlx::PgPool;
use tokio_stream::StreamExt;
use uuid::Uuid;

use hera_migrate::config::ServeSettings;

use super::{TestApp, TestDatabase, app::test_settings, as_user, fixtures};

pub type Client = migration_service_client::MigrationServiceClient<tonic::transport::Channel>;

pub struct Seeded {
    pub db: TestDatabase,
    pub app: TestApp,
    pub pool: PgPool,
    pub org: Uuid,
    pub owner: Uuid,
    /// A member without the steering right (ORG_EMPLOYEE).
    pub staff: Uuid,
}

pub async fn seeded(transactions: u64) -> Seeded {
    seeded_with(transactions, |_| {}).await
}

/// A seeded organization on a server whose settings `configure` adjusts.
pub async fn seeded_with(transactions: u64, configure: impl FnOnce(&mut ServeSettings)) -> Seeded {
    let db = TestDatabase::create().await;
    let mut settings = test_settings(db.options());
    configure(&mut settings);
    let app = TestApp::spawn_with(settings).await;
    let pool = db.pool().await;
    let report = fixtures::seed_2024(&pool, 1, transactions, 5).await;
    let org = &report.organizations[0];
    Seeded {
        org: org.id,
        owner: org.users[0].id,
        staff: org.users[2].id,
        db,
        app,
        pool,
    }
}

pub fn start(org: Uuid) -> StartMigrationRequest {
    StartMigrationRequest {
        organization_id: org.to_string(),
        from_date: "2024-01-01".into(),
        to_date: "2024-12-31".into(),
        batch_size: 40,
        closed_period_policy: ClosedPeriodPolicy::PostToOpenPeriod.into(),
        ..Default::default()
    }
}

/// StartRollout of `start`'s migration, in batches of 15, over `orgs` in
/// `stages`.
pub fn rollout(orgs: &[Uuid], stages: &[rollout_stage::Size]) -> StartRolloutRequest {
    let mut migration = start(Uuid::nil());
    migration.organization_id.clear();
    migration.batch_size = 15;
    StartRolloutRequest {
        organization_ids: orgs.iter().map(Uuid::to_string).collect(),
        stages: stages
            .iter()
            .map(|size| RolloutStage { size: Some(*size) })
            .collect(),
        migration: Some(migration),
        ..Default::default()
    }
}

pub use super::sql::trial_balance;

/// Every event of one of the three event streams, unwrapped.
pub async fn collect(stream: tonic::Streaming<impl ProgressEvent>) -> Vec<MigrationProgress> {
    stream
        .map(|event| event.expect("a progress event").into_progress())
        .collect()
        .await
}

pub fn control(org: Uuid, id: &str) -> (String, String) {
    (org.to_string(), id.to_owned())
}

/// Reads events until one is in `state` (or the stream ends).
pub async fn until_state(
    events: &mut tonic::Streaming<impl ProgressEvent>,
    state: MigrationState,
) -> MigrationProgress {
    loop {
        let event = next(events).await;
        if event.state() == state {
            return event;
        }
    }
}

/// The next event of a stream that goes on.
pub async fn next(events: &mut tonic::Streaming<impl ProgressEvent>) -> MigrationProgress {
    events
        .next()
        .await
        .expect("the stream goes on")
        .expect("an event")
        .into_progress()
}

/// A StartMigration stream.
pub type Started = tonic::Streaming<StartMigrationResponse>;

/// Starts a run of 5-transaction batches (so controls land mid-run) and
/// returns its stream and id.
pub async fn start_in_small_batches(s: &Seeded, client: &mut Client) -> (Started, String) {
    let small = StartMigrationRequest {
        batch_size: 5,
        ..start(s.org)
    };
    let mut events = client
        .start_migration(as_user(small, s.owner))
        .await
        .unwrap()
        .into_inner();
    let id = next(&mut events).await.migration_id;
    (events, id)
}

/// Starts a run of 5-transaction batches paced at `rate` a second (so that
/// it lasts) and reads its events until `processed` are done: its stream,
/// still open, and its id.
pub async fn start_paced_until(
    client: &mut Client,
    (org, owner): (Uuid, Uuid),
    rate: f64,
    processed: i64,
) -> (Started, String) {
    let paced = StartMigrationRequest {
        batch_size: 5,
        max_transactions_per_second: Some(rate),
        ..start(org)
    };
    start_until(client, owner, paced, processed).await
}

/// Starts `request` and reads its stream until `processed` transactions
/// are processed; returns the rest of the stream and the run's id.
pub async fn start_until(
    client: &mut Client,
    owner: Uuid,
    request: StartMigrationRequest,
    processed: i64,
) -> (Started, String) {
    let mut events = client
        .start_migration(as_user(request, owner))
        .await
        .unwrap()
        .into_inner();
    loop {
        let event = next(&mut events).await;
        if event.transactions_processed >= processed {
            return (events, event.migration_id);
        }
    }
}

/// A digest of the organization's business rows (everything but the runs'
/// bookkeeping): equal digests, identical ledger rows.
/// (A run's own row and its event lines are bookkeeping, not the ledger;
/// so is the head of the organization's audit chain.)
pub async fn ledger_digest(pool: &PgPool, org: Uuid) -> (String, String) {
    sqlx::query_as(
        "SELECT (SELECT md5(coalesce(string_agg(t.id::text || t.transaction_status || t.smart_code
                                                 || t.metadata::text, ',' ORDER BY t.id), ''))
                   FROM universal_transactions t
                  WHERE t.organization_id = $1
                    AND t.transaction_type NOT IN ('MIGRATION_RUN', 'MIGRATION_OPERATION',
                                                   'MIGRATION_AUDIT_CHAIN')),
                (SELECT md5(coalesce(string_agg(l.id::text || l.line_amount::text || l.smart_code,
                                                ',' ORDER BY l.id), ''))
                   FROM universal_transaction_lines l
                  WHERE l.organization_id = $1 AND l.line_type <> 'MIGRATION_EVENT')",
    )
    .bind(org)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// A run's batches as its MIGRATION_OPERATION rows record them:
/// (batch number, transactions taken).
pub async fn batches(pool: &PgPool, migration_id: &str) -> Vec<(i64, i64)> {
    sqlx::query_as(
        "SELECT (metadata ->> 'batch_number')::bigint, (metadata ->> 'transactions')::bigint
           FROM universal_transactions
          WHERE transaction_type = 'MIGRATION_OPERATION' AND metadata ->> 'migration_id' = $1
          ORDER BY 1",
    )
    .bind(migration_id)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The run `id` as GetMigration answers it.
pub async fn get(client: &mut Client, org: Uuid, owner: Uuid, id: &str) -> Migration {
    client
        .get_migration(as_user(
            GetMigrationRequest {
                organization_id: org.to_string(),
                migration_id: id.to_owned(),
            },
            owner,
        ))
        .await
        .unwrap()
        .into_inner()
        .into_migration()
}

/// Starts a migration and reads its stream to the end.
pub async fn started(
    client: &mut Client,
    request: StartMigrationRequest,
    user: Uuid,
) -> Vec<MigrationProgress> {
    collect(
        client
            .start_migration(as_user(request, user))
            .await
            .unwrap()
            .into_inner(),
    )
    .await
}

/// Watches a run and reads the stream to its end.
pub async fn watched(
    client: &mut Client,
    request: WatchMigrationRequest,
    user: Uuid,
) -> Vec<MigrationProgress> {
    collect(
        client
            .watch_migration(as_user(request, user))
            .await
            .unwrap()
            .into_inner(),
    )
    .await
}

/// A watch of run `id` from its first event.
pub fn watch(org: Uuid, id: &str) -> WatchMigrationRequest {
    WatchMigrationRequest {
        organization_id: org.to_string(),
        migration_id: id.to_owned(),
        after_sequence: 0,
    }
}

/// A fresh database with the schema installed (no server left running) and
/// one seeded organization: (database, pool, organization, owner).
pub async fn installed(transactions: u64) -> (TestDatabase, PgPool, Uuid, Uuid) {
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    hera_migrate::db::schema::install(&pool)
        .await
        .expect("install the schema");
    let report = fixtures::seed_2024(&pool, 1, transactions, 5).await;
    let org = &report.organizations[0];
    (db, pool, org.id, org.users[0].id)
}

/// A preview of the organization's 2024.
pub fn preview_2024(org: Uuid) -> PreviewCandidatesRequest {
    PreviewCandidatesRequest {
        organization_id: org.to_string(),
        from_date: "2024-01-01".into(),
        to_date: "2024-12-31".into(),
        ..Default::default()
    }
}

/// Reporting aliases for what run `migration_id` skipped (organization-wide
/// when empty), every v1 code to its `.v2` form.
pub fn aliases(org: Uuid, migration_id: &str, request_id: &str) -> ApplyReportingAliasesRequest {
    ApplyReportingAliasesRequest {
        organization_id: org.to_string(),
        migration_id: migration_id.to_owned(),
        request_id: request_id.into(),
        ..Default::default()
    }
}

/// A rollback of run `id`, not forced.
pub fn rollback(org: Uuid, id: &str, request_id: &str) -> RollbackMigrationRequest {
    RollbackMigrationRequest {
        organization_id: org.to_string(),
        migration_id: id.to_owned(),
        reason: "wrong mapping".into(),
        request_id: request_id.into(),
        ..Default::default()
    }
}

/// Rolls a run back and reads the stream to its end.
pub async fn rolled_back(
    client: &mut Client,
    request: RollbackMigrationRequest,
    user: Uuid,
) -> Vec<MigrationProgress> {
    collect(
        client
            .rollback_migration(as_user(request, user))
            .await
            .unwrap()
            .into_inner(),
    )
    .await
}

/// ValidateMigration's report on run `id`.
pub async fn validate(client: &mut Client, org: Uuid, user: Uuid, id: &str) -> ValidationReport {
    validate_as(client, org, user, id, false).await
}

/// ValidateMigration's report on run `id`, judged as a partial run when
/// `allow_partial`.
pub async fn validate_as(
    client: &mut Client,
    org: Uuid,
    user: Uuid,
    id: &str,
    allow_partial: bool,
) -> ValidationReport {
    client
        .validate_migration(as_user(
            ValidateMigrationRequest {
                organization_id: org.to_string(),
                migration_id: id.to_owned(),
                allow_partial,
            },
            user,
        ))
        .await
        .unwrap()
        .into_inner()
        .into_report()
}

/// Migrates the scene's organization to the end (closed periods skipped) and
/// returns the run's id.
pub async fn migrate(s: &Seeded, client: &mut Client, batch_size: i32) -> String {
    migrate_paced(s, client, batch_size, None).await
}

/// `migrate`, at most `rate` transactions a second (its rollback too).
pub async fn migrate_paced(
    s: &Seeded,
    client: &mut Client,
    batch_size: i32,
    rate: Option<f64>,
) -> String {
    let events = started(
        client,
        StartMigrationRequest {
            batch_size,
            closed_period_policy: ClosedPeriodPolicy::Skip.into(),
            max_transactions_per_second: rate,
            ..start(s.org)
        },
        s.owner,
    )
    .await;
    let last = events.last().unwrap();
    assert_eq!(last.state(), MigrationState::Succeeded, "{last:?}");
    last.migration_id.clone()
}

/// UpdateMigration as `user`, answered with the run.
pub async fn updated(
    client: &mut Client,
    user: Uuid,
    request: UpdateMigrationRequest,
) -> Migration {
    client
        .update_migration(as_user(request, user))
        .await
        .expect("updated")
        .into_inner()
        .into_migration()
}
