//! Incidents through the API: AssessFailure diagnoses a run read-only and
//! recommends what to do (with the command); DocumentIncident records a
//! Markdown report of the run once per request id.
use hera_migrate::proto::*;
use sqlx::{PgPool, Postgres, Transaction};
use tonic::Code;
use tonic_types::StatusExt;
use uuid::Uuid;

use crate::support::{
    as_user,
    fixtures::row_counts,
    runs::{self, Client, Seeded, seeded, seeded_with, start, started, watched},
    sql::TrialBalance,
};

async fn assess(client: &mut Client, s: &Seeded, id: &str) -> AssessFailureResponse {
    client
        .assess_failure(as_user(assessment_of(s.org, id), s.owner))
        .await
        .unwrap()
        .into_inner()
}

fn assessment_of(org: Uuid, id: &str) -> AssessFailureRequest {
    AssessFailureRequest {
        organization_id: org.to_string(),
        migration_id: id.to_owned(),
    }
}

fn action<'a>(a: &'a AssessFailureResponse, name: &str) -> &'a RecommendedAction {
    a.actions
        .iter()
        .find(|action| action.action == name)
        .unwrap_or_else(|| panic!("no {name} among {:#?}", a.actions))
}

fn cli(command: &str, org: Uuid, id: &str) -> String {
    format!("hera-migrate {command} --organization-id {org} --migration-id {id}")
}

/// A server whose batches wait 50 ms on a lock and retry once, and a run
/// of 60 candidates in batches of 20 that fails on the business's locks:
/// the scene, the business's transaction and the run's id.
async fn failed_on_locks() -> (Seeded, Transaction<'static, Postgres>, String) {
    let s = seeded_with(60, |settings| {
        settings.engine.batch_lock_timeout_ms = 50;
        settings.engine.batch_lock_retries = 1;
    })
    .await;
    let business = crate::support::sql::lock_every_transaction(&s.pool, s.org).await;
    let mut client = s.app.client().await;
    let request = StartMigrationRequest {
        batch_size: 20,
        ..start(s.org)
    };
    let events = started(&mut client, request, s.owner).await;
    let last = events.last().unwrap();
    assert_eq!(last.state(), MigrationState::Failed, "{last:?}");
    let id = last.migration_id.clone();
    (s, business, id)
}

/// Resumes run `id` and follows it to its end.
async fn resumed(client: &mut Client, s: &Seeded, id: &str) -> MigrationProgress {
    let resume = ResumeMigrationRequest {
        organization_id: s.org.to_string(),
        migration_id: id.to_owned(),
        request_id: "resume-1".into(),
    };
    let run = client
        .resume_migration(as_user(resume, s.owner))
        .await
        .unwrap()
        .into_inner()
        .into_migration();
    assert_eq!(run.state(), MigrationState::Running, "{run:?}");
    assert_eq!(run.finished_at, None, "a resumed run has not finished");
    let watch = WatchMigrationRequest {
        after_sequence: run.progress.unwrap().sequence,
        ..runs::watch(s.org, id)
    };
    watched(client, watch, s.owner).await.pop().unwrap()
}

#[tokio::test]
async fn a_run_failed_on_lock_retries_names_its_error_recommends_resume_and_resumes_so() {
    let (s, business, id) = failed_on_locks().await;
    let before = trial_balance_now(&s).await;
    let mut client = s.app.client().await;
    let rows = row_counts(&s.pool).await;

    let a = assess(&mut client, &s, &id).await;
    assert_eq!(row_counts(&s.pool).await, rows, "assessing writes nothing");
    assert_eq!(a.state(), MigrationState::Failed);
    assert_eq!(a.phase(), MigrationPhase::Execution);
    assert!(a.last_error.contains("row locks"), "{}", a.last_error);
    assert!(
        a.last_error.contains("lock timeout"),
        "the database's words: {}",
        a.last_error
    );
    assert_eq!((a.last_batch_number, a.failed_batch_number), (0, 1));
    assert!(a.failed_at.is_some());
    assert!(a.lock_backoffs >= 1, "{a:#?}");
    assert_eq!((a.batches_committed, a.transactions_committed), (0, 0));
    assert_eq!(a.transactions_pending, 60);
    assert!(a.ledger_balanced, "{}", a.ledger_summary);
    assert!(!a.rollback_recommended);
    assert_eq!(a.actions[0].action, "resume", "{:#?}", a.actions);
    assert_eq!(a.actions[0].command, cli("resume", s.org, &id));
    assert!(
        a.actions[0].reason.contains("locks are released"),
        "{}",
        a.actions[0].reason
    );
    assert!(action(&a, "inspect-locks").command.contains("pg_locks"));
    let raise = action(&a, "raise-lock-timeout");
    assert!(raise.reason.contains("50 ms"), "{}", raise.reason);
    assert!(
        raise.command.contains("HERA_BATCH_LOCK_TIMEOUT_MS=2000"),
        "{}",
        raise.command
    );
    assert_eq!(
        action(&a, "validate-migration").command,
        format!("{} --allow-partial", cli("validate-migration", s.org, &id))
    );
    assert_eq!(a.recommended_actions.len(), a.actions.len());
    assert!(a.recommended_actions[0].starts_with("resume: "));
    assert!(a.summary.contains("resume it"), "{}", a.summary);

    // As recommended: the business lets go, the run is resumed and ends.
    business.rollback().await.unwrap();
    let end = resumed(&mut client, &s, &id).await;
    assert_eq!(end.state(), MigrationState::Succeeded, "{end:?}");
    assert_eq!(end.transactions_migrated, 60);
    assert_eq!(
        crate::support::fixtures::migrated_copies(&s.pool, s.org, &id).await,
        (60, 60, 60),
        "exactly once"
    );
    assert_eq!(trial_balance_now(&s).await, before);

    let after = assess(&mut client, &s, &id).await;
    assert_eq!(after.state(), MigrationState::Succeeded);
    assert_eq!(after.last_error, "");
    assert_eq!(
        after.actions[0].action, "nothing-to-recover",
        "{:#?}",
        after.actions
    );
    assert!(
        after.summary.contains("failed 1 time(s) before"),
        "{}",
        after.summary
    );
    assert_eq!(
        (after.batches_committed, after.transactions_committed),
        (3, 60)
    );
    s.app.stop().await;
}

/// A FAILED run resumes only while its organization has no other active run;
/// a run that ended otherwise is not resumed at all.
#[tokio::test]
async fn a_failed_run_waits_for_the_organizations_active_run_before_it_resumes() {
    let (s, business, failed) = failed_on_locks().await;
    business.rollback().await.unwrap();
    let mut client = s.app.client().await;
    let slow = StartMigrationRequest {
        batch_size: 5,
        max_transactions_per_second: Some(1.0),
        ..start(s.org)
    };
    let mut other = client
        .start_migration(as_user(slow, s.owner))
        .await
        .unwrap()
        .into_inner();
    let second = tokio_stream::StreamExt::next(&mut other)
        .await
        .unwrap()
        .unwrap()
        .into_progress()
        .migration_id;
    let resume = |id: &str| ResumeMigrationRequest {
        organization_id: s.org.to_string(),
        migration_id: id.to_owned(),
        request_id: String::new(),
    };
    let refused = client
        .resume_migration(as_user(resume(&failed), s.owner))
        .await
        .expect_err("another run is active");
    assert_eq!(refused.code(), Code::Aborted, "{refused:?}");
    assert!(refused.message().contains(&second), "{}", refused.message());
    let cancel = CancelMigrationRequest {
        organization_id: s.org.to_string(),
        migration_id: second.clone(),
        request_id: String::new(),
    };
    client
        .cancel_migration(as_user(cancel, s.owner))
        .await
        .unwrap();
    let cancelled = client
        .resume_migration(as_user(resume(&second), s.owner))
        .await
        .expect_err("cancelled");
    assert_eq!(cancelled.code(), Code::FailedPrecondition, "{cancelled:?}");
    assert!(
        cancelled.message().contains("CANCELLED"),
        "{}",
        cancelled.message()
    );
    s.app.stop().await;
}

async fn trial_balance_now(s: &Seeded) -> TrialBalance {
    runs::trial_balance(&s.pool, s.org).await
}

#[tokio::test]
async fn a_succeeded_run_has_nothing_to_recover_and_an_unknown_run_is_not_found() {
    let s = seeded(50).await;
    let mut client = s.app.client().await;
    let request = StartMigrationRequest {
        batch_size: 20,
        ..start(s.org)
    };
    let id = started(&mut client, request, s.owner)
        .await
        .pop()
        .unwrap()
        .migration_id;
    let rows = row_counts(&s.pool).await;

    let a = assess(&mut client, &s, &id).await;
    assert_eq!(row_counts(&s.pool).await, rows, "assessing writes nothing");
    assert_eq!(a.state(), MigrationState::Succeeded);
    assert_eq!(
        a.actions[0].action, "nothing-to-recover",
        "{:#?}",
        a.actions
    );
    let next = a.actions.last().unwrap();
    assert_eq!(next.action, "validate-migration");
    assert_eq!(next.command, cli("validate-migration", s.org, &id));
    assert!(!a.rollback_recommended);
    assert!(a.ledger_balanced, "{}", a.ledger_summary);
    assert_eq!(a.last_error, "");
    assert!(a.quarantined.is_empty());
    assert_eq!((a.batches_committed, a.transactions_committed), (3, 50));
    assert_eq!(a.transactions_migrated, 50);
    assert_eq!(a.last_batch_number, 3);
    assert_eq!(a.transactions_pending, 0);
    assert_eq!(a.started_by, s.owner.to_string());
    assert!(a.summary.contains("Nothing to recover"), "{}", a.summary);
    assert!(
        a.checks
            .iter()
            .any(|c| c.name == "trial_balance" && c.result() == CheckResult::Pass),
        "{:#?}",
        a.checks
    );

    let unknown = client
        .assess_failure(as_user(
            assessment_of(s.org, &Uuid::new_v4().to_string()),
            s.owner,
        ))
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    let malformed = client
        .assess_failure(as_user(assessment_of(s.org, "nope"), s.owner))
        .await
        .expect_err("malformed");
    assert_eq!(malformed.code(), Code::InvalidArgument);
    assert!(malformed.message().starts_with("migration_id"));
    // Reading is any member's right.
    let staff = client
        .assess_failure(as_user(assessment_of(s.org, &id), s.staff))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(staff.state(), MigrationState::Succeeded);
    s.app.stop().await;
}

#[tokio::test]
async fn quarantined_transactions_are_listed_with_their_rule_and_a_fix_then_a_new_run() {
    let s = seeded(50).await;
    let victim: Uuid = crate::support::ledger::unbalance_latest(&s.pool, s.org).await;
    let mut client = s.app.client().await;
    let id = started(&mut client, start(s.org), s.owner)
        .await
        .pop()
        .unwrap()
        .migration_id;

    let a = assess(&mut client, &s, &id).await;
    assert_eq!(a.state(), MigrationState::Succeeded);
    assert_eq!(a.quarantined_transaction_ids, [victim.to_string()]);
    assert_eq!(a.quarantined[0].rule, "unbalanced", "{:?}", a.quarantined);
    assert!(
        !a.rollback_recommended,
        "a quarantine leaves the ledger whole"
    );
    assert!(a.ledger_balanced, "{}", a.ledger_summary);
    assert!(a.actions.iter().all(|a| a.action != "nothing-to-recover"));
    let fix = action(&a, "fix-data");
    assert!(fix.reason.contains("unbalanced: 1"), "{}", fix.reason);
    assert!(fix.command.contains(&victim.to_string()), "{}", fix.command);
    assert!(
        fix.command.contains(&id),
        "reads the run's own list: {}",
        fix.command
    );
    // The SQL runs as given, and finds the victim.
    let sql = fix
        .command
        .lines()
        .filter(|l| !l.starts_with("--"))
        .collect::<Vec<_>>()
        .join(" ");
    let found: Vec<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM ({}) q",
        sql.trim_end_matches(';')
    )))
    .fetch_all(&s.pool)
    .await
    .unwrap();
    assert_eq!(found, [victim]);
    assert!(action(&a, "new-run").command.contains("StartMigration"));
    s.app.stop().await;
}

fn incident(s: &Seeded, id: &str, request_id: &str) -> DocumentIncidentRequest {
    DocumentIncidentRequest {
        organization_id: s.org.to_string(),
        migration_id: id.to_owned(),
        request_id: request_id.into(),
        title: "Batches gave up on the business's row locks".into(),
        description: "Month-end close held locks for minutes.".into(),
        severity: Severity::Sev2.into(),
    }
}

async fn incident_rows(pool: &PgPool, org: Uuid) -> Vec<(Uuid, String, serde_json::Value)> {
    sqlx::query_as(
        "SELECT id, smart_code::text, metadata FROM universal_transactions
          WHERE organization_id = $1 AND transaction_type = 'MIGRATION_INCIDENT'",
    )
    .bind(org)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn an_incident_report_names_every_batch_and_event_and_is_recorded_once_per_request() {
    let (s, business, id) = failed_on_locks().await;
    let mut client = s.app.client().await;
    business.rollback().await.unwrap();
    assert_eq!(
        resumed(&mut client, &s, &id).await.state(),
        MigrationState::Succeeded
    );
    let history = watched(&mut client, runs::watch(s.org, &id), s.owner).await;

    let first = client
        .document_incident(as_user(incident(&s, &id, "incident-1"), s.owner))
        .await
        .unwrap()
        .into_inner();
    let report = &first.report_markdown;
    assert!(!first.already_recorded);
    assert_eq!(first.severity(), Severity::Sev2);
    assert!(
        report.starts_with("# Incident: Batches gave up"),
        "{report}"
    );
    assert!(report.contains("Month-end close held locks"), "{report}");
    for batch in 1..=3 {
        assert!(
            report.contains(&format!("| EXECUTION | {batch} | 20 |")),
            "batch {batch}: {report}"
        );
    }
    for event in &history {
        let kind = event
            .kind()
            .as_str_name()
            .trim_start_matches("MIGRATION_EVENT_KIND_");
        assert!(report.contains(&format!("| {kind} |")), "{kind}: {report}");
        assert!(
            report.contains(&format!("| {} |", event.sequence)),
            "{report}"
        );
    }
    assert!(
        report.contains("LOCK_BACKOFF") && report.contains("row locks"),
        "{report}"
    );
    assert!(
        report.contains(&format!("| `{}` | STARTED x1, RESUMED x1", s.owner)),
        "{report}"
    );
    assert!(report.contains("## Latest validation"), "{report}");

    let rows = incident_rows(&s.pool, s.org).await;
    assert_eq!(rows.len(), 1);
    let (row_id, smart_code, metadata) = &rows[0];
    assert_eq!(row_id.to_string(), first.incident_id);
    assert_eq!(smart_code, "HERA.ACCOUNTING.MIGRATION.INCIDENT.REPORT.v2");
    assert_eq!(metadata["request_id"], "incident-1");
    assert_eq!(metadata["migration_id"], id.as_str());
    assert_eq!(metadata["severity"], "SEV2");
    assert_eq!(metadata["title"], first.title.as_str());
    assert_eq!(metadata["report_markdown"], report.as_str());

    // The same request again: the same incident, nothing written.
    let counts = row_counts(&s.pool).await;
    let again = client
        .document_incident(as_user(incident(&s, &id, "incident-1"), s.owner))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.incident_id, first.incident_id);
    assert_eq!(&again.report_markdown, report);
    assert!(again.already_recorded);
    assert_eq!(row_counts(&s.pool).await, counts);

    let other = DocumentIncidentRequest {
        title: "Another title".into(),
        ..incident(&s, &id, "incident-1")
    };
    let exists = client
        .document_incident(as_user(other, s.owner))
        .await
        .expect_err("other content");
    assert_eq!(exists.code(), Code::AlreadyExists, "{exists:?}");
    assert!(
        exists.message().starts_with("request_id"),
        "{}",
        exists.message()
    );
    assert_eq!(row_counts(&s.pool).await, counts);
    s.app.stop().await;
}

#[tokio::test]
async fn an_incident_needs_a_title_a_request_id_a_severity_a_known_run_and_the_steering_right() {
    let s = seeded(20).await;
    let mut client = s.app.client().await;
    let id = started(&mut client, start(s.org), s.owner)
        .await
        .pop()
        .unwrap()
        .migration_id;
    let counts = row_counts(&s.pool).await;
    for (bad, field) in [
        (
            DocumentIncidentRequest {
                title: " ".into(),
                ..incident(&s, &id, "i-1")
            },
            "title",
        ),
        (incident(&s, &id, ""), "request_id"),
        (
            DocumentIncidentRequest {
                severity: 9,
                ..incident(&s, &id, "i-1")
            },
            "severity",
        ),
        (
            DocumentIncidentRequest {
                severity: Severity::Unspecified.into(),
                ..incident(&s, &id, "i-1")
            },
            "severity",
        ),
        (incident(&s, "", "i-1"), "migration_id"),
    ] {
        let status = client
            .document_incident(as_user(bad, s.owner))
            .await
            .expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(status.message().starts_with(field), "{}", status.message());
        let details = status.get_error_details();
        assert_eq!(
            details.bad_request().unwrap().field_violations[0].field,
            field
        );
    }
    assert_eq!(
        row_counts(&s.pool).await,
        counts,
        "refused requests wrote nothing"
    );

    let denied = client
        .document_incident(as_user(incident(&s, &id, "i-2"), s.staff))
        .await
        .expect_err("staff");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let unknown = client
        .document_incident(as_user(
            incident(&s, &Uuid::new_v4().to_string(), "i-3"),
            s.owner,
        ))
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    assert!(incident_rows(&s.pool, s.org).await.is_empty());

    let recorded = client
        .document_incident(as_user(incident(&s, &id, "i-4"), s.owner))
        .await
        .unwrap()
        .into_inner();
    assert!(recorded.report_markdown.contains("nothing-to-recover"));
    assert_eq!(incident_rows(&s.pool, s.org).await.len(), 1);
    s.app.stop().await;
}
