//! Every `MigrationService` RPC and the right it needs.
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    /// Any active member of the organization.
    Read,
    /// Members whose role is one of the steering roles (owner and finance
    /// admin by default).
    Steer,
    /// A platform role in the platform organization (fleet rollouts, which
    /// span organizations).
    Platform,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    PreviewCandidates,
    StartMigration,
    WatchMigration,
    GetMigration,
    ListMigrations,
    PauseMigration,
    ResumeMigration,
    CancelMigration,
    UpdateMigration,
    ApplyReportingAliases,
    ValidateMigration,
    RollbackMigration,
    CheckSecurity,
    CheckEnvironment,
    MeasurePerformance,
    AssessFailure,
    DocumentIncident,
    PreviewRollback,
    VerifyAuditChain,
    StartRollout,
    WatchRollout,
    GetRollout,
    PauseRollout,
    ResumeRollout,
    CancelRollout,
}

impl Operation {
    pub const ALL: [Operation; 25] = [
        Self::PreviewCandidates,
        Self::StartMigration,
        Self::WatchMigration,
        Self::GetMigration,
        Self::ListMigrations,
        Self::PauseMigration,
        Self::ResumeMigration,
        Self::CancelMigration,
        Self::UpdateMigration,
        Self::ApplyReportingAliases,
        Self::ValidateMigration,
        Self::RollbackMigration,
        Self::CheckSecurity,
        Self::CheckEnvironment,
        Self::MeasurePerformance,
        Self::AssessFailure,
        Self::DocumentIncident,
        Self::PreviewRollback,
        Self::VerifyAuditChain,
        Self::StartRollout,
        Self::WatchRollout,
        Self::GetRollout,
        Self::PauseRollout,
        Self::ResumeRollout,
        Self::CancelRollout,
    ];

    pub fn right(self) -> Right {
        match self {
            Self::StartMigration
            | Self::PauseMigration
            | Self::ResumeMigration
            | Self::CancelMigration
            | Self::UpdateMigration
            | Self::ApplyReportingAliases
            | Self::RollbackMigration
            | Self::DocumentIncident => Right::Steer,
            Self::PreviewCandidates
            | Self::WatchMigration
            | Self::GetMigration
            | Self::ListMigrations
            | Self::ValidateMigration
            | Self::AssessFailure
            | Self::CheckSecurity
            | Self::CheckEnvironment
            | Self::MeasurePerformance
            | Self::PreviewRollback
            | Self::VerifyAuditChain => Right::Read,
            Self::StartRollout
            | Self::WatchRollout
            | Self::GetRollout
            | Self::PauseRollout
            | Self::ResumeRollout
            | Self::CancelRollout => Right::Platform,
        }
    }

    /// The RPC's name as the API spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::PreviewCandidates => "PreviewCandidates",
            Self::StartMigration => "StartMigration",
            Self::WatchMigration => "WatchMigration",
            Self::GetMigration => "GetMigration",
            Self::ListMigrations => "ListMigrations",
            Self::PauseMigration => "PauseMigration",
            Self::ResumeMigration => "ResumeMigration",
            Self::CancelMigration => "CancelMigration",
            Self::UpdateMigration => "UpdateMigration",
            Self::ApplyReportingAliases => "ApplyReportingAliases",
            Self::ValidateMigration => "ValidateMigration",
            Self::RollbackMigration => "RollbackMigration",
            Self::CheckSecurity => "CheckSecurity",
            Self::CheckEnvironment => "CheckEnvironment",
            Self::MeasurePerformance => "MeasurePerformance",
            Self::AssessFailure => "AssessFailure",
            Self::DocumentIncident => "DocumentIncident",
            Self::PreviewRollback => "PreviewRollback",
            Self::VerifyAuditChain => "VerifyAuditChain",
            Self::StartRollout => "StartRollout",
            Self::WatchRollout => "WatchRollout",
            Self::GetRollout => "GetRollout",
            Self::PauseRollout => "PauseRollout",
            Self::ResumeRollout => "ResumeRollout",
            Self::CancelRollout => "CancelRollout",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.name() == name)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
