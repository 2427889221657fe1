//! `hera-migrate faults`, small: the shipped binary runs its campaign
//! (aliases, a migration and its rollback, each under SIGKILLs of the
//! replica executing the run, terminated batches, a PostgreSQL restart and
//! control storms) with two replicas on a private PostgreSQL, and every check
//! of every phase holds: among them that the other replica took each killed
//! executor's run over within the lease interval and that no two servers'
//! batches overlapped.
use std::process::Command;

use crate::support::process::BINARY;

#[test]
fn a_small_fault_campaign_loses_nothing_doubles_nothing_and_ends_every_phase_as_undisturbed() {
    let output = Command::new(BINARY)
        .args([
            "faults",
            "--transactions",
            "400",
            "--kills",
            "5",
            "--batch-size",
            "20",
            "--seed",
            "7",
        ])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the campaign");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    assert_eq!(report["passed"], true, "{report:#}");
    let phases = report["phases"].as_array().unwrap();
    let names: Vec<_> = phases
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["aliases", "migration", "rollback"]);
    for phase in phases {
        assert!(phase["faults"]["kills"].as_u64().unwrap() >= 1, "{phase:#}");
        assert!(
            phase["failures"].as_array().unwrap().is_empty(),
            "{phase:#}"
        );
    }
    // A phase may end some kills early on a busy machine (its pace is an
    // estimate of how long it needs); the report says how many fell.
    assert!(report["kills"].as_u64().unwrap() >= 9, "{report:#}");
    assert_eq!(report["replicas"], 2);
    for phase in phases {
        assert_eq!(phase["faults"]["database_restarts"], 1, "{phase:#}");
        assert!(
            phase["faults"]["executor_kills"].as_u64().unwrap() >= 1,
            "{phase:#}"
        );
        assert!(
            !phase["takeover_ms"].as_array().unwrap().is_empty(),
            "{phase:#}"
        );
        assert!(
            phase["executors"]["servers"].as_u64().unwrap() >= 2,
            "{phase:#}"
        );
    }
    let migration = &phases[1]["counts"];
    assert_eq!(
        (&migration["live_reversals"], &migration["live_reposts"]),
        (&serde_json::json!(400), &serde_json::json!(400))
    );
    assert_eq!(phases[2]["state"], "RolledBack");
}
