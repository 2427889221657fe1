//! `hera-migrate bench`: one command that measures the engine against its
//! yardsticks (figures a to n, BENCHMARKS.md) on databases of its own, through
//! the real server spawned as a child process and its gRPC API, and reports a
//! table on stdout, `bench.json` and `bench.svg`. Progress goes to stderr.
//!
//! Files: `scenes` (what runs on which database, in which order), `sizes`
//! (the scale), `databases` (create, seed, drop), `server` (the child server,
//! its memory), `client` (gRPC as an organization's owner), `runs` and
//! `timeline` (runs as the client sees them); one file per measurement:
//! `floor` (a), `engine` (b, d, j, l), `guide` (c), `preview` (e), `aliases`
//! (f), `rollback` (g), `fleet` (h), `watchers` (i), `traffic` (k, and the
//! sized run of m and n); then
//! `targets`, `figures` (`figures_pace`: m, n), `report` (table, JSON), `chart`
//! (SVG), `machine`.
//! The bench is an edge: its errors are `anyhow`.
use std::process::ExitCode;

use crate::config::BenchSettings;

mod aliases;
mod chart;
pub(crate) mod client;
mod databases;
mod engine;
mod figures;
mod figures_pace;
mod fleet;
mod floor;
mod guide;
mod machine;
mod preview;
mod report;
mod rollback;
mod runs;
mod scenes;
pub(crate) mod server;
mod sizes;
mod targets;
mod timeline;
mod traffic;
mod watchers;

/// A progress line on stderr, so the operator sees what the bench is doing.
macro_rules! progress {
    ($($arg:tt)*) => {
        eprintln!("bench: {}", format_args!($($arg)*))
    };
}
pub(crate) use progress;

/// Everything measured, each figure's inputs `None` until measured.
#[derive(Default)]
pub struct Measurements {
    floor: Option<floor::Floor>,
    /// The floor again on the big organization, so that d can tell
    /// PostgreSQL's own growth with the ledger's size from the engine's.
    big_floor: Option<floor::Floor>,
    guide: Option<guide::Guide>,
    base: Option<engine::RunSummary>,
    rollback: Option<engine::RunSummary>,
    aliases: Option<aliases::Aliases>,
    traffic: Option<traffic::Traffic>,
    /// Business traffic during a run sized to a target that listens to the
    /// business probe (figures m and n).
    adaptive: Option<traffic::Traffic>,
    fleet: Option<fleet::Fleet>,
    watchers: Option<watchers::Watchers>,
    preview: Option<preview::Preview>,
    big: Option<BigMeasured>,
    /// The 1 M run's batches, for the chart and the JSON.
    big_batches: Vec<timeline::BatchSample>,
    failures: Vec<Failure>,
}

pub struct BigMeasured {
    run: engine::RunSummary,
    memory: server::Memory,
}

/// Why the figures named by `letters` could not be measured.
pub struct Failure {
    letters: &'static str,
    message: String,
}

impl Measurements {
    /// `result`'s value, or None with the failure noted against `letters`.
    fn record<T>(&mut self, letters: &'static str, result: anyhow::Result<T>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                let message = format!("{error:#}");
                progress!("figure(s) {letters} not measured: {message}");
                self.failures.push(Failure { letters, message });
                None
            }
        }
    }

    fn record_scene(&mut self, letters: &'static str, result: anyhow::Result<()>) {
        self.record(letters, result);
    }
}

pub async fn run(settings: BenchSettings) -> anyhow::Result<ExitCode> {
    let sizes = sizes::Sizes::at(settings.scale);
    progress!(
        "scale {}: batches of {}, organizations of {} (big), {} (base), {} (aliases), {} (fleet)",
        sizes.scale,
        sizes.batch,
        sizes.big,
        sizes.base,
        sizes.aliases,
        sizes.fleet
    );
    std::fs::create_dir_all(&settings.output_dir)?;
    let cluster =
        databases::Cluster::open(settings.database_url.as_deref(), settings.data_dir.clone())
            .await?;
    let postgres = cluster
        .server_version()
        .await
        .unwrap_or_else(|error| format!("unknown ({error:#})"));
    let mut machine = machine::Machine::describe(postgres);
    let mut measured = Measurements::default();
    let mut bench = scenes::Bench::new(&cluster, sizes);
    // Ctrl-C stops the scenes (their servers die with them) but not the
    // cleanup: the databases are still dropped.
    let interrupted = tokio::select! {
        () = bench.play_all(&mut measured) => false,
        _ = tokio::signal::ctrl_c() => true,
    };
    let databases = bench.created.clone();
    drop_databases(&cluster, &databases, settings.keep_databases).await;
    cluster.close().await;
    if interrupted {
        anyhow::bail!("interrupted");
    }
    machine.ended();
    let figures = figures::all(&measured);
    let report = report::Report {
        figures: &figures,
        sizes: &sizes,
        machine: &machine,
        databases: &databases,
        kept_databases: settings.keep_databases,
        big_run_batches: &measured.big_batches,
    };
    let json = settings.output_dir.join("bench.json");
    let svg = settings.output_dir.join("bench.svg");
    report.write_json(&json)?;
    let title = format!(
        "hera-migrate bench: the {} transaction run, per batch",
        sizes.big
    );
    chart::write_svg(&svg, &measured.big_batches, &title)?;
    report.print_table()?;
    progress!("wrote {} and {}", json.display(), svg.display());
    Ok(if figures.iter().all(|f| f.measured) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn drop_databases(cluster: &databases::Cluster, names: &[String], keep: bool) {
    if keep {
        progress!("kept the databases {}", names.join(", "));
        return;
    }
    for name in names {
        if let Err(error) = cluster.drop_database(name).await {
            progress!("could not drop {name}: {error:#}");
        }
    }
}
