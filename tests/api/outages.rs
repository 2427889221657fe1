//! The database going away under a run: a batch's connection terminated, a
//! restart of PostgreSQL itself, and a fence that stops a server whose lease
//! was taken from it. The run never fails for it: it waits, says so in its
//! history (a WARNING), goes on after its last committed batch, and ends as
//! an uninterrupted run would.
use std::time::Duration;

use hera_migrate::{db::embedded::EmbeddedPostgres, proto::*};
use sqlx::{PgPool, postgres::PgPoolOptions};
use tokio_stream::StreamExt;
use tonic_health::pb::health_check_response::ServingStatus;
use uuid::Uuid;

use crate::support::{
    TestApp, as_user, fixtures,
    runs::{
        collect, ledger_digest, seeded_with, start, start_paced_until, start_until, trial_balance,
        watch,
    },
    wait,
};

/// A run's whole history, as WatchMigration replays it.
async fn history(app: &TestApp, org: Uuid, owner: Uuid, id: &str) -> Vec<MigrationProgress> {
    let mut client = app.client().await;
    let stream = client
        .watch_migration(as_user(watch(org, id), owner))
        .await
        .unwrap()
        .into_inner();
    collect(stream).await
}

/// Every event once, in order: sequences 1, 2, 3, ... without a gap.
fn assert_strictly_ordered(events: &[MigrationProgress]) {
    let sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    let expected: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(sequences, expected, "the history is complete and in order");
}

fn outages(events: &[MigrationProgress]) -> Vec<&MigrationProgress> {
    events
        .iter()
        .filter(|e| e.kind() == MigrationEventKind::DatabaseUnavailable)
        .collect()
}

/// The backend of the run's batch while it waits on a business row lock.
async fn waiting_batch(pool: &PgPool) -> i32 {
    wait::until(
        "a batch waiting on the row lock",
        Duration::from_secs(20),
        || async {
            sqlx::query_scalar::<_, i32>(
                "SELECT pid FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock'
                AND query LIKE '%hera_migration_execute_batch_v2%'",
            )
            .fetch_optional(pool)
            .await
            .unwrap()
        },
    )
    .await
}

#[tokio::test]
async fn a_batch_whose_connection_is_terminated_rolls_back_and_the_run_goes_on_with_a_warning() {
    // Lock waits long enough that the batch is still waiting when its
    // connection is cut.
    let s = seeded_with(60, |settings| {
        settings.engine.batch_lock_timeout_ms = 60_000
    })
    .await;
    let before = trial_balance(&s.pool, s.org).await;
    // A business transaction holds the first candidate.
    let mut business = s.pool.begin().await.unwrap();
    sqlx::query(
        "SELECT id FROM universal_transactions WHERE organization_id = $1
          ORDER BY transaction_date, id LIMIT 1 FOR UPDATE",
    )
    .bind(s.org)
    .execute(&mut *business)
    .await
    .unwrap();

    let mut client = s.app.client().await;
    let mut events = client
        .start_migration(as_user(start(s.org), s.owner))
        .await
        .unwrap()
        .into_inner();
    let id = events.next().await.unwrap().unwrap().migration_id;
    let batch = waiting_batch(&s.pool).await;
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(batch)
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert!(terminated);
    business.rollback().await.unwrap();

    let streamed = collect(events).await;
    let last = streamed.last().unwrap();
    assert_eq!(last.state(), MigrationState::Succeeded, "{last:?}");
    let all = history(&s.app, s.org, s.owner, &id).await;
    assert_strictly_ordered(&all);
    let warned = outages(&all);
    assert_eq!(warned.len(), 1, "one outage recorded: {all:#?}");
    assert_eq!(warned[0].health_status(), HealthStatus::Warning);
    assert!(
        warned[0].message.contains("rolled back")
            && warned[0]
                .message
                .contains("goes on after its last committed batch"),
        "{}",
        warned[0].message
    );
    assert_eq!(
        fixtures::migrated_copies(&s.pool, s.org, &id).await,
        (60, 60, 60),
        "nothing lost, nothing twice"
    );
    assert_eq!(trial_balance(&s.pool, s.org).await, before);
    s.app.stop().await;
}

#[tokio::test]
async fn a_batch_of_a_server_whose_lease_was_taken_over_never_commits() {
    let s = seeded_with(200, |_| {}).await;
    let before = trial_balance(&s.pool, s.org).await;
    let mut client = s.app.client().await;
    // Two batches of 5 committed.
    let (events, id) = start_paced_until(&mut client, (s.org, s.owner), 100.0, 10).await;
    // Another server takes the run: the fence moves on (after the batch in
    // flight, whose row lock it waits for).
    let taken_at: i64 = taken_elsewhere(&s.pool, &id).await;

    let streamed = collect(events).await;
    assert_eq!(
        streamed.last().unwrap().state(),
        MigrationState::Succeeded,
        "{:?}",
        streamed.last()
    );
    let all = history(&s.app, s.org, s.owner, &id).await;
    assert_strictly_ordered(&all);
    let after: Vec<_> = all
        .iter()
        .filter(|e| e.sequence as i64 > taken_at)
        .map(|e| e.kind())
        .collect();
    let first_batch = after.iter().position(|k| *k == MigrationEventKind::Batch);
    let taken_over = after
        .iter()
        .position(|k| *k == MigrationEventKind::TakenOver);
    assert!(
        taken_over.is_some() && first_batch > taken_over,
        "no batch of the fenced executor committed after the fence moved: {after:?}"
    );
    assert_eq!(
        fixtures::migrated_copies(&s.pool, s.org, &id).await,
        (200, 200, 200)
    );
    assert_eq!(trial_balance(&s.pool, s.org).await, before);
    s.app.stop().await;
}

/// A dry run keeps its position in a transaction of its own after each
/// batch rolls back: the fence guards that one too, so a dry run whose lease
/// was taken writes nothing more under the old generation, and the ledger
/// stays as it was.
#[tokio::test]
async fn a_dry_run_whose_lease_was_taken_over_keeps_nothing_under_the_old_lease() {
    let s = seeded_with(200, |_| {}).await;
    let before = ledger_digest(&s.pool, s.org).await;
    let mut client = s.app.client().await;
    let dry = StartMigrationRequest {
        batch_size: 5,
        max_transactions_per_second: Some(100.0),
        dry_run: true,
        ..start(s.org)
    };
    let (events, id) = start_until(&mut client, s.owner, dry, 10).await;
    let taken_at: i64 = taken_elsewhere(&s.pool, &id).await;

    let streamed = collect(events).await;
    assert_eq!(streamed.last().unwrap().state(), MigrationState::Succeeded);
    let all = history(&s.app, s.org, s.owner, &id).await;
    assert_strictly_ordered(&all);
    let after: Vec<_> = all
        .iter()
        .filter(|e| e.sequence as i64 > taken_at)
        .map(|e| e.kind())
        .collect();
    let first_batch = after.iter().position(|k| *k == MigrationEventKind::Batch);
    let taken_over = after
        .iter()
        .position(|k| *k == MigrationEventKind::TakenOver);
    assert!(
        taken_over.is_some() && first_batch > taken_over,
        "nothing of the fenced executor was kept after the fence moved: {after:?}"
    );
    assert_eq!(streamed.last().unwrap().transactions_processed, 200);
    assert_eq!(ledger_digest(&s.pool, s.org).await, before);
    s.app.stop().await;
}

/// Another server takes run `id`: the fence moves on, once the batch in
/// flight (whose row lock it waits for) has committed. Answers the last
/// event sequence committed before it moved, read after the take in the
/// same transaction: one statement's snapshot is taken before it waits on
/// the lock, and would miss the events the batch in flight commits meanwhile.
async fn taken_elsewhere(pool: &sqlx::PgPool, id: &str) -> i64 {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT hera_migration_take_lease_v2($1::uuid, 'another server')")
        .bind(id)
        .execute(&mut *tx)
        .await
        .unwrap();
    let taken_at = sqlx::query_scalar(
        "SELECT max(line_number)::bigint FROM universal_transaction_lines
          WHERE transaction_id = $1::uuid",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    taken_at
}

/// A private PostgreSQL this test may stop and start again.
struct RestartableCluster {
    dir: tempfile::TempDir,
    postgres: Option<EmbeddedPostgres>,
}

impl RestartableCluster {
    async fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("hera-restart-")
            .tempdir_in("/tmp")
            .unwrap();
        let postgres = EmbeddedPostgres::start(dir.path()).await.unwrap();
        Self {
            dir,
            postgres: Some(postgres),
        }
    }

    fn options(&self) -> sqlx::postgres::PgConnectOptions {
        self.postgres.as_ref().unwrap().connect_options("hera")
    }

    async fn stop(&mut self) {
        self.postgres.take().unwrap().stop().await.unwrap();
    }

    async fn start_again(&mut self) {
        self.postgres = Some(EmbeddedPostgres::start(self.dir.path()).await.unwrap());
    }
}

async fn health_becomes(app: &TestApp, wanted: ServingStatus) {
    wait::until("the health status", Duration::from_secs(30), || async {
        (app.health("").await == wanted).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_database_restart_mid_run_is_waited_out_and_the_run_ends_as_an_uninterrupted_one() {
    let mut cluster = RestartableCluster::start().await;
    let options = cluster.options();
    let app = TestApp::spawn(options.clone()).await;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_lazy_with(options);
    let report = fixtures::seed_2024(&pool, 1, 300, 5).await;
    let (org, owner) = (
        report.organizations[0].id,
        report.organizations[0].users[0].id,
    );
    let before = trial_balance(&pool, org).await;

    let mut client = app.client().await;
    let (events, id) = start_paced_until(&mut client, (org, owner), 100.0, 50).await;
    pool.close().await;
    cluster.stop().await;
    health_becomes(&app, ServingStatus::NotServing).await;
    cluster.start_again().await;
    health_becomes(&app, ServingStatus::Serving).await;

    // The stream opened before the restart goes on to the end.
    let rest: Vec<_> = events.collect().await;
    let last = rest.last().unwrap().as_ref().unwrap();
    assert_eq!(last.state(), MigrationState::Succeeded, "{rest:?}");
    assert!(rest.iter().all(Result::is_ok), "{rest:?}");

    let all = history(&app, org, owner, &id).await;
    assert_strictly_ordered(&all);
    let warned = outages(&all);
    assert!(!warned.is_empty(), "the outage is in the history: {all:#?}");
    assert!(
        warned
            .iter()
            .all(|e| e.health_status() == HealthStatus::Warning)
    );
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_lazy_with(cluster.options());
    assert_eq!(
        fixtures::migrated_copies(&pool, org, &id).await,
        (300, 300, 300),
        "nothing lost, nothing twice"
    );
    assert_eq!(trial_balance(&pool, org).await, before);
    app.stop().await;
    pool.close().await;
    cluster.stop().await;
}
