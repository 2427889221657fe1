//! Platform operators: the role that spans organizations, which fleet
//! rollouts need. HERA keeps every USER entity in its platform organization
//! (organization_type 'platform'); a platform operator is an active member of
//! that organization whose role there (resolved as in any organization: see
//! `membership`) is one of the platform roles. Denials are recorded as
//! SECURITY_VALIDATION rows in the platform organization.
use uuid::Uuid;

use super::{Caller, Guard, Operation, membership};
use crate::{
    audit::{self, SecurityValidation},
    db::scope,
    error::{Error, Refusal, Result},
};

const PLATFORM_OF: &str = include_str!("../../sql/queries/platform_membership.sql");

pub const DEFAULT_PLATFORM_ROLES: &[&str] = &["PLATFORM_ADMIN", "PLATFORM_OPERATOR"];

/// A platform operator, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformAccess {
    pub user_id: Uuid,
    /// Where rollouts live and their denials are recorded.
    pub platform_organization_id: Uuid,
    pub role: String,
}

impl Guard {
    /// Admits `caller` to a rollout `operation` as a platform operator, or
    /// refuses with PERMISSION_DENIED (NOT_A_MEMBER when the caller is no
    /// active member of a platform organization, ROLE_NOT_PERMITTED when
    /// their role there is not a platform role).
    pub async fn authorize_platform(
        &self,
        caller: Caller,
        operation: Operation,
    ) -> Result<PlatformAccess> {
        let platform: Option<Uuid> = sqlx::query_scalar(PLATFORM_OF)
            .bind(caller.user_id)
            .fetch_optional(&self.admin)
            .await?;
        let Some(platform) = platform else {
            return Err(Error::refused(
                Refusal::NotAMember,
                format!(
                    "{operation}: user {} is no user of a platform organization; rollouts need a platform role ({})",
                    caller.user_id,
                    self.platform_roles.join(", ")
                ),
            ));
        };
        let mut tx = scope::begin(&self.pool, platform).await?;
        let member = membership::of(&mut tx, platform, caller.user_id).await?;
        let role = member
            .role
            .clone()
            .filter(|role| member.is_member && self.platform_roles.contains(role));
        if let Some(role) = role {
            tx.commit().await?;
            return Ok(PlatformAccess {
                user_id: caller.user_id,
                platform_organization_id: platform,
                role,
            });
        }
        let reason = if member.is_member {
            format!(
                "role {} may not {operation}: it needs a platform role ({})",
                member.role.as_deref().unwrap_or("(none)"),
                self.platform_roles.join(", ")
            )
        } else {
            format!(
                "user {} is not an active member of the platform organization",
                caller.user_id
            )
        };
        let reasons = [reason.clone()];
        let validation = SecurityValidation {
            organization_id: platform,
            user_id: caller.user_id,
            role: member.role.as_deref(),
            operation: operation.name(),
            allowed: false,
            migration_allowed: false,
            reasons: &reasons,
        };
        audit::record_security_validation(&mut tx, &validation).await?;
        tx.commit().await?;
        tracing::info!(user_id = %caller.user_id, %operation, %reason, "platform permission denied");
        let kind = if member.is_member {
            Refusal::RoleNotPermitted
        } else {
            Refusal::NotAMember
        };
        Err(Error::refused(kind, format!("{operation}: {reason}"))
            .naming("operation", operation.name()))
    }
}
