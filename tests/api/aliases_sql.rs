//! Reporting aliases at the SQL level: metadata only, batched, idempotent,
//! reversible (the removal by rollback is in rollback_sql.rs).
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::sql::{self, Scene};

async fn apply(pool: &PgPool, org: Uuid, mappings: Value) -> Result<Value, sqlx::Error> {
    sqlx::query_scalar("SELECT hera_migration_apply_reporting_aliases_v2($1, $2)")
        .bind(org)
        .bind(mappings)
        .fetch_one(pool)
        .await
}

/// Everything of the organization but the bookkeeping rows, as text.
async fn business_rows(pool: &PgPool, org: Uuid) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT t::text FROM universal_transactions t
          WHERE organization_id = $1 AND transaction_type NOT LIKE 'MIGRATION_%' ORDER BY id",
    )
    .bind(org)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn default_aliases_cover_every_v1_candidate_once_and_reapplying_changes_nothing() {
    let Scene {
        _db,
        pool,
        org,
        actor,
    } = sql::scene(150).await;
    let ledger = sql::trial_balance(&pool, org).await;
    // A migration first: its reversals and reposts must never be aliased.
    let (_run, migrated) = sql::migrate(&pool, org, actor, 50).await;
    let candidates = sql::candidates(&pool, org).await;
    assert!(migrated > 0 && !candidates.is_empty());

    let first = apply(&pool, org, json!([])).await.unwrap();
    assert_eq!(first["transactions_aliased"], candidates.len(), "{first}");
    assert_eq!(first["already_aliased"], 0);
    for mapping in first["mappings"].as_array().unwrap() {
        let source = mapping["source_smart_code"].as_str().unwrap();
        assert_eq!(
            mapping["target_smart_code"].as_str().unwrap(),
            format!("{}.v2", &source[..source.len() - 3]),
            "the default maps each v1 code to its v2 form"
        );
    }
    let (aliased, wrong): (Vec<Uuid>, i64) = sqlx::query_as(
        "SELECT coalesce(array_agg(id ORDER BY id) FILTER (WHERE metadata ? 'reporting_smart_code'), '{}'),
                count(*) FILTER (WHERE metadata ? 'reporting_smart_code'
                                   AND (metadata ->> 'original_smart_code' <> smart_code
                                        OR metadata ->> 'alias_version' <> 'v2.1'
                                        OR metadata ->> 'alias_batch_id' <> $2
                                        OR NOT metadata ? 'alias_created_at'))
           FROM universal_transactions WHERE organization_id = $1",
    )
    .bind(org)
    .bind(first["alias_batch_id"].as_str().unwrap())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        aliased, candidates,
        "exactly the candidates, not reversals or reposts"
    );
    assert_eq!(wrong, 0);
    assert_eq!(
        sql::candidates(&pool, org).await,
        candidates,
        "an alias does not change candidacy"
    );
    assert_eq!(
        sql::trial_balance(&pool, org).await,
        ledger,
        "no data moved"
    );

    let rows = business_rows(&pool, org).await;
    let second = apply(&pool, org, json!([])).await.unwrap();
    assert_eq!(second["transactions_aliased"], 0, "{second}");
    assert_eq!(second["already_aliased"], candidates.len());
    assert_eq!(
        business_rows(&pool, org).await,
        rows,
        "re-applying rewrites nothing"
    );

    let audit: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM universal_transactions
          WHERE organization_id = $1 AND transaction_type = 'MIGRATION_OPERATION'
            AND metadata ->> 'operation_type' = 'ALIAS'",
    )
    .bind(org)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(audit, 2, "one ALIAS audit row per call");
}

#[tokio::test]
async fn explicit_mappings_alias_only_their_sources_and_count_per_mapping() {
    let Scene { _db, pool, org, .. } = sql::scene(120).await;
    // Codes compare normalized: real data holds both .v1 and .V1.
    let (code, count): (String, i64) = sqlx::query_as(
        "SELECT hera_smart_code_normalize(smart_code), count(*) FROM universal_transactions
          WHERE organization_id = $1 AND transaction_type NOT LIKE 'MIGRATION_%'
            AND transaction_status = 'posted'
          GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1",
    )
    .bind(org)
    .fetch_one(&pool)
    .await
    .unwrap();
    let target = "HERA.REPORTING.ALIAS.TEST.SALE.v2";
    let unused = json!({"source_smart_code": "HERA.NOTHING.HERE.AT.ALL.v1",
                        "target_smart_code": "HERA.NOTHING.HERE.AT.ALL.v2"});
    let mappings = json!([{"source_smart_code": code, "target_smart_code": target}, unused]);
    let result = apply(&pool, org, mappings.clone()).await.unwrap();
    assert_eq!(result["transactions_aliased"], count, "{result}");
    let per_mapping = result["mappings"].as_array().unwrap();
    assert_eq!(
        per_mapping.len(),
        2,
        "a mapping that matched nothing is still listed"
    );
    let hit = per_mapping
        .iter()
        .find(|m| m["target_smart_code"] == target)
        .unwrap();
    assert_eq!(hit["transactions_aliased"], count);
    let miss = per_mapping
        .iter()
        .find(|m| m["target_smart_code"] != target)
        .unwrap();
    assert_eq!(
        (
            miss["transactions_aliased"].as_i64(),
            miss["already_aliased"].as_i64()
        ),
        (Some(0), Some(0))
    );
    let others: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM universal_transactions
          WHERE organization_id = $1 AND metadata ? 'reporting_smart_code'
            AND (hera_smart_code_normalize(smart_code) <> $2
                 OR metadata ->> 'reporting_smart_code' <> $3)",
    )
    .bind(org)
    .bind(&code)
    .bind(target)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        others, 0,
        "only the mapped source is aliased, to its target"
    );

    // Paging the batch function by hand: a small limit, the cursor passed back.
    let alias_batch = Uuid::new_v4();
    let other_target = "HERA.REPORTING.ALIAS.TEST.OTHER.v2";
    let remap = json!([{"source_smart_code": code, "target_smart_code": other_target}]);
    let (mut cursor, mut aliased, mut calls) = (Value::Null, 0, 0);
    loop {
        let batch: Value = sqlx::query_scalar(
            "SELECT hera_migration_apply_reporting_aliases_batch_v2($1, $2, $3, NULL, $4, 7)",
        )
        .bind(org)
        .bind(&remap)
        .bind(alias_batch)
        .bind(if cursor.is_null() {
            None
        } else {
            Some(cursor.clone())
        })
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(batch["transactions"].as_i64().unwrap() <= 7);
        aliased += batch["transactions_aliased"].as_i64().unwrap();
        cursor = batch["cursor"].clone();
        calls += 1;
        if batch["done"] == true {
            break;
        }
    }
    assert_eq!(aliased, count, "a new target re-points every alias once");
    assert_eq!(calls, count / 7 + 1);

    // Invalid mappings: 22023, nothing written.
    let rows = business_rows(&pool, org).await;
    for bad in [
        json!({"source_smart_code": code}),
        json!([{"source_smart_code": code}]),
        json!([{"source_smart_code": "not a code", "target_smart_code": target}]),
    ] {
        let error = apply(&pool, org, bad).await.unwrap_err();
        assert_eq!(sql::sqlstate(error), "22023");
    }
    assert_eq!(business_rows(&pool, org).await, rows);
}
