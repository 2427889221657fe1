//! seed-demo against a real PostgreSQL: each test seeds a fresh database
//! holding the HERA schema (the harness's, from DATABASE_URL or the embedded
//! cluster) and checks every rule HERA puts on the rows.
use std::future::Future;

use chrono::NaiveDate;
use hera_migrate::{
    error::Error,
    seed::{
        MAX_LINES, MAX_ORGANIZATIONS, MAX_TRANSACTIONS, PeriodStatusCounts, SeedParams, SeedReport,
        seed_demo, seed_in_chunks,
    },
};
use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::TestDatabase;

/// Runs `body` against a fresh database with the HERA schema (plus our
/// indexes when `indexes`); the harness drops the database afterwards.
async fn with_database<F, Fut>(indexes: bool, body: F)
where
    F: FnOnce(PgPool) -> Fut,
    Fut: Future<Output = ()>,
{
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    let mut install = vec![
        include_str!("../../sql/functions/smart_code.sql"),
        include_str!("../../sql/schema/tables.sql"),
    ];
    if indexes {
        install.push(include_str!("../../sql/schema/indexes.sql"));
    }
    for sql in install {
        sqlx::raw_sql(sql)
            .execute(&pool)
            .await
            .expect("install the schema");
    }
    body(pool.clone()).await;
    pool.close().await;
}

fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn params(organizations: u32, transactions: u64, lines: u32, seed: i64) -> SeedParams {
    SeedParams {
        organizations,
        transactions,
        lines,
        from: date("2024-01-01"),
        to: date("2024-12-31"),
        seed,
    }
}

async fn count(pool: &PgPool, sql: &'static str, orgs: &[Uuid]) -> i64 {
    sqlx::query_scalar(sql)
        .bind(orgs)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{e}: {sql}"))
}

fn org_ids(report: &SeedReport) -> Vec<Uuid> {
    report.organizations.iter().map(|o| o.id).collect()
}

/// Every rule the brief lists, checked in SQL over the organizations of `report`.
async fn check_report(pool: &PgPool, p: &SeedParams, report: &SeedReport) {
    let orgs = org_ids(report);
    let n_orgs = i64::from(p.organizations);
    let txns = p.transactions as i64;
    let lines = txns * i64::from(p.lines);

    // The report's own counts.
    assert_eq!(report.organizations.len() as i64, n_orgs);
    assert_eq!(report.totals.transactions as i64, n_orgs * txns);
    assert_eq!(report.totals.lines as i64, n_orgs * lines);
    for org in &report.organizations {
        assert_eq!(org.transactions as i64, txns, "{}", org.code);
        assert_eq!(org.lines as i64, lines, "{}", org.code);
        assert_eq!(org.users.len(), 3);
        assert!(org.period_status.closed >= 1, "{}", org.code);
        assert!(org.code.contains(&report.run_tag));
    }

    // Counts in the database, per organization.
    for org in &report.organizations {
        let one = [org.id];
        assert_eq!(
            count(
                pool,
                "SELECT count(*) FROM universal_transactions WHERE organization_id = ANY($1)",
                &one
            )
            .await,
            txns
        );
        assert_eq!(
            count(
                pool,
                "SELECT count(*) FROM universal_transaction_lines WHERE organization_id = ANY($1)",
                &one
            )
            .await,
            lines
        );
        assert_eq!(
            count(pool, "SELECT count(*) FROM core_entities WHERE organization_id = ANY($1) AND entity_type = 'FISCAL_PERIOD'", &one).await,
            org.fiscal_periods.len() as i64
        );
        assert_eq!(
            count(pool, "SELECT count(*) FROM core_entities WHERE organization_id = ANY($1) AND entity_type = 'GL_ACCOUNT'", &one).await,
            org.gl_accounts.len() as i64
        );
        assert_eq!(
            count(pool, "SELECT count(*) FROM core_entities WHERE organization_id = ANY($1) AND entity_type = 'ORGANIZATION'", &one).await,
            1
        );
    }
    let zero: &[(&str, &'static str)] = &[
        (
            "unbalanced transactions, or total_amount not the DR total",
            "SELECT count(*) FROM (
                 SELECT t.id, t.total_amount,
                        coalesce(sum(l.line_amount) FILTER (WHERE l.line_data ->> 'side' = 'DR'), 0) AS dr,
                        coalesce(sum(l.line_amount) FILTER (WHERE l.line_data ->> 'side' = 'CR'), 0) AS cr
                 FROM universal_transactions t
                 JOIN universal_transaction_lines l ON l.transaction_id = t.id
                 WHERE t.organization_id = ANY($1) AND l.smart_code LIKE '%.GL.%'
                 GROUP BY t.id, t.total_amount
             ) x
             WHERE x.dr <> x.cr OR x.total_amount <> x.dr OR x.dr <= 0",
        ),
        (
            "lines that are not well-formed GL lines",
            "SELECT count(*) FROM universal_transaction_lines l
             LEFT JOIN core_entities a ON a.id = l.entity_id
             WHERE l.organization_id = ANY($1)
               AND (l.smart_code NOT LIKE '%.GL.%'
                    OR l.line_data ->> 'side' IS NULL
                    OR l.line_data ->> 'side' NOT IN ('DR', 'CR')
                    OR l.line_amount IS NULL OR l.line_amount <= 0
                    OR l.line_amount <> round(l.line_amount, 2)
                    OR l.quantity * l.unit_amount <> l.line_amount
                    OR l.line_type <> 'GL'
                    OR a.id IS NULL
                    OR a.entity_type <> 'GL_ACCOUNT'
                    OR a.organization_id <> l.organization_id
                    OR a.entity_code <> l.line_data ->> 'account_code')",
        ),
        (
            "transactions with a bad header",
            "SELECT count(*) FROM universal_transactions t
             WHERE t.organization_id = ANY($1)
               AND (t.transaction_type <> upper(t.transaction_type)
                    OR t.transaction_status <> 'posted'
                    OR t.transaction_currency_code <> 'USD'
                    OR t.posting_period_code <> to_char(t.transaction_date AT TIME ZONE 'UTC', 'YYYY-MM')
                    OR t.fiscal_year <> extract(year FROM t.transaction_date AT TIME ZONE 'UTC')
                    OR t.fiscal_period <> extract(month FROM t.transaction_date AT TIME ZONE 'UTC')
                    OR (t.metadata ->> 'seeded')::boolean IS NOT TRUE
                    OR t.transaction_code IS NULL)",
        ),
        (
            "line smart codes whose version suffix differs from their header's",
            "SELECT count(*) FROM universal_transaction_lines l
             JOIN universal_transactions t ON t.id = l.transaction_id
             WHERE t.organization_id = ANY($1)
               AND substring(l.smart_code FROM '\\.[vV][0-9]+$')
                   <> substring(t.smart_code FROM '\\.[vV][0-9]+$')",
        ),
        (
            "fiscal_period_entity_id not the period of the transaction date",
            "SELECT count(*) FROM universal_transactions t
             JOIN core_entities p ON p.id = t.fiscal_period_entity_id
             WHERE t.organization_id = ANY($1)
               AND (p.entity_type <> 'FISCAL_PERIOD'
                    OR p.organization_id <> t.organization_id
                    OR p.metadata ->> 'period_code' <> t.posting_period_code
                    OR (t.transaction_date AT TIME ZONE 'UTC')::date
                       NOT BETWEEN (p.metadata ->> 'start_date')::date AND (p.metadata ->> 'end_date')::date)",
        ),
        (
            "transactions not created by their organization's owner",
            "SELECT count(*) FROM universal_transactions t
             WHERE t.organization_id = ANY($1)
               AND NOT EXISTS (
                   SELECT 1 FROM core_relationships r
                   WHERE r.organization_id = t.organization_id
                     AND r.relationship_type = 'MEMBER_OF'
                     AND r.relationship_data ->> 'role' = 'ORG_OWNER'
                     AND r.from_entity_id = t.created_by
                     AND t.updated_by = t.created_by)",
        ),
        (
            "invalid smart codes",
            "SELECT (SELECT count(*) FROM core_entities
                     WHERE (organization_id = ANY($1) OR created_by IN (
                            SELECT created_by FROM core_organizations WHERE id = ANY($1)))
                       AND hera_smart_code_is_valid(smart_code) IS NOT TRUE)
                  + (SELECT count(*) FROM core_relationships
                     WHERE organization_id = ANY($1) AND hera_smart_code_is_valid(smart_code) IS NOT TRUE)
                  + (SELECT count(*) FROM universal_transactions
                     WHERE organization_id = ANY($1) AND hera_smart_code_is_valid(smart_code) IS NOT TRUE)
                  + (SELECT count(*) FROM universal_transaction_lines
                     WHERE organization_id = ANY($1) AND hera_smart_code_is_valid(smart_code) IS NOT TRUE)",
        ),
        (
            // The rule itself, independently of hera_smart_code_is_valid.
            "smart codes not matching the HERA pattern",
            "SELECT count(*) FROM (
                 SELECT smart_code FROM core_entities WHERE organization_id = ANY($1)
                 UNION ALL SELECT e.smart_code FROM core_entities e
                     JOIN core_relationships r ON r.from_entity_id = e.id WHERE r.organization_id = ANY($1)
                 UNION ALL SELECT smart_code FROM core_relationships WHERE organization_id = ANY($1)
                 UNION ALL SELECT smart_code FROM universal_transactions WHERE organization_id = ANY($1)
                 UNION ALL SELECT smart_code FROM universal_transaction_lines WHERE organization_id = ANY($1)
             ) c
             WHERE c.smart_code IS NULL
                OR c.smart_code !~ '^HERA\\.[A-Z0-9]{3,15}(?:\\.[A-Z0-9_]{2,30}){3,8}\\.[vV][0-9]+$'",
        ),
        (
            "null created_by / updated_by",
            "SELECT (SELECT count(*) FROM core_organizations WHERE created_by IS NULL OR updated_by IS NULL)
                  + (SELECT count(*) FROM core_entities WHERE created_by IS NULL OR updated_by IS NULL)
                  + (SELECT count(*) FROM core_relationships WHERE created_by IS NULL OR updated_by IS NULL)
                  + (SELECT count(*) FROM universal_transactions WHERE created_by IS NULL OR updated_by IS NULL)
                  + (SELECT count(*) FROM universal_transaction_lines WHERE created_by IS NULL OR updated_by IS NULL)
                  + 0 * cardinality($1::uuid[])",
        ),
        (
            "rows created by someone who is not a USER entity",
            "SELECT count(*) FROM (
                 SELECT created_by AS u FROM core_organizations WHERE id = ANY($1)
                 UNION SELECT updated_by FROM core_organizations WHERE id = ANY($1)
                 UNION SELECT created_by FROM core_entities WHERE organization_id = ANY($1)
                 UNION SELECT created_by FROM core_relationships WHERE organization_id = ANY($1)
                 UNION SELECT created_by FROM universal_transactions WHERE organization_id = ANY($1)
                 UNION SELECT created_by FROM universal_transaction_lines WHERE organization_id = ANY($1)
             ) c
             WHERE NOT EXISTS (SELECT 1 FROM core_entities e WHERE e.id = c.u AND e.entity_type = 'USER')",
        ),
        (
            "bad memberships",
            "SELECT count(*) FROM core_relationships r
             JOIN core_entities u ON u.id = r.from_entity_id
             JOIN core_entities o ON o.id = r.to_entity_id
             JOIN core_organizations uo ON uo.id = u.organization_id
             WHERE r.organization_id = ANY($1)
               AND (r.relationship_type <> 'MEMBER_OF'
                    OR NOT r.is_active
                    OR r.effective_date > now()
                    OR r.relationship_data ->> 'role' NOT IN ('ORG_OWNER', 'ORG_ADMIN', 'ORG_EMPLOYEE')
                    OR u.entity_type <> 'USER'
                    OR uo.organization_type <> 'platform'
                    OR o.entity_type <> 'ORGANIZATION'
                    OR o.organization_id <> r.organization_id)",
        ),
        (
            "fiscal periods out of order (CLOSED, then LOCKED, then OPEN) or malformed",
            "SELECT count(*) FROM (
                 SELECT organization_id,
                        metadata ->> 'status' AS status,
                        lag(metadata ->> 'status') OVER w AS previous,
                        (metadata ->> 'start_date')::date AS start_date,
                        (metadata ->> 'end_date')::date AS end_date,
                        metadata ->> 'period_code' AS period_code
                 FROM core_entities
                 WHERE organization_id = ANY($1) AND entity_type = 'FISCAL_PERIOD'
                 WINDOW w AS (PARTITION BY organization_id ORDER BY metadata ->> 'period_code')
             ) p
             WHERE p.status NOT IN ('CLOSED', 'LOCKED', 'OPEN')
                OR (p.previous IS NULL AND p.status <> 'CLOSED')
                OR (p.previous = 'LOCKED' AND p.status <> 'OPEN')
                OR (p.previous = 'OPEN' AND p.status <> 'OPEN')
                OR p.period_code <> to_char(p.start_date, 'YYYY-MM')
                OR p.start_date <> date_trunc('month', p.start_date)::date
                OR p.end_date <> (date_trunc('month', p.start_date) + interval '1 month - 1 day')::date",
        ),
    ];
    for (what, sql) in zero {
        assert_eq!(count(pool, sql, &orgs).await, 0, "{what}");
    }

    // Every transaction has lines 1..L.
    let misnumbered: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (
             SELECT t.id FROM universal_transactions t
             LEFT JOIN universal_transaction_lines l ON l.transaction_id = t.id
             WHERE t.organization_id = ANY($1)
             GROUP BY t.id
             HAVING count(l.id) <> $2 OR min(l.line_number) <> 1 OR max(l.line_number) <> $2
         ) x",
    )
    .bind(&orgs)
    .bind(i64::from(p.lines))
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(
        misnumbered, 0,
        "transactions whose lines are not 1..{}",
        p.lines
    );

    // Transaction and line ids are well-formed v4 uuids.
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "(SELECT id FROM universal_transactions WHERE organization_id = ANY($1) LIMIT 50)
         UNION ALL
         (SELECT id FROM universal_transaction_lines WHERE organization_id = ANY($1) LIMIT 50)",
    )
    .bind(&orgs)
    .fetch_all(pool)
    .await
    .unwrap();
    for id in ids {
        assert_eq!(id.get_version_num(), 4, "{id}");
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122, "{id}");
    }

    // Dates within [from, to] (UTC).
    let (min, max): (Option<NaiveDate>, Option<NaiveDate>) = sqlx::query_as(
        "SELECT min((transaction_date AT TIME ZONE 'UTC')::date), max((transaction_date AT TIME ZONE 'UTC')::date)
         FROM universal_transactions WHERE organization_id = ANY($1)",
    )
    .bind(&orgs)
    .fetch_one(pool)
    .await
    .unwrap();
    if txns > 0 {
        assert!(
            min.unwrap() >= p.from && max.unwrap() <= p.to,
            "{min:?} {max:?}"
        );
    }

    // Most transactions have their fiscal period, some (about 1 in 10) none.
    let missing = count(
        pool,
        "SELECT count(*) FROM universal_transactions WHERE organization_id = ANY($1) AND fiscal_period_entity_id IS NULL",
        &orgs,
    )
    .await;
    let total = n_orgs * txns;
    if total >= 1000 {
        assert!(
            missing > 0 && missing < total / 5,
            "{missing} of {total} without a period"
        );
        let upper = count(
            pool,
            "SELECT count(*) FROM universal_transactions WHERE organization_id = ANY($1) AND smart_code LIKE '%.V1'",
            &orgs,
        )
        .await;
        assert!(
            upper > 0 && upper < total / 10,
            "{upper} of {total} with .V1"
        );
        let kinds = count(
            pool,
            "SELECT count(DISTINCT transaction_type) FROM universal_transactions WHERE organization_id = ANY($1)",
            &orgs,
        )
        .await;
        assert_eq!(kinds, 4);
    }
}

/// The data that must not depend on anything but the seed: per (organization
/// number, sequence number) the kind, date, smart code and amounts.
async fn fingerprint(
    pool: &PgPool,
    report: &SeedReport,
) -> Vec<(i64, i64, String, String, String, Decimal, Vec<Decimal>)> {
    sqlx::query_as(
        "SELECT o.org_no, (t.metadata ->> 'sequence')::int8, t.transaction_type,
                t.smart_code, to_char(t.transaction_date AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),
                t.total_amount,
                (SELECT array_agg(l.line_amount ORDER BY l.line_number)
                 FROM universal_transaction_lines l WHERE l.transaction_id = t.id)
         FROM universal_transactions t
         JOIN unnest($1::uuid[]) WITH ORDINALITY AS o (id, org_no) ON o.id = t.organization_id
         ORDER BY 1, 2",
    )
    .bind(org_ids(report))
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn seeds_a_consistent_demo() {
    with_database(false, |pool| async move {
        let p = params(2, 1_000, 3, 42);
        let report = seed_demo(&pool, &p).await.unwrap();
        check_report(&pool, &p, &report).await;

        // 12 months: 6 CLOSED, 1 LOCKED, 5 OPEN.
        for org in &report.organizations {
            assert_eq!(org.fiscal_periods.len(), 12);
            assert_eq!(
                org.period_status,
                PeriodStatusCounts {
                    closed: 6,
                    locked: 1,
                    open: 5
                }
            );
            let roles: Vec<&str> = org.users.iter().map(|u| u.role.as_str()).collect();
            assert_eq!(roles, ["ORG_OWNER", "ORG_ADMIN", "ORG_EMPLOYEE"]);
        }
        assert_eq!(report.totals.users, 6);
        assert_eq!(report.totals.fiscal_periods, 24);

        // Both renderings.
        let text = report.to_string();
        assert!(text.contains(&report.organizations[0].code), "{text}");
        assert!(text.contains("6 CLOSED, 1 LOCKED, 5 OPEN"), "{text}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["totals"]["transactions"], 2_000);
        assert_eq!(json["organizations"][1]["users"][2]["role"], "ORG_EMPLOYEE");
    })
    .await;
}

#[tokio::test]
async fn same_seed_same_data_and_reruns_do_not_collide() {
    with_database(false, |pool| async move {
        // The first run in chunks of 700 (chunk 3 spans both organizations),
        // the second in one chunk.
        let p = params(2, 1_500, 4, 7);
        let first = seed_in_chunks(&pool, &p, 700).await.unwrap();
        let second = seed_demo(&pool, &p).await.unwrap();
        assert_ne!(first.run_tag, second.run_tag);
        assert_eq!((first.chunks, second.chunks), (5, 1));
        check_report(&pool, &p, &first).await;
        check_report(&pool, &p, &second).await;

        let a = fingerprint(&pool, &first).await;
        let b = fingerprint(&pool, &second).await;
        assert_eq!(a.len(), 3_000);
        assert!(a == b, "same seed, different data");
        assert_eq!(first.totals.total_amount, second.totals.total_amount);
        let names = |r: &SeedReport| -> Vec<String> {
            r.organizations.iter().map(|o| o.name.clone()).collect()
        };
        assert_eq!(names(&first), names(&second));

        // Another seed gives other amounts.
        let other = seed_demo(
            &pool,
            &SeedParams {
                seed: 8,
                ..p.clone()
            },
        )
        .await
        .unwrap();
        assert_ne!(other.totals.total_amount, first.totals.total_amount);
        assert!(fingerprint(&pool, &other).await != a);
    })
    .await;
}

#[tokio::test]
async fn short_ranges_many_lines_and_no_transactions() {
    with_database(true, |pool| async move {
        // Three months from mid-month: CLOSED, LOCKED, OPEN; the fewest lines.
        let p = SeedParams {
            organizations: 1,
            transactions: 300,
            lines: 2,
            from: date("2024-01-15"),
            to: date("2024-03-03"),
            seed: -3,
        };
        let report = seed_demo(&pool, &p).await.unwrap();
        check_report(&pool, &p, &report).await;
        let org = &report.organizations[0];
        let statuses: Vec<&str> = org
            .fiscal_periods
            .iter()
            .map(|f| f.status.as_str())
            .collect();
        assert_eq!(statuses, ["CLOSED", "LOCKED", "OPEN"]);
        assert_eq!(org.fiscal_periods[0].start_date, date("2024-01-01"));
        assert_eq!(org.fiscal_periods[1].end_date, date("2024-02-29"));

        // One day: one period, CLOSED; the most lines.
        let p = SeedParams {
            organizations: 3,
            transactions: 40,
            lines: MAX_LINES,
            from: date("2023-06-30"),
            to: date("2023-06-30"),
            seed: i64::MAX,
        };
        let report = seed_demo(&pool, &p).await.unwrap();
        check_report(&pool, &p, &report).await;
        for org in &report.organizations {
            assert_eq!(
                org.period_status,
                PeriodStatusCounts {
                    closed: 1,
                    locked: 0,
                    open: 0
                }
            );
        }

        // Two months: CLOSED, OPEN. No transactions: setup only.
        let p = SeedParams {
            organizations: 2,
            transactions: 0,
            lines: 3,
            from: date("2024-11-01"),
            to: date("2024-12-31"),
            seed: 0,
        };
        let report = seed_demo(&pool, &p).await.unwrap();
        check_report(&pool, &p, &report).await;
        assert_eq!(report.chunks, 0);
        assert_eq!(report.totals.transactions, 0);
        for org in &report.organizations {
            assert_eq!(
                org.period_status,
                PeriodStatusCounts {
                    closed: 1,
                    locked: 0,
                    open: 1
                }
            );
        }
    })
    .await;
}

#[tokio::test]
async fn rejects_bad_parameters_before_touching_the_database() {
    // A pool that could never connect: the parameters are refused first.
    let pool = sqlx::postgres::PgPoolOptions::new().connect_lazy_with(
        sqlx::postgres::PgConnectOptions::new()
            .host("127.0.0.1")
            .port(1),
    );
    let good = params(1, 10, 3, 1);
    let bad = [
        SeedParams {
            lines: 1,
            ..good.clone()
        },
        SeedParams {
            organizations: 0,
            ..good.clone()
        },
        SeedParams {
            organizations: MAX_ORGANIZATIONS + 1,
            ..good.clone()
        },
        SeedParams {
            transactions: MAX_TRANSACTIONS + 1,
            ..good.clone()
        },
        SeedParams {
            from: date("2025-01-01"),
            ..good.clone()
        },
    ];
    for p in bad {
        let err = seed_demo(&pool, &p).await.unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { .. }), "{p:?}: {err}");
    }
}

/// The timing run: one organization, 1,000,000 transactions of 3 lines (or
/// `SEED_TIMING_TRANSACTIONS`), with the indexes of `sql/schema/indexes.sql`.
/// Run by hand:
/// `cargo test --test api seed_demo::one_million -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "takes minutes; run by hand for the timing"]
async fn one_million_transactions() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    with_database(true, |pool| async move {
        let p = SeedParams {
            organizations: 1,
            transactions: std::env::var("SEED_TIMING_TRANSACTIONS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1_000_000),
            lines: 3,
            from: date("2024-01-01"),
            to: date("2024-12-31"),
            seed: 42,
        };
        let report = seed_demo(&pool, &p).await.unwrap();
        println!("{report}");
        assert_eq!(report.totals.lines, 3 * p.transactions);
        let unbalanced = count(
            &pool,
            "SELECT count(*) FROM (
                 SELECT t.total_amount,
                        sum(l.line_amount) FILTER (WHERE l.line_data ->> 'side' = 'DR') AS dr,
                        sum(l.line_amount) FILTER (WHERE l.line_data ->> 'side' = 'CR') AS cr
                 FROM universal_transactions t
                 JOIN universal_transaction_lines l ON l.transaction_id = t.id
                 WHERE t.organization_id = ANY($1)
                 GROUP BY t.id, t.total_amount
             ) x WHERE x.dr <> x.cr OR x.total_amount <> x.dr",
            &org_ids(&report),
        )
        .await;
        assert_eq!(unbalanced, 0);
    })
    .await;
}

/// The shipped `seed-demo`: its JSON report matches the database, and the
/// tokens it prints work against a server sharing the secret.
#[tokio::test]
async fn the_binary_reports_what_it_made_and_its_tokens_work() {
    use crate::support::{TestApp, app::TEST_SECRET, authorized};
    use hera_migrate::proto::CheckSecurityRequest;

    let db = TestDatabase::create().await;
    let app = TestApp::spawn(db.options()).await;
    let url = db.url();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_hera-migrate"))
            .args([
                "seed-demo",
                "--organizations",
                "2",
                "--transactions",
                "150",
                "--output",
                "json",
            ])
            .env("DATABASE_URL", url)
            .env("HERA_JWT_SECRET", TEST_SECRET)
            .env("RUST_LOG", "warn")
            .output()
    })
    .await
    .unwrap()
    .expect("run seed-demo");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(report["totals"]["transactions"], 300);
    let organizations: Vec<Uuid> = report["organizations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().parse().unwrap())
        .collect();

    let pool = db.pool().await;
    let (transactions, unbalanced): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE dr <> cr) FROM (
             SELECT t.id,
                    sum(l.line_amount) FILTER (WHERE l.line_data ->> 'side' = 'DR') AS dr,
                    sum(l.line_amount) FILTER (WHERE l.line_data ->> 'side' = 'CR') AS cr
               FROM universal_transactions t
               JOIN universal_transaction_lines l ON l.transaction_id = t.id
              WHERE t.organization_id = ANY($1)
              GROUP BY t.id) x",
    )
    .bind(&organizations)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((transactions, unbalanced), (300, 0));

    let tokens = report["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 6, "one token per user");
    let mut client = app.client().await;
    for token in tokens {
        let request = authorized(
            CheckSecurityRequest {
                organization_id: token["organization_id"].as_str().unwrap().into(),
                ..Default::default()
            },
            token["token"].as_str().unwrap(),
        );
        let answer = client
            .check_security(request)
            .await
            .expect("the printed token works")
            .into_inner();
        assert_eq!(answer.role, token["role"].as_str().unwrap());
        assert_eq!(answer.migration_allowed, answer.role != "ORG_EMPLOYEE");
    }
    app.stop().await;
}
