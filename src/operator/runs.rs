//! The commands that start, follow and steer runs.
use std::io::IsTerminal;

use super::{
    Failure, Outcome, args,
    client::{self, Client},
    follow::{ended, follow},
    output::{self, EventView},
};
use crate::proto::*;

pub enum Control {
    Pause,
    Resume,
    Cancel,
}

pub async fn migrate(a: args::Migrate) -> Outcome {
    let mut client = client::connect(&a.connection).await?;
    let request = StartMigrationRequest {
        organization_id: a.scope.org.organization_id.clone(),
        from_date: a.scope.range.from.clone(),
        to_date: a.scope.range.to.clone(),
        batch_size: a.scope.range.batch_size,
        closed_period_policy: a.scope.range.closed_period_policy(),
        max_transactions_per_second: a.max_tps,
        dry_run: a.dry_run,
        request_id: a.request_id.clone(),
        target_batch_ms: a.sizing.target_batch_ms,
        min_batch_size: a.sizing.min_batch_size,
        max_batch_size: a.sizing.max_batch_size,
        ..Default::default()
    };
    let mut stream = client.start_migration(request).await?.into_inner();
    let view = EventView::new(a.connection.output);
    if a.detach {
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Failure::failed("the server sent no event".into()))?
            .into_progress();
        view.show(&first);
        view.finish();
        eprintln!(
            "started {}; follow it with\n  hera-migrate monitor-progress --organization-id {} --migration-id {}",
            first.migration_id, first.organization_id, first.migration_id
        );
        return Ok(());
    }
    follow(&mut client, stream, &view, a.follow).await
}

/// Follows one run, or every active run of the organization, to its end.
pub async fn monitor(a: args::Monitor) -> Outcome {
    let mut client = client::connect(&a.connection).await?;
    let org = a.org.organization_id.clone();
    let ids = match &a.migration_id {
        Some(id) => vec![id.clone()],
        None => {
            let active = listed(
                &mut client,
                &org,
                &[MigrationState::Running, MigrationState::Paused],
            )
            .await?;
            if active.is_empty() {
                eprintln!("no active run in organization {org}");
                return Ok(());
            }
            active.into_iter().map(|run| run.migration_id).collect()
        }
    };
    let mut outcome = Ok(());
    for id in ids {
        // By default from its latest event on (the whole history is a flag away).
        let after_sequence = match a.after_sequence {
            Some(after) => after,
            None => latest_sequence(&mut client, &org, &id)
                .await?
                .saturating_sub(1),
        };
        let request = WatchMigrationRequest {
            organization_id: org.clone(),
            migration_id: id,
            after_sequence,
        };
        let stream = client.watch_migration(request).await?.into_inner();
        let view = EventView::new(a.connection.output);
        outcome = outcome.and(follow(&mut client, stream, &view, a.follow).await);
    }
    outcome
}

async fn latest_sequence(client: &mut Client, org: &str, id: &str) -> Result<u64, Failure> {
    let request = GetMigrationRequest {
        organization_id: org.to_owned(),
        migration_id: id.to_owned(),
    };
    let run = client.get_migration(request).await?.into_inner();
    Ok(run.into_migration().progress.map_or(0, |p| p.sequence))
}

pub(super) async fn listed(
    client: &mut Client,
    org: &str,
    states: &[MigrationState],
) -> Result<Vec<Migration>, Failure> {
    let request = ListMigrationsRequest {
        organization_id: org.to_owned(),
        states: states.iter().map(|s| (*s).into()).collect(),
        page_size: 100,
        ..Default::default()
    };
    Ok(client
        .list_migrations(request)
        .await?
        .into_inner()
        .migrations)
}

pub(super) fn migration_line(run: &Migration) -> String {
    let latest = run.progress.as_ref().map(output::line).unwrap_or_default();
    format!(
        "{} {} {} {latest}",
        run.migration_id,
        run.phase().short_name(),
        run.state().short_name()
    )
}

pub async fn control(a: args::Steered, control: Control) -> Outcome {
    let mut client = client::connect(&a.connection).await?;
    let (organization_id, migration_id) = (a.run.org.organization_id, a.run.migration_id);
    // The three controls differ only in their RPC and its request's type.
    macro_rules! steer {
        ($rpc:ident, $request:ident) => {
            client
                .$rpc($request {
                    organization_id,
                    migration_id,
                    ..Default::default()
                })
                .await?
                .into_inner()
                .into_migration()
        };
    }
    let run = match control {
        Control::Pause => steer!(pause_migration, PauseMigrationRequest),
        Control::Resume => steer!(resume_migration, ResumeMigrationRequest),
        Control::Cancel => steer!(cancel_migration, CancelMigrationRequest),
    };
    output::result(
        a.connection.output,
        &run,
        "hera.migration.v2.Migration",
        migration_line,
    );
    Ok(())
}

pub async fn update(a: args::Update) -> Outcome {
    let mut client = client::connect(&a.connection).await?;
    let request = UpdateMigrationRequest {
        organization_id: a.run.org.organization_id,
        migration_id: a.run.migration_id,
        batch_size: a.batch_size,
        max_transactions_per_second: a.max_tps,
        batch_delay_ms: a.batch_delay_ms,
        target_batch_ms: a.sizing.target_batch_ms,
        min_batch_size: a.sizing.min_batch_size,
        max_batch_size: a.sizing.max_batch_size,
        ..Default::default()
    };
    let run = client
        .update_migration(request)
        .await?
        .into_inner()
        .into_migration();
    output::result(
        a.connection.output,
        &run,
        "hera.migration.v2.Migration",
        migration_line,
    );
    Ok(())
}

pub async fn list(a: args::Listed) -> Outcome {
    let mut client = client::connect(&a.connection).await?;
    let mut states = Vec::new();
    for name in &a.states {
        let state = MigrationState::from_short_name(&name.trim().to_uppercase())
            .ok_or_else(|| Failure::usage(format!("--states: {name} is not a state")))?;
        states.push(state);
    }
    for run in listed(&mut client, &a.org.organization_id, &states).await? {
        output::result(
            a.connection.output,
            &run,
            "hera.migration.v2.Migration",
            migration_line,
        );
    }
    Ok(())
}

/// A dry run of the range, then its validation: ACCEPTED when the dry run
/// succeeded and no check failed.
pub async fn acceptance(a: args::Acceptance) -> Outcome {
    let mut client = client::connect(&a.connection).await?;
    let org = a.scope.org.organization_id.clone();
    let request = StartMigrationRequest {
        organization_id: org.clone(),
        from_date: a.scope.range.from.clone(),
        to_date: a.scope.range.to.clone(),
        batch_size: a.scope.range.batch_size,
        closed_period_policy: a.scope.range.closed_period_policy(),
        dry_run: true,
        ..Default::default()
    };
    let mut stream = client.start_migration(request).await?.into_inner();
    let view = EventView::new(a.connection.output);
    let mut last = None;
    while let Some(event) = stream.message().await? {
        let event = event.into_progress();
        view.show(&event);
        last = Some(event);
    }
    view.finish();
    let id = last
        .as_ref()
        .map(|e| e.migration_id.clone())
        .unwrap_or_default();
    let dry_run = ended(last);
    let report = client
        .validate_migration(ValidateMigrationRequest {
            organization_id: org,
            migration_id: id,
            ..Default::default()
        })
        .await?
        .into_inner()
        .into_report();
    output::result(
        a.connection.output,
        &report,
        "hera.migration.v2.ValidationReport",
        super::checks::validation_text,
    );
    match (dry_run, report.overall()) {
        (Ok(()), CheckResult::Pass | CheckResult::Warn) => {
            println!("verdict: ACCEPTED (the dry run succeeded and no check failed)");
            Ok(())
        }
        (Err(failure), _) => Err(Failure::failed(format!(
            "verdict: REJECTED: {}",
            failure.message
        ))),
        (Ok(()), _) => Err(Failure::failed(
            "verdict: REJECTED: a validation check failed".into(),
        )),
    }
}

pub async fn emergency_rollback(a: args::Rollback) -> Outcome {
    if a.reason.trim().is_empty() {
        return Err(Failure::usage("--reason: is required".into()));
    }
    let mut client = client::connect(&a.connection).await?;
    // What it would touch, for the person about to confirm (and the log).
    let plan = rollback_plan(&mut client, &a.run.org.organization_id, &a.run.migration_id).await?;
    eprintln!("{}", rollback_plan_text(&plan));
    if !a.yes && !confirmed(&a.run.migration_id)? {
        return Err(Failure::failed(
            "not confirmed: nothing was rolled back".into(),
        ));
    }
    let request = RollbackMigrationRequest {
        organization_id: a.run.org.organization_id,
        migration_id: a.run.migration_id,
        reason: a.reason,
        force: true,
        max_transactions_per_second: a.max_tps,
        ..Default::default()
    };
    let stream = client.rollback_migration(request).await?.into_inner();
    let view = EventView::new(a.connection.output);
    follow(
        &mut client,
        stream,
        &view,
        args::Follow {
            cancel_on_interrupt: false,
        },
    )
    .await
}

/// Asks on the terminal; without one, --yes is required.
fn confirmed(id: &str) -> Result<bool, Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(
            "confirmation needed: pass --yes (stdin is not a terminal)".into(),
        ));
    }
    eprint!("Roll back migration {id} now, cancelling it if it runs? Type 'yes': ");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| Failure::failed(e.to_string()))?;
    Ok(answer.trim() == "yes")
}

/// What a rollback of the run would change, as PreviewRollback answers.
pub async fn preview_rollback(a: args::Steered) -> Outcome {
    let mut client = client::connect(&a.connection).await?;
    let plan = rollback_plan(&mut client, &a.run.org.organization_id, &a.run.migration_id).await?;
    output::result(
        a.connection.output,
        &plan,
        "hera.migration.v2.PreviewRollbackResponse",
        rollback_plan_text,
    );
    Ok(())
}

async fn rollback_plan(
    client: &mut Client,
    org: &str,
    id: &str,
) -> Result<PreviewRollbackResponse, Failure> {
    let request = PreviewRollbackRequest {
        organization_id: org.to_owned(),
        migration_id: id.to_owned(),
    };
    Ok(client.preview_rollback(request).await?.into_inner())
}

/// PreviewRollback's answer in a few lines: what a rollback would change,
/// how long it should take, and each risk.
fn rollback_plan_text(plan: &PreviewRollbackResponse) -> String {
    let mut text = format!(
        "rollback of {} ({}): restores {} original(s), voids {} reversal and repost copies, removes {} alias(es); \
         about {:.1} s ({})",
        plan.migration_id,
        plan.state().short_name(),
        plan.originals_to_restore,
        plan.copies_to_void,
        plan.aliases_to_remove,
        plan.estimated_duration_ms as f64 / 1000.0,
        plan.estimate_basis
    );
    for posting in &plan.dependent_postings {
        text.push_str(&format!(
            "\n  depends on it: {} {} names {} in its {}",
            posting.transaction_code,
            posting.transaction_id,
            posting.references_transaction_id,
            posting.reference
        ));
    }
    for risk in &plan.risks {
        text.push_str(&format!("\n  risk: {risk}"));
    }
    text
}
