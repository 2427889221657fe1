//! The user `initdb` and `postgres` run as: this process's user, or, since
//! PostgreSQL refuses to run as root, an unprivileged one when this is root.
use std::ffi::{CStr, CString, OsStr};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tokio::process::Command;

use super::EmbeddedError;

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

#[derive(Debug, Clone)]
pub(super) struct RunAs {
    pub(super) name: String,
    pub(super) uid: u32,
    pub(super) gid: u32,
    home: PathBuf,
    /// Whether the children must switch to this user (this process is root).
    pub(super) switch: bool,
}

impl RunAs {
    pub(super) fn current() -> Result<Self, EmbeddedError> {
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
    pub(super) fn take(&self, path: &Path) -> Result<(), EmbeddedError> {
        if self.switch {
            std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid))
                .map_err(|e| EmbeddedError::io("change the owner of", path, e))?;
        }
        Ok(())
    }

    /// Whether this user may search (traverse) a directory with `meta`.
    /// Supplementary groups are dropped, so only the primary group counts.
    pub(super) fn can_search(&self, meta: &fs::Metadata) -> bool {
        let mode = meta.mode();
        if meta.uid() == self.uid {
            mode & 0o100 != 0
        } else if meta.gid() == self.gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        }
    }

    /// Sets the environment, working directory and user of initdb or postgres.
    pub(super) fn configure(&self, cmd: &mut Command, cwd: &Path) {
        cmd.current_dir(cwd);
        for var in SCRUBBED_ENV {
            cmd.env_remove(var);
        }
        if !self.switch {
            return;
        }
        let home = if self.home.is_dir() { &self.home } else { cwd };
        cmd.env("HOME", home)
            .env("USER", &self.name)
            .env("LOGNAME", &self.name);
        let (uid, gid) = (self.uid, self.gid);
        // SAFETY: the closure only makes async-signal-safe system calls.
        unsafe {
            cmd.pre_exec(move || drop_privileges(uid, gid));
        }
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

/// An entry of the password database.
pub(super) struct User {
    name: String,
    uid: u32,
    gid: u32,
    pub(super) home: PathBuf,
}

fn user_by_name(name: &str) -> Option<User> {
    let cname = CString::new(name).ok()?;
    // SAFETY: getpwnam_r writes only into `pwd` and `buf`, both valid for the call.
    lookup_passwd(|pwd, buf, len, result| unsafe {
        libc::getpwnam_r(cname.as_ptr(), pwd, buf, len, result)
    })
}

pub(super) fn user_by_uid(uid: u32) -> Option<User> {
    // SAFETY: getpwuid_r writes only into `pwd` and `buf`, both valid for the call.
    lookup_passwd(|pwd, buf, len, result| unsafe { libc::getpwuid_r(uid, pwd, buf, len, result) })
}

/// Calls a `getpw*_r` function, growing the buffer while it reports ERANGE.
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
