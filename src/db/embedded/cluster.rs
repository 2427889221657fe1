//! The cluster in `pgdata`: whether it exists and which version made it, that
//! it belongs to the run-as user, and creating it with `initdb`.
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::binaries::Binaries;
use super::layout::{Layout, tail_lines};
use super::run_as::RunAs;
use super::{EmbeddedError, SUPERUSER};

const INITDB_TIMEOUT: Duration = Duration::from_secs(300);

/// The cluster's `PG_VERSION` (e.g. `15`), when it can be read.
pub(super) fn cluster_version(pgdata: &Path) -> Option<String> {
    let text = fs::read_to_string(pgdata.join("PG_VERSION")).ok()?;
    Some(text.trim().to_owned())
}

/// Checks the cluster of an existing `PG_VERSION`, or creates one.
pub(super) async fn ensure_cluster(
    layout: &Layout,
    bins: &Binaries,
    run_as: &RunAs,
) -> Result<(), EmbeddedError> {
    // Unreadable counts as existing: the owner check says why.
    let exists = fs::symlink_metadata(layout.pgdata.join("PG_VERSION"))
        .map_or_else(|e| e.kind() != io::ErrorKind::NotFound, |_| true);
    if exists {
        check_owner(&layout.pgdata, run_as)
    } else {
        init_cluster(layout, bins, run_as).await
    }
}

/// Checks that an existing cluster belongs to the user PostgreSQL runs as, which
/// postgres requires; the error says how to fix it.
fn check_owner(pgdata: &Path, run_as: &RunAs) -> Result<(), EmbeddedError> {
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
    layout: &Layout,
    bins: &Binaries,
    run_as: &RunAs,
) -> Result<(), EmbeddedError> {
    let pgdata = &layout.pgdata;
    if fs::symlink_metadata(pgdata).is_ok() {
        if !fs::read_dir(pgdata).is_ok_and(|mut d| d.next().is_none()) {
            return Err(EmbeddedError::NotACluster {
                pgdata: pgdata.clone(),
            });
        }
        fs::remove_dir(pgdata).map_err(|e| EmbeddedError::io("replace", pgdata, e))?;
    }
    let staging = layout.data_dir.join("pgdata.initdb");
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
    run_initdb(bins, &staging, &layout.data_dir, run_as).await?;
    fs::rename(&staging, pgdata).map_err(|e| EmbeddedError::io("create", pgdata, e))
}

/// Runs initdb for `pgdata` (superuser `hera`, trust authentication, UTF8, no
/// locale); a failure quotes initdb's last lines.
pub(super) async fn run_initdb(
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
    run_as.configure(&mut cmd, data_dir);
    let failed = |status: String, tail: String| EmbeddedError::Initdb {
        pgdata: pgdata.to_path_buf(),
        status,
        tail,
    };
    let Ok(out) = tokio::time::timeout(INITDB_TIMEOUT, cmd.output()).await else {
        return Err(failed(
            format!("no result within {}s", INITDB_TIMEOUT.as_secs()),
            String::from("killed"),
        ));
    };
    let out = out.map_err(|error| EmbeddedError::Spawn {
        program: bins.initdb.clone(),
        error,
    })?;
    if out.status.success() {
        return Ok(());
    }
    // initdb reports errors on stderr; its stdout is progress.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let text = if stderr.trim().is_empty() {
        String::from_utf8_lossy(&out.stdout)
    } else {
        stderr
    };
    Err(failed(out.status.to_string(), tail_lines(&text)))
}
