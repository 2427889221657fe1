//! Bearer tokens: HS256 with a shared secret (the shape Supabase-based HERA
//! installs issue) or RS256 with a public key. `sub` is the caller's USER
//! entity id; `exp` is required.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Error;

/// Seconds of clock skew tolerated on `exp`.
const LEEWAY_SECS: u64 = 5;

/// The authenticated caller of one RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub user_id: Uuid,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
    /// Every other claim, read as JSON values: claims must be JSON text
    /// (UTF-8) throughout, and a claim skipped unread would let bytes that
    /// are not (say, inside a string nobody looks at) pass.
    #[serde(flatten, skip_serializing)]
    _other: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("HERA_JWT_PUBLIC_KEY_FILE: {0}")]
    PublicKey(String),
    #[error("HERA_JWT_SECRET: {0}")]
    Secret(String),
}

/// Checks bearer tokens against every configured key.
pub struct TokenVerifier {
    keys: Vec<(DecodingKey, Validation)>,
}

impl TokenVerifier {
    pub fn new(secret: Option<&[u8]>, public_key_pem: Option<&[u8]>) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        if let Some(secret) = secret {
            if secret.is_empty() {
                return Err(KeyError::Secret("must not be empty".into()));
            }
            keys.push((
                DecodingKey::from_secret(secret),
                validation(Algorithm::HS256),
            ));
        }
        if let Some(pem) = public_key_pem {
            let key = DecodingKey::from_rsa_pem(pem)
                .map_err(|e| KeyError::PublicKey(format!("not an RSA public key in PEM ({e})")))?;
            keys.push((key, validation(Algorithm::RS256)));
        }
        Ok(Self { keys })
    }

    pub fn verify(&self, token: &str) -> Result<Caller, Error> {
        let mut last_error = None;
        for (key, validation) in &self.keys {
            match jsonwebtoken::decode::<Claims>(token, key, validation) {
                Ok(data) => return caller_of(&data.claims),
                Err(error) => last_error = Some(error),
            }
        }
        let reason = last_error.map_or_else(
            || "no token key is configured".to_owned(),
            |error| describe(&error),
        );
        Err(Error::Unauthenticated(format!("authorization: {reason}")))
    }
}

fn validation(algorithm: Algorithm) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.set_required_spec_claims(&["exp", "sub"]);
    validation.validate_aud = false;
    validation.leeway = LEEWAY_SECS;
    validation
}

fn caller_of(claims: &Claims) -> Result<Caller, Error> {
    let user_id = Uuid::parse_str(&claims.sub).map_err(|_| {
        Error::Unauthenticated("authorization: the token's sub is not a user id (UUID)".into())
    })?;
    Ok(Caller { user_id })
}

fn describe(error: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::InvalidSignature => "the token's signature does not verify".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the token lacks the {claim} claim"),
        ErrorKind::InvalidAlgorithm => {
            "the token is signed with an algorithm not accepted here".into()
        }
        _ => format!("the token is malformed ({error})"),
    }
}

/// Mints an HS256 token for `user_id`, valid for `ttl`.
pub fn mint(secret: &[u8], user_id: Uuid, ttl: Duration) -> Result<String, KeyError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    let claims = Claims {
        sub: user_id.to_string(),
        exp: now + ttl.as_secs(),
        iat: Some(now),
        role: Some("authenticated".into()),
        aud: Some("authenticated".into()),
        _other: serde_json::Map::new(),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| KeyError::Secret(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test-secret";

    #[test]
    fn a_minted_token_verifies_and_names_the_user() {
        let user = Uuid::new_v4();
        let token = mint(SECRET, user, Duration::from_secs(60)).unwrap();
        let verifier = TokenVerifier::new(Some(SECRET), None).unwrap();
        assert_eq!(verifier.verify(&token).unwrap().user_id, user);
    }

    #[test]
    fn wrong_secret_garbage_and_expired_tokens_are_refused() {
        let verifier = TokenVerifier::new(Some(SECRET), None).unwrap();
        let other = mint(b"another", Uuid::new_v4(), Duration::from_secs(60)).unwrap();
        assert!(
            verifier
                .verify(&other)
                .unwrap_err()
                .to_string()
                .contains("signature")
        );
        assert!(
            verifier
                .verify("garbage")
                .unwrap_err()
                .to_string()
                .contains("malformed")
        );
        let expired = jsonwebtoken::encode(
            &Header::default(),
            &Claims {
                sub: Uuid::new_v4().to_string(),
                exp: 1,
                iat: None,
                role: None,
                aud: None,
                _other: serde_json::Map::new(),
            },
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert!(
            verifier
                .verify(&expired)
                .unwrap_err()
                .to_string()
                .contains("expired")
        );
    }

    #[test]
    fn claims_that_are_not_utf8_json_are_refused_even_in_a_claim_not_read() {
        let verifier = TokenVerifier::new(Some(SECRET), None).unwrap();
        let claims = format!(
            r#"{{"sub":"{}","exp":9999999999,"note":"bad \x9c byte"}}"#,
            Uuid::new_v4()
        );
        let mut bytes = claims.into_bytes();
        let at = bytes.iter().position(|&b| b == b'\\').unwrap();
        bytes.splice(at..at + 4, [0x9c]);
        let token = signed(br#"{"alg":"HS256","typ":"JWT"}"#, &bytes);
        let refused = verifier.verify(&token).unwrap_err().to_string();
        assert!(refused.contains("malformed"), "{refused}");
    }

    fn signed(header: &[u8], claims: &[u8]) -> String {
        use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let key = EncodingKey::from_secret(SECRET);
        let signature =
            jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::HS256).unwrap();
        format!("{input}.{signature}")
    }
}
