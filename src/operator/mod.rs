//! The operator's commands (the guide's production procedure), each a gRPC
//! client of a running server: a live progress bar on a terminal, plain
//! lines otherwise, one JSON object per event or result with
//! `--output json`. Exit codes: 0 success; 1 the operation failed, or the
//! run ended FAILED or CANCELLED; 2 bad usage or INVALID_ARGUMENT; 3 the
//! server unavailable, UNAUTHENTICATED or PERMISSION_DENIED. The reason is
//! one line on stderr.
pub mod args;
mod checks;
mod client;
mod follow;
mod output;
mod oversight;
mod rollouts;
mod runs;

use std::process::ExitCode;

use tonic::Code;

pub use args::OperatorCommand;

/// Why a command did not succeed, and the exit code that says so.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn failed(message: String) -> Self {
        Self { code: 1, message }
    }

    pub fn usage(message: String) -> Self {
        Self { code: 2, message }
    }

    pub fn unavailable(message: String) -> Self {
        Self { code: 3, message }
    }
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        let code = match status.code() {
            Code::InvalidArgument => 2,
            Code::Unavailable | Code::Unauthenticated | Code::PermissionDenied => 3,
            _ => 1,
        };
        let message = format!("{:?}: {}", status.code(), status.message());
        Self { code, message }
    }
}

/// Runs one operator command to its exit code.
pub async fn run(command: OperatorCommand) -> ExitCode {
    let outcome = match command {
        OperatorCommand::ValidateEnvironment(a) => checks::environment(a, false).await,
        OperatorCommand::VerifyBackups(a) => checks::environment(a, true).await,
        OperatorCommand::BaselinePerformance(a) => checks::performance(a, true).await,
        OperatorCommand::TestPerformance(a) => checks::performance(a, false).await,
        OperatorCommand::ValidateSecurity(a) => checks::security(a).await,
        OperatorCommand::Preview(a) => checks::preview(a).await,
        OperatorCommand::ValidateMigration(a) => checks::validate(a).await,
        OperatorCommand::AssessFailure(a) => checks::assess(a).await,
        OperatorCommand::DocumentIncident(a) => checks::incident(a).await,
        OperatorCommand::Migrate(a) => runs::migrate(a).await,
        OperatorCommand::MonitorProgress(a) => runs::monitor(a).await,
        OperatorCommand::StartMonitoring(a) => oversight::monitoring(a).await,
        OperatorCommand::Pause(a) => runs::control(a, runs::Control::Pause).await,
        OperatorCommand::Resume(a) => runs::control(a, runs::Control::Resume).await,
        OperatorCommand::Cancel(a) => runs::control(a, runs::Control::Cancel).await,
        OperatorCommand::Update(a) => runs::update(a).await,
        OperatorCommand::List(a) => runs::list(a).await,
        OperatorCommand::UserAcceptanceTest(a) => runs::acceptance(a).await,
        OperatorCommand::PreviewRollback(a) => runs::preview_rollback(a).await,
        OperatorCommand::EmergencyRollback(a) => runs::emergency_rollback(a).await,
        OperatorCommand::RecoverSystem(a) => oversight::recover(a).await,
        OperatorCommand::VerifyAuditChain(a) => oversight::verify_audit_chain(a).await,
        OperatorCommand::StartRollout(a) => rollouts::start(a).await,
        OperatorCommand::WatchRollout(a) => rollouts::watch(a).await,
        OperatorCommand::GetRollout(a) => rollouts::get(a).await,
        OperatorCommand::PauseRollout(a) => rollouts::control(a, rollouts::Control::Pause).await,
        OperatorCommand::ResumeRollout(a) => rollouts::control(a, rollouts::Control::Resume).await,
        OperatorCommand::CancelRollout(a) => rollouts::control(a, rollouts::Control::Cancel).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

type Outcome = Result<(), Failure>;
