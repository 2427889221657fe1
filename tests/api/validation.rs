//! Phase 4 through the API: ValidateMigration tells the whole truth. A run
//! that left candidates pending, skipped or quarantined any is never PASS;
//! a run that stopped before its end FAILs completeness unless it is
//! validated as the partial run it is.
use hera_migrate::proto::*;
use serde_json::Value;
use uuid::Uuid;

use crate::support::{
    as_user,
    runs::{
        Seeded, collect, control, migrate, seeded, start, start_paced_until, started, validate,
        validate_as,
    },
};

fn check<'a>(report: &'a ValidationReport, name: &str) -> &'a ValidationCheck {
    report
        .checks
        .iter()
        .find(|check| check.name == name)
        .unwrap_or_else(|| panic!("no check {name} in {report:#?}"))
}

/// The checks that do not pass, by name.
fn not_passing(report: &ValidationReport) -> Vec<(&str, CheckResult)> {
    report
        .checks
        .iter()
        .filter(|check| check.result() != CheckResult::Pass)
        .map(|check| (check.name.as_str(), check.result()))
        .collect()
}

/// A run of 5-transaction batches paced to 100 a second, cancelled once it
/// has migrated some: its id and how many it had processed.
async fn cancelled_mid_run(s: &Seeded, client: &mut crate::support::runs::Client) -> String {
    let (events, id) = start_paced_until(client, (s.org, s.owner), 100.0, 1).await;
    let (org, run) = control(s.org, &id);
    client
        .cancel_migration(as_user(
            CancelMigrationRequest {
                organization_id: org,
                migration_id: run,
                request_id: "cancel-1".into(),
            },
            s.owner,
        ))
        .await
        .unwrap();
    let last = collect(events).await.pop().unwrap();
    assert_eq!(last.state(), MigrationState::Cancelled, "{last:?}");
    assert!(last.transactions_processed < 300, "stopped early: {last:?}");
    id
}

#[tokio::test]
async fn a_cancelled_run_with_pending_candidates_fails_completeness_unless_validated_as_partial() {
    let s = seeded(300).await;
    let mut client = s.app.client().await;
    let id = cancelled_mid_run(&s, &mut client).await;

    let report = validate(&mut client, s.org, s.owner, &id).await;
    let completeness = check(&report, "completeness");
    assert_eq!(
        completeness.result(),
        CheckResult::Fail,
        "{completeness:#?}"
    );
    assert_ne!(report.overall(), CheckResult::Pass);
    assert_eq!(report.overall(), CheckResult::Fail);
    let pending: i64 = completeness.details["pending"].parse().unwrap();
    assert!(pending > 0, "{completeness:#?}");
    assert!(
        completeness.summary.contains(&format!(
            "CANCELLED with {pending} candidate(s) still pending"
        )),
        "{}",
        completeness.summary
    );
    assert_eq!(completeness.details["partial"], "false");
    assert_eq!(
        not_passing(&report),
        [("completeness", CheckResult::Fail)],
        "what the run did is sound: {report:#?}"
    );

    let partial = validate_as(&mut client, s.org, s.owner, &id, true).await;
    let completeness = check(&partial, "completeness");
    assert_eq!(
        completeness.result(),
        CheckResult::Warn,
        "{completeness:#?}"
    );
    assert_eq!(completeness.details["partial"], "true");
    assert_eq!(completeness.details["allow_partial"], "true");
    assert!(
        partial.allow_partial,
        "the report says it judged a partial run"
    );
    assert!(!report.allow_partial);
    assert_eq!(completeness.details["pending"], pending.to_string());
    assert!(
        completeness
            .summary
            .starts_with("a partial run validated as such (allow_partial)"),
        "{}",
        completeness.summary
    );
    assert_eq!(partial.overall(), CheckResult::Warn, "{partial:#?}");

    // psql gives the same answers, with one function of that name.
    let from_psql = |allow_partial: Option<bool>| {
        let pool = s.pool.clone();
        let id = id.clone();
        async move {
            let report: Value = match allow_partial {
                None => sqlx::query_scalar("SELECT hera_migration_validate_v2($1::uuid)")
                    .bind(&id)
                    .fetch_one(&pool)
                    .await
                    .unwrap(),
                Some(allow) => {
                    sqlx::query_scalar("SELECT hera_migration_validate_v2($1::uuid, $2)")
                        .bind(&id)
                        .bind(allow)
                        .fetch_one(&pool)
                        .await
                        .unwrap()
                }
            };
            report["overall"].as_str().unwrap().to_owned()
        }
    };
    assert_eq!(from_psql(None).await, "FAIL");
    assert_eq!(from_psql(Some(false)).await, "FAIL");
    assert_eq!(from_psql(Some(true)).await, "WARN");
    let functions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_proc WHERE proname IN ('hera_migration_validate_v2',
                                                      'hera_migration_check_completeness_v2')",
    )
    .fetch_one(&s.pool)
    .await
    .unwrap();
    assert_eq!(functions, 2, "one function of each name");
    s.app.stop().await;
}

#[tokio::test]
async fn a_run_that_skipped_closed_periods_warns_listing_the_skips_and_so_does_its_dry_run() {
    let s = seeded(200).await;
    let mut client = s.app.client().await;

    // The seed closes some periods: a dry run would skip their candidates.
    let dry = started(
        &mut client,
        StartMigrationRequest {
            dry_run: true,
            closed_period_policy: ClosedPeriodPolicy::Skip.into(),
            ..start(s.org)
        },
        s.owner,
    )
    .await;
    let dry = dry.last().unwrap();
    assert_eq!(dry.state(), MigrationState::Succeeded, "{dry:?}");
    let report = validate(&mut client, s.org, s.owner, &dry.migration_id).await;
    let completeness = check(&report, "completeness");
    assert_eq!(
        completeness.result(),
        CheckResult::Warn,
        "{completeness:#?}"
    );
    assert!(
        completeness
            .summary
            .starts_with("a dry run: nothing was written"),
        "{}",
        completeness.summary
    );
    assert!(
        completeness.summary.contains("it would have left out ")
            && completeness.summary.contains("closed or locked period: "),
        "{}",
        completeness.summary
    );
    assert_ne!(report.overall(), CheckResult::Pass, "{report:#?}");

    let id = migrate(&s, &mut client, 50).await;
    let progress = crate::support::runs::get(&mut client, s.org, s.owner, &id)
        .await
        .progress
        .unwrap();
    let skipped = progress.transactions_skipped;
    assert!(skipped > 0, "{progress:?}");
    let report = validate(&mut client, s.org, s.owner, &id).await;
    assert_eq!(
        not_passing(&report),
        [("completeness", CheckResult::Warn)],
        "{report:#?}"
    );
    assert_eq!(report.overall(), CheckResult::Warn);
    let completeness = check(&report, "completeness");
    assert_eq!(completeness.details["skipped_closed"], skipped.to_string());
    assert_eq!(completeness.details["pending"], "0");
    assert!(
        completeness.summary.contains(&format!(
            "left out: {skipped} skipped (closed or locked period: {skipped})"
        )),
        "{}",
        completeness.summary
    );
    s.app.stop().await;
}

#[tokio::test]
async fn a_run_that_quarantined_warns_listing_the_rule() {
    let s = seeded(60).await;
    let mut client = s.app.client().await;
    let victim: Uuid = crate::support::ledger::unbalance_latest(&s.pool, s.org).await;

    // Closed periods posted to the open one: only the quarantine is left out.
    let events = started(&mut client, start(s.org), s.owner).await;
    let last = events.last().unwrap();
    assert_eq!(last.state(), MigrationState::Succeeded, "{last:?}");
    let run = crate::support::runs::get(&mut client, s.org, s.owner, &last.migration_id).await;
    assert_eq!(run.quarantined.len(), 1, "{run:?}");
    assert_eq!(run.quarantined[0].transaction_id, victim.to_string());

    let report = validate(&mut client, s.org, s.owner, &last.migration_id).await;
    assert_eq!(
        not_passing(&report),
        [("completeness", CheckResult::Warn)],
        "{report:#?}"
    );
    let completeness = check(&report, "completeness");
    assert_eq!(completeness.details["quarantined"], "1");
    assert_eq!(completeness.details["quarantined_by_rule"], "unbalanced: 1");
    assert!(
        completeness
            .summary
            .contains("1 quarantined (unbalanced: 1)"),
        "{}",
        completeness.summary
    );
    s.app.stop().await;
}
