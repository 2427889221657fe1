//! Organizations with members of each role, written straight into the six
//! tables (as HERA itself would have them), for tests that need callers.
use sqlx::PgPool;
use uuid::Uuid;

pub struct Organization {
    pub id: Uuid,
    pub owner: Uuid,
    pub finance_admin: Uuid,
    pub staff: Uuid,
}

const INSERT: &str = r#"
WITH org AS (
    INSERT INTO core_organizations (id, organization_name, organization_code, created_by, updated_by)
    VALUES ($1, 'Test org ' || $1::text, 'TEST-' || $1::text, $2, $2)
    RETURNING id
), org_entity AS (
    INSERT INTO core_entities (organization_id, entity_type, entity_name, smart_code, created_by, updated_by)
    SELECT id, 'ORGANIZATION', 'Test org', 'HERA.UNIVERSAL.ORG.ENTITY.COMPANY.v1', $2, $2 FROM org
    RETURNING id, organization_id
), users AS (
    INSERT INTO core_entities (id, organization_id, entity_type, entity_name, smart_code, created_by, updated_by)
    SELECT u.id, o.id, 'USER', u.name, 'HERA.PLATFORM.USER.ENTITY.PERSON.v1', $2, $2
      FROM org o, (VALUES ($2, 'owner'), ($3, 'finance admin'), ($4, 'staff')) AS u (id, name)
    RETURNING id
)
INSERT INTO core_relationships (organization_id, from_entity_id, to_entity_id, relationship_type,
                                relationship_data, smart_code, created_by, updated_by)
SELECT e.organization_id, m.user_id, e.id, 'MEMBER_OF', jsonb_build_object('role', m.role),
       'HERA.UNIVERSAL.REL.MEMBER.OF.v1', $2, $2
  FROM org_entity e,
       (VALUES ($2, 'ORG_OWNER'), ($3, 'ORG_ADMIN'), ($4, 'ORG_EMPLOYEE')) AS m (user_id, role)
 WHERE EXISTS (SELECT 1 FROM users)
"#;

/// Creates an organization with an owner, a finance admin and a staff member.
pub async fn organization(pool: &PgPool) -> Organization {
    let org = Organization {
        id: Uuid::new_v4(),
        owner: Uuid::new_v4(),
        finance_admin: Uuid::new_v4(),
        staff: Uuid::new_v4(),
    };
    sqlx::query(INSERT)
        .bind(org.id)
        .bind(org.owner)
        .bind(org.finance_admin)
        .bind(org.staff)
        .execute(pool)
        .await
        .expect("insert the organization fixture");
    org
}

/// SECURITY_VALIDATION rows of an organization, as (user, operation, allowed, created_by).
pub async fn security_validations(
    pool: &PgPool,
    organization: Uuid,
) -> Vec<(Uuid, String, bool, Uuid)> {
    sqlx::query_as(
        "SELECT (metadata ->> 'user_id')::uuid, metadata ->> 'operation',
                (metadata ->> 'allowed')::boolean, created_by
           FROM universal_transactions
          WHERE organization_id = $1 AND transaction_type = 'SECURITY_VALIDATION'
          ORDER BY created_at",
    )
    .bind(organization)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Rows in all six tables, to prove a call wrote nothing.
pub async fn row_counts(pool: &PgPool) -> Vec<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM core_organizations UNION ALL SELECT count(*) FROM core_entities
         UNION ALL SELECT count(*) FROM core_dynamic_data UNION ALL SELECT count(*) FROM core_relationships
         UNION ALL SELECT count(*) FROM universal_transactions
         UNION ALL SELECT count(*) FROM universal_transaction_lines",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// seed-demo data for 2024: `organizations` of `transactions` three-line
/// transactions each (deterministic for a given `seed`).
pub async fn seed_2024(
    pool: &PgPool,
    organizations: u32,
    transactions: u64,
    seed: i64,
) -> hera_migrate::seed::SeedReport {
    hera_migrate::seed::seed_demo(
        pool,
        &hera_migrate::seed::SeedParams {
            organizations,
            transactions,
            lines: 3,
            from: "2024-01-01".parse().unwrap(),
            to: "2024-12-31".parse().unwrap(),
            seed,
        },
    )
    .await
    .expect("seed-demo")
}

/// Of a migration's originals: (reversed, their reversals, their v2 reposts).
pub async fn migrated_copies(
    pool: &PgPool,
    organization: Uuid,
    migration_id: &str,
) -> (i64, i64, i64) {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE transaction_status = 'reversed'),
                count(*) FILTER (WHERE metadata ? 'reversal_of'),
                count(*) FILTER (WHERE metadata ->> 'migration_id' = $2 AND metadata ? 'original_transaction_id')
           FROM universal_transactions WHERE organization_id = $1",
    )
    .bind(organization)
    .bind(migration_id)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// A platform operator: a USER entity of the seeded platform organization,
/// MEMBER_OF it with the PLATFORM_ADMIN role (what fleet rollouts need).
pub async fn platform_operator(
    pool: &PgPool,
    platform: &hera_migrate::seed::SeededPlatform,
) -> Uuid {
    let operator = Uuid::new_v4();
    sqlx::query(PLATFORM_OPERATOR)
        .bind(platform.organization_id)
        .bind(operator)
        .bind(platform.system_user_id)
        .execute(pool)
        .await
        .expect("the platform operator");
    operator
}

const PLATFORM_OPERATOR: &str = r#"
WITH platform_entity AS (
    INSERT INTO core_entities (organization_id, entity_type, entity_name, smart_code, created_by, updated_by)
    VALUES ($1, 'ORGANIZATION', 'HERA Platform', 'HERA.UNIVERSAL.ORG.ENTITY.COMPANY.v1', $3, $3)
    RETURNING id
), operator AS (
    INSERT INTO core_entities (id, organization_id, entity_type, entity_name, smart_code, created_by, updated_by)
    VALUES ($2, $1, 'USER', 'Platform operator', 'HERA.PLATFORM.USER.ENTITY.PERSON.v1', $3, $3)
    RETURNING id
)
INSERT INTO core_relationships (organization_id, from_entity_id, to_entity_id, relationship_type,
                                relationship_data, smart_code, created_by, updated_by)
SELECT $1, o.id, p.id, 'MEMBER_OF', '{"role": "PLATFORM_ADMIN"}', 'HERA.UNIVERSAL.REL.MEMBER.OF.v1', $3, $3
  FROM operator o, platform_entity p
"#;
