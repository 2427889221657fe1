//! The embedded default database: a private PostgreSQL cluster started from the
//! locally installed server binaries when no DATABASE_URL is given.
//!
//! # Binaries
//!
//! `initdb` and `postgres` are taken from the first directory that holds both,
//! searched in this order: the directories on `PATH`, the directory printed by
//! `pg_config --bindir`, the versioned Debian/Ubuntu folders
//! `/usr/lib/postgresql/<version>/bin` (highest version first), then
//! `/usr/local/pgsql/bin`. When the cluster already exists, a directory whose
//! server matches the cluster's `PG_VERSION` is preferred.
//!
//! # Data directory
//!
//! [`EmbeddedPostgres::default_data_dir`] is `/var/lib/hera-migrate` when running
//! as root, otherwise `$XDG_DATA_HOME/hera-migrate`, or
//! `$HOME/.local/share/hera-migrate` when `XDG_DATA_HOME` is unset.
//! The directory persists between runs and holds:
//!
//! * `pgdata/` — the cluster, created by `initdb` only when `pgdata/PG_VERSION`
//!   does not exist yet (superuser `hera`, trust authentication, UTF8, no locale;
//!   built in `pgdata.initdb/` and renamed into place, so an interrupted initdb is
//!   simply redone). The database `hera` is created on first start;
//! * `postgres.log` — the server's output, appended run after run;
//! * `run/` — the unix socket directory. The server listens on the unix socket
//!   `run/.s.PGSQL.5432` only, never on TCP. When that path would exceed the
//!   kernel's limit for socket paths (107 bytes), the socket lives in
//!   `/tmp/hera-migrate-<hash of the data directory>` instead.
//!
//! # Running as root
//!
//! PostgreSQL refuses to run as root. When this process is root, `initdb` and
//! `postgres` run as the user `postgres` (or `nobody` if there is no such user),
//! with root's supplementary groups dropped. `pgdata/` and the socket directory
//! are owned by that user. The data directory itself stays root's, so files root
//! keeps there stay out of that user's reach; its group becomes that user's, with
//! search permission only (mode 0710 when created here). Every parent of the data
//! directory must be searchable by that user.
//!
//! # Process lifetime
//!
//! `postgres` runs in its own process group, so a Ctrl-C on the terminal reaches
//! only this server, which then stops PostgreSQL in order ([`EmbeddedPostgres::stop`]:
//! fast shutdown, then immediate shutdown). A small guardian shell process holds
//! a pipe from this process; if this process dies, even by SIGKILL, the pipe
//! closes and the guardian asks PostgreSQL to shut down.
//!
//! # Sharing a data directory
//!
//! When [`EmbeddedPostgres::start`] finds, through `pgdata/postmaster.pid`, a
//! postmaster already serving the cluster, its guardian tells whose it is:
//!
//! * guardian alive: the server belongs to a running hera-migrate (say `serve`,
//!   while an operator runs `seed-demo` on the same data directory). Stopping it
//!   would pull the database out from under that process, so `start` shares it
//!   instead: it waits until the server accepts connections and returns a
//!   handle that does not own it. Stopping or dropping that handle leaves the
//!   server alone; it goes away when its owner stops, taking the sharer's
//!   connections with it;
//! * no guardian: the server was left by a crash that killed the guardian too.
//!   It is shut down before a new one starts.
//!
//! # Connections
//!
//! The server allows 200 connections (`max_connections=200`), shared by every
//! process using the cluster. The service pool may be configured for up to 1000
//! (`HERA_DB_POOL_SIZE`); a pool near or above 200 (or pools that add up to it)
//! needs DATABASE_URL, naming a cluster configured for it. Raising
//! `max_connections` in the embedded cluster's `postgresql.conf` or with
//! `ALTER SYSTEM` has no effect: settings on the server's command line win.
mod binaries;
mod cluster;
mod error;
mod guardian;
mod layout;
mod process;
mod ready;
mod run_as;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgSslMode};
use tokio::process::{Child, Command};

pub use error::EmbeddedError;

use binaries::Binaries;
use guardian::Guardian;
use layout::Layout;
use run_as::RunAs;

/// The port number in the socket's name (`.s.PGSQL.5432`); no TCP is opened.
const PORT: u16 = 5432;
/// The cluster's superuser, created by initdb.
const SUPERUSER: &str = "hera";
/// The database the service uses, created on first start.
const DATABASE: &str = "hera";
/// Twice PostgreSQL's default: headroom for a larger service pool and for the
/// processes sharing the cluster; see "Connections" above.
const MAX_CONNECTIONS: &str = "max_connections=200";
/// How often a condition (a connection, a process gone) is checked again.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A running private PostgreSQL cluster, owned or shared (see "Sharing a data
/// directory" above). Stop it with [`EmbeddedPostgres::stop`]; dropping an
/// owned one instead only asks PostgreSQL to shut down, without waiting.
pub struct EmbeddedPostgres {
    layout: Layout,
    /// The postmaster's pid.
    pid: i32,
    /// Our postmaster; `None` when the cluster is shared or once stopped.
    child: Option<Child>,
    /// Our postmaster's guardian; `None` when the cluster is shared.
    guardian: Option<Guardian>,
}

impl std::fmt::Debug for EmbeddedPostgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedPostgres")
            .field("data_dir", &self.layout.data_dir)
            .field("socket_dir", &self.layout.socket_dir)
            .field("pid", &self.pid)
            .field("owned", &self.child.is_some())
            .finish()
    }
}

impl EmbeddedPostgres {
    /// The default data directory: `/var/lib/hera-migrate` when running as root;
    /// otherwise `$XDG_DATA_HOME/hera-migrate`, else `$HOME/.local/share/hera-migrate`
    /// (the home directory comes from the password database when `HOME` is unset).
    pub fn default_data_dir() -> PathBuf {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        if euid == 0 {
            return PathBuf::from("/var/lib/hera-migrate");
        }
        let absolute = |var: &str| {
            std::env::var_os(var)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        if let Some(xdg) = absolute("XDG_DATA_HOME") {
            return xdg.join("hera-migrate");
        }
        let home = absolute("HOME").or_else(|| run_as::user_by_uid(euid).map(|u| u.home));
        match home {
            Some(home) => home.join(".local/share/hera-migrate"),
            None => std::env::temp_dir().join(format!("hera-migrate-{euid}")),
        }
    }

    /// Starts the cluster kept in `data_dir` (creating it on first use), or
    /// shares it when a running hera-migrate serves it already, and waits until
    /// it accepts connections and the database `hera` exists.
    pub async fn start(data_dir: &Path) -> Result<Self, EmbeddedError> {
        let layout = Layout::new(data_dir)?;
        let run_as = RunAs::current()?;
        let wanted_version = cluster::cluster_version(&layout.pgdata);
        let bins = binaries::find_binaries(wanted_version.as_deref()).await?;
        tracing::info!(
            bin_dir = %bins.dir.display(),
            data_dir = %layout.data_dir.display(),
            user = %run_as.name,
            "starting embedded PostgreSQL"
        );
        layout.prepare(&run_as)?;
        cluster::ensure_cluster(&layout, &bins, &run_as).await?;
        if let Some(pid) = process::live_postmaster(&layout.pgdata) {
            match guardian::owner_of(pid) {
                Some(owner) => return Self::share(layout, pid, owner).await,
                None => process::stop_orphan(pid, &layout.pgdata).await?,
            }
        }
        Self::spawn(layout, &bins, &run_as).await
    }

    /// Starts our own postmaster and waits until it serves; on failure, stops
    /// it again, so nothing is left behind.
    async fn spawn(layout: Layout, bins: &Binaries, run_as: &RunAs) -> Result<Self, EmbeddedError> {
        let (log, log_offset) = layout::open_log(&layout.log_file, run_as)?;
        let log_err = |e| EmbeddedError::io("open", &layout.log_file, e);
        let mut cmd = Command::new(&bins.postgres);
        cmd.arg("-D")
            .arg(&layout.pgdata)
            .arg("-k")
            .arg(&layout.socket_dir)
            .arg("-p")
            .arg(PORT.to_string())
            // No TCP: the socket alone, usable by the run-as user alone.
            .args(["-c", "listen_addresses="])
            .args(["-c", "unix_socket_permissions=0700"])
            .args(["-c", MAX_CONNECTIONS])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(log_err)?)
            .stderr(log)
            // Out of the terminal's process group: Ctrl-C reaches only us.
            .process_group(0);
        run_as.configure(&mut cmd, &layout.data_dir);
        let child = cmd.spawn().map_err(|error| EmbeddedError::Spawn {
            program: bins.postgres.clone(),
            error,
        })?;
        let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
        let mut pg = EmbeddedPostgres {
            layout,
            pid,
            child: Some(child),
            guardian: None,
        };
        if let Err(e) = pg.guard_and_wait(log_offset).await {
            // The startup error is the one worth reporting.
            let _ = pg.shutdown().await;
            return Err(e);
        }
        tracing::info!(
            pid,
            socket_dir = %pg.layout.socket_dir.display(),
            "embedded PostgreSQL is ready"
        );
        Ok(pg)
    }

    /// Gives our new postmaster its guardian, waits until it accepts
    /// connections and creates the database `hera` if needed.
    async fn guard_and_wait(&mut self, log_offset: u64) -> Result<(), EmbeddedError> {
        self.guardian = Some(Guardian::spawn(self.pid)?);
        let options = self.connect_options("postgres");
        let (layout, child) = (&self.layout, &mut self.child);
        let exited = || {
            let status = child.as_mut()?.try_wait().ok()??;
            *child = None;
            Some(EmbeddedError::Exited {
                status,
                tail: layout::tail_of_file(&layout.log_file, log_offset),
                log: layout.log_file.clone(),
            })
        };
        let conn = ready::wait_ready(layout, &options, exited).await?;
        ready::ensure_database(conn).await
    }

    /// Uses the postmaster `pid` that the running process `owner` started,
    /// without owning it: no child, no guardian.
    async fn share(layout: Layout, pid: i32, owner: i32) -> Result<Self, EmbeddedError> {
        let pg = EmbeddedPostgres {
            layout,
            pid,
            child: None,
            guardian: None,
        };
        let stopped = || {
            (!process::process_alive(pid)).then_some(EmbeddedError::SharedStopped { pid, owner })
        };
        let conn = ready::wait_ready(&pg.layout, &pg.connect_options("postgres"), stopped).await?;
        ready::ensure_database(conn).await?;
        tracing::info!(
            pid,
            owner,
            "sharing the embedded PostgreSQL cluster of process {owner}, which stops it"
        );
        Ok(pg)
    }

    /// Connection options for `database` over the cluster's unix socket, as the
    /// superuser `hera`.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        let socket_dir = &self.layout.socket_dir;
        PgConnectOptions::new_without_pgpass()
            .host(&socket_dir.to_string_lossy())
            .socket(socket_dir)
            .port(PORT)
            .username(SUPERUSER)
            .database(database)
            .ssl_mode(PgSslMode::Disable)
    }

    pub fn data_dir(&self) -> &Path {
        &self.layout.data_dir
    }

    /// The directory holding the unix socket `.s.PGSQL.5432`.
    pub fn socket_dir(&self) -> &Path {
        &self.layout.socket_dir
    }

    /// The process id of the postmaster.
    pub fn pid(&self) -> u32 {
        self.pid.unsigned_abs()
    }

    /// Stops PostgreSQL in order: a fast shutdown (SIGINT), then after a while an
    /// immediate one (SIGQUIT), then SIGKILL to all its processes, and reaps it.
    /// A shared cluster is left running: the process that started it stops it.
    pub async fn stop(mut self) -> Result<(), EmbeddedError> {
        self.shutdown().await
    }

    async fn shutdown(&mut self) -> Result<(), EmbeddedError> {
        // The guardian first, so it never signals a pid that is no longer ours.
        if let Some(guardian) = self.guardian.take() {
            guardian.dismiss().await;
        }
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let status = process::stop_child(&mut child, self.pid, &self.layout.pgdata).await?;
        tracing::info!(pid = self.pid, %status, "embedded PostgreSQL stopped");
        Ok(())
    }
}

impl Drop for EmbeddedPostgres {
    /// Best effort when [`EmbeddedPostgres::stop`] was not called: asks our
    /// PostgreSQL for a fast shutdown without waiting for it. A shared one has
    /// no child and no guardian, so it is left alone.
    fn drop(&mut self) {
        if let Some(guardian) = self.guardian.as_mut() {
            let _ = guardian.child.start_kill();
        }
        if let Some(child) = self.child.as_mut()
            && matches!(child.try_wait(), Ok(None))
        {
            tracing::warn!(
                pid = self.pid,
                "embedded PostgreSQL dropped without stop(); requesting fast shutdown"
            );
            process::send_signal(self.pid, libc::SIGINT);
        }
    }
}
