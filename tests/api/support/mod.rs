//! The shared harness: a fresh database per test, the real server on a real
//! port, clients, a cuttable TCP proxy, and polling with deadlines.
pub mod app;
pub mod catalog;
pub mod database;
pub mod fixtures;
pub mod hera;
pub mod ledger;
pub mod process;
pub mod proxy;
pub mod rpcs;
pub mod runs;
pub mod sql;
pub mod wait;

pub use app::{TestApp, as_user, authorized};
pub use database::TestDatabase;

/// The usual scene: the real server over a fresh database holding one
/// organization with an owner, a finance admin and a staff member.
pub struct World {
    /// Dropped last: the database outlives the server.
    pub db: TestDatabase,
    pub app: TestApp,
    pub pool: sqlx::PgPool,
    pub org: fixtures::Organization,
}

impl World {
    pub async fn new() -> Self {
        let db = TestDatabase::create().await;
        let app = TestApp::spawn(db.options()).await;
        let pool = db.pool().await;
        let org = fixtures::organization(&pool).await;
        Self { db, app, pool, org }
    }
}

/// A status's `ErrorInfo.reason`, which every error of ours carries: what a
/// client branches on instead of the message.
pub fn reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    let info = status.get_error_details().error_info().cloned();
    let info = info.unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.domain, "hera-migrate", "{status:?}");
    info.reason
}
