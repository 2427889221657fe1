//! Following a run's event stream to its end. Ctrl-C detaches (the run
//! belongs to the server and goes on) and says how to re-attach; with
//! `--cancel-on-interrupt` it cancels the run and follows it to its end.
use tokio_stream::StreamExt;
use tonic::Streaming;

use super::{Failure, Outcome, args::Follow, client::Client, output::EventView};
use crate::proto::{
    CancelMigrationRequest, MigrationProgress, MigrationState, ProgressEvent, ShortName,
};

/// Shows every event of `stream`; the run's end decides the outcome
/// (FAILED or CANCELLED: exit 1).
pub async fn follow(
    client: &mut Client,
    mut stream: Streaming<impl ProgressEvent>,
    view: &EventView,
    follow: Follow,
) -> Outcome {
    let mut last: Option<MigrationProgress> = None;
    let mut interrupted = false;
    loop {
        tokio::select! {
            event = stream.next() => match event {
                Some(Ok(event)) => {
                    let event = event.into_progress();
                    view.show(&event);
                    last = Some(event);
                }
                Some(Err(status)) => {
                    view.finish();
                    return Err(status.into());
                }
                None => break,
            },
            _ = tokio::signal::ctrl_c(), if !interrupted => {
                interrupted = true;
                let Some(event) = &last else { continue };
                if follow.cancel_on_interrupt {
                    let request = CancelMigrationRequest {
                        organization_id: event.organization_id.clone(),
                        migration_id: event.migration_id.clone(),
                        ..Default::default()
                    };
                    client.cancel_migration(request).await?;
                    continue;
                }
                view.finish();
                eprintln!(
                    "detached: the run goes on; follow it again with\n  hera-migrate monitor-progress \
                     --organization-id {} --migration-id {}",
                    event.organization_id, event.migration_id
                );
                return Ok(());
            }
        }
    }
    view.finish();
    ended(last)
}

/// The outcome of a run's last event.
pub fn ended(last: Option<MigrationProgress>) -> Outcome {
    let Some(last) = last else {
        return Err(Failure::failed("the stream ended without an event".into()));
    };
    match last.state() {
        MigrationState::Failed | MigrationState::Cancelled => Err(Failure::failed(format!(
            "migration {} ended {}: {}",
            last.migration_id,
            last.state().short_name(),
            last.message
        ))),
        _ => Ok(()),
    }
}
