//! A database shaped like HERA's production (tests/fixtures/hera_production.sql)
//! and its tenants (tests/fixtures/hera_production_tenant.sql): HERA's
//! triggers, constraints and conventions, for tests that must meet them.
use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use super::TestDatabase;

/// The schema: the six tables, HERA's triggers, checks, views and functions,
/// and the platform organization.
pub const HERA_PRODUCTION: &str = include_str!("../../fixtures/hera_production.sql");

/// `hera_fixture_tenant(label, transactions)`, which creates one tenant.
pub const HERA_PRODUCTION_TENANT: &str = include_str!("../../fixtures/hera_production_tenant.sql");

/// A fresh database holding the fixture schema, with the tenant function
/// installed (and no tenant yet).
pub async fn hera_production() -> (TestDatabase, PgPool) {
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    sqlx::raw_sql(HERA_PRODUCTION)
        .execute(&pool)
        .await
        .expect("the HERA production fixture installs");
    sqlx::raw_sql(HERA_PRODUCTION_TENANT)
        .execute(&pool)
        .await
        .expect("the HERA tenant function installs");
    (db, pool)
}

/// The USER entities (in the platform organization) of a tenant, one per
/// membership case.
#[derive(Debug, Clone, Copy)]
pub struct TenantUsers {
    /// MEMBER_OF the organization id {role: OWNER}, primary HAS_ROLE ORG_OWNER.
    pub owner: Uuid,
    /// MEMBER_OF the ORGANIZATION shadow entity {role: MEMBER}, primary HAS_ROLE ORG_ADMIN.
    pub admin: Uuid,
    /// MEMBER_OF the organization id {role: ORG_OWNER}, primary HAS_ROLE ORG_EMPLOYEE.
    pub demoted: Uuid,
    /// MEMBER_OF the shadow entity {role: Receptionist}, no HAS_ROLE.
    pub staff: Uuid,
    /// No relationship to the organization.
    pub outsider: Uuid,
}

/// One tenant made by `hera_fixture_tenant`.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// The organization (also the id of its 'ORG' entity).
    pub id: Uuid,
    pub users: TenantUsers,
    /// Transactions per `metadata.fixture_case`.
    pub counts: BTreeMap<String, i64>,
    /// The function's whole answer (accounts, periods, shadow entity ...).
    pub raw: Value,
}

impl Tenant {
    /// An id from the answer, by JSON pointer (e.g. "/accounts/1100").
    pub fn id_at(&self, pointer: &str) -> Uuid {
        uuid_at(&self.raw, pointer)
    }
}

fn uuid_at(raw: &Value, pointer: &str) -> Uuid {
    raw.pointer(pointer)
        .and_then(Value::as_str)
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("a uuid at {pointer} in {raw}"))
}

/// Creates a tenant labelled `label` (its transaction codes start with it)
/// with `transactions` spread over the main cases, plus the special cases.
pub async fn tenant(pool: &PgPool, label: &str, transactions: i32) -> Tenant {
    let raw: Value = sqlx::query_scalar("SELECT hera_fixture_tenant($1, $2)")
        .bind(label)
        .bind(transactions)
        .fetch_one(pool)
        .await
        .expect("hera_fixture_tenant");
    let counts = raw["counts"]
        .as_object()
        .expect("counts")
        .iter()
        .map(|(case, n)| (case.clone(), n.as_i64().expect("a count")))
        .collect();
    Tenant {
        id: uuid_at(&raw, "/organization_id"),
        users: TenantUsers {
            owner: uuid_at(&raw, "/users/owner"),
            admin: uuid_at(&raw, "/users/admin"),
            demoted: uuid_at(&raw, "/users/demoted"),
            staff: uuid_at(&raw, "/users/staff"),
            outsider: uuid_at(&raw, "/users/outsider"),
        },
        counts,
        raw,
    }
}
