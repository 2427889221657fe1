//! A run's events as a server stream.
use std::pin::Pin;

use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::Status;

use super::convert;
use crate::{migration::engine::Events, proto::MigrationProgress};

/// A server stream of run events, each wrapped in the RPC's own message `T`.
pub type ProgressStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Streams a run's events as the engine reads them from its history (every
/// one, in sequence, ending with the terminal one); a slow watcher only
/// reads the history later and never slows the run.
pub fn progress_stream<T>(events: Events) -> ProgressStream<T>
where
    T: From<MigrationProgress> + Send + 'static,
{
    Box::pin(ReceiverStream::new(events).map(|event| {
        event
            .map(|event| T::from(convert::progress(&event)))
            .map_err(Status::from)
    }))
}
