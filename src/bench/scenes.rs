//! The benchmark's three scenes, each on a database of its own, seeded for it,
//! one after the other so that none disturbs another's timings:
//! - engine: the floor (a) and the guide's way (c) in plain SQL on an
//!   organization of their own, no server running; then the base run (b), its
//!   rollback (g), business traffic during a run (k), reporting aliases (f).
//!   The floor shares the base run's database so that both write into tables
//!   of the same size with the same cache: what a and b differ by is the
//!   engine, not the database they ran in;
//! - fleet: ten organizations at once against one (h), a hundred watchers (i);
//! - big: the preview (e) on a server of its own, the floor again at this
//!   size (d: PostgreSQL's own growth), then the 1 M run (d, j, l) on a fresh
//!   server, so that its peak memory is the run's alone.
use anyhow::Context as _;
use sqlx::Connection as _;

use super::{
    Measurements, aliases,
    client::{self, Client, Owner},
    databases::{BenchDatabase, Cluster},
    engine::{self, RunSummary},
    fleet, floor, guide, preview, progress, rollback, runs,
    server::ServerChild,
    sizes::Sizes,
    traffic::{self, Posting},
    watchers,
};

/// Figure m's target batch time: Spirit's and GitLab's order of size.
const ADAPTIVE_TARGET_MS: u32 = 500;

pub struct Bench<'a> {
    cluster: &'a Cluster,
    sizes: Sizes,
    /// The HS256 secret of this benchmark's servers and tokens.
    secret: String,
    /// The databases made so far, to drop at the end.
    pub created: Vec<String>,
}

impl<'a> Bench<'a> {
    pub fn new(cluster: &'a Cluster, sizes: Sizes) -> Self {
        Self {
            cluster,
            sizes,
            secret: format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            ),
            created: Vec::new(),
        }
    }

    /// Every scene in turn; a scene that fails leaves its figures unmeasured.
    pub async fn play_all(&mut self, m: &mut Measurements) {
        let engine = self.engine(m).await;
        m.record_scene("abcdfgkmn", engine);
        let fleet = self.fleet(m).await;
        m.record_scene("hi", fleet);
        let big = self.big(m).await;
        m.record_scene("dejl", big);
    }

    async fn database(&mut self, what: &str) -> anyhow::Result<BenchDatabase> {
        let database = self.cluster.create(what).await?;
        self.created.push(database.name.clone());
        Ok(database)
    }

    async fn seeded(
        &self,
        database: &BenchDatabase,
        organizations: u32,
        transactions: u64,
    ) -> anyhow::Result<crate::seed::SeedReport> {
        progress!(
            "seeding {}: {organizations} organization(s) of {transactions} transactions",
            database.name
        );
        database.seed(organizations, transactions).await
    }

    /// Figures a and c on an organization of their own in `database`, before
    /// any server runs there.
    async fn floor(&self, database: &BenchDatabase, m: &mut Measurements) -> anyhow::Result<()> {
        let seeded = self.seeded(database, 1, self.sizes.floor).await?;
        let org = seeded.organizations[0].id;
        let mut conn = database.connect().await?;
        let batch = self.sizes.batch;
        m.floor = m.record("a", floor::measure(&mut conn, org, batch, "a. floor").await);
        m.guide = m.record("c", guide::measure(&mut conn, org, batch).await);
        let _ = conn.close().await;
        Ok(())
    }

    async fn engine(&mut self, m: &mut Measurements) -> anyhow::Result<()> {
        let database = self.database("engine").await?;
        let three = self.seeded(&database, 3, self.sizes.base).await?;
        let [base, busy, adaptive] = &three.organizations[..] else {
            anyhow::bail!(
                "seed-demo made {} organizations, not 3",
                three.organizations.len()
            );
        };
        let aliased = self.seeded(&database, 1, self.sizes.aliases).await?;
        let floor = self.floor(&database, m).await;
        m.record_scene("ac", floor);
        let (base_owner, busy_owner) = (
            Owner::of(base, &self.secret)?,
            Owner::of(busy, &self.secret)?,
        );
        let alias_owner = Owner::of(&aliased.organizations[0], &self.secret)?;
        let adaptive_owner = Owner::of(adaptive, &self.secret)?;
        let (posting, adaptive_posting) = (Posting::of(busy)?, Posting::of(adaptive)?);
        let traffic_conn = database.connect().await?;
        let adaptive_conn = database.connect().await?;
        let batch = self.sizes.batch;
        let idle_posts = self.sizes.idle_posts;
        with_server(&database, &self.secret, async |client| {
            let run = runs::migrate(&client, &base_owner, batch, "b. the base run").await;
            m.base = m.record("bcdg", run.map(|t| RunSummary::of(&t)));
            if let Some(id) = m.base.as_ref().map(|run| run.migration_id.clone()) {
                m.rollback = m.record("g", rollback::measure(&client, &base_owner, &id).await);
            }
            let under_traffic = traffic::measure(
                traffic_conn,
                posting,
                (&client, &busy_owner),
                runs::start_request(&busy_owner, batch),
                idle_posts,
                "k. migration under traffic",
            );
            m.traffic = m.record("k", under_traffic.await);
            let adaptive = traffic::measure(
                adaptive_conn,
                adaptive_posting,
                (&client, &adaptive_owner),
                runs::adaptive_request(&adaptive_owner, ADAPTIVE_TARGET_MS),
                idle_posts,
                "m, n. a run sized to 500 ms a batch, listening to the business",
            );
            m.adaptive = m.record("mn", adaptive.await);
            m.aliases = m.record("f", aliases::measure(&client, &alias_owner, batch).await);
            Ok(())
        })
        .await
    }

    async fn fleet(&mut self, m: &mut Measurements) -> anyhow::Result<()> {
        let database = self.database("fleet").await?;
        let organizations = u32::try_from(fleet::AT_ONCE + 3)?;
        let seeded = self
            .seeded(&database, organizations, self.sizes.fleet)
            .await?;
        let owners = Owner::all(&seeded, &self.secret)?;
        let (together, rest) = owners.split_at(fleet::AT_ONCE);
        let batch = self.sizes.batch;
        with_server(&database, &self.secret, async |client| {
            m.fleet = m.record(
                "h",
                fleet::measure(&client, &rest[0], together, batch).await,
            );
            let watched = watchers::measure(&client, &rest[1], &rest[2], batch).await;
            m.watchers = m.record("i", watched);
            Ok(())
        })
        .await
    }

    async fn big(&mut self, m: &mut Measurements) -> anyhow::Result<()> {
        let database = self.database("big").await?;
        let seeded = self.seeded(&database, 1, self.sizes.big).await?;
        let owner = Owner::of(&seeded.organizations[0], &self.secret)?;
        with_server(&database, &self.secret, async |client| {
            m.preview = m.record("e", preview::measure(&client, &owner).await);
            Ok(())
        })
        .await?;
        // After the preview, which sees every candidate; the run then
        // migrates the rest (the floor's rounds reverse their originals).
        let mut conn = database.connect().await?;
        let at_scale = floor::measure(
            &mut conn,
            owner.org,
            self.sizes.batch,
            "d. the floor on the big organization",
        )
        .await;
        m.big_floor = m.record("d", at_scale);
        let _ = conn.close().await;
        let server = ServerChild::spawn(&database.url, &self.secret).await?;
        let outcome = async {
            let client = client::connect(&server.endpoint()).await?;
            engine::migrate_big(&server, &client, &owner, self.sizes.batch).await
        }
        .await
        .with_context(|| format!("the 1 M run; the server logged:\n{}", server.logs()));
        server.stop().await;
        if let Some(big) = m.record("djl", outcome) {
            m.big_batches = big.timeline.batches();
            m.big = Some(super::BigMeasured {
                run: RunSummary::of(&big.timeline),
                memory: big.memory,
            });
        }
        Ok(())
    }
}

/// `scene` against a fresh server over `database`, which is stopped after it
/// whatever happened.
async fn with_server(
    database: &BenchDatabase,
    secret: &str,
    scene: impl AsyncFnOnce(Client) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let server = ServerChild::spawn(&database.url, secret).await?;
    let outcome = match client::connect(&server.endpoint()).await {
        Ok(client) => scene(client).await,
        Err(error) => Err(error),
    };
    if outcome.is_err() {
        progress!("the server of {} logged:\n{}", database.name, server.logs());
    }
    server.stop().await;
    outcome
}
