//! Tests never sleep to wait: they poll a condition until a deadline.
use std::{future::Future, time::Duration};

const POLL_EVERY: Duration = Duration::from_millis(50);

/// Polls `check` until it yields `Some`, panicking with `what` after `deadline`.
pub async fn until<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let give_up = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "gave up after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
}
