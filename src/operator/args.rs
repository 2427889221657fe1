//! The operator commands of the guide's production procedure, as flags.
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

/// How to reach the server, and as whom.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// The server's address.
    #[arg(long, env = "HERA_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// A bearer token (`hera-migrate token`, or the one the server prints).
    #[arg(long, env = "HERA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM CA certificate that signed the server's certificate (https servers).
    #[arg(long, env = "HERA_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// How results are printed: for people, or one JSON object per event or result.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// The organization a command acts on.
#[derive(Debug, Clone, Args)]
pub struct Org {
    #[arg(long, env = "HERA_ORG")]
    pub organization_id: String,
}

/// One run of the organization.
#[derive(Debug, Clone, Args)]
pub struct RunRef {
    #[command(flatten)]
    pub org: Org,
    #[arg(long)]
    pub migration_id: String,
}

/// A migration of one organization: its range and shape.
#[derive(Debug, Clone, Args)]
pub struct Scope {
    #[command(flatten)]
    pub org: Org,
    #[command(flatten)]
    pub range: Range,
}

/// The range and shape of a migration (of one organization or a rollout's).
#[derive(Debug, Clone, Args)]
pub struct Range {
    /// First day, YYYY-MM-DD.
    #[arg(long)]
    pub from: String,
    /// Last day, YYYY-MM-DD.
    #[arg(long)]
    pub to: String,
    /// Transactions per batch (0: the server's default).
    #[arg(long, default_value_t = 0)]
    pub batch_size: i32,
    /// Post candidates of closed periods to the earliest open one (else skip them).
    #[arg(long)]
    pub post_to_open_period: bool,
}

impl Range {
    /// The policy the flag asks for.
    pub fn closed_period_policy(&self) -> i32 {
        if self.post_to_open_period {
            crate::proto::ClosedPeriodPolicy::PostToOpenPeriod.into()
        } else {
            crate::proto::ClosedPeriodPolicy::Skip.into()
        }
    }
}

/// Following a run's events: what Ctrl-C does.
#[derive(Debug, Clone, Copy, Args)]
pub struct Follow {
    /// Ctrl-C cancels the run (by default it only detaches: the run goes on).
    #[arg(long)]
    pub cancel_on_interrupt: bool,
}

#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Check the database, schema, indexes, roles and replicas before a migration.
    ValidateEnvironment(Checked),
    /// What PostgreSQL can prove about backups (WAL archiving, slots).
    VerifyBackups(Checked),
    /// Record a performance baseline (before the migration).
    BaselinePerformance(Measured),
    /// Measure again and compare with the latest baseline.
    TestPerformance(Measured),
    /// Whether the caller may migrate the organization (recorded).
    ValidateSecurity(Checked),
    /// The exact, read-only plan of a migration.
    Preview(Previewed),
    /// Start a migration and follow it to its end.
    Migrate(Migrate),
    /// Follow a run (or every active run of the organization) to its end.
    MonitorProgress(Monitor),
    /// Watch every run of the organization live, like `top`.
    StartMonitoring(Monitoring),
    /// Pause a run after the batch in flight.
    Pause(Steered),
    /// Resume a paused run.
    Resume(Steered),
    /// Cancel a run after the batch in flight (what it migrated stays).
    Cancel(Steered),
    /// Change a run's batch size or pace from its next batch.
    Update(Update),
    /// The organization's runs, newest first.
    List(Listed),
    /// The validation suite of a run.
    ValidateMigration(Validate),
    /// A dry-run migration of a sample, then its validation: a verdict.
    UserAcceptanceTest(Acceptance),
    /// What went wrong with a run and what to do next.
    AssessFailure(Steered),
    /// What a rollback of a run would change, read-only: counts, time,
    /// periods, business postings that depend on it, risks.
    PreviewRollback(Steered),
    /// Force a rollback of a run (cancelling it first if it still runs).
    EmergencyRollback(Rollback),
    /// Find stuck, failed or interrupted runs and, with --resume, resume them.
    RecoverSystem(Recover),
    /// Recompute the organization's audit chain; name the first entry that no longer verifies.
    VerifyAuditChain(Checked),
    /// Write an incident report for a run (Markdown), recorded as an audit row.
    DocumentIncident(Incident),
    /// Migrate many organizations in stages, each validated before the next
    /// (a platform role); follow it to its end.
    StartRollout(super::rollouts::StartRollout),
    /// Follow a rollout to its end.
    WatchRollout(super::rollouts::RolloutRef),
    /// A rollout as it stands.
    GetRollout(super::rollouts::RolloutRef),
    /// Pause a rollout and its runs under way.
    PauseRollout(super::rollouts::RolloutRef),
    /// Resume a paused rollout and its runs.
    ResumeRollout(super::rollouts::RolloutRef),
    /// Cancel a rollout: its runs under way stop, later organizations never start.
    CancelRollout(super::rollouts::RolloutRef),
}

#[derive(Debug, Clone, Args)]
pub struct Checked {
    #[command(flatten)]
    pub connection: Connection,
    #[command(flatten)]
    pub org: Org,
}

#[derive(Debug, Clone, Args)]
pub struct Measured {
    #[command(flatten)]
    pub connection: Connection,
    #[command(flatten)]
    pub org: Org,
    /// Transactions in the sample batch (0: 100; a test: its baseline's).
    #[arg(long, default_value_t = 0)]
    pub batch_size: i32,
    /// Samples per measurement (0: 20).
    #[arg(long, default_value_t = 0)]
    pub samples: i32,
    /// A test: how much slower than the baseline is a regression (0: 1.5x).
    #[arg(long, default_value_t = 0.0)]
    pub regression_threshold: f64,
}

#[derive(Debug, Clone, Args)]
pub struct Previewed {
    #[command(flatten)]
    pub connection: Connection,
    #[command(flatten)]
    pub scope: Scope,
}

#[derive(Debug, Clone, Args)]
pub struct Migrate {
    #[command(flatten)]
    pub connection: Connection,
    #[command(flatten)]
    pub scope: Scope,
    /// At most this many transactions a second.
    #[arg(long)]
    pub max_tps: Option<f64>,
    #[command(flatten)]
    pub sizing: Sizing,
    /// Run every batch and roll each back: real counts, nothing written.
    #[arg(long)]
    pub dry_run: bool,
    /// Start it and return at once (the run goes on; follow it with monitor-progress).
    #[arg(long)]
    pub detach: bool,
    /// Makes the start idempotent: the same id finds the same run.
    #[arg(long, default_value = "")]
    pub request_id: String,
    #[command(flatten)]
    pub follow: Follow,
}

#[derive(Debug, Clone, Args)]
pub struct Monitor {
    #[command(flatten)]
    pub connection: Connection,
    #[command(flatten)]
    pub org: Org,
    /// The run to follow; without it, every active run of the organization.
    #[arg(long)]
    pub migration_id: Option<String>,
    /// Replay the run's events after this sequence (0: its whole history).
    #[arg(long)]
    pub after_sequence: Option<u64>,
    #[command(flatten)]
    pub follow: Follow,
}

#[derive(Debug, Clone, Args)]
pub struct Monitoring {
    #[command(flatten)]
    pub connection: Connection,
    #[command(flatten)]
    pub org: Org,
    /// How often to refresh, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// Stop once no run of the organization is active.
    #[arg(long)]
    pub until_idle: bool,
}

#[derive(Debug, Clone, Args)]
pub struct Steered {
    #[command(flatten)]
    pub connection: Connection,
    #[command(flatten)]
    pub run: RunRef,
}

#[derive(Debug, Clone, Args)]
pub struct Update {
    #[command(flatten)]
    pub connection: Connection,
    #[command(flatten)]
    pub run: RunRef,
    #[arg(long)]
    pub batch_size: Option<i32>,
    /// 0 lifts the limit.
    #[arg(long)]
    pub max_tps: Option<f64>,
    #[arg(long)]
    pub batch_delay_ms: Option<u32>,
    #[command(flatten)]
    pub sizing: Sizing,
}

/// Batches sized to a time instead of a count.
#[derive(Debug, Clone, Copy, Args)]
pub struct Sizing {
    /// Size each batch so that its work takes this many milliseconds (10 to
    /// 60000; 0 on update: back to a fixed --batch-size).
    #[arg(long)]
    pub target_batch_ms: Option<u32>,
    /// The smallest batch the target may size (default 10).
    #[arg(long)]
    pub min_batch_size: Option<i32>,
    /// The largest batch the target may size (default 5000).
    #[arg(long)]
    pub max_batch_size: Option<i32>,
}

#[derive(Debug, Clone, Args)]
pub struct Listed {
    #[command(flatten)]
    pub connection: Connection,
    #[command(flatten)]
    pub org: Org,
    /// Only runs in these states (RUNNING, PAUSED, SUCCEEDED, FAILED, CANCELLED, ROLLED_BACK).
    #[arg(long, value_delimiter = ',')]
    pub states: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct Validate {
    #[command(flatten)]
    pub connection: Connection,
    #[command(flatten)]
    pub run: RunRef,
    /// Judge a run that stopped before its end on the part it did.
    #[arg(long)]
    pub allow_partial: bool,
}

#[derive(Debug, Clone, Args)]
pub struct Acceptance {
    #[command(flatten)]
    pub connection: Connection,
    #[command(flatten)]
    pub scope: Scope,
}

#[derive(Debug, Clone, Args)]
pub struct Rollback {
    #[command(flatten)]
    pub connection: Connection,
    #[command(flatten)]
    pub run: RunRef,
    /// Why (required; recorded with the rollback).
    #[arg(long)]
    pub reason: String,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// The rollback's own rate limit (default: none).
    #[arg(long)]
    pub max_tps: Option<f64>,
}

#[derive(Debug, Clone, Args)]
pub struct Recover {
    #[command(flatten)]
    pub connection: Connection,
    #[command(flatten)]
    pub org: Org,
    /// Resume the paused runs found.
    #[arg(long)]
    pub resume: bool,
}

#[derive(Debug, Clone, Args)]
pub struct Incident {
    #[command(flatten)]
    pub connection: Connection,
    #[command(flatten)]
    pub run: RunRef,
    #[arg(long)]
    pub title: String,
    #[arg(long, default_value = "")]
    pub description: String,
    #[arg(long, default_value = "SEV3")]
    pub severity: String,
    /// Makes the report idempotent (default: one per run and title).
    #[arg(long)]
    pub request_id: Option<String>,
    /// Write the Markdown report here (else it is printed).
    #[arg(long)]
    pub out: Option<PathBuf>,
}
