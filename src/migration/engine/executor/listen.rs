//! The executor listening to the database before each batch: a signal that
//! holds the run stops it between batches (recorded once, with the signal
//! named and its reading), one that slows it down doubles the time each
//! batch takes up, and every event carries the latest readings.
use std::time::{Duration, Instant};

use serde_json::json;

use super::Executor;
use crate::migration::{
    engine::{listening, pacing::Pacing},
    progress::{EventKind, Health, PacingState, ThrottleReason},
    run::RunState,
    signals::{self, Action, Reading, State},
};

impl Executor {
    /// Reads the signals (at most once a second) and holds the run while
    /// one asks it to. False when the server is stopping.
    pub(super) async fn listen(&mut self) -> bool {
        loop {
            let settings = self.pacing.signals;
            let readings = self.listener.read(&settings).await.to_vec();
            let deciding = signals::deciding(&readings).map(|(r, a)| (r.clone(), a));
            self.slowed = None;
            match deciding {
                None => {
                    self.held_by = None;
                    return true;
                }
                Some((reading, Action::SlowDown)) => {
                    self.held_by = None;
                    self.slowed = Some(reading);
                    return true;
                }
                Some((reading, Action::Hold)) => {
                    let wait = listening::hold_for(&reading, &settings).unwrap_or_default();
                    match self.hold(&reading, wait).await {
                        Held::Again => {}
                        Held::Controlled => return true,
                        Held::Stopping => return false,
                    }
                }
            }
        }
    }

    /// Holds for `wait` (recording why when the run was not held by this
    /// signal before), cut short by a control or an update.
    async fn hold(&mut self, reading: &Reading, wait: Duration) -> Held {
        if self.held_by != Some(reading.signal) {
            self.held_by = Some(reading.signal);
            self.throttle = ThrottleReason::DatabaseSignal;
            let unreadable = reading.state == State::Unreadable;
            let message = format!("held: {}", reading.sentence());
            let mut event = json!({
                "kind": EventKind::ThrottleStarted,
                "message": message,
                "pacing": self.signal_pacing(reading, &message),
            });
            if unreadable {
                // Failing closed needs a person: grant the role, or disable it.
                event["health"] = json!(Health::Warning);
            }
            self.record(&event).await;
        }
        let started = Instant::now();
        let held = tokio::select! {
            () = tokio::time::sleep(wait) => Held::Again,
            () = self.inner.shutdown.cancelled() => Held::Stopping,
            () = self.wake.notified() => match self.read_pace().await {
                Ok((RunState::Running, pacing)) => {
                    self.pacing = pacing;
                    Held::Again
                }
                // Paused or ended: the next batch finds out and says so.
                _ => Held::Controlled,
            },
        };
        self.throttled_ms += i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.meter
            .throttled(ThrottleReason::DatabaseSignal.as_str(), started.elapsed());
        held
    }

    /// The pace while a signal slows or holds the run.
    pub(super) fn signal_pacing(&self, reading: &Reading, detail: &str) -> PacingState {
        PacingState {
            throttled: true,
            reason: ThrottleReason::DatabaseSignal,
            operator_chosen: false,
            detail: detail.to_owned(),
            throttled_ms: self.throttled_ms,
            sizing: self.sizing(&self.pacing.sizing),
            signal: Some(reading.signal),
            signals: self.listener.latest().to_vec(),
        }
    }

    /// A batch's pace as its event reports it: a slowing signal's, or the
    /// operator's limits; with the latest readings either way.
    pub(super) fn with_signals(&self, state: PacingState) -> PacingState {
        match &self.slowed {
            Some(reading) => PacingState {
                throttled_ms: state.throttled_ms,
                sizing: state.sizing.clone(),
                ..self.signal_pacing(
                    reading,
                    &format!("slowed down (half speed): {}", reading.sentence()),
                )
            },
            _ => PacingState {
                signals: self.listener.latest().to_vec(),
                ..state
            },
        }
    }

    /// How long to wait after a batch of `transactions` that took `took`:
    /// what `pacing` asks (rate limit, batch delay), and as long as the
    /// batch took again while a signal slows the run down. The flag: the
    /// rate limit is what holds it back.
    pub(super) fn wait_after(
        &self,
        pacing: &Pacing,
        transactions: i64,
        took: Duration,
    ) -> (Duration, bool) {
        let (wait, rate_binding) = pacing.wait_after(transactions, took);
        let slowed = if self.slowed.is_some() {
            took
        } else {
            Duration::ZERO
        };
        (wait + slowed, rate_binding)
    }
}

/// How a hold ended.
enum Held {
    /// Its time is up, or the pace changed: read the signals again.
    Again,
    /// The run was paused or ended meanwhile: let the batch say so.
    Controlled,
    Stopping,
}
