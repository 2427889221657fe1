//! A run's pace as the API shows it: its throttle, its batch sizing, and
//! the database signals it listens to.
use super::convert::timestamp;
use crate::{
    migration::{
        progress::{BatchSizing, PacingState, SizingReason, ThrottleReason},
        signals::{self, Action, Reading, Settings, Signal, State},
    },
    proto::{self, ShortName},
};

/// Every signal's setting in force, defaults included.
pub fn settings(settings: &Settings) -> Vec<proto::SignalSetting> {
    signals::effective(settings)
        .iter()
        .map(|e| proto::SignalSetting {
            signal: pace_signal(e.signal).into(),
            disabled: !e.enabled,
            threshold: Some(e.threshold),
            action: action(e.action).into(),
            hold_ms: Some(e.hold_ms),
        })
        .collect()
}

pub fn pacing(p: &PacingState) -> proto::PacingState {
    let reason = match p.reason {
        ThrottleReason::None => proto::ThrottleReason::None,
        ThrottleReason::OperatorRateLimit => proto::ThrottleReason::OperatorRateLimit,
        ThrottleReason::OperatorBatchDelay => proto::ThrottleReason::OperatorBatchDelay,
        ThrottleReason::LockBackoff => proto::ThrottleReason::LockBackoff,
        ThrottleReason::DatabaseSignal => proto::ThrottleReason::DatabaseSignal,
    };
    proto::PacingState {
        throttled: p.throttled,
        reason: reason.into(),
        operator_chosen: p.operator_chosen,
        detail: p.detail.clone(),
        throttled_ms: p.throttled_ms,
        sizing: (p.sizing.reason != SizingReason::Unspecified).then(|| sizing(&p.sizing)),
        signal: p
            .signal
            .map_or(proto::PaceSignal::Unspecified, pace_signal)
            .into(),
        signals: p.signals.iter().map(reading).collect(),
    }
}

fn pace_signal(signal: Signal) -> proto::PaceSignal {
    proto::PaceSignal::from_short_name(signal.as_str()).unwrap_or(proto::PaceSignal::Unspecified)
}

fn action(action: Action) -> proto::SignalAction {
    match action {
        Action::SlowDown => proto::SignalAction::SlowDown,
        Action::Hold => proto::SignalAction::Hold,
    }
}

fn reading(r: &Reading) -> proto::SignalReading {
    let state = match r.state {
        State::Ok => proto::SignalState::Ok,
        State::Tripped => proto::SignalState::Tripped,
        State::Unreadable => proto::SignalState::Unreadable,
        State::Disabled => proto::SignalState::Disabled,
    };
    proto::SignalReading {
        signal: pace_signal(r.signal).into(),
        state: state.into(),
        value: r.value,
        threshold: r.threshold,
        action: action(r.action).into(),
        detail: r.detail.clone(),
        read_at: Some(timestamp(r.read_at)),
    }
}

fn sizing(s: &BatchSizing) -> proto::BatchSizing {
    let reason = match s.reason {
        SizingReason::Unspecified => proto::SizingReason::Unspecified,
        SizingReason::Fixed => proto::SizingReason::Fixed,
        SizingReason::Target => proto::SizingReason::Target,
        SizingReason::GrowthLimit => proto::SizingReason::GrowthLimit,
        SizingReason::OverTarget => proto::SizingReason::OverTarget,
        SizingReason::MinBatchSize => proto::SizingReason::MinBatchSize,
        SizingReason::MaxBatchSize => proto::SizingReason::MaxBatchSize,
        SizingReason::LockBackoff => proto::SizingReason::LockBackoff,
    };
    proto::BatchSizing {
        batch_size: s.batch_size,
        reason: reason.into(),
        target_batch_ms: s.target_batch_ms,
        work_ms: s.work_ms,
        detail: s.detail.clone(),
    }
}
