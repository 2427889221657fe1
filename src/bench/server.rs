//! The real server as a child process (`<this binary> serve` on a free port,
//! over one bench database): a process of its own, so that its memory can be
//! read from `/proc/<pid>/status`, and the engine measured as it ships.
use std::{
    collections::VecDeque,
    net::SocketAddr,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context as _, bail};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    sync::mpsc,
};
use tokio_util::sync::CancellationToken;

/// How long a server may take to log that it listens (it installs the schema first).
const LISTENING_WITHIN: Duration = Duration::from_secs(60);
/// How long a server may take to stop after SIGTERM before it is killed.
const STOPPED_WITHIN: Duration = Duration::from_secs(20);
/// Log lines kept for an error message.
const LOG_TAIL: usize = 40;
/// Connections of the server's pool: ten runs at once (figure h) each hold
/// one for their batch, and their streams and the API need more.
pub const POOL_SIZE: u32 = 20;

pub struct ServerChild {
    child: Child,
    pid: u32,
    pub addr: SocketAddr,
    tail: Arc<Mutex<VecDeque<String>>>,
}

/// What the kernel says of a process's memory, in kB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    pub rss_kb: u64,
    /// The peak resident set (VmHWM).
    pub peak_kb: u64,
}

impl ServerChild {
    /// Starts `serve` over `database_url`, verifying tokens signed with
    /// `secret`, and waits for its "listening" log line.
    pub async fn spawn(database_url: &str, secret: &str) -> anyhow::Result<Self> {
        Self::spawn_with(database_url, secret, &[]).await
    }

    /// As [`spawn`](Self::spawn), with `settings` (environment variables) of its own.
    pub async fn spawn_with(
        database_url: &str,
        secret: &str,
        settings: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locating this binary")?;
        let mut command = Command::new(exe);
        command
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("HERA_JWT_SECRET", secret)
            .env("HERA_LISTEN_ADDR", "127.0.0.1:0")
            .env("HERA_LOG_FORMAT", "json")
            .env("HERA_DB_POOL_SIZE", POOL_SIZE.to_string())
            .env("HERA_HEALTH_PROBE_INTERVAL_MS", "200")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Settings of the caller's own server would change what is measured.
        for (name, _) in std::env::vars_os() {
            let name_text = name.to_string_lossy();
            if name_text.starts_with("OTEL_")
                || name_text.starts_with("HERA_TLS_")
                || name_text == "HERA_JWT_PUBLIC_KEY_FILE"
                || name_text.starts_with("HERA_BATCH_")
            {
                command.env_remove(&name);
            }
        }
        command.envs(settings.iter().map(|(name, value)| (name, value)));
        let mut child = command.spawn().context("starting the server")?;
        let pid = child.id().context("the server's pid")?;
        let stderr = child.stderr.take().context("the server's stderr")?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let (lines, mut received) = mpsc::unbounded_channel();
        tokio::spawn(drain_logs(stderr, tail.clone(), lines));
        let addr = tokio::time::timeout(LISTENING_WITHIN, async {
            while let Some(line) = received.recv().await {
                if let Some(addr) = listening_address(&line) {
                    return Some(addr);
                }
            }
            None
        })
        .await;
        let mut server = Self {
            child,
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            tail,
        };
        match addr {
            Ok(Some(addr)) => server.addr = addr,
            Ok(None) => bail!("the server exited before it listened:\n{}", server.logs()),
            Err(_) => bail!(
                "the server did not listen within {LISTENING_WITHIN:?}:\n{}",
                server.logs()
            ),
        }
        Ok(server)
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// How it exited, when it has (by itself: a kill consumes the child).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The server's last log lines.
    pub fn logs(&self) -> String {
        let tail = self.tail.lock().expect("the log tail");
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// SIGKILL, and its exit reaped: a crash, for the fault campaign.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM, then a kill if it outlives [`STOPPED_WITHIN`].
    pub async fn stop(mut self) {
        let pid = i32::try_from(self.pid).expect("a pid");
        // SAFETY: a signal to our own child process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        if tokio::time::timeout(STOPPED_WITHIN, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// VmRSS and VmHWM of process `pid`.
pub fn memory_of(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse().ok())
            .unwrap_or(0)
    };
    Ok(Memory {
        rss_kb: field("VmRSS:"),
        peak_kb: field("VmHWM:"),
    })
}

/// Samples process `pid`'s resident set every 100 ms until `stop`; the
/// largest sample, beside the kernel's own peak read at the end.
pub async fn sample_memory(pid: u32, stop: CancellationToken) -> Memory {
    let mut highest = Memory::default();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => break,
        }
        if let Ok(now) = memory_of(pid) {
            highest.rss_kb = highest.rss_kb.max(now.rss_kb);
            highest.peak_kb = highest.peak_kb.max(now.peak_kb);
        }
    }
    if let Ok(now) = memory_of(pid) {
        highest.peak_kb = highest.peak_kb.max(now.peak_kb);
    }
    highest
}

/// Reads the server's log lines until it exits: the first ones go to whoever
/// waits for "listening", the last ones stay for an error message. Draining
/// to the end keeps the server from blocking on a full pipe.
async fn drain_logs(
    stderr: tokio::process::ChildStderr,
    tail: Arc<Mutex<VecDeque<String>>>,
    lines: mpsc::UnboundedSender<String>,
) {
    let mut reader = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = reader.next_line().await {
        {
            let mut tail = tail.lock().expect("the log tail");
            if tail.len() == LOG_TAIL {
                tail.pop_front();
            }
            tail.push_back(line.clone());
        }
        let _ = lines.send(line);
    }
}

/// The address of a JSON "hera-migrate listening" log line.
fn listening_address(line: &str) -> Option<SocketAddr> {
    let event: serde_json::Value = serde_json::from_str(line).ok()?;
    if event["fields"]["message"] != "hera-migrate listening" {
        return None;
    }
    event["fields"]["local_addr"].as_str()?.parse().ok()
}
