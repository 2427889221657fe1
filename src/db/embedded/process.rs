//! PostgreSQL's processes: signals, what `/proc` says about them, and stopping
//! a postmaster, ours or one left over.
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use tokio::process::Child;
use tokio::time::Instant;

use super::{EmbeddedError, POLL_INTERVAL};

/// How long our own server gets for a fast shutdown.
const STOP_TIMEOUT: Duration = Duration::from_secs(8);
/// How long a left-over server gets for a fast shutdown: it may have been
/// busy when its owner died.
const LEFTOVER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an immediate shutdown may take.
const QUIT_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn send_signal(pid: i32, signal: libc::c_int) {
    // 0 and -1 would signal our own process group or every process.
    if pid != 0 && pid != -1 {
        // SAFETY: kill has no memory-safety preconditions; pid 0/-1 are excluded.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// Whether `pid` names a live process (not a zombie).
pub(super) fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence.
    let exists = unsafe { libc::kill(pid, 0) } == 0
        || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    exists && stat(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// The state letter and the parent's pid from `/proc/<pid>/stat`.
pub(super) fn stat(pid: i32) -> Option<(char, i32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid ...": comm may itself contain parentheses.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.next()?.parse().ok()?))
}

/// The arguments of `pid`, as `/proc/<pid>/cmdline` holds them.
pub(super) fn cmdline(pid: i32) -> Vec<Vec<u8>> {
    let bytes = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    bytes.split(|&b| b == 0).map(<[u8]>::to_vec).collect()
}

/// The pids of `/proc`, that is of every process.
pub(super) fn all_pids() -> impl Iterator<Item = i32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
}

fn is_postgres(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim_end() == "postgres")
}

/// Whether `pid` is a postmaster serving `pgdata`. The postmaster and all its
/// children chdir to their data directory; when that link is not readable (a
/// process of another user), `-D <pgdata>` on the command line tells.
pub(super) fn is_postmaster_of(pid: i32, pgdata: &Path) -> bool {
    if !is_postgres(pid) {
        return false;
    }
    if let (Ok(cwd), Ok(real)) = (
        fs::read_link(format!("/proc/{pid}/cwd")),
        fs::canonicalize(pgdata),
    ) {
        return cwd == real;
    }
    cmdline(pid)
        .windows(2)
        .any(|w| w[0] == b"-D" && w[1] == pgdata.as_os_str().as_bytes())
}

/// The live processes of the cluster in `pgdata`. PostgreSQL's children each run
/// in their own session, so they are found by their working directory, not by
/// process group.
pub(super) fn cluster_processes(pgdata: &Path) -> Vec<i32> {
    let Ok(real) = fs::canonicalize(pgdata) else {
        return Vec::new();
    };
    let in_cluster = |pid: i32| {
        is_postgres(pid)
            && fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == real)
            && process_alive(pid)
    };
    all_pids().filter(|&pid| in_cluster(pid)).collect()
}

/// SIGKILL to each process and to the process group it leads, if any.
fn kill_all(pids: &[i32]) {
    for &pid in pids {
        send_signal(pid, libc::SIGKILL);
        send_signal(-pid, libc::SIGKILL);
    }
}

/// Polls until `pid` is gone; returns whether it went before `timeout`.
pub(super) async fn wait_gone(pid: i32, timeout: Duration) -> bool {
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

/// Asks the postmaster `pid` for a fast shutdown (SIGINT), and after `patience`
/// for an immediate one (SIGQUIT); returns whether it is gone.
async fn interrupt_then_quit(pid: i32, patience: Duration) -> bool {
    send_signal(pid, libc::SIGINT);
    if wait_gone(pid, patience).await {
        return true;
    }
    tracing::warn!(pid, "PostgreSQL did not stop in time; immediate shutdown");
    send_signal(pid, libc::SIGQUIT);
    wait_gone(pid, QUIT_TIMEOUT).await
}

/// The pid of a live postmaster serving `pgdata`, from `postmaster.pid`.
pub(super) fn live_postmaster(pgdata: &Path) -> Option<i32> {
    let text = fs::read_to_string(pgdata.join("postmaster.pid")).ok()?;
    let pid = text.lines().next()?.trim().parse::<i32>().ok()?;
    // Otherwise the pid file is stale, which postgres itself handles.
    (process_alive(pid) && is_postmaster_of(pid, pgdata)).then_some(pid)
}

/// Shuts down a postmaster that no live hera-migrate owns any more.
pub(super) async fn stop_orphan(pid: i32, pgdata: &Path) -> Result<(), EmbeddedError> {
    tracing::warn!(
        pid,
        "stopping a PostgreSQL left over from a previous run on this data directory"
    );
    if interrupt_then_quit(pid, LEFTOVER_TIMEOUT).await {
        return Ok(());
    }
    Err(EmbeddedError::Leftover {
        pid,
        pgdata: pgdata.to_path_buf(),
    })
}

/// Stops our postmaster `child` in order: fast shutdown, immediate shutdown,
/// then SIGKILL to every process of its cluster. Reaps it, and kills any
/// process of the cluster that outlived it.
pub(super) async fn stop_child(
    child: &mut Child,
    pid: i32,
    pgdata: &Path,
) -> Result<ExitStatus, EmbeddedError> {
    let wait_err = |e| EmbeddedError::Other(format!("cannot wait for PostgreSQL (pid {pid}): {e}"));
    if child.try_wait().map_err(wait_err)?.is_none() {
        tracing::info!(pid, "stopping embedded PostgreSQL");
        if !interrupt_then_quit(pid, STOP_TIMEOUT).await {
            tracing::warn!(pid, "PostgreSQL ignored SIGQUIT; killing it");
            // Its children are gone from view once it is reaped.
            kill_all(&cluster_processes(pgdata));
            send_signal(pid, libc::SIGKILL);
        }
    }
    let status = child.wait().await.map_err(wait_err)?;
    // The postmaster waits for its children, but make sure none survived.
    let left = cluster_processes(pgdata);
    if !left.is_empty() {
        tracing::warn!(pid, ?left, "killing PostgreSQL processes left behind");
        kill_all(&left);
    }
    Ok(status)
}
