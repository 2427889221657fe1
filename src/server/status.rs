//! The one table from the service's `Error` to a gRPC status. Every status
//! carries `google.rpc.ErrorInfo` (domain `hera-migrate`, a stable reason per
//! kind of error, below) so that a client can branch on the reason rather than
//! parse the message; INVALID_ARGUMENT adds a `BadRequest` violation naming
//! the field, UNAVAILABLE a `RetryInfo`.
use std::{collections::HashMap, time::Duration};

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::{Error, Refusal};

/// The `ErrorInfo.domain` of every error this service returns.
pub const DOMAIN: &str = "hera-migrate";
/// `ResourceInfo.resource_type` of a migration run: its message's full name.
const RUN_RESOURCE: &str = "hera.migration.v2.Migration";
/// How long a caller should wait before retrying an UNAVAILABLE call.
const RETRY_AFTER: Duration = Duration::from_secs(1);

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        let (code, reason) = code_and_reason(&error);
        let mut details = ErrorDetails::new();
        let mut metadata = HashMap::new();
        match error {
            Error::InvalidArgument { field, reason } => {
                metadata.insert("field".to_owned(), field.to_string());
                details.add_bad_request_violation(field, reason);
            }
            Error::Unavailable(_) => {
                details.set_retry_info(Some(RETRY_AFTER));
            }
            Error::RunNotFound {
                organization_id,
                id,
            } => {
                details.set_resource_info(
                    RUN_RESOURCE,
                    id.to_string(),
                    organization_id.to_string(),
                    "no such migration in the caller's organization",
                );
            }
            Error::Refused {
                kind,
                metadata: named,
                ..
            } => {
                metadata.extend(named.into_iter().map(|(k, v)| (k.to_owned(), v)));
                if kind == Refusal::PlanChanged {
                    details.add_precondition_failure_violation(
                        "PLAN",
                        "expected_plan_fingerprint",
                        "the plan changed since it was previewed: preview again",
                    );
                }
            }
            Error::Database(source) => {
                tracing::error!(error = %source, "database error");
                return database_status(&source);
            }
            _ => {}
        }
        details.set_error_info(reason, DOMAIN, metadata);
        Status::with_error_details(code, message, details)
    }
}

/// The status code and the stable `ErrorInfo.reason` of each kind of error.
fn code_and_reason(error: &Error) -> (Code, &'static str) {
    match error {
        Error::InvalidArgument { .. } => (Code::InvalidArgument, "INVALID_FIELD"),
        Error::NotFound(_) => (Code::NotFound, "NOT_FOUND"),
        Error::Unauthenticated(_) => (Code::Unauthenticated, "TOKEN_REFUSED"),
        Error::FailedPrecondition(_) => (Code::FailedPrecondition, "PRECONDITION_FAILED"),
        Error::Aborted(_) => (Code::Aborted, "CONFLICT"),
        Error::Fenced(_) => (Code::Aborted, "LEASE_LOST"),
        Error::AlreadyExists(_) => (Code::AlreadyExists, "ALREADY_EXISTS"),
        Error::Unimplemented(_) => (Code::Unimplemented, "NOT_IMPLEMENTED"),
        Error::Unavailable(_) => (Code::Unavailable, "DATABASE_UNAVAILABLE"),
        Error::RunNotFound { .. } => (Code::NotFound, "MIGRATION_NOT_FOUND"),
        Error::Refused { kind, .. } => match kind {
            Refusal::RunAlreadyActive => (Code::Aborted, "RUN_ALREADY_ACTIVE"),
            Refusal::RequestIdReused => (Code::AlreadyExists, "REQUEST_ID_REUSED"),
            Refusal::PlanChanged => (Code::FailedPrecondition, "PLAN_CHANGED"),
            Refusal::NotAMember => (Code::PermissionDenied, "NOT_A_MEMBER"),
            Refusal::RoleNotPermitted => (Code::PermissionDenied, "ROLE_NOT_PERMITTED"),
        },
        Error::Database(_) => (Code::Internal, "INTERNAL"),
    }
}

/// Connection trouble is UNAVAILABLE (callers may retry); anything else is
/// INTERNAL, without leaking SQL details to the caller.
fn database_status(error: &sqlx::Error) -> Status {
    let mut details = ErrorDetails::new();
    if crate::error::database_unavailable(error) {
        details.set_retry_info(Some(RETRY_AFTER));
        details.set_error_info("DATABASE_UNAVAILABLE", DOMAIN, HashMap::new());
        Status::with_error_details(
            Code::Unavailable,
            "the database is unavailable; retry later",
            details,
        )
    } else {
        details.set_error_info("INTERNAL", DOMAIN, HashMap::new());
        Status::with_error_details(
            Code::Internal,
            "internal database error; see the server log",
            details,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_names_the_field() {
        let status = Status::from(Error::invalid("from_date", "must be YYYY-MM-DD"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "from_date: must be YYYY-MM-DD");
        let details = status.get_error_details();
        let violations = &details.bad_request().unwrap().field_violations;
        assert_eq!(violations[0].field, "from_date");
        let info = details.error_info().unwrap();
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("INVALID_FIELD", DOMAIN)
        );
        assert_eq!(info.metadata["field"], "from_date");
    }

    #[test]
    fn every_error_carries_its_reason_and_unavailable_says_when_to_retry() {
        for (error, reason) in [
            (Error::NotFound("x".into()), "NOT_FOUND"),
            (Error::Aborted("x".into()), "CONFLICT"),
            (Error::Fenced("x".into()), "LEASE_LOST"),
            (Error::Unavailable("x".into()), "DATABASE_UNAVAILABLE"),
            (
                Error::Database(sqlx::Error::PoolTimedOut),
                "DATABASE_UNAVAILABLE",
            ),
            (Error::Database(sqlx::Error::RowNotFound), "INTERNAL"),
            (
                Error::refused(Refusal::RunAlreadyActive, "x"),
                "RUN_ALREADY_ACTIVE",
            ),
            (
                Error::refused(Refusal::RequestIdReused, "x"),
                "REQUEST_ID_REUSED",
            ),
        ] {
            let status = Status::from(error);
            let details = status.get_error_details();
            assert_eq!(details.error_info().unwrap().reason, reason, "{status:?}");
            if status.code() == Code::Unavailable {
                assert!(details.retry_info().unwrap().retry_delay.is_some());
            }
        }
    }

    #[test]
    fn an_unknown_run_names_the_resource_and_a_changed_plan_the_precondition() {
        let (organization_id, id) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let status = Status::from(Error::RunNotFound {
            organization_id,
            id,
        });
        assert_eq!(status.code(), Code::NotFound);
        let details = status.get_error_details();
        let resource = details.resource_info().unwrap();
        assert_eq!(resource.resource_type, RUN_RESOURCE);
        assert_eq!(resource.resource_name, id.to_string());
        assert_eq!(resource.owner, organization_id.to_string());

        let changed =
            Error::refused(Refusal::PlanChanged, "plan changed").naming("plan_fingerprint", "ab");
        let status = Status::from(changed);
        assert_eq!(status.code(), Code::FailedPrecondition);
        let details = status.get_error_details();
        let violation = &details.precondition_failure().unwrap().violations[0];
        assert_eq!(violation.subject, "expected_plan_fingerprint");
        let info = details.error_info().unwrap();
        assert_eq!(info.reason, "PLAN_CHANGED");
        assert_eq!(info.metadata["plan_fingerprint"], "ab");
    }
}
