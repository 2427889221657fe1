//! The binary's commands: `serve`, `seed-demo`, `token`, `bench` (`bench/`),
//! and the operator's commands (`operator/`: clients of a running server).
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory, Parser, error::ContextKind, error::ErrorKind};

use crate::{
    auth::{keys, token},
    config::{Cli, Command, OutputFormat, SeedDemoSettings, ServeSettings, TokenSettings},
    db::{Database, embedded::EmbeddedPostgres},
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
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(settings) => serve(*settings).await,
        Command::SeedDemo(settings) => seed_demo(settings).await,
        Command::Token(settings) => mint_token(settings),
        Command::Bench(settings) => return crate::bench::run(settings).await,
        Command::Faults(settings) => return crate::faults::run(settings).await,
        Command::Operator(command) => return Ok(crate::operator::run(command).await),
    }
    .map(|()| ExitCode::SUCCESS)
}

async fn serve(settings: ServeSettings) -> anyhow::Result<()> {
    // Handlers first: a signal that arrives while the server is still starting
    // must stop it cleanly, never kill it with its database half-started.
    let shutdown = shutdown_signal().context("installing the SIGINT/SIGTERM handlers")?;
    let app = Application::build(settings).await?;
    app.run_until_stopped(shutdown).await?;
    Ok(())
}

/// Installs the SIGINT and SIGTERM handlers now; the future resolves on the
/// first of them.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
        }
    })
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
    // Seeding spans organizations by design: the login role's pool.
    let seeded = seed::seed_demo(database.admin_pool(), &params).await;
    database.close().await;
    let report = seeded?;
    let tokens = user_tokens(&settings, &report)?;
    match settings.output {
        OutputFormat::Text => {
            println!("{report}");
            print_tokens(&tokens);
        }
        OutputFormat::Json => {
            let mut json = serde_json::to_value(&report)?;
            json["tokens"] = serde_json::to_value(&tokens)?;
            println!("{}", serde_json::to_string_pretty(&json)?);
        }
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct UserToken {
    organization_id: uuid::Uuid,
    user_id: uuid::Uuid,
    role: String,
    token: String,
}

/// A token (valid 24 h) for every user the seed made, when a secret is known:
/// HERA_JWT_SECRET, or the embedded default's own.
fn user_tokens(
    settings: &SeedDemoSettings,
    report: &seed::SeedReport,
) -> anyhow::Result<Vec<UserToken>> {
    let secret = match (&settings.jwt_secret, &settings.database.database_url) {
        (Some(secret), _) => secret.clone(),
        (None, None) => {
            let dir = settings
                .database
                .data_dir
                .clone()
                .unwrap_or_else(EmbeddedPostgres::default_data_dir);
            keys::embedded_secret(&dir)?
        }
        (None, Some(_)) => return Ok(Vec::new()),
    };
    let mut tokens = Vec::new();
    for organization in &report.organizations {
        for user in &organization.users {
            tokens.push(UserToken {
                organization_id: organization.id,
                user_id: user.id,
                role: user.role.clone(),
                token: token::mint(secret.expose().as_bytes(), user.id, crate::demo::TOKEN_TTL)?,
            });
        }
    }
    Ok(tokens)
}

fn print_tokens(tokens: &[UserToken]) {
    if tokens.is_empty() {
        println!("(set HERA_JWT_SECRET to have a token printed for each user)");
        return;
    }
    println!("tokens (valid 24 h):");
    for t in tokens {
        println!(
            "  {} {:<12} {}  {}",
            t.organization_id, t.role, t.user_id, t.token
        );
    }
}

fn mint_token(settings: TokenSettings) -> anyhow::Result<()> {
    let secret = match settings.jwt_secret {
        Some(secret) => secret,
        None => {
            let dir = settings
                .data_dir
                .unwrap_or_else(EmbeddedPostgres::default_data_dir);
            keys::existing_embedded_secret(&dir).with_context(|| {
                format!(
                    "HERA_JWT_SECRET: not set, and the embedded default in {} has no secret yet \
                     (start `hera-migrate serve` once, or set HERA_JWT_SECRET)",
                    dir.display()
                )
            })?
        }
    };
    println!(
        "{}",
        token::mint(secret.expose().as_bytes(), settings.user_id, settings.ttl)?
    );
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
    use clap::error::ContextValue;
    let rendered = error.render().to_string();
    let first = rendered
        .lines()
        .next()
        .unwrap_or("error: invalid arguments");
    let args = match error.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => vec![arg.clone()],
        Some(ContextValue::Strings(args)) => args.clone(),
        _ => return first.to_owned(),
    };
    let named: Vec<String> = args
        .iter()
        .map(|arg| match env_var_of(arg) {
            Some(var) => format!("{arg} (environment: {var})"),
            None => arg.clone(),
        })
        .collect();
    if error.kind() == ErrorKind::MissingRequiredArgument {
        format!("error: missing setting {}", named.join(", "))
    } else {
        let vars: Vec<String> = args.iter().filter_map(|arg| env_var_of(arg)).collect();
        if vars.is_empty() {
            first.to_owned()
        } else {
            format!("{first} (environment: {})", vars.join(", "))
        }
    }
}

/// The environment variable behind a flag as clap names it ("--listen-addr <X>").
fn env_var_of(rendered_arg: &str) -> Option<String> {
    let long = rendered_arg.split_whitespace().next()?.strip_prefix("--")?;
    let command = Cli::command();
    let all_args = command.get_arguments().chain(
        command
            .get_subcommands()
            .flat_map(|sub| sub.get_arguments()),
    );
    all_args
        .filter(|arg| arg.get_long() == Some(long))
        .find_map(|arg| arg.get_env())
        .map(|var| var.to_string_lossy().into_owned())
}
