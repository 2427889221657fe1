//! `hera-migrate bench` at a tiny scale, as the shipped binary: it measures
//! every figure, prints them with their targets, writes bench.json and
//! bench.svg, and drops its databases. Nothing here asserts a time.
use std::{
    process::{Command, Stdio},
    time::Duration,
};

use sqlx::Connection as _;

use crate::support::{process::BINARY, wait};

const FIGURES: [char; 14] = [
    'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n',
];

/// Against DATABASE_URL when set; else on an embedded cluster of its own.
fn bench_command(output_dir: &std::path::Path, data_dir: &std::path::Path) -> Command {
    let mut command = Command::new(BINARY);
    command
        .args(["bench", "--scale", "0.002", "--output-dir"])
        .arg(output_dir)
        .stdin(Stdio::null());
    if std::env::var("DATABASE_URL").is_ok_and(|url| !url.trim().is_empty()) {
        command.env_remove("HERA_DATA_DIR");
    } else {
        command
            .env_remove("DATABASE_URL")
            .env("HERA_DATA_DIR", data_dir);
    }
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("OTEL_") {
            command.env_remove(name);
        }
    }
    command
}

/// Databases of `names` still on the DATABASE_URL server.
async fn still_there(names: &[String]) -> i64 {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let count = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = ANY ($1)")
        .bind(names)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
    count
}

#[tokio::test]
async fn the_bench_measures_every_figure_and_writes_its_json_and_chart() {
    let out = tempfile::tempdir().unwrap();
    let data = tempfile::Builder::new()
        .prefix("hera-bench-")
        .tempdir_in("/tmp")
        .unwrap();
    let stdout = std::fs::File::create(out.path().join("stdout")).unwrap();
    let stderr = std::fs::File::create(out.path().join("stderr")).unwrap();
    let mut child = bench_command(out.path(), data.path())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("start the bench");
    let status = wait::until("the bench to finish", Duration::from_secs(300), || {
        let exited = child.try_wait().unwrap();
        async move { exited }
    })
    .await;
    let printed = std::fs::read_to_string(out.path().join("stdout")).unwrap();
    let logged = std::fs::read_to_string(out.path().join("stderr")).unwrap();
    assert!(status.success(), "{status:?}\n{printed}\n{logged}");

    for letter in FIGURES {
        assert!(
            printed
                .lines()
                .any(|line| line.starts_with(&format!("{letter}. "))),
            "the table names figure {letter}:\n{printed}"
        );
    }
    assert!(printed.contains("holds"), "{printed}");

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("bench.json")).unwrap())
            .expect("bench.json is JSON");
    for letter in FIGURES {
        let figure = &json["figures"][letter.to_string()];
        assert_eq!(figure["measured"], true, "figure {letter}: {figure}");
        assert!(figure["target"].is_string(), "figure {letter}: {figure}");
    }
    // The guide's way is measured both as the guide writes it (a commit per
    // transaction) and under one commit, so what the commits cost shows.
    let guide = &json["figures"]["c"]["detail"];
    assert!(
        guide["ms_per_1000"].is_number() && guide["one_commit_ms_per_1000"].is_number(),
        "{guide}"
    );
    assert_eq!(json["scale"], 0.002);
    assert!(json["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(json["machine"]["postgres_version"].is_string());
    assert!(!json["big_run_batches"].as_array().unwrap().is_empty());

    let svg = std::fs::read_to_string(out.path().join("bench.svg")).unwrap();
    assert!(
        svg.trim_start().starts_with("<svg"),
        "{}",
        &svg[..svg.len().min(200)]
    );
    assert!(svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("batch time (ms)") && svg.contains("migrated transactions / s"));

    let databases: Vec<String> = json["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|name| name.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(databases.len(), 3, "{databases:?}");
    if std::env::var("DATABASE_URL").is_ok_and(|url| !url.trim().is_empty()) {
        assert_eq!(still_there(&databases).await, 0, "dropped: {databases:?}");
    }
}
