//! The guard every RPC passes: is the caller an active member of the target
//! organization, and does their role carry the right the operation needs?
//! Denials and security checks are recorded as SECURITY_VALIDATION rows in the
//! target organization.
use sqlx::PgPool;
use uuid::Uuid;

use super::{Caller, Operation, Right, membership};
use crate::{
    audit::{self, SecurityValidation},
    db::scope,
    error::{Error, Refusal, Result},
};

pub const DEFAULT_STEERING_ROLES: &[&str] = &["ORG_OWNER", "ORG_ADMIN"];

/// What a caller may do in one organization, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub user_id: Uuid,
    pub organization_id: Uuid,
    pub role: Option<String>,
    /// Whether the role may steer migrations (start, pause, roll back, ...).
    pub migration_allowed: bool,
    pub reasons: Vec<String>,
    /// The SECURITY_VALIDATION row written for this check, if one was.
    pub audit_transaction_id: Option<Uuid>,
}

pub struct Guard {
    pub(super) pool: PgPool,
    /// The login role: finds which platform organization holds a user
    /// (a lookup across organizations, which row security forbids `pool`).
    pub(super) admin: PgPool,
    steering_roles: Vec<String>,
    /// The roles in the platform organization that may run fleet rollouts.
    pub(super) platform_roles: Vec<String>,
}

impl Guard {
    pub fn new(
        pool: PgPool,
        admin: PgPool,
        steering_roles: &[String],
        platform_roles: &[String],
    ) -> Self {
        let normalized = |roles: &[String]| {
            roles
                .iter()
                .map(|role| membership::normalize_role(role))
                .collect()
        };
        Self {
            pool,
            admin,
            steering_roles: normalized(steering_roles),
            platform_roles: normalized(platform_roles),
        }
    }

    /// Admits `caller` to `operation` on `organization_id`, or refuses with
    /// PERMISSION_DENIED: not an active member (the same answer whether or
    /// not the organization exists), or the role lacks the right.
    pub async fn authorize(
        &self,
        caller: Caller,
        organization_id: Uuid,
        operation: Operation,
    ) -> Result<Access> {
        self.check(caller, organization_id, operation, operation)
            .await
    }

    /// `CheckSecurity`: whether the caller may perform `asked` (always recorded).
    pub async fn check_security(
        &self,
        caller: Caller,
        organization_id: Uuid,
        asked: Operation,
    ) -> Result<Access> {
        self.check(caller, organization_id, Operation::CheckSecurity, asked)
            .await
    }

    /// Records a lookup that found nothing in the caller's organization: a
    /// probe for another organization's run stays on the record.
    pub async fn record_not_found(
        &self,
        access: &Access,
        operation: Operation,
        what: &str,
    ) -> Result<()> {
        let mut tx = scope::begin(&self.pool, access.organization_id).await?;
        let reasons = [format!(
            "{what} not found in organization {}",
            access.organization_id
        )];
        let validation = SecurityValidation {
            organization_id: access.organization_id,
            user_id: access.user_id,
            role: access.role.as_deref(),
            operation: operation.name(),
            allowed: false,
            migration_allowed: access.migration_allowed,
            reasons: &reasons,
        };
        audit::record_security_validation(&mut tx, &validation).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn check(
        &self,
        caller: Caller,
        organization_id: Uuid,
        operation: Operation,
        asked: Operation,
    ) -> Result<Access> {
        let mut tx = scope::begin(&self.pool, organization_id).await?;
        // Whether the organization exists only decides whether a denial can
        // be recorded (the row's foreign key needs it), never the answer: a
        // caller who is not a member learns nothing about which organizations
        // exist.
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM core_organizations WHERE id = $1)")
                .bind(organization_id)
                .fetch_one(&mut *tx)
                .await?;
        let mut member = membership::of(&mut tx, organization_id, caller.user_id).await?;
        member.is_member &= exists;
        let allowed = self.permits(&member, operation);
        let migration_allowed = self.permits(&member, asked);
        let reasons = self.reasons(&member, asked, caller.user_id);

        // Denials and explicit checks are recorded here; an allowed operation
        // records itself (its run row, its batches), so a request that then
        // fails its own checks leaves nothing behind.
        let record = exists && (!allowed || operation == Operation::CheckSecurity);
        let audit_transaction_id = if record {
            let validation = SecurityValidation {
                organization_id,
                user_id: caller.user_id,
                role: member.role.as_deref(),
                operation: asked.name(),
                allowed,
                migration_allowed,
                reasons: &reasons,
            };
            Some(audit::record_security_validation(&mut tx, &validation).await?)
        } else {
            None
        };
        tx.commit().await?;

        if !allowed {
            let reason = reasons.join("; ");
            tracing::info!(
                organization_id = %organization_id,
                user_id = %caller.user_id,
                operation = %operation,
                asked = %asked,
                reason = %reason,
                "permission denied"
            );
            // A non-member is refused about the organization itself; a
            // member, about the operation their role may not perform.
            return Err(if member.is_member {
                Error::refused(
                    Refusal::RoleNotPermitted,
                    format!("{}: {reason}", operation.name()),
                )
                .naming("operation", operation.name())
                .naming("role", member.role.as_deref().unwrap_or_default())
            } else {
                Error::refused(Refusal::NotAMember, format!("organization_id: {reason}"))
            });
        }
        Ok(Access {
            user_id: caller.user_id,
            organization_id,
            role: member.role,
            migration_allowed,
            reasons,
            audit_transaction_id,
        })
    }

    fn permits(&self, member: &membership::Membership, operation: Operation) -> bool {
        member.is_member
            && match operation.right() {
                Right::Read => true,
                // Only through authorize_platform.
                Right::Platform => false,
                Right::Steer => member
                    .role
                    .as_ref()
                    .is_some_and(|role| self.steering_roles.contains(role)),
            }
    }

    fn reasons(
        &self,
        member: &membership::Membership,
        asked: Operation,
        user_id: Uuid,
    ) -> Vec<String> {
        if !member.is_member {
            // Worded alike whether or not the organization exists.
            return vec![format!(
                "user {user_id} is not an active member of this organization"
            )];
        }
        let role = member.role.as_deref().unwrap_or("no role");
        let mut reasons = vec![format!("active member with role {role}")];
        if asked.right() == Right::Platform {
            reasons.push(format!(
                "{asked} is a platform operation: it needs one of {} in the platform organization, not an organization's role",
                self.platform_roles.join(", ")
            ));
        }
        if asked.right() == Right::Steer {
            let steering = self.steering_roles.join(", ");
            reasons.push(if self.permits(member, asked) {
                format!("{role} may {asked}")
            } else {
                format!("{role} may not {asked}: it needs one of {steering}")
            });
        }
        reasons
    }
}
