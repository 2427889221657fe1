//! Authentication at the door: every `MigrationService` call must carry
//! `authorization: Bearer <JWT>`; health and reflection stay open. The
//! verified caller travels in the request's extensions.
use std::sync::Arc;

use tonic::{Request, Status, service::Interceptor};

use crate::{
    auth::{Caller, TokenVerifier},
    error::Error,
};

#[derive(Clone)]
pub struct Authenticate {
    verifier: Arc<TokenVerifier>,
}

impl Authenticate {
    pub fn new(verifier: Arc<TokenVerifier>) -> Self {
        Self { verifier }
    }
}

impl Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let caller = bearer_token(&request).and_then(|token| self.verifier.verify(token))?;
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

fn bearer_token<T>(request: &Request<T>) -> Result<&str, Error> {
    let header = request.metadata().get("authorization").ok_or_else(|| {
        Error::Unauthenticated("authorization: a Bearer token is required".into())
    })?;
    let value = header
        .to_str()
        .map_err(|_| Error::Unauthenticated("authorization: not readable text".into()))?;
    let (scheme, token) = value.split_once(' ').ok_or_else(|| {
        Error::Unauthenticated("authorization: expected \"Bearer <token>\"".into())
    })?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(Error::Unauthenticated(
            "authorization: expected \"Bearer <token>\"".into(),
        ));
    }
    Ok(token.trim())
}

/// The caller the interceptor admitted.
pub fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .copied()
        .ok_or_else(|| Status::unauthenticated("authorization: a Bearer token is required"))
}
