//! The binary's commands: `serve` and `seed-demo`.
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory, Parser, error::ContextKind, error::ErrorKind};

use crate::{
    config::{Cli, Command, OutputFormat, SeedDemoSettings, ServeSettings},
    db::Database,
    seed::{self, SeedParams},
    startup::Application,
    telemetry,
};

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return report_usage_error(error),
    };
    let telemetry = match telemetry::init(cli.log.log_format) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .and_then(|runtime| runtime.block_on(run(cli.command)));
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(settings) => serve(settings).await,
        Command::SeedDemo(settings) => seed_demo(settings).await,
    }
}

async fn serve(settings: ServeSettings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    app.run_until_stopped(shutdown_signal()).await?;
    Ok(())
}

/// Resolves on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = interrupt.recv() => tracing::info!("SIGINT received"),
    }
}

async fn seed_demo(settings: SeedDemoSettings) -> anyhow::Result<()> {
    if settings.from > settings.to {
        anyhow::bail!("--from {} is after --to {}", settings.from, settings.to);
    }
    let database = Database::open(&settings.database).await?;
    let params = SeedParams {
        organizations: settings.organizations,
        transactions: settings.transactions,
        lines: settings.lines,
        from: settings.from,
        to: settings.to,
        seed: settings.seed,
    };
    let seeded = seed::seed_demo(database.pool(), &params).await;
    database.close().await;
    let report = seeded?;
    match settings.output {
        OutputFormat::Text => println!("{report}"),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(())
}

/// Help and version go to stdout as clap prints them; a bad setting is one
/// line on stderr naming the flag and its environment variable, exit 2.
fn report_usage_error(error: clap::Error) -> ExitCode {
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = error.print();
        return ExitCode::SUCCESS;
    }
    eprintln!("{}", one_line(&error));
    ExitCode::from(2)
}

fn one_line(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    let first = rendered.lines().next().unwrap_or("error: invalid arguments");
    let Some(clap::error::ContextValue::String(arg)) = error.get(ContextKind::InvalidArg) else {
        return first.to_owned();
    };
    match env_var_of(arg) {
        Some(var) => format!("{first} (environment: {var})"),
        None => first.to_owned(),
    }
}

/// The environment variable behind a flag as clap names it ("--listen-addr <X>").
fn env_var_of(rendered_arg: &str) -> Option<String> {
    let long = rendered_arg.split_whitespace().next()?.strip_prefix("--")?;
    let command = Cli::command();
    let all_args = command
        .get_arguments()
        .chain(command.get_subcommands().flat_map(|sub| sub.get_arguments()));
    all_args
        .filter(|arg| arg.get_long() == Some(long))
        .find_map(|arg| arg.get_env())
        .map(|var| var.to_string_lossy().into_owned())
}
