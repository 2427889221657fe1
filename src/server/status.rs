//! The one table from the service's `Error` to a gRPC status.
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::Error;

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        match error {
            Error::InvalidArgument { field, reason } => Status::with_error_details(
                Code::InvalidArgument,
                message,
                ErrorDetails::with_bad_request_violation(field, reason),
            ),
            Error::NotFound(_) => Status::not_found(message),
            Error::Unauthenticated(_) => Status::unauthenticated(message),
            Error::PermissionDenied(_) => Status::permission_denied(message),
            Error::FailedPrecondition(_) => Status::failed_precondition(message),
            Error::Aborted(_) | Error::Fenced(_) => Status::aborted(message),
            Error::AlreadyExists(_) => Status::already_exists(message),
            Error::Unimplemented(_) => Status::unimplemented(message),
            Error::Unavailable(_) => Status::unavailable(message),
            Error::Database(source) => {
                tracing::error!(error = %source, "database error");
                database_status(&source)
            }
        }
    }
}

/// Connection trouble is UNAVAILABLE (callers may retry); anything else is
/// INTERNAL, without leaking SQL details to the caller.
fn database_status(error: &sqlx::Error) -> Status {
    if crate::error::database_unavailable(error) {
        Status::unavailable("the database is unavailable; retry later")
    } else {
        Status::internal("internal database error; see the server log")
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
    }
}
