//! The data directory and what lives in it: preparing the directories for the
//! run-as user, naming the socket directory, and the server log.
use std::fs;
use std::io::{self, Read as _, Seek as _};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::run_as::RunAs;
use super::{EmbeddedError, PORT};

/// `sun_path` holds 108 bytes including the terminating NUL.
pub(super) const MAX_SOCKET_PATH: usize = 107;
/// Lines of output quoted in error messages.
const TAIL_LINES: usize = 6;
/// How much of the end of the server log is read for an error message.
const TAIL_BYTES: u64 = 64 * 1024;

/// The paths of one data directory.
#[derive(Debug)]
pub(super) struct Layout {
    pub(super) data_dir: PathBuf,
    pub(super) pgdata: PathBuf,
    pub(super) socket_dir: PathBuf,
    pub(super) log_file: PathBuf,
}

impl Layout {
    pub(super) fn new(data_dir: &Path) -> Result<Self, EmbeddedError> {
        let data_dir =
            std::path::absolute(data_dir).map_err(|e| EmbeddedError::io("resolve", data_dir, e))?;
        Ok(Layout {
            pgdata: data_dir.join("pgdata"),
            socket_dir: socket_dir_for(&data_dir),
            log_file: data_dir.join("postgres.log"),
            data_dir,
        })
    }

    /// Creates the data and socket directories as needed and makes sure the
    /// run-as user can reach them.
    pub(super) fn prepare(&self, run_as: &RunAs) -> Result<(), EmbeddedError> {
        prepare_data_dir(&self.data_dir, run_as)?;
        prepare_socket_dir(&self.socket_dir, run_as)
    }
}

/// `data_dir/run`, or a short directory under /tmp when the socket path in
/// `data_dir/run` would be too long for the kernel.
pub(super) fn socket_dir_for(data_dir: &Path) -> PathBuf {
    let preferred = data_dir.join("run");
    if socket_path_len(&preferred) <= MAX_SOCKET_PATH {
        return preferred;
    }
    PathBuf::from(format!(
        "/tmp/hera-migrate-{:012x}",
        fnv1a(data_dir.as_os_str().as_bytes()) & 0xffff_ffff_ffff
    ))
}

pub(super) fn socket_path_len(socket_dir: &Path) -> usize {
    socket_dir.as_os_str().len() + format!("/.s.PGSQL.{PORT}").len()
}

/// FNV-1a, 64 bits: a hash that is stable across builds and platforms, so a
/// data directory keeps its socket directory from run to run.
pub(super) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Creates the data directory if needed and makes sure the run-as user can reach
/// it. As root, a root-owned data directory stays root's (files such as secrets
/// that root keeps there stay out of that user's reach), but its group becomes
/// the run-as user's, with search permission only: mode 0710 when created here.
fn prepare_data_dir(data_dir: &Path, run_as: &RunAs) -> Result<(), EmbeddedError> {
    create_data_dir(data_dir)?;
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

/// Creates the data directory (mode 0700) and its parents, unless it exists.
fn create_data_dir(data_dir: &Path) -> Result<(), EmbeddedError> {
    match fs::metadata(data_dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(EmbeddedError::io(
            "use",
            data_dir,
            io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = data_dir.parent() {
                fs::create_dir_all(parent).map_err(|e| EmbeddedError::io("create", parent, e))?;
            }
            // Another process may have created it meanwhile.
            match fs::DirBuilder::new().mode(0o700).create(data_dir) {
                Err(e) if !(e.kind() == io::ErrorKind::AlreadyExists && data_dir.is_dir()) => {
                    Err(EmbeddedError::io("create", data_dir, e))
                }
                _ => Ok(()),
            }
        }
        Err(e) => Err(EmbeddedError::io("access", data_dir, e)),
    }
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

/// Opens the server log for appending; returns it and its length before this
/// run, from where [`tail_of_file`] quotes this run's output.
pub(super) fn open_log(path: &Path, run_as: &RunAs) -> Result<(fs::File, u64), EmbeddedError> {
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

/// The last few non-empty lines of `text`, on one line.
pub(super) fn tail_lines(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let tail = &lines[lines.len().saturating_sub(TAIL_LINES)..];
    if tail.is_empty() {
        return String::from("(no output)");
    }
    tail.join(" | ")
}

/// The tail of what was written to `path` after `offset`.
pub(super) fn tail_of_file(path: &Path, offset: u64) -> String {
    let read = fs::File::open(path).and_then(|mut f| {
        let len = f.metadata()?.len();
        // Only the end matters; skip what precedes this run and very long logs.
        f.seek(io::SeekFrom::Start(
            offset.max(len.saturating_sub(TAIL_BYTES)),
        ))?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)?;
        Ok(bytes)
    });
    match read {
        Ok(bytes) => tail_lines(&String::from_utf8_lossy(&bytes)),
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}
