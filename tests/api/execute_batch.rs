//! Phase 2's batch, at the SQL level (`hera_migration_execute_batch_v2`, as an
//! operator would run it from psql): exactly once, balanced, ledger unchanged.
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::sql::{Scene, call, create_run, scene, to_end, trial_balance, year_2024};

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
    let victim: Uuid = crate::support::ledger::unbalance_latest(&pool, org).await;
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
    skew_copied_lines_described_skew_me(&pool).await;

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

/// A trigger that adds 1 to the amount of every line copied whose
/// description is 'skew me': what the batch's proof must catch.
async fn skew_copied_lines_described_skew_me(pool: &PgPool) {
    sqlx::raw_sql(
        "CREATE FUNCTION skew_line() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN NEW.line_amount := NEW.line_amount + 1; RETURN NEW; END $$;
         CREATE TRIGGER skew BEFORE INSERT ON universal_transaction_lines
            FOR EACH ROW WHEN (NEW.description = 'skew me') EXECUTE FUNCTION skew_line();",
    )
    .execute(pool)
    .await
    .unwrap();
}

/// The org's first `limit` candidates in the order a run takes them.
async fn first_candidates(pool: &PgPool, org: Uuid, limit: i64) -> Vec<Uuid> {
    sqlx::query_scalar(
        "SELECT id FROM universal_transactions
          WHERE organization_id = $1
            AND hera_migration_is_candidate_v2(transaction_status, smart_code, metadata, ARRAY['posted'])
          ORDER BY transaction_date, id LIMIT $2",
    )
    .bind(org)
    .bind(limit)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The batch's steps called alone, as an operator would from psql: the lock
/// step reads the run and holds its row, the candidates step takes the first
/// candidates in (date, id) order under their locks, the classify step
/// decides them by the policy it is given, and the result step adds a batch
/// to the counters; none of them writes. A paused run's answer is the lock
/// step's.
#[tokio::test]
async fn the_batch_steps_called_alone_read_lock_and_decide_without_writing() {
    let Scene {
        _db,
        pool,
        org,
        actor,
    } = scene(120).await;
    let run = create_run(&pool, org, actor, year_2024(10)).await;
    let expected = first_candidates(&pool, org, 10).await;

    let mut tx = pool.begin().await.unwrap();
    let (halted, run_org, batch_size, backed_off, started_by): (
        Option<Value>,
        Uuid,
        i32,
        i32,
        Uuid,
    ) = sqlx::query_as(
        "SELECT r.halted, r.organization_id, r.batch_size,
                    (SELECT batch_size FROM hera_migration_batch_lock_run_v2($1, 7)), r.started_by
               FROM hera_migration_batch_lock_run_v2($1) r",
    )
    .bind(run)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(halted, None);
    assert_eq!(
        (run_org, batch_size, backed_off, started_by),
        (org, 10, 7, actor)
    );

    let (ids, last_id): (Vec<Uuid>, Uuid) = sqlx::query_as(
        "SELECT c.ids, c.last_id
           FROM hera_migration_batch_lock_run_v2($1) r,
                hera_migration_batch_candidates_v2(r.organization_id, r.statuses, r.range_start, r.range_end,
                                                   r.after_date, r.after_id, r.batch_size) c",
    )
    .bind(run)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(ids, expected, "the first candidates, in (date, id) order");
    assert_eq!(Some(&last_id), ids.last(), "the next cursor");
    let free: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM universal_transactions
                                WHERE id = ANY ($1) OR id = $2 FOR UPDATE SKIP LOCKED) x",
    )
    .bind(&ids)
    .bind(run)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        free, 0,
        "the run and its candidates stay locked by the caller"
    );

    // January is closed in the seed: skipped under SKIP, moved to the open
    // period under POST_TO_OPEN_PERIOD.
    let classify = "SELECT migrate, items, closed, unmapped, set_aside, open_period
                      FROM hera_migration_batch_classify_v2($1, $2, $3)";
    type Decided = (Vec<Uuid>, Value, Vec<Uuid>, Vec<Uuid>, Value, Option<Value>);
    let (migrate, _, mut closed, unmapped, set_aside, _): Decided = sqlx::query_as(classify)
        .bind(org)
        .bind(&ids)
        .bind(json!({}))
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    closed.sort();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(
        (migrate, closed, unmapped, set_aside),
        (vec![], sorted, vec![], json!([]))
    );
    let (migrate, items, closed, _, _, open_period): Decided = sqlx::query_as(classify)
        .bind(org)
        .bind(&ids)
        .bind(json!({"closed_period_policy": "POST_TO_OPEN_PERIOD"}))
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(migrate, ids);
    assert!(closed.is_empty());
    assert!(open_period.is_some_and(|p| p["id"].is_string()));
    assert!(ids.iter().all(|id| {
        let item = &items[id.to_string()];
        item["move"] == true && item["target"].as_str().is_some_and(|t| t.ends_with(".v2"))
    }));

    // The answer of a batch that took four, wrote one, skipped one and
    // quarantined two (one before writing, one while writing).
    let result: Value = sqlx::query_scalar(
        "SELECT hera_migration_batch_result_v2(gen_random_uuid(),
                    '{\"batches\": 2, \"processed\": 20, \"migrated\": 5, \"quarantined\": 1}',
                    $1, $2, $3, $4, '{}', $5, $6, clock_timestamp())",
    )
    .bind(ids[..4].to_vec())
    .bind(ids[3])
    .bind(ids[..1].to_vec())
    .bind(ids[2..3].to_vec())
    .bind(json!([{"transaction_id": ids[3], "rule": "unbalanced", "reason": "test"}]))
    .bind(json!([{"transaction_id": ids[1], "rule": "chk_test", "reason": "test"}]))
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(result["batch_number"], 3);
    assert_eq!(
        (
            &result["transactions"],
            &result["migrated"],
            &result["skipped_closed"]
        ),
        (&json!(4), &json!(1), &json!(1))
    );
    assert_eq!(result["quarantined_ids"], json!([ids[3], ids[1]]));
    assert_eq!(result["failed_verification_ids"], json!([ids[1]]));
    assert_eq!(
        result["counters"],
        json!({"batches": 3, "processed": 24, "migrated": 6, "skipped_closed": 1,
               "skipped_unmapped": 0, "quarantined": 3})
    );
    assert_eq!(
        (
            &result["first_transaction_id"],
            &result["last_transaction_id"],
            &result["done"]
        ),
        (&json!(ids[0]), &json!(ids[3]), &json!(false))
    );
    tx.commit().await.unwrap();

    let (cursor, reversed): (bool, i64) = sqlx::query_as(
        "SELECT (SELECT metadata ? 'cursor' FROM universal_transactions WHERE id = $2),
                count(*) FILTER (WHERE transaction_status = 'reversed')
           FROM universal_transactions WHERE organization_id = $1",
    )
    .bind(org)
    .bind(run)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((cursor, reversed), (false, 0), "nothing was written");
    assert!(copies_per_original(&pool, run).await.is_empty());

    crate::support::sql::set_state(&pool, run, "PAUSED", None).await;
    let halted: Value =
        sqlx::query_scalar("SELECT halted FROM hera_migration_batch_lock_run_v2($1)")
            .bind(run)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(halted["halted"], "PAUSED");
    assert_eq!(
        call(&pool, BATCH, run).await,
        halted,
        "the batch answers the lock step's halt"
    );
}

/// The balance proof, called alone over a committed run: it holds for what
/// the batches wrote, and names the original whose repost was changed since.
#[tokio::test]
async fn the_balance_proof_alone_holds_for_written_batches_and_names_a_changed_copy() {
    let Scene {
        _db,
        pool,
        org,
        actor,
    } = scene(40).await;
    let run = create_run(
        &pool,
        org,
        actor,
        json!({"from_date": "2024-01-01", "to_date": "2024-12-31", "closed_period_policy": "POST_TO_OPEN_PERIOD"}),
    )
    .await;
    to_end(&pool, BATCH, run).await;
    const PROOF: &str = "SELECT hera_migration_batch_verify_v2(array_agg(id), array_agg((metadata ->> 'reversal_id')::uuid),
                                                              array_agg((metadata ->> 'migrated_to')::uuid))
                           FROM universal_transactions
                          WHERE metadata ->> 'migration_run_id' = $1::text AND metadata ? 'migrated_to'";
    let proof: Value = sqlx::query_scalar(PROOF)
        .bind(run)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(proof, json!([]));

    let victim: Uuid = sqlx::query_scalar(
        "UPDATE universal_transaction_lines l SET line_amount = l.line_amount + 1
           FROM universal_transactions t
          WHERE t.id = l.transaction_id
            AND l.id = (SELECT l2.id FROM universal_transaction_lines l2
                          JOIN universal_transactions t2 ON t2.id = l2.transaction_id
                         WHERE t2.metadata ->> 'migration_id' = $1::text AND t2.metadata ? 'original_transaction_id'
                           AND l2.smart_code LIKE '%.GL.%'
                         ORDER BY t2.id, l2.line_number LIMIT 1)
         RETURNING (t.metadata ->> 'original_transaction_id')::uuid",
    )
    .bind(run)
    .fetch_one(&pool)
    .await
    .unwrap();
    let proof: Value = sqlx::query_scalar(PROOF)
        .bind(run)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(proof.as_array().map(Vec::len), Some(1), "{proof}");
    assert_eq!(proof[0]["transaction_id"], json!(victim));
    assert_eq!(proof[0]["rule"], "copies_unbalanced");
}

/// What a batch writes holds its proof by construction; the batch reads it
/// back only where a trigger or rule of the database could have changed it,
/// asked at each batch: a trigger created mid-run is heard from the next
/// batch on. A run whose trial balance the engine is reading beside it
/// (trial_balance_pending) takes none in its first batch.
#[tokio::test]
async fn the_proof_reads_back_once_a_trigger_could_act_and_a_pending_trial_balance_is_left_alone() {
    let Scene {
        _db,
        pool,
        org,
        actor,
    } = scene(60).await;
    let may_be_altered = || async {
        sqlx::query_scalar::<_, bool>("SELECT hera_migration_writes_may_be_altered_v2()")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert!(
        !may_be_altered().await,
        "our own schema has foreign keys only"
    );
    let run = create_run(
        &pool,
        org,
        actor,
        json!({"from_date": "2024-01-01", "to_date": "2024-12-31", "batch_size": 20,
               "closed_period_policy": "POST_TO_OPEN_PERIOD"}),
    )
    .await;
    let marked: bool = sqlx::query_scalar("SELECT hera_migration_record_trial_balance_v2($1)")
        .bind(run)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(marked);
    let first = call(&pool, BATCH, run).await;
    assert_eq!(first["migrated"], 20);

    // A trigger that skews the next line copied: the next batch's proof
    // reads it back and sets its original aside.
    let victim: Uuid = sqlx::query_scalar(
        "UPDATE universal_transaction_lines SET description = 'skew me'
          WHERE id = (SELECT l.id FROM universal_transaction_lines l
                        JOIN universal_transactions t ON t.id = l.transaction_id
                       WHERE t.organization_id = $1 AND t.transaction_status = 'posted'
                         AND t.smart_code LIKE '%.v1'
                       ORDER BY t.transaction_date, t.id LIMIT 1)
         RETURNING transaction_id",
    )
    .bind(org)
    .fetch_one(&pool)
    .await
    .unwrap();
    skew_copied_lines_described_skew_me(&pool).await;
    assert!(may_be_altered().await);
    let second = call(&pool, BATCH, run).await;
    assert_eq!(
        second["failed_verification_ids"],
        json!([victim]),
        "{second}"
    );
    assert_eq!(second["migrated"], 19);
    assert_eq!(unbalanced_written(&pool, run).await, 0);

    let snapshot: Value = sqlx::query_scalar(
        "SELECT metadata -> 'snapshot' FROM universal_transactions WHERE id = $1",
    )
    .bind(run)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(snapshot["trial_balance_pending"], json!(true), "{snapshot}");
    assert!(
        snapshot.get("trial_balance").is_none(),
        "no batch took it: {snapshot}"
    );
}
