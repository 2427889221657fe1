//! A run's events as a server stream.
use std::pin::Pin;

use tokio::sync::{mpsc, watch};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::Status;

use super::convert;
use crate::{migration::progress::Progress, proto::MigrationProgress};

/// A server stream of run events.
pub type ProgressStream = Pin<Box<dyn Stream<Item = Result<MigrationProgress, Status>> + Send>>;

/// Streams a run's snapshots after `after_sequence`, always ending with the
/// terminal one. A producer task forwards them, so a slow watcher only skips
/// intermediate snapshots and never slows the run.
pub fn progress_stream(
    mut updates: watch::Receiver<Progress>,
    after_sequence: u64,
) -> ProgressStream {
    let (sender, stream) = mpsc::channel(8);
    tokio::spawn(async move {
        loop {
            let snapshot = updates.borrow_and_update().clone();
            let last = snapshot.state.is_terminal();
            if (snapshot.sequence > after_sequence || last)
                && sender.send(Ok(convert::progress(&snapshot))).await.is_err()
            {
                return; // the watcher went away; the run goes on
            }
            if last {
                return;
            }
            if updates.changed().await.is_err() {
                let stopping = Status::unavailable(
                    "the server is stopping; the run goes on and can be watched again",
                );
                let _ = sender.send(Err(stopping)).await;
                return;
            }
        }
    });
    Box::pin(ReceiverStream::new(stream))
}
