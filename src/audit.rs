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
