//! Fleet rollouts over seeded organizations: stages that each migrate and
//! validate before the next, a validation that fails and stops the rollout
//! at its stage (rolling that stage back), a rollout that outlives its
//! server, and who may start one.
use std::time::Duration;

use hera_migrate::proto::{rollout_service_client::RolloutServiceClient, rollout_stage::Size, *};
use sqlx::PgPool;
use tokio_stream::StreamExt;
use tonic::{Code, transport::Channel};
use uuid::Uuid;

use crate::support::{
    TestApp, TestDatabase, app::test_settings, as_user, fixtures, runs::rollout, wait,
};

type Client = RolloutServiceClient<Channel>;

/// Stages 1 → 2 → the rest, over five organizations.
const ONE_TWO_REST: [Size; 3] = [
    Size::Organizations(1),
    Size::Organizations(2),
    Size::Rest(true),
];

/// Five seeded organizations, and a platform operator: a USER entity of the
/// platform organization, MEMBER_OF it with the PLATFORM_ADMIN role.
struct Fleet {
    db: TestDatabase,
    pool: PgPool,
    orgs: Vec<Uuid>,
    /// An owner of the first organization (no platform role).
    owner: Uuid,
    operator: Uuid,
}

impl Fleet {
    /// The fleet, and a server over it (which installed the schema).
    async fn seed() -> (Self, TestApp) {
        let db = TestDatabase::create().await;
        let app = TestApp::spawn_with(test_settings(db.options())).await;
        let pool = db.pool().await;
        let report = fixtures::seed_2024(&pool, 5, 40, 11).await;
        let operator = fixtures::platform_operator(&pool, &report.platform).await;
        let fleet = Self {
            orgs: report.organizations.iter().map(|org| org.id).collect(),
            owner: report.organizations[0].users[0].id,
            operator,
            db,
            pool,
        };
        (fleet, app)
    }

    async fn app(&self) -> TestApp {
        TestApp::spawn_with(test_settings(self.db.options())).await
    }

    fn request(&self, stages: &[Size], rollback_failed_stage: bool) -> StartRolloutRequest {
        StartRolloutRequest {
            rollback_failed_stage,
            ..rollout(&self.orgs, stages)
        }
    }

    /// A run's state, straight from its row.
    async fn run_state(&self, run: &str) -> String {
        sqlx::query_scalar(
            "SELECT metadata ->> 'state' FROM universal_transactions WHERE id = $1::uuid",
        )
        .bind(run)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }
}

async fn client(app: &TestApp) -> Client {
    RolloutServiceClient::new(app.channel().await)
}

/// Every snapshot WatchRollout sends, to the terminal one.
async fn watched(client: &mut Client, operator: Uuid, rollout_id: &str) -> Vec<Rollout> {
    let request = WatchRolloutRequest {
        rollout_id: rollout_id.to_owned(),
    };
    let stream = client
        .watch_rollout(as_user(request, operator))
        .await
        .unwrap()
        .into_inner();
    let snapshots: Vec<_> =
        tokio::time::timeout(Duration::from_secs(120), stream.collect::<Vec<_>>())
            .await
            .expect("the rollout ends within two minutes");
    snapshots
        .into_iter()
        .map(|s| s.unwrap().rollout.unwrap())
        .collect()
}

/// The kinds of a rollout's events, in order.
async fn event_kinds(pool: &PgPool, rollout_id: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT line_data ->> 'kind' FROM universal_transaction_lines
          WHERE transaction_id = $1::uuid ORDER BY line_number",
    )
    .bind(rollout_id)
    .fetch_all(pool)
    .await
    .unwrap()
}

fn standings(rollout: &Rollout) -> Vec<OrganizationStanding> {
    rollout
        .organizations
        .iter()
        .map(|org| org.standing())
        .collect()
}

#[tokio::test]
async fn a_rollout_in_stages_migrates_and_validates_every_organization_stage_by_stage() {
    let (fleet, app) = Fleet::seed().await;
    let mut client = client(&app).await;
    let request = fleet.request(&ONE_TWO_REST, false);
    let started = client
        .start_rollout(as_user(request, fleet.operator))
        .await
        .unwrap()
        .into_inner();
    let rollout = started.rollout.unwrap();
    assert_eq!(rollout.stage_count, 3);
    let stages: Vec<u32> = rollout.organizations.iter().map(|org| org.stage).collect();
    assert_eq!(stages, [0, 1, 1, 2, 2]);

    let snapshots = watched(&mut client, fleet.operator, &rollout.rollout_id).await;
    let last = snapshots.last().unwrap();
    assert_eq!(last.state(), RolloutState::Succeeded, "{last:?}");
    assert_eq!(standings(last), [OrganizationStanding::Passed; 5]);
    assert_eq!(last.percent_complete, 100.0);
    // 100 means it ended: runs that looked at everything still validate.
    for snapshot in &snapshots[..snapshots.len() - 1] {
        assert!(snapshot.percent_complete < 100.0, "{snapshot:?}");
    }
    assert!(last.finished_at.is_some());
    for org in &last.organizations {
        assert!(
            ["PASS", "WARN"].contains(&org.validation_overall.as_str()),
            "{org:?}"
        );
        assert_eq!(fleet.run_state(&org.migration_id).await, "SUCCEEDED");
        assert_eq!(org.transactions_processed, org.transactions_total);
    }
    // A stage begins only once the one before it passed: no run of a later
    // stage was created before every run of an earlier one had finished.
    let (ordered,): (bool,) = sqlx::query_as(
        "WITH runs AS (
             SELECT t.created_at, (t.metadata ->> 'finished_at')::timestamptz AS finished_at, o.stage
               FROM universal_transactions t
               JOIN unnest($1::uuid[], $2::int[]) AS o (id, stage) ON o.id = t.organization_id
              WHERE t.transaction_type = 'MIGRATION_RUN')
         SELECT bool_and(later.created_at > earlier.finished_at)
           FROM runs earlier JOIN runs later ON later.stage > earlier.stage",
    )
    .bind(&fleet.orgs)
    .bind(vec![0, 1, 1, 2, 2])
    .fetch_one(&fleet.pool)
    .await
    .unwrap();
    assert!(ordered, "every stage waits for the one before it");
    // Its story is on the platform organization's audit chain.
    let platform = Uuid::parse_str(&last.platform_organization_id).unwrap();
    let kinds = event_kinds(&fleet.pool, &last.rollout_id).await;
    assert_eq!(kinds.first().map(String::as_str), Some("STARTED"));
    assert_eq!(kinds.iter().filter(|k| *k == "STAGE_PASSED").count(), 3);
    assert_eq!(
        kinds.iter().filter(|k| *k == "ORGANIZATION_PASSED").count(),
        5
    );
    assert_eq!(kinds.last().map(String::as_str), Some("SUCCEEDED"));
    let verified: bool = sqlx::query_scalar(
        "SELECT (hera_migration_verify_audit_chain_v2($1) ->> 'verified')::boolean",
    )
    .bind(platform)
    .fetch_one(&fleet.pool)
    .await
    .unwrap();
    assert!(verified);
    app.stop().await;
}

/// When organization `org`'s run records its success, one of the originals
/// it reversed is put back to posted behind its back: its validation's
/// completeness check finds the ledger disagreeing with the run and FAILs.
const TAMPER: &str = r#"
CREATE FUNCTION test_tamper_after_success() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE universal_transactions SET transaction_status = 'posted'
     WHERE id = (SELECT id FROM universal_transactions
                  WHERE organization_id = NEW.organization_id AND transaction_status = 'reversed'
                    AND metadata ->> 'migration_run_id' = NEW.id::text AND NOT metadata ? 'reversal_of'
                  LIMIT 1);
    RETURN NULL;
END $$;
CREATE TRIGGER test_tamper_after_success AFTER UPDATE ON universal_transactions FOR EACH ROW
  WHEN (NEW.transaction_type = 'MIGRATION_RUN' AND NEW.organization_id = '{org}'
        AND NEW.metadata ->> 'state' = 'SUCCEEDED' AND OLD.metadata ->> 'state' IS DISTINCT FROM 'SUCCEEDED')
  EXECUTE FUNCTION test_tamper_after_success();
"#;

#[tokio::test]
async fn a_failed_validation_stops_the_rollout_at_its_stage_and_rolls_that_stage_back() {
    let (fleet, app) = Fleet::seed().await;
    let tampered = fleet.orgs[1]; // the second stage's first organization
    sqlx::raw_sql(sqlx::AssertSqlSafe(
        TAMPER.replace("{org}", &tampered.to_string()),
    ))
    .execute(&fleet.pool)
    .await
    .unwrap();
    let mut client = client(&app).await;
    let request = fleet.request(&ONE_TWO_REST, true);
    let rollout = client
        .start_rollout(as_user(request, fleet.operator))
        .await
        .unwrap()
        .into_inner()
        .rollout
        .unwrap();
    let last = watched(&mut client, fleet.operator, &rollout.rollout_id)
        .await
        .pop()
        .unwrap();

    assert_eq!(last.state(), RolloutState::Failed, "{last:?}");
    assert_eq!(last.current_stage, 1, "it stopped at the second stage");
    assert!(
        last.message.contains(&tampered.to_string()),
        "{}",
        last.message
    );
    let failed = &last.organizations[1];
    assert_eq!(failed.validation_overall, "FAIL");
    assert!(
        failed.message.contains("completeness"),
        "{}",
        failed.message
    );
    // The first stage stays migrated; the failed stage is rolled back; the
    // third never started.
    use OrganizationStanding::*;
    assert_eq!(
        standings(&last),
        [Passed, RolledBack, RolledBack, Pending, Pending]
    );
    assert_eq!(
        fleet.run_state(&last.organizations[0].migration_id).await,
        "SUCCEEDED"
    );
    for org in &last.organizations[1..3] {
        assert_eq!(fleet.run_state(&org.migration_id).await, "ROLLED_BACK");
    }
    for org in &last.organizations[3..] {
        assert!(org.migration_id.is_empty());
    }
    let later_runs: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM universal_transactions WHERE transaction_type = 'MIGRATION_RUN' AND organization_id = ANY ($1)",
    )
    .bind(&fleet.orgs[3..])
    .fetch_one(&fleet.pool)
    .await
    .unwrap();
    assert_eq!(later_runs, 0);
    // Steering a rollout that ended is refused, naming it.
    let resume = ResumeRolloutRequest {
        rollout_id: last.rollout_id.clone(),
    };
    let status = client
        .resume_rollout(as_user(resume, fleet.operator))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("FAILED"), "{status:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_rollout_outlives_its_server_and_a_paused_one_waits_for_resume() {
    let (fleet, first) = Fleet::seed().await;
    let mut client = client(&first).await;
    let mut request = fleet.request(&[Size::Organizations(1)], false);
    request.max_concurrency = 1;
    request
        .migration
        .as_mut()
        .unwrap()
        .max_transactions_per_second = Some(40.0);
    let rollout = client
        .start_rollout(as_user(request, fleet.operator))
        .await
        .unwrap()
        .into_inner()
        .rollout
        .unwrap();
    let id = rollout.rollout_id.clone();
    let get = |client: &Client| {
        let request = as_user(
            GetRolloutRequest {
                rollout_id: id.clone(),
            },
            fleet.operator,
        );
        let mut client = client.clone();
        async move {
            client
                .get_rollout(request)
                .await
                .unwrap()
                .into_inner()
                .rollout
                .unwrap()
        }
    };
    wait::until(
        "the first organization migrating",
        Duration::from_secs(30),
        || async {
            let now = get(&client).await;
            (now.organizations[0].standing() == OrganizationStanding::Migrating).then_some(())
        },
    )
    .await;
    let pause = PauseRolloutRequest {
        rollout_id: id.clone(),
    };
    let paused = client
        .pause_rollout(as_user(pause, fleet.operator))
        .await
        .unwrap()
        .into_inner()
        .rollout
        .unwrap();
    assert_eq!(paused.state(), RolloutState::Paused);
    first.stop().await;

    // Another server adopts it, still paused: nothing moves until resumed.
    let second = fleet.app().await;
    let mut client = self::client(&second).await;
    let run = get(&client).await.organizations[0].migration_id.clone();
    wait::until("the run paused", Duration::from_secs(30), || async {
        (fleet.run_state(&run).await == "PAUSED").then_some(())
    })
    .await;
    let resume = ResumeRolloutRequest {
        rollout_id: id.clone(),
    };
    client
        .resume_rollout(as_user(resume, fleet.operator))
        .await
        .unwrap();
    let last = watched(&mut client, fleet.operator, &id)
        .await
        .pop()
        .unwrap();
    assert_eq!(last.state(), RolloutState::Succeeded, "{last:?}");
    assert_eq!(standings(&last), [OrganizationStanding::Passed; 5]);
    let kinds = event_kinds(&fleet.pool, &id).await;
    assert!(
        kinds.contains(&"PAUSED".to_owned()) && kinds.contains(&"RESUMED".to_owned()),
        "{kinds:?}"
    );
    second.stop().await;
}

#[tokio::test]
async fn only_a_platform_operator_may_roll_out_and_bad_input_is_named_with_nothing_written() {
    let (fleet, app) = Fleet::seed().await;
    let mut client = client(&app).await;
    // An organization's owner is no platform operator.
    let request = fleet.request(&[], false);
    let status = client
        .start_rollout(as_user(request, fleet.owner))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let get = GetRolloutRequest {
        rollout_id: Uuid::new_v4().to_string(),
    };
    let status = client
        .get_rollout(as_user(get, fleet.owner))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    let mut cases = Vec::new();
    let mut bad = fleet.request(&[Size::Percent(0)], false);
    cases.push((bad.clone(), "stages[0].percent"));
    bad = fleet.request(&[Size::Rest(true), Size::Organizations(1)], false);
    cases.push((bad.clone(), "stages[0].rest"));
    bad = fleet.request(&[], false);
    bad.organization_ids.push(bad.organization_ids[0].clone());
    cases.push((bad.clone(), "organization_ids[5]"));
    bad = fleet.request(&[], false);
    bad.organization_ids[2] = Uuid::new_v4().to_string();
    cases.push((bad.clone(), "organization_ids[2]"));
    bad = fleet.request(&[], false);
    bad.migration.as_mut().unwrap().organization_id = fleet.orgs[0].to_string();
    cases.push((bad.clone(), "migration.organization_id"));
    bad = fleet.request(&[], false);
    bad.migration.as_mut().unwrap().to_date = "2024-13-01".into();
    cases.push((bad.clone(), "migration.to_date"));
    bad = fleet.request(&[], false);
    bad.all_with_candidates = true;
    cases.push((bad, "all_with_candidates"));
    for (request, field) in cases {
        let status = client
            .start_rollout(as_user(request, fleet.operator))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(
            status.message().starts_with(field),
            "{field}: {}",
            status.message()
        );
    }
    let written: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM universal_transactions WHERE transaction_type IN ('MIGRATION_ROLLOUT', 'MIGRATION_RUN')",
    )
    .fetch_one(&fleet.pool)
    .await
    .unwrap();
    assert_eq!(written, 0, "nothing written");
    app.stop().await;
}

const BINARY: &str = env!("CARGO_BIN_EXE_hera-migrate");

async fn cli(app: &TestApp, user: Uuid, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(BINARY)
        .env("HERA_SERVER", app.endpoint())
        .env("HERA_TOKEN", crate::support::app::token_for(user))
        .env("RUST_LOG", "warn")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("the binary runs")
}

#[tokio::test]
async fn the_cli_rolls_out_to_every_organization_with_candidates_and_reads_it_back() {
    let (fleet, app) = Fleet::seed().await;
    let rollout = [
        "start-rollout",
        "--all-with-candidates",
        "--stages",
        "1,40%,rest",
        "--from",
        "2024-01-01",
        "--to",
        "2024-12-31",
        "--post-to-open-period",
        "--batch-size",
        "20",
        "--output",
        "json",
    ];
    // An organization's owner holds no platform role: refused, exit 3.
    let refused = cli(&app, fleet.owner, &rollout).await;
    assert_eq!(refused.status.code(), Some(3), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("PermissionDenied"),
        "{refused:?}"
    );

    let done = cli(&app, fleet.operator, &rollout).await;
    assert_eq!(done.status.code(), Some(0), "{done:?}");
    let stdout = String::from_utf8_lossy(&done.stdout);
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["state"], "ROLLOUT_STATE_SUCCEEDED", "{last}");
    assert_eq!(
        last["stageCount"], 3,
        "1, then 40 % of 5 rounded up, then the rest: {last}"
    );
    let covered: Vec<Uuid> = last["organizations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|org| org["organizationId"].as_str().unwrap().parse().unwrap())
        .collect();
    let mut expected = fleet.orgs.clone();
    expected.sort_by_key(|org| covered.iter().position(|c| c == org));
    assert_eq!(covered, expected, "every seeded organization, none else");

    let id = last["rolloutId"].as_str().unwrap();
    let read = cli(&app, fleet.operator, &["get-rollout", "--rollout-id", id]).await;
    assert_eq!(read.status.code(), Some(0), "{read:?}");
    let text = String::from_utf8_lossy(&read.stdout);
    assert!(text.contains("SUCCEEDED stage 3/3 100.0%"), "{text}");
    assert_eq!(text.matches(" PASSED (validation ").count(), 5, "{text}");
    let cancel = cli(
        &app,
        fleet.operator,
        &["cancel-rollout", "--rollout-id", id],
    )
    .await;
    assert_eq!(
        cancel.status.code(),
        Some(1),
        "nothing to cancel: {cancel:?}"
    );
    app.stop().await;
}
