//! Rollback at the SQL level (`hera_migration_rollback_batch_v2` and the psql
//! entry point `hera_migration_rollback_v2`): the ledger comes back exactly,
//! every original is restored once, and can be migrated again.
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::sql::{self, Scene};

const ROLLBACK_BATCH: &str = "hera_migration_rollback_batch_v2";

/// (reposts, reversals) of `run` that are still in effect (not voided).
async fn copies_in_effect(pool: &PgPool, org: Uuid, run: Uuid) -> (i64, i64) {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE metadata ->> 'migration_id' = $2::text AND metadata ? 'original_transaction_id'),
                count(*) FILTER (WHERE metadata ->> 'migration_run_id' = $2::text AND metadata ? 'reversal_of')
           FROM universal_transactions
          WHERE organization_id = $1 AND transaction_status <> 'voided'",
    )
    .bind(org)
    .bind(run)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn rollback(pool: &PgPool, org: Uuid, run: &str) -> Result<serde_json::Value, sqlx::Error> {
    sqlx::query_scalar("SELECT hera_migration_rollback_v2($1, $2, 'test rollback')")
        .bind(org)
        .bind(run)
        .fetch_one(pool)
        .await
}

#[tokio::test]
async fn rollback_restores_the_ledger_and_the_candidates_exactly_once_and_allows_a_new_migration() {
    let Scene {
        _db,
        pool,
        org,
        actor,
    } = sql::scene(300).await;
    let before = sql::trial_balance(&pool, org).await;
    let candidates_before = sql::candidates(&pool, org).await;
    let tables_before = crate::support::catalog::tables(&pool).await;

    let (run, migrated) = sql::migrate(&pool, org, actor, 64).await;
    assert!(migrated > 0 && (migrated as usize) < candidates_before.len());
    // Alias what the run skipped (closed periods): the rollback removes them.
    let aliases: serde_json::Value =
        sqlx::query_scalar("SELECT hera_migration_apply_reporting_aliases_v2($1, '[]', $2)")
            .bind(org)
            .bind(run)
            .fetch_one(&pool)
            .await
            .unwrap();
    let aliased = aliases["transactions_aliased"].as_i64().unwrap();
    assert_eq!(
        aliased,
        candidates_before.len() as i64 - migrated,
        "{aliases}"
    );

    // The batches, as the engine runs them.
    sql::set_state(&pool, run, "RUNNING", Some("ROLLBACK")).await;
    let results = sql::to_end(&pool, ROLLBACK_BATCH, run).await;
    assert_eq!(sql::sum(&results, "restored"), migrated);
    assert_eq!(sql::sum(&results, "transactions"), migrated);
    assert_eq!(sql::sum(&results, "aliases_removed"), aliased);
    assert!(
        results
            .iter()
            .all(|r| r["phase"] == "ROLLBACK" && r["transactions"].as_i64().unwrap() <= 64)
    );
    let last = results.last().unwrap();
    assert_eq!(last["counters"]["restored"], migrated);
    assert_eq!(last["counters"]["processed"], migrated);
    assert_eq!(last["counters"]["batches"], results.len());
    assert_eq!(last["remaining"], 0);

    // Exactly once: another batch finds nothing; and with the cursor (and
    // the count of originals seen) rewound, every original is seen again but
    // skipped under its lock.
    assert_eq!(sql::call(&pool, ROLLBACK_BATCH, run).await["restored"], 0);
    sqlx::query("UPDATE universal_transactions
                    SET metadata = metadata #- '{rollback,cursor}' #- '{rollback,counters,processed}'
                  WHERE id = $1")
        .bind(run)
        .execute(&pool)
        .await
        .unwrap();
    let again = sql::to_end(&pool, ROLLBACK_BATCH, run).await;
    assert_eq!(sql::sum(&again, "restored"), 0);
    assert_eq!(sql::sum(&again, "already_restored"), migrated);

    assert_eq!(
        sql::trial_balance(&pool, org).await,
        before,
        "the ledger is back"
    );
    assert_eq!(copies_in_effect(&pool, org, run).await, (0, 0));
    assert_eq!(
        sql::candidates(&pool, org).await,
        candidates_before,
        "candidates again"
    );
    let (history, leftover_keys, left_aliases, audit_rows): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE jsonb_path_exists(metadata, '$.rollback_history[*] ? (@.migration_id == $r)',
                                                         jsonb_build_object('r', $2::text))),
                count(*) FILTER (WHERE metadata ?| array['reversal_id', 'migrated_to', 'migration_run_id', 'reversed_at']
                                   AND transaction_status = 'posted' AND NOT metadata ? 'reversal_of'),
                count(*) FILTER (WHERE metadata ? 'reporting_smart_code'),
                count(*) FILTER (WHERE transaction_type = 'MIGRATION_OPERATION'
                                   AND metadata ->> 'migration_id' = $2::text
                                   AND metadata ->> 'operation_type' = 'ROLLBACK')
           FROM universal_transactions WHERE organization_id = $1",
    )
    .bind(org)
    .bind(run)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(history, migrated, "each restoration is recorded once");
    assert_eq!(
        leftover_keys, 0,
        "no migration link left on a posted original"
    );
    assert_eq!(left_aliases, 0, "the run's aliases are gone");
    assert_eq!(
        audit_rows as usize,
        results.len() + again.len() + 1,
        "an audit row per batch"
    );

    // Migrate again: the same originals, with fresh codes.
    let (second, migrated_again) = sql::migrate(&pool, org, actor, 100).await;
    assert_eq!(migrated_again, migrated);
    assert_eq!(
        copies_in_effect(&pool, org, second).await,
        (migrated, migrated)
    );
    assert_eq!(sql::trial_balance(&pool, org).await, before);
    assert_eq!(
        crate::support::catalog::tables(&pool).await,
        tables_before,
        "no table created"
    );
}

#[tokio::test]
async fn the_psql_entry_point_rolls_back_a_cancelled_run_and_refuses_a_running_one() {
    let Scene {
        _db,
        pool,
        org,
        actor,
    } = sql::scene(200).await;
    let before = sql::trial_balance(&pool, org).await;
    let candidates_before = sql::candidates(&pool, org).await;
    let run = sql::create_run(&pool, org, actor, sql::year_2024(40)).await;
    // Half-way: batches until some were migrated, leaving the rest pending.
    let mut migrated = 0;
    while migrated == 0 {
        let result = sql::call(&pool, "hera_migration_execute_batch_v2", run).await;
        assert_eq!(
            result["done"], false,
            "the seed has open periods early enough"
        );
        migrated += result["migrated"].as_i64().unwrap();
    }

    // Still executing: refused, nothing written.
    assert_eq!(
        sql::sqlstate(rollback(&pool, org, &run.to_string()).await.unwrap_err()),
        "55000"
    );
    // Unknown or malformed ids, or another organization's run: no_data_found.
    assert_eq!(
        sql::sqlstate(
            rollback(&pool, org, &Uuid::new_v4().to_string())
                .await
                .unwrap_err()
        ),
        "P0002"
    );
    assert_eq!(
        sql::sqlstate(rollback(&pool, org, "not-a-run").await.unwrap_err()),
        "P0002"
    );
    assert_eq!(
        sql::sqlstate(
            rollback(&pool, Uuid::new_v4(), &run.to_string())
                .await
                .unwrap_err()
        ),
        "P0002"
    );

    sql::set_state(&pool, run, "CANCELLED", None).await;
    let summary = rollback(&pool, org, &run.to_string()).await.unwrap();
    assert_eq!(summary["state"], "ROLLED_BACK", "{summary}");
    assert_eq!(summary["restored"], migrated);
    assert_eq!(summary["already_rolled_back"], false);
    assert_eq!(sql::trial_balance(&pool, org).await, before);
    assert_eq!(sql::candidates(&pool, org).await, candidates_before);
    assert_eq!(copies_in_effect(&pool, org, run).await, (0, 0));
    let (state, phase, status, reason): (String, String, String, String) = sqlx::query_as(
        "SELECT metadata ->> 'state', metadata ->> 'phase', transaction_status, metadata #>> '{rollback,reason}'
           FROM universal_transactions WHERE id = $1",
    )
    .bind(run)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (state.as_str(), phase.as_str(), status.as_str()),
        ("ROLLED_BACK", "ROLLBACK", "rolled_back")
    );
    assert_eq!(reason, "test rollback");

    // Again: answered from the record, nothing done.
    let again = rollback(&pool, org, &run.to_string()).await.unwrap();
    assert_eq!(again["already_rolled_back"], true);
    assert_eq!(again["restored"], migrated);
    // A batch of a rolled-back run halts.
    assert_eq!(
        sql::call(&pool, ROLLBACK_BATCH, run).await["halted"],
        json!("ROLLED_BACK")
    );
}

#[tokio::test]
async fn an_interrupted_rollback_resumes_from_its_cursor_under_row_level_security() {
    let Scene {
        _db,
        pool,
        org,
        actor,
    } = sql::scene(250).await;
    let before = sql::trial_balance(&pool, org).await;
    let candidates_before = sql::candidates(&pool, org).await;
    let (run, migrated) = sql::migrate(&pool, org, actor, 64).await;

    // Two committed batches, then the worker is gone (a crash between batches).
    sql::set_state(&pool, run, "RUNNING", Some("ROLLBACK")).await;
    let mut restored = 0;
    for _ in 0..2 {
        let batch: serde_json::Value =
            sqlx::query_scalar("SELECT hera_migration_rollback_batch_v2($1, 30)")
                .bind(run)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(batch["done"], false);
        restored += batch["restored"].as_i64().unwrap();
    }
    assert_eq!(restored, 60);

    // The psql entry point resumes it, as the service's role would run it:
    // row-level security on, the organization named in app.current_org.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET LOCAL ROLE hera_migrate_app")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("SELECT set_config('app.current_org', $1::text, true)")
        .bind(org)
        .execute(&mut *tx)
        .await
        .unwrap();
    let summary: serde_json::Value =
        sqlx::query_scalar("SELECT hera_migration_rollback_v2($1, $2, 'resumed')")
            .bind(org)
            .bind(run.to_string())
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    let report: serde_json::Value = sqlx::query_scalar("SELECT hera_migration_validate_v2($1)")
        .bind(run)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(summary["restored"], migrated, "{summary}");
    assert_eq!(summary["processed"], migrated, "each original visited once");
    assert_eq!(report["rollback_status"], "ROLLBACK_COMPLETE", "{report:#}");
    assert_eq!(sql::trial_balance(&pool, org).await, before);
    assert_eq!(sql::candidates(&pool, org).await, candidates_before);
    assert_eq!(copies_in_effect(&pool, org, run).await, (0, 0));
}

/// The rollback's steps called alone, as from psql: the lock step reads the
/// rollback, the next step walks the run's audit trail (or a retry's list)
/// from the cursor, the lock step for originals keeps those still migrated,
/// and the balance proof holds for their copies until one is changed; none
/// of them writes. A paused rollback's answer is the lock step's.
#[tokio::test]
async fn the_rollback_steps_called_alone_walk_the_trail_lock_and_prove_without_writing() {
    let Scene {
        _db,
        pool,
        org,
        actor,
    } = sql::scene(150).await;
    let (run, migrated) = sql::migrate(&pool, org, actor, 64).await;
    sql::set_state(&pool, run, "RUNNING", Some("ROLLBACK")).await;
    // What the run migrated, in the order its audit trail lists it.
    let trail: Vec<Uuid> = sqlx::query_scalar(
        "SELECT m.id::uuid FROM universal_transactions op
          CROSS JOIN LATERAL jsonb_array_elements_text(op.metadata -> 'migrated_ids') WITH ORDINALITY AS m (id, n)
          WHERE op.metadata ->> 'migration_id' = $1::text AND op.metadata ->> 'operation_type' = 'REVERSE_REPOST'
          ORDER BY op.transaction_date, op.id, m.n",
    )
    .bind(run)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(trail.len() as i64 == migrated && migrated > 20);

    let mut tx = pool.begin().await.unwrap();
    let (halted, read_actor, batch_size, total): (Option<serde_json::Value>, Uuid, i32, i64) =
        sqlx::query_as(
            "SELECT halted, actor, batch_size, total FROM hera_migration_rollback_lock_run_v2($1)",
        )
        .bind(run)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(
        (halted, read_actor, batch_size, total),
        (None, actor, 64, migrated)
    );
    const NEXT: &str = "SELECT n.ids, n.next_cursor, n.exhausted
                          FROM hera_migration_rollback_lock_run_v2($1) r,
                               hera_migration_rollback_next_v2($1, r.organization_id, r.run_date,
                                                               r.rollback_state, $2) n";
    let (ids, cursor, exhausted): (Vec<Uuid>, serde_json::Value, bool) = sqlx::query_as(NEXT)
        .bind(run)
        .bind(10)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!((ids.as_slice(), exhausted), (&trail[..10], false));
    assert_eq!(cursor["offset"], 10, "{cursor}");
    let (all, _, exhausted): (Vec<Uuid>, serde_json::Value, bool) = sqlx::query_as(NEXT)
        .bind(run)
        .bind(migrated as i32 + 1)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!((all, exhausted), (trail.clone(), true));
    let (retry, retrying, left): (Vec<Uuid>, bool, serde_json::Value) = sqlx::query_as(
        "SELECT ids, retrying, retry_left FROM hera_migration_rollback_next_v2($1, $2, now(), $3, 2)",
    )
    .bind(run)
    .bind(org)
    .bind(json!({"retry_ids": [trail[5], trail[6], trail[7]]}))
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(
        (retry, retrying, left),
        (trail[5..7].to_vec(), true, json!([trail[7]]))
    );

    const LOCK: &str = "SELECT hera_migration_rollback_lock_originals_v2($1, $2, $3)";
    let locked: Vec<Uuid> = sqlx::query_scalar(LOCK)
        .bind(run)
        .bind(org)
        .bind(&ids)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(locked, sorted, "all ten are still migrated by the run");
    const PROOF: &str = "SELECT hera_migration_rollback_verify_v2(array_agg(id),
                                    array_agg((metadata ->> 'reversal_id')::uuid),
                                    array_agg((metadata ->> 'migrated_to')::uuid))
                           FROM universal_transactions WHERE id = ANY ($1)";
    let proof: serde_json::Value = sqlx::query_scalar(PROOF)
        .bind(&ids)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(proof, json!([]));
    tx.commit().await.unwrap();
    assert_eq!(
        copies_in_effect(&pool, org, run).await,
        (migrated, migrated),
        "nothing was written"
    );

    // A batch restores the first ten: locked alone again, they are left out,
    // and the walk goes on after them.
    let batch: serde_json::Value =
        sqlx::query_scalar("SELECT hera_migration_rollback_batch_v2($1, 10)")
            .bind(run)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(batch["restored"], 10);
    let locked: Vec<Uuid> = sqlx::query_scalar(LOCK)
        .bind(run)
        .bind(org)
        .bind(&ids)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(locked.is_empty(), "already restored: {locked:?}");
    let (next, _, _): (Vec<Uuid>, serde_json::Value, bool) = sqlx::query_as(NEXT)
        .bind(run)
        .bind(10)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(next, trail[10..20]);

    // A repost changed since the migration: the proof names its original.
    sqlx::query(
        "UPDATE universal_transaction_lines SET line_amount = line_amount + 1
          WHERE id = (SELECT l.id FROM universal_transaction_lines l
                        JOIN universal_transactions o ON (o.metadata ->> 'migrated_to')::uuid = l.transaction_id
                       WHERE o.id = $1 AND l.smart_code LIKE '%.GL.%' ORDER BY l.line_number LIMIT 1)",
    )
    .bind(trail[20])
    .execute(&pool)
    .await
    .unwrap();
    let proof: serde_json::Value = sqlx::query_scalar(PROOF)
        .bind(&trail[20..22])
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(proof.as_array().map(Vec::len), Some(1), "{proof}");
    assert_eq!(proof[0]["transaction_id"], json!(trail[20]));
    assert_eq!(proof[0]["rule"], "copies_changed");

    sql::set_state(&pool, run, "PAUSED", None).await;
    let halted: serde_json::Value =
        sqlx::query_scalar("SELECT halted FROM hera_migration_rollback_lock_run_v2($1)")
            .bind(run)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(halted["halted"], "PAUSED");
    assert_eq!(sql::call(&pool, ROLLBACK_BATCH, run).await, halted);
}
