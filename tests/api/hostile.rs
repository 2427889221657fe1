//! A corpus of hostile requests across every RPC: malformed, nil and unknown
//! ids, empty and 1 MB strings, dates out of range and reversed, numbers at
//! -1, the extremes and NaN, text with SQL, quotes, NUL, unicode and control
//! characters, bad tokens of every kind. Each gets its status (never INTERNAL
//! or UNKNOWN), the server keeps serving, and the ledger is unchanged.
use std::{future::Future, pin::Pin};

use hera_migrate::proto::*;
use tonic::{Code, Request, Status};
use uuid::Uuid;

use crate::support::{
    app::{TEST_SECRET, token_for},
    authorized,
    runs::{Client, seeded},
};

type Call = Pin<Box<dyn Future<Output = Result<(), Status>> + Send>>;

/// One hostile request and the statuses it may get.
struct Case {
    name: String,
    allowed: &'static [Code],
    call: Call,
}

/// A message over the server's limit is refused before it is read.
const INVALID: &[Code] = &[Code::InvalidArgument, Code::ResourceExhausted];
const MISSING: &[Code] = &[
    Code::InvalidArgument,
    Code::NotFound,
    Code::ResourceExhausted,
];
const REFUSED: &[Code] = &[Code::Unauthenticated];
const FORBIDDEN: &[Code] = &[Code::PermissionDenied];

/// Strings no field should take as they are.
fn hostile_texts() -> Vec<(&'static str, String)> {
    vec![
        ("empty", String::new()),
        ("1 MB", "a".repeat(1 << 20)),
        ("SQL", "x'); DROP TABLE universal_transactions; --".into()),
        ("quotes", "\"'`\\".into()),
        ("NUL", "a\0b".into()),
        ("unicode", "HERA.😀.ÆØÅ.v1".into()),
        ("control", "\u{1b}[31m\r\n\t".into()),
    ]
}

fn hostile_ids() -> Vec<(&'static str, String)> {
    let mut ids = hostile_texts();
    ids.push(("malformed uuid", "not-a-uuid".into()));
    ids.push(("nil uuid", Uuid::nil().to_string()));
    ids
}

/// Adds to `$corpus` a case calling `$method` with `$request`, as the
/// organization's owner.
macro_rules! case {
    ($corpus:expr, $name:expr, $allowed:expr, $method:ident, $request:expr) => {{
        let mut client = $corpus.client.clone();
        let request = $corpus.as_owner($request);
        $corpus.add(
            $name,
            $allowed,
            boxed(async move { client.$method(request).await }),
        );
    }};
}

fn boxed<F, T>(future: F) -> Call
where
    F: Future<Output = Result<T, Status>> + Send + 'static,
{
    Box::pin(async move { future.await.map(drop) })
}

struct Corpus {
    client: Client,
    org: Uuid,
    owner: Uuid,
    cases: Vec<Case>,
}

impl Corpus {
    fn add(&mut self, name: impl Into<String>, allowed: &'static [Code], call: Call) {
        self.cases.push(Case {
            name: name.into(),
            allowed,
            call,
        });
    }

    fn as_owner<T>(&self, message: T) -> Request<T> {
        authorized(message, &token_for(self.owner))
    }

    fn start(&self, change: impl FnOnce(&mut StartMigrationRequest)) -> Call {
        let mut request = StartMigrationRequest {
            organization_id: self.org.to_string(),
            from_date: "2024-01-01".into(),
            to_date: "2024-12-31".into(),
            ..Default::default()
        };
        change(&mut request);
        let mut client = self.client.clone();
        let request = self.as_owner(request);
        boxed(async move { client.start_migration(request).await })
    }

    fn preview(&self, change: impl FnOnce(&mut PreviewCandidatesRequest)) -> Call {
        let mut request = PreviewCandidatesRequest {
            organization_id: self.org.to_string(),
            from_date: "2024-01-01".into(),
            to_date: "2024-12-31".into(),
            ..Default::default()
        };
        change(&mut request);
        let mut client = self.client.clone();
        let request = self.as_owner(request);
        boxed(async move { client.preview_candidates(request).await })
    }

    /// Every RPC that names a run, given `id` as its migration_id.
    fn naming_a_run(&mut self, label: &str, id: &str, allowed: &'static [Code]) {
        let (org, id) = (self.org.to_string(), id.to_owned());
        case!(
            self,
            format!("GetMigration {label}"),
            allowed,
            get_migration,
            GetMigrationRequest {
                organization_id: org.clone(),
                migration_id: id.clone(),
            }
        );
        case!(
            self,
            format!("WatchMigration {label}"),
            allowed,
            watch_migration,
            WatchMigrationRequest {
                organization_id: org.clone(),
                migration_id: id.clone(),
                after_sequence: 0,
            }
        );
        case!(
            self,
            format!("PauseMigration {label}"),
            allowed,
            pause_migration,
            PauseMigrationRequest {
                organization_id: org.clone(),
                migration_id: id.clone(),
                request_id: String::new(),
            }
        );
        case!(
            self,
            format!("ResumeMigration {label}"),
            allowed,
            resume_migration,
            ResumeMigrationRequest {
                organization_id: org.clone(),
                migration_id: id.clone(),
                request_id: String::new(),
            }
        );
        case!(
            self,
            format!("CancelMigration {label}"),
            allowed,
            cancel_migration,
            CancelMigrationRequest {
                organization_id: org.clone(),
                migration_id: id.clone(),
                ..Default::default()
            }
        );
        case!(
            self,
            format!("UpdateMigration {label}"),
            allowed,
            update_migration,
            UpdateMigrationRequest {
                organization_id: org.clone(),
                migration_id: id.clone(),
                batch_size: Some(10),
                ..Default::default()
            }
        );
        case!(
            self,
            format!("ValidateMigration {label}"),
            allowed,
            validate_migration,
            ValidateMigrationRequest {
                organization_id: org.clone(),
                migration_id: id.clone(),
                ..Default::default()
            }
        );
        case!(
            self,
            format!("RollbackMigration {label}"),
            allowed,
            rollback_migration,
            RollbackMigrationRequest {
                organization_id: org,
                migration_id: id,
                reason: "hostile corpus".into(),
                ..Default::default()
            }
        );
    }
}

/// A digest of the organization's ledger, the audit rows of refusals
/// (SECURITY_VALIDATION) and runs' bookkeeping aside.
async fn ledger_digest(pool: &sqlx::PgPool, org: Uuid) -> String {
    sqlx::query_scalar(
        "SELECT md5(coalesce(string_agg(t.id::text || t.transaction_status || t.smart_code
                                        || t.metadata::text || coalesce(l.lines, ''), ',' ORDER BY t.id), ''))
           FROM universal_transactions t
           LEFT JOIN LATERAL (SELECT string_agg(l.id::text || l.line_amount::text || l.smart_code, ',' ORDER BY l.id) AS lines
                                FROM universal_transaction_lines l WHERE l.transaction_id = t.id) l ON true
          WHERE t.organization_id = $1
            AND t.transaction_type NOT IN ('MIGRATION_RUN', 'MIGRATION_OPERATION', 'SECURITY_VALIDATION',
                                           'MIGRATION_AUDIT_CHAIN')",
    )
    .bind(org)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// A bearer token signed with `secret` for `user`, expiring `exp`.
fn signed(secret: &str, user: Uuid, exp: i64) -> String {
    let claims = serde_json::json!({"sub": user.to_string(), "exp": exp});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn unsigned(user: Uuid) -> String {
    use base64_like::encode;
    let header = encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = encode(format!(r#"{{"sub":"{user}","exp":4102444800}}"#).as_bytes());
    format!("{header}.{payload}.")
}

/// URL-safe base64 without padding, as JWTs use (a dozen lines rather than
/// a dependency for one test).
mod base64_like {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    pub fn encode(bytes: &[u8]) -> String {
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n =
                chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}

#[tokio::test]
async fn every_hostile_request_gets_its_status_and_the_ledger_is_unchanged() {
    let s = seeded(40).await;
    let before = ledger_digest(&s.pool, s.org).await;
    let other = seeded(10).await; // another organization, on another server's database
    let mut corpus = Corpus {
        client: s.app.client().await,
        org: s.org,
        owner: s.owner,
        cases: Vec::new(),
    };

    // Organization ids, on StartMigration and PreviewCandidates.
    for (label, id) in hostile_ids() {
        let start = corpus.start(|r| r.organization_id = id.clone());
        corpus.add(
            format!("StartMigration organization_id {label}"),
            MISSING_OR_FORBIDDEN,
            start,
        );
        let preview = corpus.preview(|r| r.organization_id = id.clone());
        corpus.add(
            format!("PreviewCandidates organization_id {label}"),
            MISSING_OR_FORBIDDEN,
            preview,
        );
    }
    let unknown = Uuid::new_v4().to_string();
    let start = corpus.start(|r| r.organization_id = unknown.clone());
    corpus.add(
        "StartMigration organization_id unknown",
        MISSING_OR_FORBIDDEN,
        start,
    );

    // Dates.
    let dates = [
        ("out of range", "2024-13-45"),
        ("year 0", "0000-01-01"),
        ("far future", "99999-01-01"),
        ("not a date", "yesterday"),
        ("SQL", "2024-01-01'; --"),
        ("NUL", "2024-01-01\0"),
    ];
    for (label, date) in dates {
        let start = corpus.start(|r| r.from_date = date.into());
        corpus.add(format!("StartMigration from_date {label}"), INVALID, start);
        let preview = corpus.preview(|r| r.to_date = date.into());
        corpus.add(
            format!("PreviewCandidates to_date {label}"),
            INVALID,
            preview,
        );
    }
    let start = corpus.start(|r| {
        r.from_date = "2024-12-31".into();
        r.to_date = "2024-01-01".into();
    });
    corpus.add("StartMigration dates reversed", INVALID, start);
    let preview = corpus.preview(|r| {
        r.from_date = "2024-12-31".into();
        r.to_date = "2024-01-01".into();
    });
    corpus.add("PreviewCandidates dates reversed", INVALID, preview);

    // Numbers.
    for (label, size) in [("-1", -1), ("min", i32::MIN), ("max", i32::MAX)] {
        let start = corpus.start(|r| r.batch_size = size);
        corpus.add(format!("StartMigration batch_size {label}"), INVALID, start);
    }
    for (label, rate) in [
        ("-1", -1.0),
        ("NaN", f64::NAN),
        ("infinite", f64::INFINITY),
        ("max", f64::MAX),
    ] {
        let start = corpus.start(|r| r.max_transactions_per_second = Some(rate));
        corpus.add(
            format!("StartMigration max_transactions_per_second {label}"),
            INVALID,
            start,
        );
    }

    // Smart codes in mappings, and request ids.
    for (label, text) in hostile_texts() {
        let start = corpus.start(|r| {
            r.smart_code_mappings = vec![SmartCodeMapping {
                source_smart_code: text.clone(),
                target_smart_code: "HERA.SALON.POS.TXN.SALE.v2".into(),
            }]
        });
        corpus.add(
            format!("StartMigration source_smart_code {label}"),
            INVALID,
            start,
        );
        if text.is_empty() {
            continue; // an empty target means the source at v2 (input::mappings)
        }
        let start = corpus.start(|r| {
            r.smart_code_mappings = vec![SmartCodeMapping {
                source_smart_code: "HERA.SALON.POS.TXN.SALE.v1".into(),
                target_smart_code: text.clone(),
            }]
        });
        corpus.add(
            format!("StartMigration target_smart_code {label}"),
            INVALID,
            start,
        );
    }
    for (label, text) in [
        ("1 MB", "r".repeat(1 << 20)),
        ("NUL", "r\0".into()),
        ("control", "\u{7}\u{1b}".into()),
    ] {
        let start = corpus.start(|r| r.request_id = text.clone());
        corpus.add(format!("StartMigration request_id {label}"), INVALID, start);
    }

    // Run ids on every RPC that names a run.
    for (label, id) in hostile_ids() {
        corpus.naming_a_run(&format!("migration_id {label}"), &id, MISSING);
    }
    corpus.naming_a_run(
        "migration_id unknown",
        &Uuid::new_v4().to_string(),
        &[Code::NotFound],
    );

    // A rollback's reason.
    for (label, reason) in [
        ("NUL", "wrong\0mapping".to_owned()),
        ("1 MB", "r".repeat(1 << 20)),
        ("empty", String::new()),
    ] {
        case!(
            corpus,
            format!("RollbackMigration reason {label}"),
            INVALID,
            rollback_migration,
            RollbackMigrationRequest {
                organization_id: s.org.to_string(),
                migration_id: Uuid::new_v4().to_string(),
                reason,
                ..Default::default()
            }
        );
    }

    // Listing.
    for (label, size) in [("-1", -1), ("min", i32::MIN)] {
        case!(
            corpus,
            format!("ListMigrations page_size {label}"),
            INVALID,
            list_migrations,
            ListMigrationsRequest {
                organization_id: s.org.to_string(),
                page_size: size,
                ..Default::default()
            }
        );
    }
    for (label, token) in hostile_texts().into_iter().skip(1) {
        case!(
            corpus,
            format!("ListMigrations page_token {label}"),
            INVALID,
            list_migrations,
            ListMigrationsRequest {
                organization_id: s.org.to_string(),
                page_token: token,
                ..Default::default()
            }
        );
    }

    // Aliases.
    for (label, size) in [("-1", -1), ("max", i32::MAX)] {
        case!(
            corpus,
            format!("ApplyReportingAliases batch_size {label}"),
            INVALID,
            apply_reporting_aliases,
            ApplyReportingAliasesRequest {
                organization_id: s.org.to_string(),
                batch_size: size,
                ..Default::default()
            }
        );
    }

    // Tokens: none, garbage, expired, another secret, unsigned, and callers
    // without the right (another organization's owner, a staff member).
    let now = chrono::Utc::now().timestamp();
    let tokens: Vec<(&str, Option<String>, &'static [Code])> = vec![
        ("missing", None, REFUSED),
        ("garbage", Some("not.a.token".into()), REFUSED),
        (
            "expired",
            Some(signed(TEST_SECRET, s.owner, now - 3600)),
            REFUSED,
        ),
        (
            "another secret",
            Some(signed(
                "another-secret-of-enough-length-0123456789",
                s.owner,
                now + 600,
            )),
            REFUSED,
        ),
        ("alg none", Some(unsigned(s.owner)), REFUSED),
        (
            "another organization's owner",
            Some(token_for(other.owner)),
            FORBIDDEN,
        ),
    ];
    for (label, token, allowed) in tokens {
        let request = StartMigrationRequest {
            organization_id: s.org.to_string(),
            from_date: "2024-01-01".into(),
            to_date: "2024-12-31".into(),
            ..Default::default()
        };
        let request = match &token {
            Some(token) => authorized(request, token),
            None => Request::new(request),
        };
        let mut c = corpus.client.clone();
        corpus.add(
            format!("StartMigration token {label}"),
            allowed,
            boxed(async move { c.start_migration(request).await }),
        );
        let mut c = corpus.client.clone();
        let request = PreviewCandidatesRequest {
            organization_id: s.org.to_string(),
            from_date: "2024-01-01".into(),
            to_date: "2024-12-31".into(),
            ..Default::default()
        };
        let request = match token {
            Some(token) => authorized(request, &token),
            None => Request::new(request),
        };
        corpus.add(
            format!("PreviewCandidates token {label}"),
            allowed,
            boxed(async move { c.preview_candidates(request).await }),
        );
    }

    // A staff member may read (preview) but not steer.
    let start = corpus.start(|_| {});
    let staff = authorized(
        StartMigrationRequest {
            organization_id: s.org.to_string(),
            from_date: "2024-01-01".into(),
            to_date: "2024-12-31".into(),
            ..Default::default()
        },
        &token_for(s.staff),
    );
    drop(start);
    let mut c = corpus.client.clone();
    corpus.add(
        "StartMigration token staff",
        FORBIDDEN,
        boxed(async move { c.start_migration(staff).await }),
    );

    let cases = std::mem::take(&mut corpus.cases);
    assert!(cases.len() >= 80, "{} hostile requests", cases.len());
    let mut wrong = Vec::new();
    for case in cases {
        match case.call.await {
            Ok(()) => wrong.push(format!("{}: accepted", case.name)),
            Err(status) if !case.allowed.contains(&status.code()) => wrong.push(format!(
                "{}: {:?} ({}), expected one of {:?}",
                case.name,
                status.code(),
                status.message().chars().take(200).collect::<String>(),
                case.allowed
            )),
            Err(_) => {}
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong answers:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(
        s.app.health("").await,
        tonic_health::pb::health_check_response::ServingStatus::Serving,
        "the server keeps serving"
    );
    assert_eq!(
        ledger_digest(&s.pool, s.org).await,
        before,
        "the ledger is unchanged"
    );
}

const MISSING_OR_FORBIDDEN: &[Code] = &[
    Code::InvalidArgument,
    Code::NotFound,
    Code::PermissionDenied,
    Code::ResourceExhausted,
];
