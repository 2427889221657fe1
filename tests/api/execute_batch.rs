//! Phase 2's batch, at the SQL level (`hera_migration_execute_batch_v2`, as an
//! operator would run it from psql): exactly once, balanced, ledger unchanged.
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::sql::{Scene, call, create_run, scene, to_end, trial_balance};

const BATCH: &str = "hera_migration_execute_batch_v2";

/// Per original migrated by `run`: (reversals, reposts) pointing at it.
async fn copies_per_original(pool: &PgPool, run: Uuid) -> Vec<(i64, i64)> {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE c.metadata ->> 'reversal_of' = o.id::text),
                count(*) FILTER (WHERE c.metadata ->> 'original_transaction_id' = o.id::text)
           FROM universal_transactions o
           JOIN universal_transactions c
             ON c.metadata ->> 'reversal_of' = o.id::text OR c.metadata ->> 'original_transaction_id' = o.id::text
          WHERE o.metadata ->> 'migration_run_id' = $1::text
          GROUP BY o.id",
    )
    .bind(run)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn unbalanced_written(pool: &PgPool, run: Uuid) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM (
             SELECT t.id FROM universal_transactions t
               JOIN universal_transaction_lines l ON l.transaction_id = t.id
              WHERE t.metadata ->> 'migration_run_id' = $1::text OR t.metadata ->> 'migration_id' = $1::text
              GROUP BY t.id
             HAVING sum(l.line_amount) FILTER (WHERE l.line_data ->> 'side' = 'DR')
                 <> sum(l.line_amount) FILTER (WHERE l.line_data ->> 'side' = 'CR')) x",
    )
    .bind(run)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn batches_migrate_every_open_period_candidate_exactly_once_and_keep_the_ledger() {
    let Scene {
        _db,
        pool,
        org,
        actor,
    } = scene(400).await;
    let before = trial_balance(&pool, org).await;
    let tables_before = crate::support::catalog::tables(&pool).await;

    let run = create_run(
        &pool,
        org,
        actor,
        json!({"from_date": "2024-01-01", "to_date": "2024-12-31", "batch_size": 64}),
    )
    .await;
    let results = to_end(&pool, BATCH, run).await;
    let migrated: i64 = results
        .iter()
        .map(|r| r["migrated"].as_i64().unwrap())
        .sum();
    let closed: i64 = results
        .iter()
        .map(|r| r["skipped_closed"].as_i64().unwrap())
        .sum();
    let processed: i64 = results
        .iter()
        .map(|r| r["transactions"].as_i64().unwrap())
        .sum();
    assert_eq!(processed, 400, "every candidate was looked at once");
    assert_eq!(migrated + closed, 400);
    assert!(
        migrated > 0 && closed > 0,
        "the seed has open and closed periods: {migrated} / {closed}"
    );

    let copies = copies_per_original(&pool, run).await;
    assert_eq!(copies.len() as i64, migrated);
    assert!(
        copies.iter().all(|&c| c == (1, 1)),
        "one reversal and one repost per original"
    );
    assert_eq!(unbalanced_written(&pool, run).await, 0);
    assert_eq!(
        trial_balance(&pool, org).await,
        before,
        "the trial balance is unchanged"
    );
    assert_eq!(
        crate::support::catalog::tables(&pool).await,
        tables_before,
        "no table created"
    );

    let (batches, reposts_v2): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE transaction_type = 'MIGRATION_OPERATION'),
                count(*) FILTER (WHERE metadata ->> 'migration_id' = $2::text AND metadata ? 'original_transaction_id'
                                   AND smart_code LIKE '%.v2')
           FROM universal_transactions WHERE organization_id = $1",
    )
    .bind(org)
    .bind(run)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(batches as usize, results.len(), "one audit row per batch");
    assert_eq!(reposts_v2, migrated);

    // Running the finished run again migrates nothing twice.
    assert_eq!(call(&pool, BATCH, run).await["transactions"], 0);
}

#[tokio::test]
async fn concurrent_workers_on_one_run_never_duplicate() {
    let Scene {
        _db,
        pool,
        org,
        actor,
    } = scene(300).await;
    let run = create_run(
        &pool,
        org,
        actor,
        json!({"from_date": "2024-01-01", "to_date": "2024-12-31", "batch_size": 25,
               "closed_period_policy": "POST_TO_OPEN_PERIOD"}),
    )
    .await;
    let (a, b) = tokio::join!(to_end(&pool, BATCH, run), to_end(&pool, BATCH, run));
    let migrated: i64 = a
        .iter()
        .chain(&b)
        .map(|r| r["migrated"].as_i64().unwrap())
        .sum();
    assert_eq!(
        migrated, 300,
        "with POST_TO_OPEN_PERIOD every candidate migrates"
    );
    let copies = copies_per_original(&pool, run).await;
    assert_eq!(copies.len(), 300);
    assert!(copies.iter().all(|&c| c == (1, 1)));
    assert_eq!(unbalanced_written(&pool, run).await, 0);
}

#[tokio::test]
async fn an_unbalanced_original_is_quarantined_and_left_untouched() {
    let Scene {
        _db,
        pool,
        org,
        actor,
    } = scene(50).await;
    let victim: Uuid = sqlx::query_scalar(
        "UPDATE universal_transaction_lines SET line_amount = line_amount + 1
          WHERE id = (SELECT l.id FROM universal_transaction_lines l
                        JOIN universal_transactions t ON t.id = l.transaction_id
                       WHERE t.organization_id = $1 ORDER BY t.transaction_date DESC LIMIT 1)
         RETURNING transaction_id",
    )
    .bind(org)
    .fetch_one(&pool)
    .await
    .unwrap();
    let run = create_run(
        &pool,
        org,
        actor,
        json!({"from_date": "2024-01-01", "to_date": "2024-12-31", "closed_period_policy": "POST_TO_OPEN_PERIOD"}),
    )
    .await;
    let results = to_end(&pool, BATCH, run).await;
    assert_eq!(results[0]["quarantined_ids"], json!([victim]));
    assert_eq!(results[0]["migrated"], 49);
    let (status, quarantined): (String, Value) = sqlx::query_as(
        "SELECT (SELECT transaction_status FROM universal_transactions WHERE id = $1),
                (SELECT metadata -> 'quarantined_ids' FROM universal_transactions WHERE id = $2)",
    )
    .bind(victim)
    .bind(run)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(status, "posted", "the quarantined original is untouched");
    assert_eq!(quarantined, json!([victim]), "and listed in the run");
}

/// A copy can fail its verification even though its original balanced (here
/// a trigger, standing in for any interference, skews one repost line): the
/// batch's writes roll back, that original is quarantined, and the batch is
/// written again without it.
#[tokio::test]
async fn an_original_whose_copy_fails_verification_is_quarantined_and_the_batch_retried() {
    let Scene {
        _db,
        pool,
        org,
        actor,
    } = scene(50).await;
    let before = trial_balance(&pool, org).await;
    let victim: Uuid = sqlx::query_scalar(
        "UPDATE universal_transaction_lines SET description = 'skew me'
          WHERE id = (SELECT l.id FROM universal_transaction_lines l
                        JOIN universal_transactions t ON t.id = l.transaction_id
                       WHERE t.organization_id = $1 ORDER BY t.transaction_date LIMIT 1)
         RETURNING transaction_id",
    )
    .bind(org)
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::raw_sql(
        "CREATE FUNCTION skew_line() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN NEW.line_amount := NEW.line_amount + 1; RETURN NEW; END $$;
         CREATE TRIGGER skew BEFORE INSERT ON universal_transaction_lines
            FOR EACH ROW WHEN (NEW.description = 'skew me') EXECUTE FUNCTION skew_line();",
    )
    .execute(&pool)
    .await
    .unwrap();

    let run = create_run(
        &pool,
        org,
        actor,
        json!({"from_date": "2024-01-01", "to_date": "2024-12-31", "closed_period_policy": "POST_TO_OPEN_PERIOD"}),
    )
    .await;
    let results = to_end(&pool, BATCH, run).await;
    assert_eq!(results[0]["failed_verification_ids"], json!([victim]));
    assert_eq!(results[0]["quarantined_ids"], json!([victim]));
    assert_eq!(results[0]["migrated"], 49, "the rest of the batch migrated");
    let (status, copies): (String, i64) = sqlx::query_as(
        "SELECT (SELECT transaction_status FROM universal_transactions WHERE id = $1),
                (SELECT count(*) FROM universal_transactions
                  WHERE metadata ->> 'reversal_of' = $1::text OR metadata ->> 'original_transaction_id' = $1::text)",
    )
    .bind(victim)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (status.as_str(), copies),
        ("posted", 0),
        "none of its copies stayed"
    );
    assert_eq!(unbalanced_written(&pool, run).await, 0);
    assert_eq!(trial_balance(&pool, org).await, before);
}
