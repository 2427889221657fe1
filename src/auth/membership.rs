//! Who the caller is in an organization, read from the database.
use sqlx::PgConnection;
use uuid::Uuid;

const MEMBERSHIP: &str = include_str!("../../sql/queries/membership.sql");

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub is_member: bool,
    /// HERA's role name (ORG_OWNER, ORG_ADMIN, ...), when one is recorded.
    pub role: Option<String>,
}

pub async fn of(
    conn: &mut PgConnection,
    organization_id: Uuid,
    user_id: Uuid,
) -> Result<Membership, sqlx::Error> {
    let (is_member, role): (bool, Option<String>) = sqlx::query_as(MEMBERSHIP)
        .bind(organization_id)
        .bind(user_id)
        .fetch_one(conn)
        .await?;
    Ok(Membership {
        is_member,
        role: role.as_deref().map(normalize_role),
    })
}

/// HERA's role names; the guide's `owner` and `finance_admin` map to
/// ORG_OWNER and ORG_ADMIN, and short forms gain the ORG_ prefix.
pub fn normalize_role(raw: &str) -> String {
    let upper = raw.trim().to_uppercase();
    match upper.as_str() {
        "OWNER" => "ORG_OWNER".into(),
        "FINANCE_ADMIN" | "ADMIN" => "ORG_ADMIN".into(),
        "MANAGER" => "ORG_MANAGER".into(),
        "ACCOUNTANT" => "ORG_ACCOUNTANT".into(),
        "EMPLOYEE" | "STAFF" => "ORG_EMPLOYEE".into(),
        _ => upper,
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_role;

    #[test]
    fn guide_and_short_role_names_map_to_hera_names() {
        assert_eq!(normalize_role("owner"), "ORG_OWNER");
        assert_eq!(normalize_role("finance_admin"), "ORG_ADMIN");
        assert_eq!(normalize_role("ORG_ACCOUNTANT"), "ORG_ACCOUNTANT");
        assert_eq!(normalize_role(" member "), "MEMBER");
    }
}
