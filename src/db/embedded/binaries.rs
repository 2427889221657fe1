//! Finding the installed `initdb` and `postgres` (the order is in the module
//! documentation).
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::process::Command;

use super::EmbeddedError;

/// Where a source build installs by default.
const SOURCE_BUILD_BINDIR: &str = "/usr/local/pgsql/bin";
/// How long `pg_config` or `postgres --version` may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub(super) struct Binaries {
    pub(super) dir: PathBuf,
    pub(super) initdb: PathBuf,
    pub(super) postgres: PathBuf,
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
    pub(super) async fn major_version(&self) -> Option<String> {
        let out = stdout_of(Command::new(&self.postgres).arg("--version")).await?;
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

pub(super) fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
}

/// Finds the directory holding both `initdb` and `postgres`. With
/// `wanted_version`, a directory whose server has that major version wins over
/// the first one found, so an existing cluster keeps the server it was made by.
pub(super) async fn find_binaries(wanted_version: Option<&str>) -> Result<Binaries, EmbeddedError> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .filter(|d| d.is_absolute())
                .collect()
        })
        .unwrap_or_default();
    let mut found = distinct_binaries(&dirs);
    // The other places cost a process or a directory scan: search them only when needed.
    if found.is_empty() || wanted_version.is_some() {
        dirs.extend(pg_config_bindir().await);
        dirs.extend(debian_bindirs());
        dirs.push(PathBuf::from(SOURCE_BUILD_BINDIR));
        found = distinct_binaries(&dirs);
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

/// The binaries in `dirs`, in order, each real directory once (PATH often
/// holds symlinks to the same place).
fn distinct_binaries(dirs: &[PathBuf]) -> Vec<Binaries> {
    let mut seen: Vec<PathBuf> = Vec::new();
    dirs.iter()
        .filter(|dir| {
            let key = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
            let new = !seen.contains(&key);
            seen.push(key);
            new
        })
        .filter_map(|dir| Binaries::in_dir(dir))
        .collect()
}

/// Runs `cmd` for its standard output, giving up after [`QUERY_TIMEOUT`].
async fn stdout_of(cmd: &mut Command) -> Option<Output> {
    let run = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(QUERY_TIMEOUT, run).await.ok()?.ok()
}

async fn pg_config_bindir() -> Option<PathBuf> {
    let out = stdout_of(Command::new("pg_config").arg("--bindir")).await?;
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
            let version = e
                .file_name()
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
