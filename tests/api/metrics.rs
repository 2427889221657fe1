//! Metrics: the Prometheus endpoint scraped during a run (counters rise,
//! batches are timed, calls are counted by method and code), the same
//! metrics pushed to an OTLP collector by the shipped binary, and an
//! endpoint only when asked for.
use std::{
    net::SocketAddr,
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use hera_migrate::proto::*;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    metrics_service_server::{MetricsService, MetricsServiceServer},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Code, Request, Response, Status};
use uuid::Uuid;

use crate::support::{
    TestApp, TestDatabase,
    app::TEST_SECRET,
    as_user, fixtures,
    process::{BINARY, ServerProcess, serve_command, wait_serving},
    runs::{Client, collect, rollout, seeded_with, start, start_paced_until},
    wait,
};

/// `GET /metrics` over a plain TCP connection: (status line, body).
async fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("the endpoint accepts");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, body.to_owned())
}

/// The metrics text, from a scrape that succeeded.
async fn scrape(addr: SocketAddr) -> String {
    let (status, body) = get(addr, "/metrics").await;
    assert!(status.contains(" 200 "), "{status}\n{body}");
    body
}

/// The sum of `name`'s samples whose labels include every one of `labels`.
fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|line| {
            labels
                .iter()
                .all(|(key, value)| line.contains(&format!("{key}=\"{value}\"")))
        })
        .map(|line| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

/// Calls of MigrationService's `method` answered `code`, as counted.
fn calls(text: &str, method: &str, code: &str) -> f64 {
    sum(
        text,
        "hera_migrate_rpc_server_calls_total",
        &[
            ("rpc_service", "hera.migration.v2.MigrationService"),
            ("rpc_method", method),
            ("rpc_response_status_code", code),
        ],
    )
}

fn get_request(org: Uuid, id: &str) -> GetMigrationRequest {
    GetMigrationRequest {
        organization_id: org.to_string(),
        migration_id: id.to_owned(),
    }
}

/// GetMigration three ways: answered, unknown run, no token.
async fn get_three_ways(client: &mut Client, org: Uuid, owner: Uuid, id: &str) {
    client
        .get_migration(as_user(get_request(org, id), owner))
        .await
        .expect("the run is there");
    let unknown = Uuid::new_v4().to_string();
    let status = client
        .get_migration(as_user(get_request(org, &unknown), owner))
        .await
        .expect_err("no such run");
    assert_eq!(status.code(), Code::NotFound);
    let status = client
        .get_migration(Request::new(get_request(org, id)))
        .await
        .expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_scrape_during_a_run_sees_its_transactions_rise_its_batches_timed_and_calls_by_code() {
    let s = seeded_with(120, |settings| {
        settings.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let addr = s.app.metrics_addr.expect("the endpoint is bound");
    assert_ne!(addr.port(), 0, "port 0 is resolved");
    let mut client = s.app.client().await;
    // 5 transactions a batch at 20 a second: seconds of run, each batch
    // held back to a quarter of a second.
    let (_events, id) = start_paced_until(&mut client, (s.org, s.owner), 20.0, 10).await;
    let org = s.org.to_string();
    let ours = [("organization_id", org.as_str()), ("phase", "EXECUTION")];
    let migrated = |text: &str| sum(text, "hera_migration_transactions_migrated_total", &ours);

    let first = wait::until(
        "a scrape counting migrated transactions",
        Duration::from_secs(10),
        || async {
            let counted = migrated(&scrape(addr).await);
            (counted > 0.0).then_some(counted)
        },
    )
    .await;
    let text = wait::until("the count to rise", Duration::from_secs(20), || async {
        let text = scrape(addr).await;
        (migrated(&text) > first).then_some(text)
    })
    .await;
    let timed = sum(
        &text,
        "hera_migration_batch_duration_seconds_count",
        &[("phase", "EXECUTION"), ("dry_run", "false")],
    );
    assert!(timed > 0.0, "batches are timed:\n{text}");
    assert!(
        sum(&text, "hera_migration_batches_total", &ours) > 0.0,
        "{text}"
    );
    assert!(
        sum(&text, "hera_migration_throttled_seconds_total", &ours) > 0.0,
        "the rate limit holds the run back:\n{text}"
    );
    assert_eq!(
        sum(&text, "hera_migration_runs_active", &[("state", "RUNNING")]),
        1.0,
        "{text}"
    );
    assert_eq!(
        sum(&text, "hera_migration_runs_started_total", &ours),
        1.0,
        "{text}"
    );
    assert!(
        sum(&text, "hera_migrate_db_pool_size", &[("pool", "service")]) > 0.0,
        "{text}"
    );
    assert_eq!(
        sum(&text, "hera_migrate_db_pool_max", &[("pool", "service")]),
        4.0
    );
    assert!(text.contains("hera_migrate_db_pool_idle{"), "{text}");

    get_three_ways(&mut client, s.org, s.owner, &id).await;
    let text = wait::until(
        "calls counted by method and code",
        Duration::from_secs(10),
        || async {
            let text = scrape(addr).await;
            let counted = ["OK", "NOT_FOUND", "UNAUTHENTICATED"]
                .iter()
                .all(|code| calls(&text, "GetMigration", code) >= 1.0);
            counted.then_some(text)
        },
    )
    .await;
    let timed = sum(
        &text,
        "hera_migrate_rpc_server_duration_seconds_count",
        &[("rpc_method", "GetMigration")],
    );
    assert!(timed >= 3.0, "each call is timed:\n{text}");
    assert_eq!(
        calls(&text, "StartMigration", "OK"),
        0.0,
        "a stream is counted when it ends, and the run's has not"
    );

    client
        .cancel_migration(as_user(
            CancelMigrationRequest {
                organization_id: org.clone(),
                migration_id: id.clone(),
                request_id: "metrics-cancel".into(),
            },
            s.owner,
        ))
        .await
        .expect("the run is cancelled");
    let text = wait::until(
        "the end counted, the run gone",
        Duration::from_secs(10),
        || async {
            let text = scrape(addr).await;
            let ended = sum(
                &text,
                "hera_migration_runs_ended_total",
                &[("state", "CANCELLED")],
            );
            let active = sum(&text, "hera_migration_runs_active", &[]);
            (ended == 1.0 && active == 0.0).then_some(text)
        },
    )
    .await;
    assert!(
        text.contains("hera_migrate_health_serving 1"),
        "the health probe's reading:\n{text}"
    );
    let (status, _) = get(addr, "/").await;
    assert!(status.contains(" 404 "), "{status}");
    s.app.stop().await;
}

#[tokio::test]
async fn lock_waits_are_timed_and_counted_and_the_counts_match_the_runs_own() {
    let s = seeded_with(30, |settings| {
        settings.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
        settings.engine.batch_lock_timeout_ms = 50;
        settings.engine.batch_lock_retries = 1000;
    })
    .await;
    let addr = s.app.metrics_addr.unwrap();
    // The business holds locks on every transaction of the organization.
    let business = crate::support::sql::lock_every_transaction(&s.pool, s.org).await;
    let mut client = s.app.client().await;
    let events = client
        .start_migration(as_user(start(s.org), s.owner))
        .await
        .unwrap()
        .into_inner();
    let org = s.org.to_string();
    let ours = [("organization_id", org.as_str()), ("phase", "EXECUTION")];
    let text = wait::until(
        "two lock backoffs counted",
        Duration::from_secs(20),
        || async {
            let text = scrape(addr).await;
            let cause = [ours[0], ours[1], ("cause", "lock_timeout")];
            (sum(&text, "hera_migration_lock_backoffs_total", &cause) >= 2.0).then_some(text)
        },
    )
    .await;
    let waits = [("phase", "EXECUTION")];
    assert!(
        sum(
            &text,
            "hera_migration_batch_lock_wait_seconds_count",
            &waits
        ) >= 2.0
    );
    assert!(
        sum(&text, "hera_migration_batch_lock_wait_seconds_sum", &waits) >= 0.1,
        "each wait lasts the lock timeout (50 ms) at least:\n{text}"
    );
    let backing_off = [ours[0], ours[1], ("reason", "LOCK_BACKOFF")];
    assert!(
        sum(
            &text,
            "hera_migration_throttled_seconds_total",
            &backing_off
        ) > 0.0
    );

    business.rollback().await.unwrap(); // the business lets go
    let last = collect(events).await.pop().unwrap();
    assert_eq!(last.state(), MigrationState::Succeeded, "{last:?}");
    let text = wait::until("the end counted", Duration::from_secs(10), || async {
        let text = scrape(addr).await;
        let ended = [ours[0], ours[1], ("state", "SUCCEEDED")];
        let counted = sum(&text, "hera_migration_runs_ended_total", &ended) == 1.0
            && sum(&text, "hera_migration_runs_active", &[]) == 0.0;
        counted.then_some(text)
    })
    .await;
    let counted = |name: &str| sum(&text, name, &ours) as i64;
    assert_eq!(
        counted("hera_migration_transactions_processed_total"),
        last.transactions_processed
    );
    assert_eq!(
        counted("hera_migration_transactions_migrated_total"),
        last.transactions_migrated
    );
    assert_eq!(
        counted("hera_migration_transactions_skipped_total"),
        last.transactions_skipped_closed_period + last.transactions_skipped_unmapped
    );
    assert_eq!(
        counted("hera_migration_batches_total"),
        last.batch_number - 1,
        "every batch but the empty last one, which only finds the end"
    );
    s.app.stop().await;
}

#[tokio::test]
async fn without_a_metrics_address_nothing_is_served() {
    let db = TestDatabase::create().await;
    let app = TestApp::spawn(db.options()).await;
    assert_eq!(app.metrics_addr, None);
    app.stop().await;
}

/// A minimal OTLP metrics collector: it keeps the names of the metrics it
/// receives.
#[derive(Clone, Default)]
struct Collector {
    names: Arc<Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let request = request.into_inner();
        let mut names = self.names.lock().unwrap();
        for resource in &request.resource_metrics {
            for scope in &resource.scope_metrics {
                names.extend(scope.metrics.iter().map(|metric| metric.name.clone()));
            }
        }
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// The metrics endpoint's address, from the server's structured log line.
fn logged_metrics_addr(server: &ServerProcess) -> SocketAddr {
    let logged = server.stderr.lock().unwrap().clone();
    logged
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find_map(|event| event["fields"]["metrics_addr"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("a metrics_addr field in the logs:\n{}", server.logs()))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn the_binary_serves_metrics_and_pushes_the_same_to_a_collector() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_addr = listener.local_addr().unwrap();
    let collector = Collector::default();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(MetricsServiceServer::new(collector.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let db = TestDatabase::create().await;
    let mut command = serve_command();
    command
        .env("DATABASE_URL", db.url())
        .env("HERA_JWT_SECRET", TEST_SECRET)
        .env("HERA_METRICS_ADDR", "127.0.0.1:0")
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{collector_addr}"),
        )
        .env("OTEL_METRIC_EXPORT_INTERVAL", "100");
    let mut server = ServerProcess::spawn(command);
    wait_serving(server.addr).await;
    let addr = logged_metrics_addr(&server);

    let text = wait::until("health checks counted", Duration::from_secs(10), || async {
        let text = scrape(addr).await;
        let checks = sum(
            &text,
            "hera_migrate_rpc_server_calls_total",
            &[("rpc_method", "Check"), ("rpc_response_status_code", "OK")],
        );
        (checks >= 1.0).then_some(text)
    })
    .await;
    assert!(
        text.contains("service_name=\"hera-migrate\""),
        "target_info:\n{text}"
    );
    wait::until(
        "the collector to receive the same metrics",
        Duration::from_secs(10),
        || {
            let names = collector.names.lock().unwrap().clone();
            async move {
                let wanted = ["hera_migrate.rpc.server.calls", "hera_migrate.db.pool.size"];
                wanted
                    .iter()
                    .all(|name| names.iter().any(|n| n == name))
                    .then_some(())
            }
        },
    )
    .await;

    server.signal(libc::SIGTERM);
    let status = server.exit_within(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{}", server.logs());
}

#[tokio::test]
async fn a_bad_or_busy_metrics_address_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().to_string();
    for value in ["not-an-address", busy.as_str()] {
        let output = Command::new(BINARY)
            .arg("serve")
            .env("HERA_LISTEN_ADDR", "127.0.0.1:0")
            .env("HERA_METRICS_ADDR", value)
            .env("HERA_JWT_SECRET", "a-secret")
            .env("HERA_DATA_DIR", "/nonexistent/never-used")
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "warn")
            .output()
            .expect("run the binary");
        assert!(!output.status.success(), "{value} must stop the start");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let error = stderr.lines().find(|line| line.starts_with("error"));
        assert!(
            error.is_some_and(|line| line.contains("HERA_METRICS_ADDR")),
            "HERA_METRICS_ADDR={value} named: {stderr}"
        );
    }
}

/// The metrics of the README's table, by their Prometheus names.
fn listed_in_the_readme() -> Vec<String> {
    include_str!("../../README.md")
        .lines()
        .filter_map(|line| line.strip_prefix("| `hera_"))
        .map(|rest| format!("hera_{}", rest.split('`').next().unwrap()))
        .collect()
}

#[test]
fn the_dashboard_queries_only_metrics_the_readme_lists_through_its_datasource_variable() {
    let listed = listed_in_the_readme();
    assert!(listed.len() >= 15, "{listed:?}");
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../docs/grafana/hera-migrate.json"))
            .expect("the dashboard is JSON");
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        variables.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "a Prometheus datasource variable"
    );
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{}",
            panel["title"]
        );
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let names = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|word| word.starts_with("hera_"));
            for name in names {
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .unwrap_or(name);
                assert!(
                    listed.iter().any(|metric| metric == base),
                    "{} queries {name}, which the README does not list",
                    panel["title"]
                );
                queried += 1;
            }
        }
    }
    assert!(
        queried >= 15,
        "the dashboard shows the metrics ({queried} queried)"
    );
}

/// A rollout over two organizations, scraped once it ended: it started,
/// ended SUCCEEDED, settled both organizations PASSED, and no driver is left.
#[tokio::test]
async fn a_rollout_is_counted_from_start_to_end_with_its_organizations() {
    let db = TestDatabase::create().await;
    let mut settings = crate::support::app::test_settings(db.options());
    settings.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    let app = TestApp::spawn_with(settings).await;
    let addr = app.metrics_addr.expect("the endpoint is bound");
    let pool = db.pool().await;
    let report = fixtures::seed_2024(&pool, 2, 30, 19).await;
    let operator = fixtures::platform_operator(&pool, &report.platform).await;
    let orgs: Vec<Uuid> = report.organizations.iter().map(|org| org.id).collect();
    let request = rollout(&orgs, &[rollout_stage::Size::Rest(true)]);
    let mut client = rollout_service_client::RolloutServiceClient::new(app.channel().await);
    client
        .start_rollout(as_user(request, operator))
        .await
        .unwrap();
    let text = wait::until(
        "the rollout's end counted",
        Duration::from_secs(60),
        || async {
            let text = scrape(addr).await;
            let ended = sum(
                &text,
                "hera_migration_rollouts_ended_total",
                &[("state", "SUCCEEDED")],
            );
            (ended == 1.0).then_some(text)
        },
    )
    .await;
    assert_eq!(
        sum(&text, "hera_migration_rollouts_started_total", &[]),
        1.0
    );
    assert_eq!(
        sum(
            &text,
            "hera_migration_rollout_organizations_total",
            &[("standing", "PASSED")]
        ),
        2.0
    );
    let text = wait::until("the driver gone", Duration::from_secs(10), || async {
        let text = scrape(addr).await;
        (sum(&text, "hera_migration_rollouts_active", &[]) == 0.0).then_some(text)
    })
    .await;
    assert!(
        text.lines()
            .any(|line| line.starts_with("hera_migration_rollouts_active")),
        "the gauge is exported (at 0 once the driver stopped):\n{text}"
    );
    app.stop().await;
}
