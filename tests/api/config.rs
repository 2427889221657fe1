//! A bad setting stops the start: non-zero exit, one error line naming it.
use std::process::Command;

use crate::support::TestDatabase;

const BINARY: &str = env!("CARGO_BIN_EXE_hera-migrate");

/// Runs `hera-migrate serve` with `env`, expecting failure; returns its error line.
fn failed_start(env: &[(&str, &str)]) -> String {
    let mut command = Command::new(BINARY);
    command
        .arg("serve")
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .env("HERA_LISTEN_ADDR", "127.0.0.1:0")
        .env("HERA_JWT_SECRET", "a-secret")
        .env("HERA_DATA_DIR", "/nonexistent/never-used");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run the binary");
    assert!(!output.status.success(), "{env:?} must stop the start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("error"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line for {env:?}, got: {stderr}");
    errors[0].to_owned()
}

#[test]
fn each_bad_setting_is_named() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("HERA_LISTEN_ADDR", "not-an-address")],
            "HERA_LISTEN_ADDR",
        ),
        (&[("DATABASE_URL", "not a url")], "DATABASE_URL"),
        (
            &[
                ("DATABASE_URL", "postgres://root@127.0.0.1:5432/x"),
                ("HERA_DB_POOL_SIZE", "0"),
            ],
            "HERA_DB_POOL_SIZE",
        ),
        (&[("HERA_LOG_FORMAT", "xml")], "HERA_LOG_FORMAT"),
        (
            &[("HERA_HEALTH_PROBE_INTERVAL_MS", "soon")],
            "HERA_HEALTH_PROBE_INTERVAL_MS",
        ),
        (&[("RUST_LOG", "hera_migrate=loud")], "RUST_LOG"),
        (
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")],
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
        (
            &[("DATABASE_URL", "postgres://root@127.0.0.1:1/nothing")],
            "DATABASE_URL",
        ),
        (
            &[
                ("DATABASE_URL", "postgres://root@127.0.0.1:1/nothing"),
                ("HERA_JWT_SECRET", ""),
            ],
            "HERA_JWT_SECRET",
        ),
        (
            &[("HERA_JWT_PUBLIC_KEY_FILE", "/nonexistent/key.pem")],
            "HERA_JWT_PUBLIC_KEY_FILE",
        ),
        (
            &[
                ("HERA_TLS_CERT", "/nonexistent/cert.pem"),
                ("HERA_TLS_KEY", "/nonexistent/key.pem"),
            ],
            "HERA_TLS_CERT",
        ),
        (
            &[("HERA_TLS_CERT", "/nonexistent/cert.pem")],
            "HERA_TLS_KEY",
        ),
    ];
    for (env, setting) in cases {
        let line = failed_start(env);
        assert!(line.contains(setting), "{setting} named in: {line}");
    }
}

#[tokio::test]
async fn a_busy_port_is_named() {
    let db = TestDatabase::create().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let url = db.url();
    let line = tokio::task::spawn_blocking(move || {
        failed_start(&[("HERA_LISTEN_ADDR", &addr), ("DATABASE_URL", &url)])
    })
    .await
    .unwrap();
    assert!(line.contains("HERA_LISTEN_ADDR"), "{line}");
}
