//! Phase 1: the preview is exact (equal to a plain SQL truth), read-only, and
//! the same from the RPC and from psql.
use std::collections::BTreeMap;

use hera_migrate::{proto::*, seed};
use sqlx::PgPool;
use tonic::Code;
use uuid::Uuid;

use crate::support::{
    TestApp, TestDatabase, World, as_user, fixtures, fixtures::row_counts, runs::preview_2024,
};

const FROM: &str = "2024-01-01";
const TO: &str = "2024-12-31";

async fn seeded(
    db: &TestDatabase,
    organizations: u32,
    transactions: u64,
) -> (PgPool, seed::SeedReport) {
    let pool = db.pool().await;
    let report = fixtures::seed_2024(&pool, organizations, transactions, 7).await;
    (pool, report)
}

/// A caller allowed to preview: the organization's first user (any member may).
fn member(report: &seed::SeedReport, index: usize) -> (Uuid, Uuid) {
    let org = &report.organizations[index];
    (org.id, org.users[0].id)
}

/// The candidates by plain SQL, written independently of the function.
const TRUTH: &str = r#"
SELECT upper(regexp_replace(t.smart_code, '\.[vV]1$', '')) || '.v1' AS source,
       coalesce(p.metadata ->> 'period_code', '') AS period_code,
       coalesce(p.metadata ->> 'status', 'UNASSIGNED') AS status,
       count(*) AS transactions,
       sum(t.total_amount)::text AS amount
  FROM universal_transactions t
  LEFT JOIN LATERAL (
      SELECT e.metadata FROM core_entities e
       WHERE e.organization_id = t.organization_id AND e.entity_type = 'FISCAL_PERIOD'
         AND (e.id = t.fiscal_period_entity_id
              OR (t.fiscal_period_entity_id IS NULL
                  AND (t.transaction_date AT TIME ZONE 'UTC')::date
                      BETWEEN (e.metadata ->> 'start_date')::date AND (e.metadata ->> 'end_date')::date))
       LIMIT 1
  ) p ON true
 WHERE t.organization_id = $1
   AND (t.transaction_date AT TIME ZONE 'UTC')::date BETWEEN $2::date AND $3::date
   AND t.transaction_status = 'posted'
   AND t.smart_code ~ '\.[vV]1$'
   AND NOT (t.metadata ? 'reversal_of')
 GROUP BY 1, 2, 3
"#;

type Truth = Vec<(String, String, String, i64, String)>;

async fn truth(pool: &PgPool, organization: Uuid) -> Truth {
    sqlx::query_as(TRUTH)
        .bind(organization)
        .bind(FROM)
        .bind(TO)
        .fetch_all(pool)
        .await
        .unwrap()
}

/// md5 of every row of the six tables: equal before and after means untouched.
async fn checksum(pool: &PgPool) -> String {
    sqlx::query_scalar(
        "SELECT md5(string_agg(x, '|' ORDER BY x)) FROM (
            SELECT t::text AS x FROM core_organizations t UNION ALL SELECT t::text FROM core_entities t
            UNION ALL SELECT t::text FROM core_dynamic_data t UNION ALL SELECT t::text FROM core_relationships t
            UNION ALL SELECT t::text FROM universal_transactions t
            UNION ALL SELECT t::text FROM universal_transaction_lines t) rows",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn totals_breakdown_and_periods_equal_sql_truth_and_nothing_changes() {
    let db = TestDatabase::create().await;
    let app = TestApp::spawn(db.options()).await;
    let (pool, report) = seeded(&db, 2, 600).await;
    let (org, user) = member(&report, 0);
    let before = checksum(&pool).await;

    let preview = app
        .client()
        .await
        .preview_candidates(as_user(preview_2024(org), user))
        .await
        .expect("preview")
        .into_inner();
    let truth = truth(&pool, org).await;

    let total: i64 = truth.iter().map(|row| row.3).sum();
    assert_eq!(preview.total_candidates, total);
    assert_eq!(
        preview.total_candidates, 600,
        "every seeded transaction is a candidate"
    );

    let mut by_code: BTreeMap<String, (i64, rust_decimal::Decimal)> = BTreeMap::new();
    let mut by_period: BTreeMap<(String, String), i64> = BTreeMap::new();
    for (source, period, status, transactions, amount) in &truth {
        let entry = by_code.entry(source.clone()).or_default();
        entry.0 += transactions;
        entry.1 += amount.parse::<rust_decimal::Decimal>().unwrap();
        *by_period
            .entry((period.clone(), status.clone()))
            .or_default() += transactions;
    }
    let breakdown: BTreeMap<String, (i64, rust_decimal::Decimal)> = preview
        .smart_code_breakdown
        .iter()
        .map(|b| {
            assert_eq!(
                b.target_smart_code,
                b.source_smart_code.replace(".v1", ".v2")
            );
            (
                b.source_smart_code.clone(),
                (b.transaction_count, b.total_amount.parse().unwrap()),
            )
        })
        .collect();
    assert_eq!(breakdown, by_code);

    let periods: BTreeMap<(String, String), i64> = preview
        .fiscal_period_status
        .iter()
        .map(|p| {
            (
                (p.period_code.clone(), p.status().short_name().to_owned()),
                p.affected_transactions,
            )
        })
        .collect();
    assert_eq!(periods, by_period);
    assert!(
        preview
            .fiscal_period_status
            .iter()
            .any(|p| p.status() == FiscalPeriodState::Closed),
        "the seeded closed period is reported"
    );
    assert_eq!(
        preview.candidate_ids.len(),
        600,
        "all 600 fit in the default batch limit of 1000"
    );
    assert!(preview.estimated_processing_time_ms > 0);
    assert!(
        preview.estimate_basis.starts_with("calibration"),
        "{}",
        preview.estimate_basis
    );
    assert_eq!(preview.unbalanced_transactions.unwrap().count, 0);

    assert_eq!(checksum(&pool).await, before, "the preview wrote nothing");
    app.stop().await;
}

/// Inserts one transaction with two GL lines (DR `dr`, CR `cr`).
async fn transaction(
    pool: &PgPool,
    org: &fixtures::Organization,
    smart_code: &str,
    status: &str,
    date: &str,
    metadata: serde_json::Value,
    (dr, cr): (&str, &str),
) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query(
        "WITH header AS (
             INSERT INTO universal_transactions (id, organization_id, transaction_type, transaction_code,
                 transaction_date, total_amount, transaction_status, smart_code, metadata, created_by, updated_by)
             VALUES ($1, $2, 'SALE', 'T-' || $1::text, $3::timestamptz, $6::numeric, $4, $5, $7, $8, $8)
             RETURNING id)
         INSERT INTO universal_transaction_lines (organization_id, transaction_id, line_number, line_type,
             line_amount, smart_code, line_data, created_by, updated_by)
         SELECT $2, id, n, 'GL', amount::numeric, 'HERA.SALON.POS.GL.LINE.v1',
                jsonb_build_object('side', side, 'account_code', account), $8, $8
           FROM header, (VALUES (1, 'DR', $6, '1100'), (2, 'CR', $9, '4100')) AS l (n, side, amount, account)",
    )
    .bind(id)
    .bind(org.id)
    .bind(date)
    .bind(status)
    .bind(smart_code)
    .bind(dr)
    .bind(metadata)
    .bind(org.owner)
    .bind(cr)
    .execute(pool)
    .await
    .unwrap();
    id
}

#[tokio::test]
async fn reversals_v2_upper_case_other_organizations_and_unbalanced_are_handled() {
    let db = TestDatabase::create().await;
    let app = TestApp::spawn(db.options()).await;
    let pool = db.pool().await;
    let (org, other) = (
        fixtures::organization(&pool).await,
        fixtures::organization(&pool).await,
    );
    let none = serde_json::json!({});
    let sale = "HERA.SALON.POS.TXN.SALE.v1";
    let balanced = ("10.00", "10.00");

    let lower = transaction(
        &pool,
        &org,
        sale,
        "posted",
        "2024-03-01",
        none.clone(),
        balanced,
    )
    .await;
    let upper = transaction(
        &pool,
        &org,
        "HERA.SALON.POS.TXN.SALE.V1",
        "posted",
        "2024-03-02",
        none.clone(),
        balanced,
    )
    .await;
    let unbalanced = transaction(
        &pool,
        &org,
        sale,
        "posted",
        "2024-03-03",
        none.clone(),
        ("10.00", "9.00"),
    )
    .await;
    transaction(
        &pool,
        &org,
        "HERA.SALON.POS.TXN.SALE.v2",
        "posted",
        "2024-03-04",
        none.clone(),
        balanced,
    )
    .await;
    transaction(
        &pool,
        &org,
        sale,
        "reversed",
        "2024-03-05",
        none.clone(),
        balanced,
    )
    .await;
    transaction(
        &pool,
        &org,
        sale,
        "posted",
        "2024-03-06",
        serde_json::json!({"reversal_of": lower}),
        balanced,
    )
    .await;
    transaction(
        &pool,
        &org,
        sale,
        "posted",
        "2025-01-01",
        none.clone(),
        balanced,
    )
    .await;
    transaction(
        &pool,
        &other,
        sale,
        "posted",
        "2024-03-01",
        none.clone(),
        balanced,
    )
    .await;

    let preview = app
        .client()
        .await
        .preview_candidates(as_user(preview_2024(org.id), org.staff))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(preview.total_candidates, 3);
    assert_eq!(
        preview.smart_code_breakdown.len(),
        1,
        "{:?}",
        preview.smart_code_breakdown
    );
    let sales = &preview.smart_code_breakdown[0];
    assert_eq!(
        (sales.source_smart_code.as_str(), sales.transaction_count),
        (sale, 3)
    );
    assert_eq!(
        sales.total_amount.parse::<rust_decimal::Decimal>().unwrap(),
        "30".parse().unwrap()
    );
    assert_eq!(
        preview.candidate_ids,
        [lower, upper, unbalanced].map(|id| id.to_string())
    );
    let unbalanced_report = preview.unbalanced_transactions.unwrap();
    assert_eq!(
        (unbalanced_report.count, unbalanced_report.transaction_ids),
        (1, vec![unbalanced.to_string()])
    );
    assert_eq!(
        preview.risk_assessment.unwrap().data_integrity_risk(),
        RiskLevel::High
    );
    assert_eq!(preview.fiscal_period_status.len(), 1);
    assert_eq!(
        preview.fiscal_period_status[0].status(),
        FiscalPeriodState::Unassigned
    );

    // An explicit mapping to nothing reports the code as not migratable.
    let mut excluded = preview_2024(org.id);
    excluded.smart_code_mappings = vec![SmartCodeMapping {
        source_smart_code: sale.into(),
        target_smart_code: String::new(),
    }];
    let excluded = app
        .client()
        .await
        .preview_candidates(as_user(excluded, org.staff))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(excluded.total_candidates, 0);
    assert_eq!(excluded.not_migratable.len(), 1);
    assert_eq!(excluded.not_migratable[0].transaction_count, 3);
    app.stop().await;
}

#[tokio::test]
async fn the_fingerprint_is_stable_and_changes_when_a_candidate_changes() {
    let db = TestDatabase::create().await;
    let app = TestApp::spawn(db.options()).await;
    let (pool, report) = seeded(&db, 1, 200).await;
    let (org, user) = member(&report, 0);
    let mut client = app.client().await;
    let mut fingerprint = async || {
        client
            .preview_candidates(as_user(preview_2024(org), user))
            .await
            .unwrap()
            .into_inner()
            .plan_fingerprint
    };
    let first = fingerprint().await;
    assert_eq!(fingerprint().await, first, "same data, same fingerprint");

    sqlx::query(
        "UPDATE universal_transactions SET total_amount = total_amount + 1, updated_at = now()
          WHERE id = (SELECT id FROM universal_transactions WHERE organization_id = $1
                       AND transaction_status = 'posted' ORDER BY transaction_date LIMIT 1)",
    )
    .bind(org)
    .execute(&pool)
    .await
    .unwrap();
    assert_ne!(
        fingerprint().await,
        first,
        "a changed candidate changes the fingerprint"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_sql_function_in_psql_and_the_rpc_agree() {
    let db = TestDatabase::create().await;
    let app = TestApp::spawn(db.options()).await;
    let (_pool, report) = seeded(&db, 1, 300).await;
    let (org, user) = member(&report, 0);
    let rpc = app
        .client()
        .await
        .preview_candidates(as_user(preview_2024(org), user))
        .await
        .unwrap()
        .into_inner();

    let url = db.url();
    let sql = format!("SELECT hera_migration_preview_candidates_v2('{org}', '{FROM}', '{TO}')");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("psql")
            .args([&url, "-XAtc", &sql])
            .output()
    })
    .await
    .unwrap()
    .expect("psql is installed with PostgreSQL");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let function: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    assert_eq!(function["total_candidates"], rpc.total_candidates);
    assert_eq!(function["plan_fingerprint"], rpc.plan_fingerprint.as_str());
    assert_eq!(
        function["smart_code_breakdown"].as_array().unwrap().len(),
        rpc.smart_code_breakdown.len()
    );
    for (from_sql, from_rpc) in function["smart_code_breakdown"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&rpc.smart_code_breakdown)
    {
        assert_eq!(
            from_sql["source_smart_code"],
            from_rpc.source_smart_code.as_str()
        );
        assert_eq!(from_sql["transaction_count"], from_rpc.transaction_count);
        assert_eq!(from_sql["total_amount"], from_rpc.total_amount.as_str());
    }
    for (from_sql, from_rpc) in function["fiscal_period_status"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&rpc.fiscal_period_status)
    {
        assert_eq!(from_sql["period_code"], from_rpc.period_code.as_str());
        assert_eq!(
            from_sql["affected_transactions"],
            from_rpc.affected_transactions
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field_and_writes_nothing() {
    let World {
        db: _db,
        app,
        pool,
        org,
    } = World::new().await;
    let mut client = app.client().await;
    let before = row_counts(&pool).await;
    let mapping = |source: &str, target: &str| SmartCodeMapping {
        source_smart_code: source.into(),
        target_smart_code: target.into(),
    };

    let cases: Vec<(PreviewCandidatesRequest, Code, &str)> = vec![
        (
            PreviewCandidatesRequest {
                organization_id: "nope".into(),
                ..preview_2024(org.id)
            },
            Code::InvalidArgument,
            "organization_id",
        ),
        (
            PreviewCandidatesRequest {
                from_date: "2024-12-31".into(),
                to_date: "2024-01-01".into(),
                ..preview_2024(org.id)
            },
            Code::InvalidArgument,
            "from_date",
        ),
        (
            PreviewCandidatesRequest {
                to_date: "yesterday".into(),
                ..preview_2024(org.id)
            },
            Code::InvalidArgument,
            "to_date",
        ),
        (
            PreviewCandidatesRequest {
                batch_limit: -1,
                ..preview_2024(org.id)
            },
            Code::InvalidArgument,
            "batch_limit",
        ),
        (
            PreviewCandidatesRequest {
                batch_limit: 5001,
                ..preview_2024(org.id)
            },
            Code::InvalidArgument,
            "batch_limit",
        ),
        (
            PreviewCandidatesRequest {
                smart_code_mappings: vec![mapping("HERA.SALON.POS.TXN.SALE.v1", "SALE-V2")],
                ..preview_2024(org.id)
            },
            Code::InvalidArgument,
            "smart_code_mappings[0].target_smart_code",
        ),
        (
            PreviewCandidatesRequest {
                smart_code_mappings: vec![
                    mapping("HERA.SALON.POS.TXN.SALE.v1", ""),
                    mapping("HERA.SALON.POS.TXN.SALE.V1", ""),
                ],
                ..preview_2024(org.id)
            },
            Code::InvalidArgument,
            "smart_code_mappings[1].source_smart_code",
        ),
        (
            PreviewCandidatesRequest {
                closed_period_policy: 9,
                ..preview_2024(org.id)
            },
            Code::InvalidArgument,
            "closed_period_policy",
        ),
        (
            preview_2024(Uuid::new_v4()),
            Code::PermissionDenied,
            "organization_id",
        ),
    ];
    for (bad, code, field) in cases {
        let status = client
            .preview_candidates(as_user(bad, org.owner))
            .await
            .expect_err(field);
        assert_eq!(status.code(), code, "{field}: {status:?}");
        assert!(
            status.message().starts_with(field),
            "{field} named in {:?}",
            status.message()
        );
    }
    assert_eq!(row_counts(&pool).await, before);
    app.stop().await;
}

#[tokio::test]
async fn the_estimate_uses_recorded_batch_timings_once_there_are_any() {
    let db = TestDatabase::create().await;
    let app = TestApp::spawn(db.options()).await;
    let (pool, report) = seeded(&db, 1, 100).await;
    let (org, user) = member(&report, 0);
    // What the engine records per executed batch (a MIGRATION_OPERATION row).
    sqlx::query(
        "INSERT INTO universal_transactions (organization_id, transaction_type, transaction_code,
             smart_code, transaction_status, metadata, created_by, updated_by)
         VALUES ($1, 'MIGRATION_OPERATION', 'MIGOP-' || gen_random_uuid(),
                 'HERA.ACCOUNTING.MIGRATION.AUDIT.TRAIL.v2', 'completed',
                 '{\"phase\": \"EXECUTION\", \"transactions\": 1000, \"duration_ms\": 2500}', $2, $2)",
    )
    .bind(org)
    .bind(user)
    .execute(&pool)
    .await
    .unwrap();
    let preview = app
        .client()
        .await
        .preview_candidates(as_user(preview_2024(org), user))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        preview.total_candidates, 100,
        "bookkeeping rows are never candidates"
    );
    // 2.5 ms per transaction, measured, plus the trial balance's read.
    assert!(
        (250..1000).contains(&preview.estimated_processing_time_ms),
        "{}",
        preview.estimated_processing_time_ms
    );
    assert!(
        preview.estimate_basis.starts_with("measured"),
        "{}",
        preview.estimate_basis
    );
    app.stop().await;
}

/// One piece of the preview called alone, as from psql, with the organization
/// as $1 (the pieces are `hera_migration_preview_<what>_v2`, in preview.sql).
async fn piece(pool: &PgPool, sql: &'static str, organization: Uuid) -> serde_json::Value {
    sqlx::query_scalar(sql)
        .bind(organization)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
}

#[tokio::test]
async fn the_pieces_called_alone_agree_with_sql_truth_and_make_up_the_preview() {
    let db = TestDatabase::create().await;
    hera_migrate::db::schema::install(&db.pool().await)
        .await
        .expect("install the schema");
    let (pool, report) = seeded(&db, 1, 300).await;
    let (org, _) = member(&report, 0);
    sqlx::query(
        "UPDATE universal_transactions SET transaction_status = 'draft'
          WHERE id IN (SELECT id FROM universal_transactions WHERE organization_id = $1
                        ORDER BY transaction_date DESC, id LIMIT 4)",
    )
    .bind(org)
    .execute(&pool)
    .await
    .unwrap();
    let truth = truth(&pool, org).await;

    // The one pass: every v1 transaction of the range, grouped; candidates
    // have no status, the others keep theirs.
    let groups = piece(
        &pool,
        "SELECT hera_migration_preview_groups_v2($1, '2024-01-01', '2024-12-31')",
        org,
    )
    .await;
    let count = |status: Option<&str>| -> i64 {
        groups
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| g["status"].as_str() == status)
            .map(|g| g["transactions"].as_i64().unwrap())
            .sum()
    };
    assert_eq!(count(None), truth.iter().map(|row| row.3).sum::<i64>());
    assert_eq!((count(None), count(Some("draft"))), (296, 4));
    let non_candidates = piece(
        &pool,
        "SELECT hera_migration_preview_non_candidates_v2(
                    hera_migration_preview_groups_v2($1, '2024-01-01', '2024-12-31'))",
        org,
    )
    .await;
    assert_eq!(
        non_candidates,
        serde_json::json!([{"status": "draft", "transaction_count": 4}])
    );

    // Mapped, the groups give the breakdown by smart code of the SQL truth.
    let breakdown = piece(
        &pool,
        "SELECT hera_migration_preview_breakdown_v2(hera_migration_preview_mapped_v2(
                    hera_migration_preview_groups_v2($1, '2024-01-01', '2024-12-31'), '[]'))",
        org,
    )
    .await;
    let mut by_code: BTreeMap<String, (i64, rust_decimal::Decimal)> = BTreeMap::new();
    for (source, _, _, transactions, amount) in &truth {
        let entry = by_code.entry(source.clone()).or_default();
        entry.0 += transactions;
        entry.1 += amount.parse::<rust_decimal::Decimal>().unwrap();
    }
    let from_piece: BTreeMap<String, (i64, rust_decimal::Decimal)> = breakdown
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["source_smart_code"].as_str().unwrap().to_owned(),
                (
                    b["transaction_count"].as_i64().unwrap(),
                    b["total_amount"].as_str().unwrap().parse().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(from_piece, by_code);

    // The whole preview is made of the same pieces.
    let whole = piece(
        &pool,
        "SELECT hera_migration_preview_candidates_v2($1, '2024-01-01', '2024-12-31', 1000, '[]',
                                                     ARRAY['posted'], 'SKIP', '{}')",
        org,
    )
    .await;
    assert_eq!(whole["smart_code_breakdown"], breakdown);
    assert_eq!(whole["non_candidates"], non_candidates);
    let totals = piece(
        &pool,
        "SELECT hera_migration_preview_totals_v2($1, hera_migration_preview_mapped_v2(
                    hera_migration_preview_groups_v2($1, '2024-01-01', '2024-12-31'), '[]'))",
        org,
    )
    .await;
    assert_eq!(totals["candidates"], whole["total_candidates"]);
    assert_eq!(totals["candidates"], 296);
    let fingerprint = piece(
        &pool,
        "SELECT to_jsonb(hera_migration_preview_fingerprint_v2($1, '2024-01-01', '2024-12-31',
                    ARRAY['posted'], 'SKIP', hera_migration_preview_mapped_v2(
                        hera_migration_preview_groups_v2($1, '2024-01-01', '2024-12-31'), '[]')))",
        org,
    )
    .await;
    assert_eq!(fingerprint, whole["plan_fingerprint"]);
    let sample = piece(
        &pool,
        "SELECT hera_migration_preview_sample_ids_v2($1, '2024-01-01', '2024-12-31', ARRAY['posted'],
                    ARRAY(SELECT DISTINCT smart_code FROM universal_transactions WHERE organization_id = $1), 5)",
        org,
    )
    .await;
    assert_eq!(
        sample.as_array().unwrap()[..],
        whole["candidate_ids"].as_array().unwrap()[..5],
        "the first five candidates by date, as the preview lists them"
    );
}

#[tokio::test]
async fn the_balance_screen_and_the_unbalanced_called_alone() {
    let World {
        db: _db,
        app,
        pool,
        org,
    } = World::new().await;
    let sale = "HERA.SALON.POS.TXN.SALE.v1";
    let none = serde_json::json!({});
    transaction(
        &pool,
        &org,
        sale,
        "posted",
        "2024-03-01",
        none.clone(),
        ("10.00", "10.00"),
    )
    .await;
    let screen = "SELECT to_jsonb(s) FROM hera_migration_preview_balance_screen_v2($1) s";
    let balanced = piece(&pool, screen, org.id).await;
    assert_eq!(balanced["suspect"], false, "{balanced}");
    assert!(balanced["gl_read_ms"].as_f64().unwrap() >= 0.0);

    let unbalanced = transaction(
        &pool,
        &org,
        sale,
        "posted",
        "2024-03-02",
        none,
        ("10.00", "9.00"),
    )
    .await;
    assert_eq!(piece(&pool, screen, org.id).await["suspect"], true);
    let found = piece(
        &pool,
        "SELECT hera_migration_preview_unbalanced_v2($1, '2024-01-01', '2024-12-31', ARRAY['posted'],
                                                     ARRAY['HERA.SALON.POS.TXN.SALE.v1'])",
        org.id,
    )
    .await;
    assert_eq!(found["count"], 1);
    assert_eq!(found["transaction_ids"], serde_json::json!([unbalanced]));
    assert_eq!(found["quarantine_ids"], serde_json::json!([unbalanced]));
    assert_eq!(
        found["groups"],
        serde_json::json!([{"smart_code": sale, "period_id": null, "keys": false, "fx": false,
                            "transactions": 1, "positive": 1, "negative": 0}])
    );
    let unmigratable = piece(
        &pool,
        "SELECT hera_migration_preview_unbalanced_v2($1, '2024-01-01', '2024-12-31', ARRAY['posted'], '{}')",
        org.id,
    )
    .await;
    assert_eq!(
        (&unmigratable["count"], &unmigratable["quarantine_ids"]),
        (&serde_json::json!(1), &serde_json::json!([])),
        "a code without a target is reported, never quarantined"
    );
    let not_suspect = piece(
        &pool,
        "SELECT hera_migration_preview_unbalanced_v2($1, '2024-01-01', '2024-12-31', ARRAY['posted'],
                                                     ARRAY['HERA.SALON.POS.TXN.SALE.v1'], false)",
        org.id,
    )
    .await;
    assert_eq!(
        not_suspect["count"], 0,
        "when the screen finds no imbalance, nothing is read"
    );
    app.stop().await;
}

/// The first posted candidate in a fiscal period of `status`, by date.
async fn candidate_in(pool: &PgPool, organization: Uuid, status: &str) -> Uuid {
    sqlx::query_scalar(
        "SELECT t.id FROM universal_transactions t
           JOIN hera_migration_fiscal_periods_v2($1) p
             ON (t.transaction_date AT TIME ZONE 'UTC')::date BETWEEN p.start_date AND p.end_date
            AND (t.fiscal_period_entity_id IS NULL OR t.fiscal_period_entity_id = p.id)
          WHERE t.organization_id = $1 AND t.transaction_status = 'posted' AND p.status = $2
          ORDER BY t.transaction_date, t.id LIMIT 1",
    )
    .bind(organization)
    .bind(status)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn the_closed_period_and_quarantine_predictions_called_alone() {
    let db = TestDatabase::create().await;
    hera_migrate::db::schema::install(&db.pool().await)
        .await
        .expect("install the schema");
    let (pool, report) = seeded(&db, 1, 200).await;
    let (org, _) = member(&report, 0);

    let skips: serde_json::Value = sqlx::query_scalar(
        "SELECT jsonb_build_array(
                    hera_migration_preview_skips_closed_v2(true, 'SKIP', true),
                    hera_migration_preview_skips_closed_v2(false, 'SKIP', true),
                    hera_migration_preview_skips_closed_v2(true, 'POST_TO_OPEN_PERIOD', true),
                    hera_migration_preview_skips_closed_v2(true, 'POST_TO_OPEN_PERIOD', false))",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(skips, serde_json::json!([true, false, false, true]));

    // A candidate's period: its fiscal period entity, else the one holding its date.
    let placed = piece(
        &pool,
        "WITH p AS (SELECT * FROM hera_migration_preview_periods_v2($1)),
              month AS (SELECT start_date, id FROM hera_migration_fiscal_periods_v2($1))
         SELECT jsonb_build_array(
                    hera_migration_preview_period_of_v2(NULL, '2024-03-15', p.period_ids, p.starts,
                                                        p.start_ids, p.ends)
                        = (SELECT id FROM month WHERE start_date = '2024-03-01'),
                    hera_migration_preview_period_of_v2((SELECT id FROM month WHERE start_date = '2024-08-01'),
                                                        '2024-03-15', p.period_ids, p.starts, p.start_ids, p.ends)
                        = (SELECT id FROM month WHERE start_date = '2024-08-01'),
                    hera_migration_preview_period_of_v2(NULL, '2031-01-01', p.period_ids, p.starts,
                                                        p.start_ids, p.ends) IS NULL)
           FROM p",
        org,
    )
    .await;
    assert_eq!(placed, serde_json::json!([true, true, true]));

    const IDS: &str = "SELECT hera_migration_preview_quarantine_ids_v2($1, '2024-01-01', '2024-12-31', ARRAY['posted'],
                           '[]', $2, false, hera_migration_preview_groups_v2($1, '2024-01-01', '2024-12-31'))";
    const OUTCOMES: &str = "SELECT hera_migration_preview_outcomes_v2($1, hera_migration_preview_mapped_v2(
                                hera_migration_preview_groups_v2($1, '2024-01-01', '2024-12-31'), '[]'),
                                '{}', $2, false)";
    let call = async |sql: &'static str, policy: &str| -> serde_json::Value {
        sqlx::query_scalar(sql)
            .bind(org)
            .bind(policy)
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert_eq!(
        call(IDS, "SKIP").await,
        serde_json::json!({}),
        "no group shows a rule that applies: nothing is screened"
    );

    let (open, closed) = (
        candidate_in(&pool, org, "OPEN").await,
        candidate_in(&pool, org, "CLOSED").await,
    );
    sqlx::query(
        "UPDATE universal_transactions SET metadata = coalesce(metadata, '{}') || '{\"migrated_to\": \"elsewhere\"}'
          WHERE id = ANY ($1)",
    )
    .bind(&[open, closed][..])
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(
        call(IDS, "SKIP").await,
        serde_json::json!({"metadata_keys": [open]}),
        "a candidate the policy skips is not quarantined"
    );
    assert_eq!(
        call(IDS, "POST_TO_OPEN_PERIOD").await,
        serde_json::json!({"metadata_keys": [closed, open]}),
        "posted to the open period, both are screened (closed ones come first: earlier dates)"
    );

    let candidates = piece(
        &pool,
        "SELECT hera_migration_preview_totals_v2($1, hera_migration_preview_mapped_v2(
                    hera_migration_preview_groups_v2($1, '2024-01-01', '2024-12-31'), '[]'))",
        org,
    )
    .await["candidates"]
        .as_i64()
        .unwrap();
    for (policy, keys) in [("SKIP", 1), ("POST_TO_OPEN_PERIOD", 2)] {
        let outcomes = call(OUTCOMES, policy).await;
        assert_eq!(
            outcomes["by_rule"]["metadata_keys"], keys,
            "{policy}: {outcomes}"
        );
        assert_eq!(outcomes["quarantined"], keys, "{policy}: {outcomes}");
        let decided: i64 = [
            "migrated",
            "skipped_closed",
            "skipped_unmapped",
            "quarantined",
        ]
        .iter()
        .map(|k| outcomes[k].as_i64().unwrap())
        .sum();
        assert_eq!(
            decided, candidates,
            "{policy}: every candidate has one outcome"
        );
    }
    assert_eq!(
        call(OUTCOMES, "POST_TO_OPEN_PERIOD").await["skipped_closed"],
        0
    );
}

#[tokio::test]
async fn the_time_estimate_called_alone() {
    let World {
        db: _db,
        app,
        pool,
        org,
    } = World::new().await;
    // No batch timings recorded: the calibration's sample batch speaks; 400
    // of 1,000 to be written at 0.5 ms each, 600 only read at a tenth of
    // that, plus the 10 ms the GL lines took to read (what reading the trial
    // balance beside the first batches adds).
    let calibrated = piece(
        &pool,
        "SELECT hera_migration_preview_estimate_v2($1, 1000, 400, 10,
                    '{\"transactions\": 500, \"written\": 250, \"batch_ms\": 125}')",
        org.id,
    )
    .await;
    assert_eq!(calibrated["ms"], 240, "{calibrated}");
    assert!(
        calibrated["basis"]
            .as_str()
            .unwrap()
            .starts_with("calibration"),
        "{calibrated}"
    );
    let nothing = piece(
        &pool,
        "SELECT hera_migration_preview_estimate_v2($1, 0, 0, 10, NULL)",
        org.id,
    )
    .await;
    assert_eq!(
        nothing,
        serde_json::json!({"ms": 0, "basis": "no candidates"})
    );
    app.stop().await;
}

/// A candidate in no fiscal period lies in no closed one: a batch migrates
/// it, and the prediction says so (it used to count it nowhere).
#[tokio::test]
async fn candidates_in_no_period_are_predicted_as_the_batches_migrate_them() {
    let scene = crate::support::sql::scene(150).await;
    // December has no period any more, and its transactions name none.
    sqlx::query(
        "UPDATE core_entities SET entity_type = 'not_a_period'
          WHERE organization_id = $1 AND (metadata ->> 'start_date')::date >= '2024-12-01'
            AND entity_type IN ('period', 'FISCAL_PERIOD')",
    )
    .bind(scene.org)
    .execute(&scene.pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE universal_transactions SET fiscal_period_entity_id = NULL
          WHERE organization_id = $1 AND transaction_date >= '2024-12-01'",
    )
    .bind(scene.org)
    .execute(&scene.pool)
    .await
    .unwrap();
    let preview = piece(
        &scene.pool,
        "SELECT hera_migration_preview_candidates_v2($1, '2024-01-01', '2024-12-31')",
        scene.org,
    )
    .await;
    let unassigned: i64 = preview["fiscal_period_status"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"] == "UNASSIGNED")
        .map(|p| p["affected_transactions"].as_i64().unwrap())
        .sum();
    assert!(
        unassigned > 0,
        "December's candidates are in no period: {preview:#}"
    );
    let prediction = &preview["prediction"];
    let (_, migrated) = crate::support::sql::migrate(&scene.pool, scene.org, scene.actor, 40).await;
    assert_eq!(
        prediction["migrated"].as_i64().unwrap(),
        migrated,
        "{prediction:#}"
    );
    let accounted = [
        "migrated",
        "skipped_closed",
        "skipped_unmapped",
        "quarantined",
    ]
    .iter()
    .map(|k| prediction[*k].as_i64().unwrap())
    .sum::<i64>();
    assert_eq!(
        accounted,
        preview["total_candidates"].as_i64().unwrap(),
        "every candidate predicted somewhere: {prediction:#}"
    );
}
