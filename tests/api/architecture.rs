//! The layering, checked: the service and the layers below it know nothing of gRPC, and every
//! write of HERA's transactions is SQL in `sql/` (which the run store and the
//! phases call), never SQL text in Rust.
use std::path::{Path, PathBuf};

fn sources(under: &str) -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, found: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).expect("a source folder") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("a source file");
                found.push((path, text));
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(under);
    let mut found = Vec::new();
    if root.is_dir() {
        walk(&root, &mut found);
    } else {
        let text = std::fs::read_to_string(&root).expect("a source file");
        found.push((root, text));
    }
    found
}

#[test]
fn the_service_and_the_layers_below_it_import_no_tonic_and_no_generated_proto_code() {
    for layer in [
        "src/service.rs",
        "src/migration",
        "src/operations",
        "src/auth",
        "src/db",
        "src/incidents",
    ] {
        for (path, text) in sources(layer) {
            for forbidden in ["tonic", "crate::proto", "proto::"] {
                assert!(
                    !text.contains(forbidden),
                    "{} mentions {forbidden}: only server/ speaks gRPC",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn the_engine_records_metrics_through_its_recorder_and_knows_no_exporter() {
    for layer in ["src/service.rs", "src/migration"] {
        for (path, text) in sources(layer) {
            for forbidden in [
                "opentelemetry_sdk",
                "opentelemetry_otlp",
                "opentelemetry_prometheus",
                "prometheus::",
                "hyper",
            ] {
                assert!(
                    !text.contains(forbidden),
                    "{} mentions {forbidden}: the engine records through metrics::Recorder",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn the_operator_commands_are_clients_of_the_server_never_of_the_database() {
    for (path, text) in sources("src/operator") {
        for forbidden in ["sqlx", "PgPool", "crate::db", "crate::service"] {
            assert!(
                !text.contains(forbidden),
                "{} mentions {forbidden}: an operator command goes through the API",
                path.display()
            );
        }
    }
}

#[test]
fn transactions_are_written_only_by_sql_files_and_the_run_store() {
    for (path, text) in sources("src") {
        for write in [
            "UPDATE universal_transactions",
            "INSERT INTO universal_transactions",
            "UPDATE universal_transaction_lines",
            "INSERT INTO universal_transaction_lines",
        ] {
            assert!(
                !text.contains(write),
                "{} writes transactions itself ({write}): that SQL belongs in sql/",
                path.display()
            );
        }
    }
}

#[test]
fn every_source_file_stays_small_and_the_grpc_adapter_thin() {
    for (path, text) in sources("src") {
        let lines = text.lines().count();
        assert!(
            lines <= 400,
            "{} has {lines} lines: split it by what it owns",
            path.display()
        );
    }
    let (path, adapter) = &sources("src/server/grpc.rs")[0];
    let lines = adapter.lines().count();
    assert!(
        lines < 300,
        "{} has {lines} lines: decoding, the service and encoding live elsewhere",
        path.display()
    );
}

#[test]
fn a_runs_row_is_read_and_written_only_by_the_run_store() {
    for (path, text) in sources("src") {
        let in_store = path.components().any(|c| c.as_os_str() == "store");
        let sql_of_runs = text
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .any(|line| line.contains("'MIGRATION_RUN'"));
        assert!(
            in_store || !sql_of_runs,
            "{} queries runs' rows itself: that belongs in migration/run/store",
            path.display()
        );
    }
}

/// The service answers in domain types without a port: what the adapter
/// decodes, the service takes; what it answers, the adapter encodes.
#[tokio::test]
async fn the_service_is_called_without_a_port() {
    use hera_migrate::{
        auth::Caller, error::Error, migration::preview::PreviewQuery, startup::Application,
    };

    let db = crate::support::TestDatabase::create().await;
    let app = Application::build(crate::support::app::test_settings(db.options()))
        .await
        .expect("built, not serving");
    let report = crate::support::fixtures::seed_2024(&db.pool().await, 1, 30, 3).await;
    let org = &report.organizations[0];
    let owner = Caller {
        user_id: org.users[0].id,
    };
    let query = PreviewQuery::parse("2024-01-01", "2024-12-31", 0, Vec::new(), &[], false)
        .expect("a checked query");
    let preview = app
        .service()
        .preview(owner, org.id, &query)
        .await
        .expect("a preview");
    assert_eq!(preview.organization_id, org.id);
    assert!(preview.total_candidates > 0);
    let stranger = Caller {
        user_id: uuid::Uuid::new_v4(),
    };
    let refused = app.service().preview(stranger, org.id, &query).await;
    assert!(
        matches!(
            refused,
            Err(Error::Refused {
                kind: hera_migrate::error::Refusal::NotAMember,
                ..
            })
        ),
        "{refused:?}"
    );
    let unknown = app.service().get(owner, org.id, uuid::Uuid::new_v4()).await;
    assert!(
        matches!(unknown, Err(Error::RunNotFound { .. })),
        "{unknown:?}"
    );
}
