//! The machine a benchmark ran on, for its report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Machine {
    pub cores: usize,
    pub memory_mb: u64,
    pub cpu: String,
    pub kernel: String,
    pub postgres_version: String,
    /// Whether the server under test was a release build.
    pub release_build: bool,
    /// /proc/loadavg when the bench began: other work on the machine (a
    /// build, another test suite on the same PostgreSQL) skews the figures.
    pub load_at_start: String,
    /// /proc/loadavg when it ended (filled in then).
    pub load_at_end: String,
}

impl Machine {
    pub fn describe(postgres_version: String) -> Self {
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_mb: mem_total_kb() / 1024,
            cpu: cpu_model(),
            kernel: read_trimmed("/proc/sys/kernel/osrelease"),
            postgres_version,
            release_build: !cfg!(debug_assertions),
            load_at_start: read_trimmed("/proc/loadavg"),
            load_at_end: String::new(),
        }
    }

    /// Notes the load as the bench ends.
    pub fn ended(&mut self) {
        self.load_at_end = read_trimmed("/proc/loadavg");
    }
}

fn mem_total_kb() -> u64 {
    read_trimmed("/proc/meminfo")
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
        .unwrap_or(0)
}

fn cpu_model() -> String {
    read_trimmed("/proc/cpuinfo")
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map_or_else(|| "unknown".to_owned(), |(_, name)| name.trim().to_owned())
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_owned())
        .unwrap_or_default()
}
