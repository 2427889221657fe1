use super::*;
use crate::operations::connections::{Pools, Replicas, max_connections, replicas_check};

fn settings() -> Settings {
    Settings {
        version_num: 150_004,
        version: "15.4".into(),
        max_connections: 100,
        reserved_connections: 3,
        connections_in_use: 10,
        wal_level: "replica".into(),
        archive_mode: "off".into(),
        autovacuum: "on".into(),
        track_counts: "on".into(),
        autovacuum_off_tables: Vec::new(),
    }
}

fn session(statement_timeout_ms: i64, longest_batch_ms: Option<f64>) -> Session {
    Session {
        statement_timeout_ms,
        lock_timeout_ms: 0,
        role: "hera_migrate_app".into(),
        login_role: "hera".into(),
        bypasses_rls: false,
        longest_batch_ms,
    }
}

const POOLS: Pools = Pools {
    service: (2, 1, 10),
    admin: (0, 0, 2),
};

#[test]
fn versions_below_14_fail_and_14_warns() {
    let at = |version_num| {
        database_version(&Settings {
            version_num,
            ..settings()
        })
    };
    assert_eq!(at(130_011).result, Outcome::Fail);
    assert_eq!(at(140_009).result, Outcome::Warn);
    assert_eq!(at(150_004).result, Outcome::Pass);
    assert_eq!(at(170_000).result, Outcome::Pass);
    assert!(!at(130_011).remedy.is_empty());
}

#[test]
fn connections_fail_when_the_pools_could_not_open() {
    assert_eq!(max_connections(&settings(), POOLS).result, Outcome::Pass);
    let busy = Settings {
        connections_in_use: 80,
        ..settings()
    };
    assert_eq!(max_connections(&busy, POOLS).result, Outcome::Warn);
    let full = Settings {
        connections_in_use: 95,
        ..settings()
    };
    assert_eq!(max_connections(&full, POOLS).result, Outcome::Fail);
}

#[test]
fn a_statement_timeout_shorter_than_a_batch_is_not_a_pass() {
    assert_eq!(
        statement_timeout(&session(0, Some(900.0))).result,
        Outcome::Pass
    );
    assert_eq!(
        statement_timeout(&session(500, Some(900.0))).result,
        Outcome::Fail
    );
    assert_eq!(
        statement_timeout(&session(1500, Some(900.0))).result,
        Outcome::Warn
    );
    assert_eq!(
        statement_timeout(&session(5000, None)).result,
        Outcome::Warn
    );
    assert_eq!(
        statement_timeout(&session(120_000, None)).result,
        Outcome::Pass
    );
    assert!(
        statement_timeout(&session(500, None))
            .remedy
            .contains("ALTER ROLE hera")
    );
}

#[test]
fn a_short_lock_timeout_warns() {
    let short = Session {
        lock_timeout_ms: 100,
        ..session(0, None)
    };
    assert_eq!(lock_timeout(&short, 2000).result, Outcome::Warn);
    assert_eq!(lock_timeout(&session(0, None), 2000).result, Outcome::Pass);
}

#[test]
fn wal_archiving_and_autovacuum_settings() {
    let minimal = Settings {
        wal_level: "minimal".into(),
        ..settings()
    };
    assert_eq!(wal_level(&minimal).result, Outcome::Warn);
    assert_eq!(archive_mode(&settings()).result, Outcome::Warn);
    let off_for_one = Settings {
        autovacuum_off_tables: vec!["universal_transactions".into()],
        ..settings()
    };
    let check = autovacuum(&off_for_one);
    assert_eq!(check.result, Outcome::Warn);
    assert!(
        check
            .remedy
            .contains("ALTER TABLE universal_transactions RESET")
    );
}

#[test]
fn no_replica_visible_is_a_pass_and_hidden_details_are_unknown() {
    let replicas = |names: Vec<&str>, states: Vec<&str>, lags: Vec<f64>, may| Replicas {
        may_read_details: may,
        names: names.into_iter().map(String::from).collect(),
        states: states.into_iter().map(String::from).collect(),
        replay_lag_s: lags,
        standby_replay_age_s: None,
    };
    let none = replicas_check(&replicas(vec![], vec![], vec![], false));
    assert_eq!(none.result, Outcome::Pass);
    assert!(none.detail.contains("no replicas visible"));
    let hidden = replicas_check(&replicas(vec!["r1"], vec![""], vec![-1.0], false));
    assert_eq!(hidden.result, Outcome::Unknown);
    assert!(hidden.detail.contains("insufficient privilege"));
    let fine = replicas_check(&replicas(vec!["r1"], vec!["streaming"], vec![0.2], true));
    assert_eq!(fine.result, Outcome::Pass);
    let behind = replicas_check(&replicas(vec!["r1"], vec!["streaming"], vec![90.0], true));
    assert_eq!(behind.result, Outcome::Warn);
}
