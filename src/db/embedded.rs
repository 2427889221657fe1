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
//! closes and the guardian asks PostgreSQL to shut down. A server left running by
//! an earlier crash (one whose guardian was killed too) is found through
//! `pgdata/postmaster.pid` and shut down before the new one starts.
//! Only one hera-migrate may use a given data directory at a time.
use std::ffi::{CStr, CString, OsStr};
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read as _, Seek as _};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};
use tokio::process::{Child, ChildStdin, Command};
use tokio::time::Instant;

/// The port number in the socket's name (`.s.PGSQL.5432`); no TCP is opened.
const PORT: u16 = 5432;
/// The cluster's superuser, created by initdb.
const SUPERUSER: &str = "hera";
/// The database the service uses, created on first start.
const DATABASE: &str = "hera";
/// `sun_path` holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
const LEFTOVER_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(8);
const QUIT_TIMEOUT: Duration = Duration::from_secs(10);
const INITDB_TIMEOUT: Duration = Duration::from_secs(300);
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Lines of output quoted in error messages.
const TAIL_LINES: usize = 6;

/// Waits for EOF on stdin (the pipe held by this process), then asks the
/// postmaster (`$1`) for a fast shutdown. Terminal signals are ignored: the
/// guardian lives exactly as long as the pipe.
const GUARDIAN_SCRIPT: &str = r#"trap '' INT HUP; read _; kill -INT "$1" 2>/dev/null"#;

/// Environment variables that would change what the server tools do.
const SCRUBBED_ENV: &[&str] = &[
    "PGDATA",
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGOPTIONS",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGSYSCONFDIR",
    "PGTZ",
    "PGCLIENTENCODING",
];

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
    #[error("cannot create the database `{DATABASE}` in the embedded cluster: {0}")]
    CreateDatabase(sqlx::Error),
    #[error("{0}")]
    Other(String),
}

impl EmbeddedError {
    fn io(action: &'static str, path: &Path, error: io::Error) -> Self {
        Self::Io {
            action,
            path: path.to_path_buf(),
            error,
        }
    }
}

/// A running private PostgreSQL cluster. Stop it with [`EmbeddedPostgres::stop`];
/// dropping it instead only asks PostgreSQL to shut down, without waiting.
pub struct EmbeddedPostgres {
    data_dir: PathBuf,
    pgdata: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    pid: i32,
    /// The postmaster; `None` once stopped.
    child: Option<Child>,
    guardian: Option<Guardian>,
}

struct Guardian {
    child: Child,
    /// The pipe the guardian waits on; closing it makes the guardian act.
    stdin: Option<ChildStdin>,
}

impl std::fmt::Debug for EmbeddedPostgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedPostgres")
            .field("data_dir", &self.data_dir)
            .field("socket_dir", &self.socket_dir)
            .field("pid", &self.pid)
            .field("running", &self.child.is_some())
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
        let home = absolute("HOME").or_else(|| user_by_uid(euid).map(|u| u.home));
        match home {
            Some(home) => home.join(".local/share/hera-migrate"),
            None => std::env::temp_dir().join(format!("hera-migrate-{euid}")),
        }
    }

    /// Starts the cluster kept in `data_dir` (creating it on first use) and waits
    /// until it accepts connections and the database `hera` exists.
    pub async fn start(data_dir: &Path) -> Result<Self, EmbeddedError> {
        let data_dir =
            std::path::absolute(data_dir).map_err(|e| EmbeddedError::io("resolve", data_dir, e))?;
        let pgdata = data_dir.join("pgdata");
        let log_file = data_dir.join("postgres.log");
        let run_as = RunAs::current()?;

        let version_file = pgdata.join("PG_VERSION");
        // Unreadable counts as existing: the owner check below says why.
        let cluster_exists = fs::symlink_metadata(&version_file)
            .map_or_else(|e| e.kind() != io::ErrorKind::NotFound, |_| true);
        let wanted_version = fs::read_to_string(&version_file)
            .ok()
            .map(|v| v.trim().to_owned());
        let bins = find_binaries(wanted_version.as_deref()).await?;
        tracing::info!(
            bin_dir = %bins.dir.display(),
            data_dir = %data_dir.display(),
            user = %run_as.name,
            "starting embedded PostgreSQL"
        );

        prepare_data_dir(&data_dir, &run_as)?;
        let socket_dir = socket_dir_for(&data_dir);
        prepare_socket_dir(&socket_dir, &run_as)?;

        if cluster_exists {
            check_pgdata_owner(&pgdata, &run_as)?;
        } else {
            init_cluster(&bins, &pgdata, &data_dir, &run_as).await?;
        }
        stop_leftover(&pgdata).await?;

        let (log, log_offset) = open_log(&log_file, &run_as)?;
        let mut cmd = Command::new(&bins.postgres);
        cmd.arg("-D")
            .arg(&pgdata)
            .arg("-k")
            .arg(&socket_dir)
            .arg("-p")
            .arg(PORT.to_string())
            .args([
                "-c",
                "listen_addresses=",
                "-c",
                "unix_socket_permissions=0700",
            ])
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .map_err(|e| EmbeddedError::io("open", &log_file, e))?,
            )
            .stderr(log)
            .process_group(0);
        configure_child(&mut cmd, &run_as, &data_dir);
        let child = cmd.spawn().map_err(|error| EmbeddedError::Spawn {
            program: bins.postgres.clone(),
            error,
        })?;
        let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
        let mut pg = EmbeddedPostgres {
            data_dir,
            pgdata,
            socket_dir,
            log_file,
            pid,
            child: Some(child),
            guardian: None,
        };

        let ready = async {
            pg.guardian = Some(spawn_guardian(pid)?);
            let conn = pg.wait_ready(log_offset).await?;
            ensure_database(conn).await
        }
        .await;
        if let Err(e) = ready {
            // Leave nothing behind; the startup error is the one worth reporting.
            let _ = pg.shutdown().await;
            return Err(e);
        }
        tracing::info!(
            pid,
            socket_dir = %pg.socket_dir.display(),
            "embedded PostgreSQL is ready"
        );
        Ok(pg)
    }

    /// Connection options for `database` over the cluster's unix socket, as the
    /// superuser `hera`.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new_without_pgpass()
            .host(&self.socket_dir.to_string_lossy())
            .socket(&self.socket_dir)
            .port(PORT)
            .username(SUPERUSER)
            .database(database)
            .ssl_mode(PgSslMode::Disable)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory holding the unix socket `.s.PGSQL.5432`.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The process id of the postmaster.
    pub fn pid(&self) -> u32 {
        self.pid.unsigned_abs()
    }

    /// Stops PostgreSQL in order: a fast shutdown (SIGINT), then after a while an
    /// immediate one (SIGQUIT), then SIGKILL to all its processes, and reaps it.
    pub async fn stop(mut self) -> Result<(), EmbeddedError> {
        self.shutdown().await
    }

    async fn shutdown(&mut self) -> Result<(), EmbeddedError> {
        // The guardian first, so it never signals a pid that is no longer ours.
        if let Some(mut guardian) = self.guardian.take() {
            let _ = guardian.child.start_kill();
            let _ = guardian.child.wait().await;
            drop(guardian.stdin.take());
        }
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = self.pid;
        let wait_err =
            |e| EmbeddedError::Other(format!("cannot wait for PostgreSQL (pid {pid}): {e}"));
        let status = match child.try_wait().map_err(wait_err)? {
            Some(status) => status,
            None => {
                tracing::info!(pid, "stopping embedded PostgreSQL");
                send_signal(pid, libc::SIGINT);
                match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
                    Ok(status) => status.map_err(wait_err)?,
                    Err(_) => {
                        tracing::warn!(pid, "PostgreSQL did not stop in time; immediate shutdown");
                        send_signal(pid, libc::SIGQUIT);
                        match tokio::time::timeout(QUIT_TIMEOUT, child.wait()).await {
                            Ok(status) => status.map_err(wait_err)?,
                            Err(_) => {
                                tracing::warn!(pid, "PostgreSQL ignored SIGQUIT; killing it");
                                // Its children are gone from view once it is reaped.
                                kill_all(&cluster_processes(&self.pgdata));
                                send_signal(pid, libc::SIGKILL);
                                child.wait().await.map_err(wait_err)?
                            }
                        }
                    }
                }
            }
        };
        // The postmaster waits for its children, but make sure none survived.
        let left = cluster_processes(&self.pgdata);
        if !left.is_empty() {
            tracing::warn!(pid, ?left, "killing PostgreSQL processes left behind");
            kill_all(&left);
        }
        tracing::info!(pid, %status, "embedded PostgreSQL stopped");
        Ok(())
    }

    /// Polls a connection over the socket until the server accepts it.
    async fn wait_ready(&mut self, log_offset: u64) -> Result<PgConnection, EmbeddedError> {
        let started = Instant::now();
        let deadline = started + READY_TIMEOUT;
        let options = self.connect_options("postgres");
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(EmbeddedError::Exited {
                    status,
                    tail: tail_of_file(&self.log_file, log_offset),
                    log: self.log_file.clone(),
                });
            }
            let attempt =
                CONNECT_ATTEMPT_TIMEOUT.min(deadline.saturating_duration_since(Instant::now()));
            let last_error =
                match tokio::time::timeout(attempt, PgConnection::connect_with(&options)).await {
                    Ok(Ok(conn)) => return Ok(conn),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => String::from("connection attempt timed out"),
                };
            if Instant::now() >= deadline {
                return Err(EmbeddedError::NotReady {
                    socket_dir: self.socket_dir.clone(),
                    waited: started.elapsed(),
                    last_error,
                    log: self.log_file.clone(),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for EmbeddedPostgres {
    /// Best effort when [`EmbeddedPostgres::stop`] was not called: asks
    /// PostgreSQL for a fast shutdown without waiting for it.
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
            send_signal(self.pid, libc::SIGINT);
        }
    }
}

/// The user initdb and postgres run as.
#[derive(Debug, Clone)]
struct RunAs {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
    /// Whether the children must switch to this user (this process is root).
    switch: bool,
}

impl RunAs {
    fn current() -> Result<Self, EmbeddedError> {
        // SAFETY: these getters have no preconditions.
        let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
        if euid != 0 {
            let user = user_by_uid(euid);
            return Ok(RunAs {
                name: user
                    .as_ref()
                    .map(|u| u.name.clone())
                    .or_else(|| std::env::var("USER").ok())
                    .unwrap_or_else(|| euid.to_string()),
                uid: euid,
                gid: egid,
                home: user.map(|u| u.home).unwrap_or_default(),
                switch: false,
            });
        }
        let user = user_by_name("postgres")
            .or_else(|| user_by_name("nobody"))
            .filter(|u| u.uid != 0)
            .ok_or(EmbeddedError::NoUnprivilegedUser)?;
        Ok(RunAs {
            name: user.name,
            uid: user.uid,
            gid: user.gid,
            home: user.home,
            switch: true,
        })
    }

    /// Gives `path` to this user (when this process is root).
    fn take(&self, path: &Path) -> Result<(), EmbeddedError> {
        if self.switch {
            std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid))
                .map_err(|e| EmbeddedError::io("change the owner of", path, e))?;
        }
        Ok(())
    }

    /// Whether this user may search (traverse) a directory with `meta`.
    /// Supplementary groups are dropped, so only the primary group counts.
    fn can_search(&self, meta: &fs::Metadata) -> bool {
        let mode = meta.mode();
        if meta.uid() == self.uid {
            mode & 0o100 != 0
        } else if meta.gid() == self.gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        }
    }
}

struct User {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
}

fn user_by_name(name: &str) -> Option<User> {
    let cname = CString::new(name).ok()?;
    // SAFETY: getpwnam_r writes only into `pwd` and `buf`, both valid for the call.
    lookup_passwd(|pwd, buf, len, result| unsafe {
        libc::getpwnam_r(cname.as_ptr(), pwd, buf, len, result)
    })
}

fn user_by_uid(uid: u32) -> Option<User> {
    // SAFETY: getpwuid_r writes only into `pwd` and `buf`, both valid for the call.
    lookup_passwd(|pwd, buf, len, result| unsafe { libc::getpwuid_r(uid, pwd, buf, len, result) })
}

fn lookup_passwd(
    call: impl Fn(*mut libc::passwd, *mut libc::c_char, usize, *mut *mut libc::passwd) -> libc::c_int,
) -> Option<User> {
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: an all-zero passwd is a valid value (null pointers, zero ids).
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = call(&mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut result);
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || result.is_null() {
            return None;
        }
        // SAFETY: on success the string fields point into `buf`, NUL-terminated.
        let (name, home) = unsafe {
            (
                CStr::from_ptr(pwd.pw_name).to_string_lossy().into_owned(),
                PathBuf::from(OsStr::from_bytes(CStr::from_ptr(pwd.pw_dir).to_bytes())),
            )
        };
        return Some(User {
            name,
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
            home,
        });
    }
}

/// Switches a child to `uid`/`gid` with no supplementary groups. Runs between
/// fork and exec, so it makes only async-signal-safe calls. The order matters:
/// `setgroups` needs the privilege that `setuid` gives up.
fn drop_privileges(uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: plain system calls without pointers other than the null group list.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0
            || libc::setgid(gid) != 0
            || libc::setuid(uid) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Environment, working directory and user of initdb and postgres.
fn configure_child(cmd: &mut Command, run_as: &RunAs, cwd: &Path) {
    cmd.current_dir(cwd);
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    if run_as.switch {
        let home = if run_as.home.is_dir() {
            run_as.home.as_path()
        } else {
            cwd
        };
        cmd.env("HOME", home)
            .env("USER", &run_as.name)
            .env("LOGNAME", &run_as.name);
        let (uid, gid) = (run_as.uid, run_as.gid);
        // SAFETY: the closure only makes async-signal-safe system calls.
        unsafe {
            cmd.pre_exec(move || drop_privileges(uid, gid));
        }
    }
}

#[derive(Debug, Clone)]
struct Binaries {
    dir: PathBuf,
    initdb: PathBuf,
    postgres: PathBuf,
}

impl Binaries {
    fn in_dir(dir: &Path) -> Option<Self> {
        let initdb = dir.join("initdb");
        let postgres = dir.join("postgres");
        (is_executable(&initdb) && is_executable(&postgres)).then(|| Binaries {
            dir: dir.to_path_buf(),
            initdb,
            postgres,
        })
    }

    /// The major version the server reports (`15`, or `9.6` before 10), in the
    /// format of a cluster's `PG_VERSION`.
    async fn major_version(&self) -> Option<String> {
        let out = tokio::time::timeout(
            Duration::from_secs(10),
            Command::new(&self.postgres)
                .arg("--version")
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .ok()?
        .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        // "postgres (PostgreSQL) 15.13 (Debian 15.13-0+deb12u1)"
        let version = text.split_whitespace().nth(2)?;
        let mut parts = version.split(|c: char| !c.is_ascii_digit());
        let major = parts.next()?;
        if major.parse::<u32>().ok()? >= 10 {
            Some(major.to_owned())
        } else {
            Some(format!("{major}.{}", parts.next()?))
        }
    }
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
}

/// Finds the directory holding both `initdb` and `postgres` (see the module
/// documentation for the order). With `wanted_version`, a directory whose server
/// has that major version wins over the first one found.
async fn find_binaries(wanted_version: Option<&str>) -> Result<Binaries, EmbeddedError> {
    let mut found: Vec<Binaries> = Vec::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut consider = |dir: PathBuf, found: &mut Vec<Binaries>| {
        let key = fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
        if seen.contains(&key) {
            return;
        }
        seen.push(key);
        if let Some(b) = Binaries::in_dir(&dir) {
            found.push(b);
        }
    };
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path).filter(|d| d.is_absolute()) {
            consider(dir, &mut found);
        }
    }
    // The other places are only searched when needed.
    if found.is_empty() || wanted_version.is_some() {
        if let Some(dir) = pg_config_bindir().await {
            consider(dir, &mut found);
        }
        for dir in debian_bindirs() {
            consider(dir, &mut found);
        }
        consider(PathBuf::from("/usr/local/pgsql/bin"), &mut found);
    }
    let first = found
        .first()
        .cloned()
        .ok_or(EmbeddedError::BinariesNotFound)?;
    if let Some(wanted) = wanted_version {
        for b in &found {
            if b.major_version().await.as_deref() == Some(wanted) {
                return Ok(b.clone());
            }
        }
        tracing::warn!(
            cluster_version = wanted,
            bin_dir = %first.dir.display(),
            "no PostgreSQL server binaries match the cluster's version"
        );
    }
    Ok(first)
}

async fn pg_config_bindir() -> Option<PathBuf> {
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        Command::new("pg_config")
            .arg("--bindir")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .ok()?
    .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = PathBuf::from(OsStr::from_bytes(out.stdout.trim_ascii()));
    dir.is_absolute().then_some(dir)
}

/// `/usr/lib/postgresql/<version>/bin`, highest version first.
fn debian_bindirs() -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir("/usr/lib/postgresql") else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            let version = name
                .to_str()?
                .split('.')
                .map(|p| p.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()?;
            Some((version, e.path().join("bin")))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

fn is_empty_dir(path: &Path) -> bool {
    fs::read_dir(path).is_ok_and(|mut d| d.next().is_none())
}

/// Creates the data directory if needed and makes sure the run-as user can reach
/// it. As root, a root-owned data directory stays root's (files such as secrets
/// that root keeps there stay out of that user's reach), but its group becomes
/// the run-as user's, with search permission only: mode 0710 when created here.
fn prepare_data_dir(data_dir: &Path, run_as: &RunAs) -> Result<(), EmbeddedError> {
    match fs::metadata(data_dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(EmbeddedError::io(
                "use",
                data_dir,
                io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = data_dir.parent() {
                fs::create_dir_all(parent).map_err(|e| EmbeddedError::io("create", parent, e))?;
            }
            if let Err(e) = fs::DirBuilder::new().mode(0o700).create(data_dir)
                && !(e.kind() == io::ErrorKind::AlreadyExists && data_dir.is_dir())
            {
                return Err(EmbeddedError::io("create", data_dir, e));
            }
        }
        Err(e) => return Err(EmbeddedError::io("access", data_dir, e)),
    }
    if !run_as.switch {
        return Ok(());
    }
    let meta = fs::metadata(data_dir).map_err(|e| EmbeddedError::io("access", data_dir, e))?;
    if meta.uid() == 0 && !run_as.can_search(&meta) {
        std::os::unix::fs::lchown(data_dir, None, Some(run_as.gid))
            .map_err(|e| EmbeddedError::io("change the group of", data_dir, e))?;
        // The new group may search, nothing more.
        let mode = (meta.mode() & 0o7707) | 0o010;
        fs::set_permissions(data_dir, fs::Permissions::from_mode(mode))
            .map_err(|e| EmbeddedError::io("change the permissions of", data_dir, e))?;
    }
    for dir in data_dir.ancestors() {
        let meta = fs::metadata(dir).map_err(|e| EmbeddedError::io("access", dir, e))?;
        if !run_as.can_search(&meta) {
            return Err(EmbeddedError::Unreachable {
                user: run_as.name.clone(),
                data_dir: data_dir.to_path_buf(),
                blocker: dir.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// Checks that an existing cluster belongs to the user PostgreSQL runs as.
fn check_pgdata_owner(pgdata: &Path, run_as: &RunAs) -> Result<(), EmbeddedError> {
    let meta = fs::metadata(pgdata).map_err(|e| EmbeddedError::io("access", pgdata, e))?;
    if meta.uid() != run_as.uid {
        return Err(EmbeddedError::WrongOwner {
            path: pgdata.to_path_buf(),
            owner: meta.uid(),
            user: run_as.name.clone(),
            uid: run_as.uid,
        });
    }
    Ok(())
}

/// Creates the cluster: initdb into `pgdata.initdb`, then a rename to `pgdata`,
/// so an interrupted initdb never leaves a half-made cluster behind.
async fn init_cluster(
    bins: &Binaries,
    pgdata: &Path,
    data_dir: &Path,
    run_as: &RunAs,
) -> Result<(), EmbeddedError> {
    if fs::symlink_metadata(pgdata).is_ok() {
        if !is_empty_dir(pgdata) {
            return Err(EmbeddedError::NotACluster {
                pgdata: pgdata.to_path_buf(),
            });
        }
        fs::remove_dir(pgdata).map_err(|e| EmbeddedError::io("replace", pgdata, e))?;
    }
    let staging = data_dir.join("pgdata.initdb");
    match fs::symlink_metadata(&staging) {
        // Left by an interrupted earlier attempt.
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(&staging),
        Ok(_) => fs::remove_file(&staging),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
    .map_err(|e| EmbeddedError::io("remove", &staging, e))?;
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(|e| EmbeddedError::io("create", &staging, e))?;
    run_as.take(&staging)?;
    run_initdb(bins, &staging, data_dir, run_as).await?;
    fs::rename(&staging, pgdata).map_err(|e| EmbeddedError::io("create", pgdata, e))
}

/// `data_dir/run`, or a short directory under /tmp when the socket path in
/// `data_dir/run` would be too long for the kernel.
fn socket_dir_for(data_dir: &Path) -> PathBuf {
    let preferred = data_dir.join("run");
    if socket_path_len(&preferred) <= MAX_SOCKET_PATH {
        return preferred;
    }
    PathBuf::from(format!(
        "/tmp/hera-migrate-{:012x}",
        fnv1a(data_dir.as_os_str().as_bytes()) & 0xffff_ffff_ffff
    ))
}

fn socket_path_len(socket_dir: &Path) -> usize {
    socket_dir.as_os_str().len() + format!("/.s.PGSQL.{PORT}").len()
}

/// FNV-1a, 64 bits: a hash that is stable across builds and platforms.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Creates the socket directory (mode 0700, owned by the run-as user) or checks
/// that an existing one is a real directory of that user, not a planted symlink.
fn prepare_socket_dir(dir: &Path, run_as: &RunAs) -> Result<(), EmbeddedError> {
    let unsafe_dir = || EmbeddedError::UnsafeSocketDir {
        path: dir.to_path_buf(),
        user: run_as.name.clone(),
    };
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => run_as.take(dir)?,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let meta =
                fs::symlink_metadata(dir).map_err(|e| EmbeddedError::io("access", dir, e))?;
            if !meta.is_dir() {
                return Err(unsafe_dir());
            }
            if meta.uid() != run_as.uid {
                // Root may reclaim a directory only root could have made.
                if !(run_as.switch && meta.uid() == 0) {
                    return Err(unsafe_dir());
                }
                run_as.take(dir)?;
            }
            if meta.mode() & 0o077 != 0 {
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                    .map_err(|e| EmbeddedError::io("restrict", dir, e))?;
            }
        }
        Err(e) => return Err(EmbeddedError::io("create", dir, e)),
    }
    Ok(())
}

/// Opens the server log for appending; returns it and its length before this run.
fn open_log(path: &Path, run_as: &RunAs) -> Result<(fs::File, u64), EmbeddedError> {
    let file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        // The data directory may belong to the run-as user: never follow a link.
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| EmbeddedError::io("open", path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| EmbeddedError::io("open", path, e))?;
    if run_as.switch && meta.uid() != run_as.uid {
        std::os::unix::fs::fchown(&file, Some(run_as.uid), Some(run_as.gid))
            .map_err(|e| EmbeddedError::io("change the owner of", path, e))?;
    }
    Ok((file, meta.len()))
}

async fn run_initdb(
    bins: &Binaries,
    pgdata: &Path,
    data_dir: &Path,
    run_as: &RunAs,
) -> Result<(), EmbeddedError> {
    tracing::info!(pgdata = %pgdata.display(), "initializing the embedded PostgreSQL cluster");
    let mut cmd = Command::new(&bins.initdb);
    cmd.arg("-D")
        .arg(pgdata)
        .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-locale"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    configure_child(&mut cmd, run_as, data_dir);
    let spawn_err = |error| EmbeddedError::Spawn {
        program: bins.initdb.clone(),
        error,
    };
    let out = match tokio::time::timeout(INITDB_TIMEOUT, cmd.output()).await {
        Ok(out) => out.map_err(spawn_err)?,
        Err(_) => {
            return Err(EmbeddedError::Initdb {
                pgdata: pgdata.to_path_buf(),
                status: format!("no result within {}s", INITDB_TIMEOUT.as_secs()),
                tail: String::from("killed"),
            });
        }
    };
    if !out.status.success() {
        // initdb reports errors on stderr; its stdout is progress.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let text = if stderr.trim().is_empty() {
            String::from_utf8_lossy(&out.stdout)
        } else {
            stderr
        };
        return Err(EmbeddedError::Initdb {
            pgdata: pgdata.to_path_buf(),
            status: out.status.to_string(),
            tail: tail_lines(&text),
        });
    }
    Ok(())
}

/// The last few non-empty lines of `text`, on one line.
fn tail_lines(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let tail = &lines[lines.len().saturating_sub(TAIL_LINES)..];
    if tail.is_empty() {
        return String::from("(no output)");
    }
    tail.iter().fold(String::new(), |mut acc, line| {
        if !acc.is_empty() {
            acc.push_str(" | ");
        }
        let _ = write!(acc, "{line}");
        acc
    })
}

/// The tail of what was written to `path` after `offset`.
fn tail_of_file(path: &Path, offset: u64) -> String {
    let mut text = String::new();
    let read = fs::File::open(path).and_then(|mut f| {
        let len = f.metadata()?.len();
        // Only the end matters; skip what precedes this run and very long logs.
        f.seek(io::SeekFrom::Start(
            offset.max(len.saturating_sub(64 * 1024)),
        ))?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)?;
        text = String::from_utf8_lossy(&bytes).into_owned();
        Ok(())
    });
    match read {
        Ok(()) => tail_lines(&text),
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

fn send_signal(pid: i32, signal: libc::c_int) {
    if pid != 0 && pid != -1 {
        // SAFETY: kill has no memory-safety preconditions; pid 0/-1 are excluded.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// Whether `pid` names a live process (not a zombie).
fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence.
    let exists = unsafe { libc::kill(pid, 0) } == 0
        || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    exists && process_state(pid).is_some_and(|s| s != 'Z' && s != 'X')
}

/// The state letter from `/proc/<pid>/stat`.
fn process_state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ...": comm may itself contain parentheses.
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// Whether `pid` is a postgres process whose working directory is `real_pgdata`
/// (the canonical path): the postmaster and all its children chdir there.
fn is_postgres_in(pid: i32, real_pgdata: &Path) -> bool {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    comm.trim_end() == "postgres"
        && fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == real_pgdata)
}

/// The live processes of the cluster in `pgdata`. PostgreSQL's children each run
/// in their own session, so they are found by their working directory, not by
/// process group.
fn cluster_processes(pgdata: &Path) -> Vec<i32> {
    let (Ok(real), Ok(entries)) = (fs::canonicalize(pgdata), fs::read_dir("/proc")) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| is_postgres_in(pid, &real) && process_alive(pid))
        .collect()
}

/// SIGKILL to each process and to the process group it leads, if any.
fn kill_all(pids: &[i32]) {
    for &pid in pids {
        send_signal(pid, libc::SIGKILL);
        send_signal(-pid, libc::SIGKILL);
    }
}

/// Whether `pid` is a postmaster serving `pgdata`.
fn is_postmaster_of(pid: i32, pgdata: &Path) -> bool {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim_end() != "postgres" {
        return false;
    }
    // The postmaster's working directory is its data directory.
    if let (Ok(cwd), Ok(real)) = (
        fs::read_link(format!("/proc/{pid}/cwd")),
        fs::canonicalize(pgdata),
    ) {
        return cwd == real;
    }
    // Otherwise look for `-D <pgdata>` on its command line.
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    args.windows(2)
        .any(|w| w[0] == b"-D" && w[1] == pgdata.as_os_str().as_bytes())
}

/// Polls until `pid` is gone; returns whether it went before `timeout`.
async fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !process_alive(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Shuts down a postmaster left running on `pgdata` by an earlier run.
async fn stop_leftover(pgdata: &Path) -> Result<(), EmbeddedError> {
    let Ok(text) = fs::read_to_string(pgdata.join("postmaster.pid")) else {
        return Ok(());
    };
    let Some(pid) = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok())
        .filter(|&p| p > 0)
    else {
        return Ok(());
    };
    if !process_alive(pid) || !is_postmaster_of(pid, pgdata) {
        // A stale pid file: postgres itself handles it.
        return Ok(());
    }
    tracing::warn!(
        pid,
        "stopping a PostgreSQL left over from a previous run on this data directory"
    );
    send_signal(pid, libc::SIGINT);
    if wait_gone(pid, LEFTOVER_TIMEOUT).await {
        return Ok(());
    }
    tracing::warn!(
        pid,
        "left-over PostgreSQL did not stop in time; immediate shutdown"
    );
    send_signal(pid, libc::SIGQUIT);
    if wait_gone(pid, QUIT_TIMEOUT).await {
        return Ok(());
    }
    Err(EmbeddedError::Leftover {
        pid,
        pgdata: pgdata.to_path_buf(),
    })
}

/// Starts the guardian that stops PostgreSQL when this process goes away.
fn spawn_guardian(pid: i32) -> Result<Guardian, EmbeddedError> {
    let sh = PathBuf::from("/bin/sh");
    let mut child = Command::new(&sh)
        .arg("-c")
        .arg(GUARDIAN_SCRIPT)
        .arg("hera-pg-guardian")
        .arg(pid.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir("/")
        .process_group(0)
        .spawn()
        .map_err(|error| EmbeddedError::Spawn { program: sh, error })?;
    let stdin = child.stdin.take();
    Ok(Guardian { child, stdin })
}

/// Creates the database `hera` unless it exists (tolerating a concurrent create).
async fn ensure_database(mut conn: PgConnection) -> Result<(), EmbeddedError> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(DATABASE)
            .fetch_one(&mut conn)
            .await
            .map_err(EmbeddedError::CreateDatabase)?;
    if !exists {
        match sqlx::query("CREATE DATABASE hera").execute(&mut conn).await {
            Ok(_) => tracing::info!(database = DATABASE, "created database"),
            // duplicate_database, or the unique index when racing another create.
            Err(sqlx::Error::Database(e))
                if matches!(e.code().as_deref(), Some("42P04") | Some("23505")) => {}
            Err(e) => return Err(EmbeddedError::CreateDatabase(e)),
        }
    }
    let _ = conn.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt as _, BufReader};

    /// Set in the helper process the crash tests spawn: `<mode>:<data dir>`.
    const HELPER_ENV: &str = "HERA_EMBEDDED_TEST_HELPER";

    fn nothing_left(data_dir: &Path) -> bool {
        cluster_processes(&data_dir.join("pgdata")).is_empty()
    }

    async fn select_one(pg: &EmbeddedPostgres, database: &str) {
        let mut conn = PgConnection::connect_with(&pg.connect_options(database))
            .await
            .expect("connect over the unix socket");
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(one, 1);
        conn.close().await.unwrap();
    }

    #[tokio::test]
    async fn starts_serves_stops_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let pg = EmbeddedPostgres::start(dir.path()).await.unwrap();
        let pid = pg.pid() as i32;
        assert!(process_alive(pid));
        let running = cluster_processes(&dir.path().join("pgdata"));
        assert!(running.contains(&pid) && running.len() > 1, "{running:?}");
        assert_eq!(pg.data_dir(), dir.path());
        assert_eq!(pg.socket_dir(), dir.path().join("run"));
        assert!(dir.path().join("run/.s.PGSQL.5432").exists());
        let version_file = dir.path().join("pgdata/PG_VERSION");
        let first_init = fs::metadata(&version_file).unwrap();

        select_one(&pg, "hera").await;
        let mut conn = PgConnection::connect_with(&pg.connect_options("hera"))
            .await
            .unwrap();
        let (user, db): (String, String) =
            sqlx::query_as("SELECT current_user::text, current_database()::text")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_eq!((user.as_str(), db.as_str()), ("hera", "hera"));
        let listen: String = sqlx::query_scalar("SHOW listen_addresses")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(listen, "", "no TCP listener");
        sqlx::query("CREATE DATABASE persisted_marker")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();

        pg.stop().await.unwrap();
        assert!(!process_alive(pid), "postgres {pid} survived stop()");
        assert!(
            nothing_left(dir.path()),
            "a postgres process of the cluster survived stop()"
        );
        assert!(!dir.path().join("pgdata/postmaster.pid").exists());
        let log = fs::read_to_string(dir.path().join("postgres.log")).unwrap();
        assert!(log.contains("database system is ready"), "{log}");

        // Second run on the same directory: no initdb, the data is still there.
        let pg = EmbeddedPostgres::start(dir.path()).await.unwrap();
        let second_init = fs::metadata(&version_file).unwrap();
        assert_eq!(first_init.ino(), second_init.ino());
        assert_eq!(first_init.mtime(), second_init.mtime());
        let mut conn = PgConnection::connect_with(&pg.connect_options("postgres"))
            .await
            .unwrap();
        let kept: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'persisted_marker')",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert!(kept, "the database created in the first run is gone");
        conn.close().await.unwrap();
        let pid = pg.pid() as i32;
        pg.stop().await.unwrap();
        assert!(!process_alive(pid));
        assert!(nothing_left(dir.path()));
    }

    #[tokio::test]
    async fn guardian_stops_postgres_when_its_owner_vanishes() {
        let dir = tempfile::tempdir().unwrap();
        let mut pg = EmbeddedPostgres::start(dir.path()).await.unwrap();
        let pid = pg.pid() as i32;
        let mut child = pg.child.take().unwrap();
        let mut guardian = pg.guardian.take().unwrap();
        // A crash: no stop(), no Drop.
        std::mem::forget(pg);
        assert!(process_alive(pid));

        // What the kernel does when this process dies: the guardian's pipe closes.
        drop(guardian.stdin.take());
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .expect("postgres still running 30s after its guardian's pipe closed")
            .unwrap();
        assert!(status.success(), "fast shutdown exits cleanly: {status}");
        assert!(nothing_left(dir.path()));
        let guardian_status = tokio::time::timeout(Duration::from_secs(10), guardian.child.wait())
            .await
            .expect("guardian still running")
            .unwrap();
        assert!(guardian_status.success());
    }

    #[tokio::test]
    async fn drop_without_stop_shuts_postgres_down() {
        let dir = tempfile::tempdir().unwrap();
        let pg = EmbeddedPostgres::start(dir.path()).await.unwrap();
        let pid = pg.pid() as i32;
        drop(pg);
        assert!(wait_gone(pid, Duration::from_secs(30)).await);
        // The postmaster exits last, after all its children.
        assert!(nothing_left(dir.path()));
    }

    /// Runs in a child process spawned by the crash tests: starts the cluster,
    /// reports the postmaster's pid and waits to be killed.
    #[tokio::test]
    #[ignore = "helper process for the crash tests"]
    async fn crash_helper() {
        let Ok(spec) = std::env::var(HELPER_ENV) else {
            return;
        };
        let (mode, dir) = spec.split_once(':').unwrap();
        let mut pg = EmbeddedPostgres::start(Path::new(dir)).await.unwrap();
        if mode == "orphan" {
            // Lose the guardian too, as if it had been killed along with us.
            let mut guardian = pg.guardian.take().unwrap();
            guardian.child.start_kill().unwrap();
            guardian.child.wait().await.unwrap();
        }
        println!("PGPID={}", pg.pid());
        std::future::pending::<()>().await;
    }

    async fn spawn_helper(mode: &str, dir: &Path) -> (Child, i32) {
        let mut helper = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "db::embedded::tests::crash_helper",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HELPER_ENV, format!("{mode}:{}", dir.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(helper.stdout.take().unwrap()).lines();
        let pid = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                // libtest prints "test <name> ... " on the same line.
                if let Some((_, pid)) = line.split_once("PGPID=") {
                    return pid.trim().parse::<i32>().unwrap();
                }
            }
            panic!("the helper exited without starting PostgreSQL");
        })
        .await
        .expect("the helper did not start PostgreSQL within 60s");
        (helper, pid)
    }

    #[tokio::test]
    async fn sigkill_of_the_owner_stops_postgres() {
        let dir = tempfile::tempdir().unwrap();
        let (mut helper, pid) = spawn_helper("crash", dir.path()).await;
        assert!(process_alive(pid));
        helper.start_kill().unwrap(); // SIGKILL
        helper.wait().await.unwrap();
        assert!(
            wait_gone(pid, Duration::from_secs(30)).await,
            "postgres {pid} outlived the process that started it"
        );
        assert!(nothing_left(dir.path()));

        // And the next run on the same directory starts normally.
        let pg = EmbeddedPostgres::start(dir.path()).await.unwrap();
        select_one(&pg, "hera").await;
        pg.stop().await.unwrap();
        assert!(nothing_left(dir.path()));
    }

    #[tokio::test]
    async fn leftover_postgres_is_stopped_before_starting() {
        let dir = tempfile::tempdir().unwrap();
        let (mut helper, old_pid) = spawn_helper("orphan", dir.path()).await;
        helper.start_kill().unwrap();
        helper.wait().await.unwrap();
        // Without a guardian, the orphaned server keeps running.
        assert!(process_alive(old_pid));
        assert!(is_postmaster_of(old_pid, &dir.path().join("pgdata")));

        let pg = EmbeddedPostgres::start(dir.path()).await.unwrap();
        assert!(!process_alive(old_pid), "the left-over postgres still runs");
        assert_ne!(pg.pid() as i32, old_pid);
        select_one(&pg, "hera").await;
        pg.stop().await.unwrap();
        assert!(nothing_left(dir.path()));
    }

    #[tokio::test]
    async fn long_data_dir_gets_a_short_socket_dir() {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let data_dir = dir.path().join("d".repeat(60)).join("e".repeat(60));
        let pg = EmbeddedPostgres::start(&data_dir).await.unwrap();
        let socket_dir = pg.socket_dir().to_path_buf();
        assert!(
            socket_dir.starts_with("/tmp")
                && socket_dir.to_string_lossy().contains("hera-migrate-"),
            "{}",
            socket_dir.display()
        );
        assert_eq!(socket_dir, socket_dir_for(&data_dir));
        select_one(&pg, "hera").await;
        pg.stop().await.unwrap();
        let _ = fs::remove_dir_all(&socket_dir);
    }

    #[tokio::test]
    async fn root_keeps_the_data_dir_and_its_files() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        // As a server's own files would be: root's alone.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
        let secret = dir.path().join("secret");
        fs::write(&secret, "root only").unwrap();
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
        let pg = EmbeddedPostgres::start(dir.path()).await.unwrap();
        let run_as = RunAs::current().unwrap();
        let meta = fs::metadata(dir.path()).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (0, run_as.gid));
        assert_eq!(meta.mode() & 0o777, 0o710);
        assert_eq!(fs::metadata(&secret).unwrap().uid(), 0);
        for owned in ["pgdata", "run"] {
            let meta = fs::metadata(dir.path().join(owned)).unwrap();
            assert_eq!(meta.uid(), run_as.uid, "{owned}");
            assert_eq!(meta.mode() & 0o777, 0o700, "{owned}");
        }
        select_one(&pg, "hera").await;
        pg.stop().await.unwrap();
    }

    #[tokio::test]
    async fn unreachable_data_dir_is_reported_when_root() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
        let err = EmbeddedPostgres::start(&dir.path().join("inner"))
            .await
            .unwrap_err();
        assert!(matches!(err, EmbeddedError::Unreachable { .. }), "{err}");
        let msg = err.to_string();
        assert!(!msg.contains('\n'), "{msg}");
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    }

    #[tokio::test]
    async fn non_empty_pgdata_without_cluster_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pgdata = dir.path().join("pgdata");
        fs::create_dir(&pgdata).unwrap();
        fs::write(pgdata.join("junk"), "not a cluster").unwrap();
        let err = EmbeddedPostgres::start(dir.path()).await.unwrap_err();
        assert!(matches!(err, EmbeddedError::NotACluster { .. }), "{err}");
        assert!(pgdata.join("junk").exists(), "nothing is deleted");
    }

    #[tokio::test]
    async fn interrupted_initdb_is_redone() {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join("pgdata.initdb");
        fs::create_dir(&staging).unwrap();
        fs::write(staging.join("PG_VERSION"), "15\n").unwrap();
        fs::create_dir(dir.path().join("pgdata")).unwrap();
        let pg = EmbeddedPostgres::start(dir.path()).await.unwrap();
        assert!(!staging.exists());
        select_one(&pg, "hera").await;
        pg.stop().await.unwrap();
    }

    #[tokio::test]
    async fn initdb_failure_quotes_its_errors() {
        let bins = find_binaries(None).await.unwrap();
        let run_as = RunAs::current().unwrap();
        let err = run_initdb(
            &bins,
            Path::new("/proc/hera-no-such-dir/pgdata"),
            Path::new("/"),
            &run_as,
        )
        .await
        .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, EmbeddedError::Initdb { .. }), "{msg}");
        assert!(msg.contains("initdb: error"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[tokio::test]
    async fn startup_failure_quotes_the_server_log() {
        let dir = tempfile::tempdir().unwrap();
        EmbeddedPostgres::start(dir.path())
            .await
            .unwrap()
            .stop()
            .await
            .unwrap();
        let conf = dir.path().join("pgdata/postgresql.conf");
        let mut text = fs::read_to_string(&conf).unwrap();
        text.push_str("\nhera_bogus_setting_xyz = 1\n");
        fs::write(&conf, text).unwrap();
        let err = EmbeddedPostgres::start(dir.path()).await.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, EmbeddedError::Exited { .. }), "{msg}");
        assert!(msg.contains("hera_bogus_setting_xyz"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        assert!(nothing_left(dir.path()));
    }

    #[test]
    fn socket_dir_stays_inside_short_data_dirs() {
        assert_eq!(
            socket_dir_for(Path::new("/var/lib/hera-migrate")),
            PathBuf::from("/var/lib/hera-migrate/run")
        );
        let long = PathBuf::from(format!("/srv/{}", "x".repeat(100)));
        let short = socket_dir_for(&long);
        assert!(short.starts_with("/tmp"));
        assert!(socket_path_len(&short) <= MAX_SOCKET_PATH);
        assert_eq!(short, socket_dir_for(&long), "stable across calls");
        assert_ne!(short, socket_dir_for(&long.join("y")));
    }

    #[test]
    fn fnv1a_is_the_reference_hash() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn tails_are_one_line() {
        assert_eq!(tail_lines(""), "(no output)");
        let text = (1..=10).map(|i| format!("line {i}\n")).collect::<String>();
        assert_eq!(
            tail_lines(&text),
            "line 5 | line 6 | line 7 | line 8 | line 9 | line 10"
        );
    }

    #[test]
    fn default_data_dir_follows_the_documented_rule() {
        let dir = EmbeddedPostgres::default_data_dir();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(dir, PathBuf::from("/var/lib/hera-migrate"));
        } else {
            assert!(dir.ends_with("hera-migrate"), "{}", dir.display());
        }
    }

    #[tokio::test]
    async fn finds_the_local_server_binaries() {
        let bins = find_binaries(None).await.unwrap();
        assert!(is_executable(&bins.initdb) && is_executable(&bins.postgres));
        let version = bins.major_version().await.expect("postgres --version");
        let same = find_binaries(Some(&version)).await.unwrap();
        assert_eq!(
            same.major_version().await.as_deref(),
            Some(version.as_str())
        );
    }

    #[test]
    fn errors_are_one_line() {
        for err in [
            EmbeddedError::BinariesNotFound,
            EmbeddedError::NoUnprivilegedUser,
            EmbeddedError::Leftover {
                pid: 42,
                pgdata: PathBuf::from("/x/pgdata"),
            },
        ] {
            assert!(!err.to_string().contains('\n'), "{err}");
        }
        assert!(
            EmbeddedError::BinariesNotFound
                .to_string()
                .contains("apt-get install postgresql")
        );
    }
}
