//! The audit trail, as rows of `universal_transactions`.
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

const SECURITY_VALIDATION: &str = include_str!("../sql/queries/security_validation.sql");

/// One authorization decision, as recorded.
#[derive(Debug, Clone)]
pub struct SecurityValidation<'a> {
    pub organization_id: Uuid,
    pub user_id: Uuid,
    pub role: Option<&'a str>,
    pub operation: &'a str,
    pub allowed: bool,
    pub migration_allowed: bool,
    pub reasons: &'a [String],
}

/// Writes a SECURITY_VALIDATION row and returns its id.
pub async fn record_security_validation(
    conn: &mut PgConnection,
    validation: &SecurityValidation<'_>,
) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::new_v4();
    let metadata = json!({
        "user_id": validation.user_id,
        "user_role": validation.role,
        "operation": validation.operation,
        "allowed": validation.allowed,
        "migration_allowed": validation.migration_allowed,
        "reason": validation.reasons.join("; "),
        "validation_timestamp": chrono::Utc::now(),
    });
    sqlx::query(SECURITY_VALIDATION)
        .bind(id)
        .bind(validation.organization_id)
        .bind(metadata)
        .bind(validation.user_id)
        .execute(conn)
        .await?;
    Ok(id)
}

/// A point of an organization's audit chain (sql/functions/audit_chain.sql):
/// its latest entry's place and hash.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Anchor {
    pub seq: i64,
    pub hash: String,
}

/// The earliest entry of a chain that does not verify.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct BrokenLink {
    pub seq: i64,
    pub kind: String,
    pub entry_id: Uuid,
    #[serde(default)]
    pub transaction_type: Option<String>,
    pub reason: String,
}

/// What recomputing an organization's chain found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ChainVerdict {
    pub verified: bool,
    pub entries: i64,
    pub checked: i64,
    pub head: Anchor,
    pub first_broken: Option<BrokenLink>,
}

const VERIFY: &str = "SELECT hera_migration_verify_audit_chain_v2($1)";
const ANCHOR: &str = "SELECT hera_migration_audit_anchor_v2($1)";

/// Recomputes `organization_id`'s audit chain, in a read-only transaction
/// of its scope (nothing is written, not even an audit row).
pub async fn verify_chain(
    pool: &sqlx::PgPool,
    organization_id: Uuid,
) -> crate::error::Result<ChainVerdict> {
    let mut tx = crate::db::scope::begin_read_only(pool, organization_id).await?;
    let sqlx::types::Json(verdict): sqlx::types::Json<ChainVerdict> = sqlx::query_scalar(VERIFY)
        .bind(organization_id)
        .fetch_one(&mut *tx)
        .await?;
    tx.rollback().await?;
    Ok(verdict)
}

/// The chain's head now, on `conn` (in the caller's transaction).
pub async fn anchor(conn: &mut PgConnection, organization_id: Uuid) -> Result<Anchor, sqlx::Error> {
    let sqlx::types::Json(anchor): sqlx::types::Json<Anchor> = sqlx::query_scalar(ANCHOR)
        .bind(organization_id)
        .fetch_one(conn)
        .await?;
    Ok(anchor)
}
