//! Command line and environment configuration. Every setting can come from a
//! flag or from the environment variable named beside it.
use std::{net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use sqlx::postgres::PgConnectOptions;

#[derive(Debug, Parser)]
#[command(
    name = "hera-migrate",
    version,
    about = "HERA Finance DNA v2 zero-table migration control plane"
)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogSettings,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC server.
    Serve(Box<ServeSettings>),
    /// Create demo organizations, users, accounts, periods and v1 transactions.
    SeedDemo(SeedDemoSettings),
    /// Mint a bearer token for a user with the configured secret.
    Token(TokenSettings),
    /// Measure the engine against its yardsticks on databases of its own (BENCHMARKS.md).
    Bench(BenchSettings),
    /// A fault campaign: a migration, its aliases and its rollback under kills, restarts and storms (README, "Faults on purpose").
    Faults(FaultSettings),
    /// The operator's commands, each a client of a running server.
    #[command(flatten)]
    Operator(crate::operator::OperatorCommand),
}

#[derive(Debug, Clone, Args)]
pub struct LogSettings {
    /// Log line format.
    #[arg(long, env = "HERA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the data lives: a PostgreSQL given by URL, or else the embedded
/// private cluster kept in `data_dir`.
#[derive(Debug, Clone, Args)]
pub struct DatabaseSettings {
    /// PostgreSQL URL. Unset: start a private cluster from the local PostgreSQL binaries.
    #[arg(long, env = "DATABASE_URL", value_parser = parse_database_url)]
    pub database_url: Option<PgConnectOptions>,
    /// Directory of the embedded cluster (used only without DATABASE_URL).
    #[arg(long, env = "HERA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Maximum connections in the pool.
    #[arg(long, env = "HERA_DB_POOL_SIZE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub pool_size: u32,
}

#[derive(Debug, Clone, Args)]
pub struct ServeSettings {
    /// Address the gRPC server listens on.
    #[arg(long, env = "HERA_LISTEN_ADDR", default_value = "127.0.0.1:50051")]
    pub listen_addr: SocketAddr,
    /// Address of the Prometheus scrape endpoint (GET /metrics), e.g. 127.0.0.1:9464. Unset: none.
    #[arg(long, env = "HERA_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub database: DatabaseSettings,
    /// How often the database is probed for the health service, in milliseconds.
    #[arg(long, env = "HERA_HEALTH_PROBE_INTERVAL_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub health_probe_interval_ms: u64,
    /// How long in-flight calls may run after SIGINT/SIGTERM before they are cut, in seconds.
    #[arg(long, env = "HERA_SHUTDOWN_GRACE_SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=9))]
    pub shutdown_grace_secs: u64,
    #[command(flatten)]
    pub auth: AuthSettings,
    #[command(flatten)]
    pub tls: TlsSettings,
    #[command(flatten)]
    pub engine: EngineSettings,
}

/// How runs execute: lock waits, retries, and who takes over a run whose
/// server is gone.
#[derive(Debug, Clone, Args)]
pub struct EngineSettings {
    /// How long a batch may wait for a row lock before it backs off and retries smaller, in milliseconds.
    #[arg(long, env = "HERA_BATCH_LOCK_TIMEOUT_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub batch_lock_timeout_ms: u64,
    /// Consecutive retries of a batch that waits on locks before the run fails.
    #[arg(long, env = "HERA_BATCH_LOCK_RETRIES", default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub batch_lock_retries: u32,
    /// How often this server looks for runs whose executing server is gone, in milliseconds.
    #[arg(long, env = "HERA_LEASE_CHECK_INTERVAL_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub lease_check_interval_ms: u64,
    /// What to do with a run found RUNNING whose server is gone: resume it, or leave it PAUSED with the reason.
    #[arg(long, env = "HERA_ON_INTERRUPTED", value_enum, default_value_t = OnInterrupted::Resume)]
    pub on_interrupted: OnInterrupted,
    /// The business probe a run with the BUSINESS_PROBE signal times against its idle baseline: one read-only statement, run in the organization's scope with $1 its id (default: a read of its latest 20 postings and their lines). Set by whoever runs the server, never by a caller.
    #[arg(long, env = "HERA_BUSINESS_PROBE_SQL")]
    pub business_probe_sql: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnInterrupted {
    Resume,
    Pause,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            batch_lock_timeout_ms: 2000,
            batch_lock_retries: 10,
            lease_check_interval_ms: 5000,
            on_interrupted: OnInterrupted::Resume,
            business_probe_sql: None,
        }
    }
}

impl EngineSettings {
    pub fn batch_lock_timeout(&self) -> Duration {
        Duration::from_millis(self.batch_lock_timeout_ms)
    }

    pub fn lease_check_interval(&self) -> Duration {
        Duration::from_millis(self.lease_check_interval_ms)
    }
}

/// How callers prove who they are, and which roles may steer migrations.
#[derive(Debug, Clone, Args)]
pub struct AuthSettings {
    /// HS256 secret of bearer tokens (the secret Supabase-based HERA installs sign with).
    #[arg(long, env = "HERA_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,
    /// PEM file of an RSA public key: RS256 bearer tokens are accepted too.
    #[arg(long, env = "HERA_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// Roles that may start, pause, resume, cancel, update and roll back migrations.
    #[arg(
        long,
        env = "HERA_STEERING_ROLES",
        value_delimiter = ',',
        default_value = "ORG_OWNER,ORG_ADMIN"
    )]
    pub steering_roles: Vec<String>,
    /// Roles in the platform organization (where HERA keeps its users) that
    /// may start, watch, pause, resume and cancel fleet rollouts.
    #[arg(
        long,
        env = "HERA_PLATFORM_ROLES",
        value_delimiter = ',',
        default_value = "PLATFORM_ADMIN,PLATFORM_OPERATOR"
    )]
    pub platform_roles: Vec<String>,
}

/// Optional TLS, and mutual TLS when a client CA is given.
#[derive(Debug, Clone, Default, Args)]
pub struct TlsSettings {
    /// PEM certificate chain of the server.
    #[arg(long, env = "HERA_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the server.
    #[arg(long, env = "HERA_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s): clients must present a certificate it signed.
    #[arg(long, env = "HERA_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct TokenSettings {
    /// The user entity id the token names (its `sub`).
    #[arg(long)]
    pub user_id: uuid::Uuid,
    /// How long the token is valid: 90s, 30m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: Duration,
    /// The signing secret; unset: the embedded default's secret in HERA_DATA_DIR.
    #[arg(long, env = "HERA_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,
    /// Directory of the embedded default (where its generated secret lives).
    #[arg(long, env = "HERA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// A secret setting: never printed.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl FromStr for Secret {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value.is_empty() {
            return Err("must not be empty".into());
        }
        Ok(Self(value.to_owned()))
    }
}

impl ServeSettings {
    pub fn health_probe_interval(&self) -> Duration {
        Duration::from_millis(self.health_probe_interval_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

#[derive(Debug, Clone, Args)]
pub struct SeedDemoSettings {
    #[command(flatten)]
    pub database: DatabaseSettings,
    /// Organizations to create.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub organizations: u32,
    /// v1 transactions per organization.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=100_000_000))]
    pub transactions: u64,
    /// Lines per transaction (at least 2, so that every transaction balances).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(2..=50))]
    pub lines: u32,
    /// First transaction date (YYYY-MM-DD).
    #[arg(long, default_value = "2024-01-01")]
    pub from: chrono::NaiveDate,
    /// Last transaction date (YYYY-MM-DD), inclusive.
    #[arg(long, default_value = "2024-12-31")]
    pub to: chrono::NaiveDate,
    /// Seed of the pseudo-random amounts, dates and kinds: the same seed gives the same data.
    #[arg(long, default_value_t = 42)]
    pub seed: i64,
    /// Report format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Secret to mint the printed tokens with; unset: the embedded default's secret.
    #[arg(long, env = "HERA_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,
}

/// `hera-migrate bench`: what to measure at which size, and where to write it.
#[derive(Debug, Clone, Args)]
pub struct BenchSettings {
    /// Fraction of the full sizes (1.0: an organization of a million transactions;
    /// 0.002 finishes in well under a minute).
    #[arg(long, default_value_t = 1.0, value_parser = parse_scale)]
    pub scale: f64,
    /// Where bench.json and bench.svg are written.
    #[arg(long, default_value = "target/bench")]
    pub output_dir: PathBuf,
    /// PostgreSQL on which the bench creates (and drops) its databases. Unset: the embedded default cluster.
    #[arg(long, env = "DATABASE_URL", value_parser = parse_bench_database_url)]
    pub database_url: Option<String>,
    /// Directory of the embedded default (used only without DATABASE_URL).
    #[arg(long, env = "HERA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Leave the bench's databases in place afterwards.
    #[arg(long)]
    pub keep_databases: bool,
}

#[derive(Debug, Clone, Args)]
pub struct FaultSettings {
    /// Transactions of the campaign's organization.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(10..=10_000_000))]
    pub transactions: u64,
    /// SIGKILLs of the server per phase (migration, aliases, rollback); the
    /// other faults fall between them.
    #[arg(long, default_value_t = 20)]
    pub kills: u32,
    /// Transactions per batch.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_size: u32,
    /// Seed of the faults' moments and kinds (and of the data): the same seed, the same campaign.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Servers over the one database: each kill hits the one executing the
    /// run, and another must take it over within the lease interval.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=4))]
    pub replicas: u8,
    /// Directory of the campaign's private PostgreSQL, kept afterwards. Unset: a temporary one.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// A bench scale: above 0, at most 10 (ten times the full benchmark).
fn parse_scale(text: &str) -> Result<f64, String> {
    let scale: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if scale.is_finite() && scale > 0.0 && scale <= 10.0 {
        Ok(scale)
    } else {
        Err(format!("{scale} is out of range (above 0, at most 10)"))
    }
}

/// The bench hands the URL on to the servers it spawns, so it keeps the text.
fn parse_bench_database_url(value: &str) -> Result<String, String> {
    parse_database_url(value).map(|_| value.to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

fn parse_database_url(value: &str) -> Result<PgConnectOptions, String> {
    PgConnectOptions::from_str(value).map_err(|e| format!("not a PostgreSQL URL ({e})"))
}

/// A token's lifetime for `token --ttl`: a duration such as `90s`, `30m`, `1h` or `7d`.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 90s, 30m, 1h or 7d"))?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit must be s, m, h or d")),
    };
    if number == 0 {
        return Err("the duration must be positive".into());
    }
    Ok(Duration::from_secs(number * seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_parse() {
        assert_eq!(parse_ttl("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90));
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("0s").is_err());
    }

    #[test]
    fn bench_scales_are_positive_and_bounded() {
        assert_eq!(parse_scale("0.002").unwrap(), 0.002);
        assert!(parse_scale("0").is_err());
        assert!(parse_scale("11").is_err());
        assert!(parse_scale("NaN").is_err());
    }
}
