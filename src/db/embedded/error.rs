//! What can go wrong with the embedded cluster. Every message is one line and
//! says what to do about it, because it ends up as the service's exit reason.
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use super::DATABASE;

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "PostgreSQL server binaries (initdb and postgres) not found on PATH, in `pg_config --bindir`, \
         /usr/lib/postgresql/<version>/bin or /usr/local/pgsql/bin; install the PostgreSQL server \
         package (e.g. `apt-get install postgresql`) or set DATABASE_URL to use an existing server"
    )]
    BinariesNotFound,
    #[error(
        "running as root, but there is neither a `postgres` nor a `nobody` user to run PostgreSQL as; \
         create a `postgres` system user, run hera-migrate as a non-root user, or set DATABASE_URL"
    )]
    NoUnprivilegedUser,
    #[error(
        "cannot {action} {}: {error}; check the permissions or choose another data directory \
         (--data-dir / HERA_DATA_DIR)",
        path.display()
    )]
    Io {
        action: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    #[error(
        "user `{user}`, which runs PostgreSQL, cannot reach the data directory {}: {} is not searchable \
         by it; choose a data directory it can reach (the default is /var/lib/hera-migrate) or run \
         hera-migrate as a non-root user",
        data_dir.display(),
        blocker.display()
    )]
    Unreachable {
        user: String,
        data_dir: PathBuf,
        blocker: PathBuf,
    },
    #[error(
        "{} is owned by uid {owner}, but PostgreSQL runs as `{user}` (uid {uid}); fix it with \
         `chown -R {user} {}` or choose another data directory",
        path.display(),
        path.display()
    )]
    WrongOwner {
        path: PathBuf,
        owner: u32,
        user: String,
        uid: u32,
    },
    #[error(
        "{} exists but is not a directory owned by `{user}`; remove it, or use a shorter data \
         directory path so the socket can live inside it",
        path.display()
    )]
    UnsafeSocketDir { path: PathBuf, user: String },
    #[error("cannot run {}: {error}", program.display())]
    Spawn { program: PathBuf, error: io::Error },
    #[error(
        "{} is not empty but holds no PostgreSQL cluster (no PG_VERSION); remove or empty it, or \
         choose another data directory",
        pgdata.display()
    )]
    NotACluster { pgdata: PathBuf },
    #[error("initdb failed for {} ({status}): {tail}", pgdata.display())]
    Initdb {
        pgdata: PathBuf,
        status: String,
        tail: String,
    },
    #[error("PostgreSQL exited during startup ({status}): {tail} (full log: {})", log.display())]
    Exited {
        status: ExitStatus,
        tail: String,
        log: PathBuf,
    },
    #[error(
        "PostgreSQL did not accept connections on {} within {}s (last error: {last_error}); see {}",
        socket_dir.display(),
        waited.as_secs(),
        log.display()
    )]
    NotReady {
        socket_dir: PathBuf,
        waited: Duration,
        last_error: String,
        log: PathBuf,
    },
    #[error(
        "a PostgreSQL (pid {pid}) left over from a previous run still serves {} after SIGINT and \
         SIGQUIT; stop it (`kill -9 {pid}`) and retry",
        pgdata.display()
    )]
    Leftover { pid: i32, pgdata: PathBuf },
    #[error(
        "the PostgreSQL (pid {pid}) of hera-migrate process {owner}, which this process was going \
         to share, stopped; retry"
    )]
    SharedStopped { pid: i32, owner: i32 },
    #[error("cannot create the database `{DATABASE}` in the embedded cluster: {0}")]
    CreateDatabase(sqlx::Error),
    #[error("{0}")]
    Other(String),
}

impl EmbeddedError {
    pub(super) fn io(action: &'static str, path: &Path, error: io::Error) -> Self {
        Self::Io {
            action,
            path: path.to_path_buf(),
            error,
        }
    }
}
