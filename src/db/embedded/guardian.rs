//! The guardian: a small shell process that stops PostgreSQL when the
//! hera-migrate process that started it dies, even by SIGKILL. While it lives,
//! its parent is that hera-migrate, which is how other processes tell a server
//! in use from one left over by a crash.
use std::path::PathBuf;
use std::process::Stdio;

use tokio::process::{Child, ChildStdin, Command};

use super::EmbeddedError;
use super::process::{all_pids, cmdline, stat};

/// The guardian's `$0`, which marks it in `/proc/<pid>/cmdline`.
const NAME: &str = "hera-pg-guardian";

/// Waits for EOF on stdin (the pipe held by this process), then asks the
/// postmaster (`$1`) for a fast shutdown. Terminal signals are ignored: the
/// guardian lives exactly as long as the pipe.
const SCRIPT: &str = r#"trap '' INT HUP; read _; kill -INT "$1" 2>/dev/null"#;

pub(super) struct Guardian {
    pub(super) child: Child,
    /// The pipe the guardian waits on; closing it makes the guardian act.
    pub(super) stdin: Option<ChildStdin>,
}

impl Guardian {
    /// Starts the guardian of the postmaster `pid`.
    pub(super) fn spawn(pid: i32) -> Result<Self, EmbeddedError> {
        let sh = PathBuf::from("/bin/sh");
        let mut child = Command::new(&sh)
            .arg("-c")
            .arg(SCRIPT)
            .arg(NAME)
            .arg(pid.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .current_dir("/")
            // Out of the terminal's process group, so Ctrl-C does not reach it.
            .process_group(0)
            .spawn()
            .map_err(|error| EmbeddedError::Spawn { program: sh, error })?;
        let stdin = child.stdin.take();
        Ok(Guardian { child, stdin })
    }

    /// Stops the guardian without letting it act, so it never signals a pid
    /// that is no longer ours.
    pub(super) async fn dismiss(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        // Only now may the pipe close: before, it would set the guardian off.
        drop(self.stdin.take());
    }
}

/// The process that owns the postmaster `pid`: the parent of a live guardian
/// of `pid`, if there is one.
pub(super) fn owner_of(pid: i32) -> Option<i32> {
    let pid_arg = pid.to_string();
    let guards = |g: i32| {
        cmdline(g)
            .windows(2)
            .any(|w| w[0] == NAME.as_bytes() && w[1] == pid_arg.as_bytes())
    };
    all_pids().filter(|&g| guards(g)).find_map(|g| {
        let (state, parent) = stat(g)?;
        (state != 'Z' && state != 'X').then_some(parent)
    })
}
