//! The database signals a run's pace listens to, as a run records them: the
//! operator's settings (a threshold and an action per signal, defaults
//! applied here once) and the readings its events carry. Reading them is
//! the engine's (`engine::listening`).
//!
//! Each signal stands for someone the migration must not hurt: autovacuum
//! (the tables' upkeep, which a run's writes make necessary and which the
//! run should not race), the WAL archive (backups and point-in-time
//! recovery fall behind), replicas (reads served stale), and the business
//! itself (the latency of a probe against its idle baseline).
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Signal {
    /// VACUUMs running on the six tables.
    Autovacuum,
    /// WAL segments waiting to be archived.
    WalArchiveBacklog,
    /// The slowest replica's replay lag, in milliseconds.
    ReplicaLag,
    /// The business probe's latency over its idle baseline.
    BusinessProbe,
}

impl Signal {
    pub const ALL: [Signal; 4] = [
        Self::Autovacuum,
        Self::WalArchiveBacklog,
        Self::ReplicaLag,
        Self::BusinessProbe,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Autovacuum => "AUTOVACUUM",
            Self::WalArchiveBacklog => "WAL_ARCHIVE_BACKLOG",
            Self::ReplicaLag => "REPLICA_LAG",
            Self::BusinessProbe => "BUSINESS_PROBE",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// How a run listens to it unless the operator says otherwise.
    pub fn default_setting(self) -> Effective {
        let (threshold, action, enabled) = match self {
            Self::Autovacuum => (1.0, Action::SlowDown, true),
            // GitLab's batched migrations stop above 42 segments.
            Self::WalArchiveBacklog => (42.0, Action::Hold, true),
            Self::ReplicaLag => (10_000.0, Action::Hold, true),
            // Opt-in: a run shares the machine with the probe, so its
            // latency rises with every batch; the operator decides.
            Self::BusinessProbe => (3.0, Action::SlowDown, false),
        };
        Effective {
            signal: self,
            enabled,
            threshold,
            action,
            hold_ms: DEFAULT_HOLD_MS,
        }
    }

    /// The unit of its value, for sentences.
    pub fn unit(self) -> &'static str {
        match self {
            Self::Autovacuum => "VACUUM(s) running",
            Self::WalArchiveBacklog => "WAL segment(s) waiting to be archived",
            Self::ReplicaLag => "ms of replay lag",
            Self::BusinessProbe => "x its idle latency",
        }
    }
}

/// What a run does while a signal trips (or cannot be read: then it holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    /// After each batch, wait as long as the batch took.
    SlowDown,
    /// No batch until it reads below its threshold again.
    Hold,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SlowDown => "SLOW_DOWN",
            Self::Hold => "HOLD",
        }
    }
}

pub const DEFAULT_HOLD_MS: u32 = 10_000;
pub const HOLD_MS: std::ops::RangeInclusive<u32> = 100..=600_000;

/// The operator's setting of one signal, as asked (None: the default).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Setting {
    /// None: as the signal's default (the probe is off by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold_ms: Option<u32>,
}

/// The operator's settings by signal, as a run's parameters hold them.
pub type Settings = BTreeMap<Signal, Setting>;

/// One signal's setting in force.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Effective {
    pub signal: Signal,
    pub enabled: bool,
    pub threshold: f64,
    pub action: Action,
    pub hold_ms: u32,
}

/// Every signal's setting in force under `settings`, in the signals' order.
pub fn effective(settings: &Settings) -> [Effective; 4] {
    Signal::ALL.map(|signal| {
        let default = signal.default_setting();
        let asked = settings.get(&signal).cloned().unwrap_or_default();
        Effective {
            signal,
            enabled: asked.enabled.unwrap_or(default.enabled),
            threshold: asked.threshold.unwrap_or(default.threshold),
            action: asked.action.unwrap_or(default.action),
            hold_ms: asked.hold_ms.unwrap_or(default.hold_ms),
        }
    })
}

/// A request's signal settings, checked: each names a signal once, a
/// threshold is a positive finite number, a hold is 100 ms to 10 minutes.
/// Errors name the field, `signals[i].<field>`.
pub fn checked(asked: Vec<(Option<Signal>, Setting)>) -> Result<Settings> {
    let mut settings = Settings::new();
    for (i, (signal, setting)) in asked.into_iter().enumerate() {
        let field = |name: &str| format!("signals[{i}].{name}");
        let Some(signal) = signal else {
            return Err(Error::invalid(
                field("signal"),
                "is required (AUTOVACUUM, WAL_ARCHIVE_BACKLOG, REPLICA_LAG or BUSINESS_PROBE)",
            ));
        };
        if let Some(t) = setting.threshold.filter(|t| !(t.is_finite() && *t > 0.0)) {
            return Err(Error::invalid(
                field("threshold"),
                format!("{t} is not a positive number"),
            ));
        }
        if let Some(ms) = setting.hold_ms.filter(|ms| !HOLD_MS.contains(ms)) {
            return Err(Error::invalid(
                field("hold_ms"),
                format!(
                    "{ms} is out of range ({} to {} ms)",
                    HOLD_MS.start(),
                    HOLD_MS.end()
                ),
            ));
        }
        if settings.insert(signal, setting).is_some() {
            return Err(Error::invalid(
                field("signal"),
                format!("{} is set twice", signal.as_str()),
            ));
        }
    }
    Ok(settings)
}

/// Where a signal stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    #[default]
    Ok,
    Tripped,
    /// Could not be read: the run fails closed and holds.
    Unreadable,
    Disabled,
}

/// A signal as last read, as events carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub signal: Signal,
    pub state: State,
    pub value: f64,
    pub threshold: f64,
    pub action: Action,
    pub detail: String,
    pub read_at: DateTime<Utc>,
    /// The business probe's idle latency, which a server taking the run
    /// over goes on from (it cannot measure idle mid-run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_ms: Option<f64>,
}

impl Reading {
    /// What the run must do about it, if anything: its action while it
    /// trips; HOLD while it cannot be read (fail closed).
    pub fn demands(&self) -> Option<Action> {
        match self.state {
            State::Tripped => Some(self.action),
            State::Unreadable => Some(Action::Hold),
            State::Ok | State::Disabled => None,
        }
    }

    /// "autovacuum: 1 VACUUM(s) running (threshold 1): universal_transactions (scanning heap)".
    pub fn sentence(&self) -> String {
        let name = self.signal.as_str().to_lowercase();
        match self.state {
            State::Unreadable => format!(
                "{name} cannot be read, so the run holds (fail closed; disable the signal to go on \
                 without it): {}",
                self.detail
            ),
            _ => format!(
                "{name}: {} {} (threshold {}){}",
                round(self.value),
                self.signal.unit(),
                round(self.threshold),
                if self.detail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", self.detail)
                }
            ),
        }
    }
}

/// The reading that decides the run's pace: any HOLD before any SLOW_DOWN,
/// in the signals' order.
pub fn deciding(readings: &[Reading]) -> Option<(&Reading, Action)> {
    let demanding = || {
        readings
            .iter()
            .filter_map(|r| r.demands().map(|action| (r, action)))
    };
    demanding()
        .find(|(_, action)| *action == Action::Hold)
        .or_else(|| demanding().next())
}

fn round(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(signal: Signal, state: State, action: Action) -> Reading {
        Reading {
            signal,
            state,
            value: 2.0,
            threshold: 1.0,
            action,
            detail: String::new(),
            read_at: Utc::now(),
            baseline_ms: None,
        }
    }

    #[test]
    fn defaults_apply_where_the_operator_set_nothing() {
        let mut settings = Settings::new();
        settings.insert(
            Signal::BusinessProbe,
            Setting {
                enabled: Some(true),
                ..Setting::default()
            },
        );
        let all = effective(&settings);
        assert_eq!(all.len(), 4);
        assert!(all.iter().all(|e| e.enabled));
        assert_eq!(all[1].threshold, 42.0);
        assert_eq!(all[3].action, Action::SlowDown);
        assert!(!effective(&Settings::new())[3].enabled);
    }

    #[test]
    fn a_hold_decides_before_a_slow_down_and_an_unreadable_signal_holds() {
        let slow = reading(Signal::Autovacuum, State::Tripped, Action::SlowDown);
        let unreadable = reading(Signal::ReplicaLag, State::Unreadable, Action::SlowDown);
        let ok = reading(Signal::WalArchiveBacklog, State::Ok, Action::Hold);
        let readings = [slow.clone(), ok.clone(), unreadable];
        let (deciding_reading, action) = deciding(&readings).unwrap();
        assert_eq!(
            (deciding_reading.signal, action),
            (Signal::ReplicaLag, Action::Hold)
        );
        assert_eq!(deciding(&[slow, ok.clone()]).unwrap().1, Action::SlowDown);
        assert!(deciding(&[ok]).is_none());
    }

    #[test]
    fn settings_are_checked_naming_the_field() {
        let field = |r: Result<Settings>| match r {
            Err(Error::InvalidArgument { field, .. }) => field.into_owned(),
            other => panic!("{other:?}"),
        };
        let set = |threshold, hold_ms| Setting {
            threshold,
            hold_ms,
            ..Setting::default()
        };
        assert_eq!(
            field(checked(vec![(None, set(None, None))])),
            "signals[0].signal"
        );
        assert_eq!(
            field(checked(vec![(
                Some(Signal::ReplicaLag),
                set(Some(-1.0), None)
            )])),
            "signals[0].threshold"
        );
        assert_eq!(
            field(checked(vec![(
                Some(Signal::ReplicaLag),
                set(None, Some(5))
            )])),
            "signals[0].hold_ms"
        );
        let twice = vec![
            (Some(Signal::Autovacuum), set(None, None)),
            (Some(Signal::Autovacuum), set(None, None)),
        ];
        assert_eq!(field(checked(twice)), "signals[1].signal");
    }
}
