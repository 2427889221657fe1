//! Token parsing: whatever arrives in `authorization` is either refused as
//! UNAUTHENTICATED with a message that says so, or admitted only when it is
//! a token signed with our secret, by HS256, whose `sub` is the caller's
//! user id and whose `exp` has not passed. Three shapes of input: the raw
//! header; a header and claims of the fuzzer's choosing signed with our
//! secret (what the claims parsing must survive); the same signed with the
//! RSA public key's PEM as an HMAC secret (algorithm confusion).
#![no_main]

use std::sync::{Arc, LazyLock};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hera_migrate::{
    auth::{Caller, TokenVerifier},
    server::authn::Authenticate,
};
use jsonwebtoken::{Algorithm, EncodingKey, get_current_timestamp};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tonic::{Code, Request, metadata::MetadataValue, service::Interceptor};
use uuid::Uuid;

const SECRET: &[u8] = b"fuzz-secret";
const PUBLIC_KEY: &[u8] = include_bytes!("../../tests/fixtures/jwt_test_rs256.pub");
/// The verifier's tolerance on `exp`, and a second for the clock moving on.
const LEEWAY_SECS: u64 = 6;

static VERIFIER: LazyLock<Arc<TokenVerifier>> =
    LazyLock::new(|| Arc::new(TokenVerifier::new(Some(SECRET), Some(PUBLIC_KEY)).unwrap()));

/// What the interceptor decides about one `authorization` value.
fn admit(header: MetadataValue<tonic::metadata::Ascii>) -> Result<Caller, tonic::Status> {
    let mut request = Request::new(());
    request.metadata_mut().insert("authorization", header);
    let admitted = Authenticate::new(VERIFIER.clone()).call(request)?;
    Ok(*admitted
        .extensions()
        .get::<Caller>()
        .expect("an admitted call has its caller"))
}

fn refused(status: &tonic::Status) {
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().starts_with("authorization: "),
        "{status:?}"
    );
}

/// A token over `header` and `claims` signed by HS256 with `secret`.
fn signed(header: &[u8], claims: &[u8], secret: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let key = EncodingKey::from_secret(secret);
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::HS256).unwrap();
    format!("{input}.{signature}")
}

/// An admitted token must say HS256 and carry a `sub` that is the caller and
/// an `exp` that has not passed.
fn check_admitted(header: &[u8], claims: &[u8], caller: Caller) {
    let header: Value = serde_json::from_slice(header).expect("an admitted header is JSON");
    assert_eq!(header["alg"], "HS256", "admitted with header {header}");
    let claims: Value = serde_json::from_slice(claims).expect("admitted claims are JSON");
    let sub = claims["sub"]
        .as_str()
        .expect("an admitted token has a string sub");
    assert_eq!(
        Uuid::parse_str(sub).ok(),
        Some(caller.user_id),
        "claims {claims}"
    );
    let exp = claims["exp"]
        .as_f64()
        .expect("an admitted token has a numeric exp");
    assert!(
        exp + LEEWAY_SECS as f64 >= get_current_timestamp() as f64,
        "expired {claims}"
    );
}

/// Splits the fuzzer's bytes into a header and claims at the first 0xFF (a
/// byte no JSON text holds).
fn header_and_claims(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.iter().position(|&b| b == 0xFF) {
        Some(at) => (&bytes[..at], &bytes[at + 1..]),
        None => (br#"{"alg":"HS256","typ":"JWT"}"#, bytes),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let Ok(header) = MetadataValue::try_from(bytes) else {
                return;
            };
            // Nothing unsigned by our keys can pass: a pass here is a forgery.
            if let Err(status) = admit(header) {
                refused(&status);
            } else {
                panic!("admitted an authorization value nobody signed: {bytes:?}");
            }
        }
        1 => {
            let (header, claims) = header_and_claims(bytes);
            let token = signed(header, claims, SECRET);
            let value = MetadataValue::try_from(format!("Bearer {token}")).unwrap();
            match admit(value) {
                Ok(caller) => check_admitted(header, claims, caller),
                Err(status) => refused(&status),
            }
        }
        _ => {
            let (header, claims) = header_and_claims(bytes);
            let token = signed(header, claims, PUBLIC_KEY);
            let value = MetadataValue::try_from(format!("Bearer {token}")).unwrap();
            match admit(value) {
                Ok(_) => panic!("admitted an HS256 token keyed with the public key"),
                Err(status) => refused(&status),
            }
        }
    }
});
