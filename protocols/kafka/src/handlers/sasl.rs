//! SaslHandshake and SaslAuthenticate: the per-connection authentication state machine, and the
//! answers once a connection is past it.
//!
//! With `kafka.sasl_enabled` a connection starts in [`SaslState::AwaitingHandshake`]:
//!
//! ```text
//! AwaitingHandshake --SaslHandshake(PLAIN|SCRAM-*)--> AwaitingToken(mechanism)
//! AwaitingToken(PLAIN) --SaslAuthenticate ok--> Authenticated
//! AwaitingToken(SCRAM) --client-first--> AwaitingClientFinal --client-final ok--> Authenticated
//! ```
//!
//! Invariants, as Kafka behaves:
//! - before `Authenticated`, [`SaslSession::admits`] lets through only ApiVersions and
//!   SaslHandshake (awaiting a handshake) or SaslAuthenticate (during the exchange); anything
//!   else closes the connection before its body is decoded;
//! - an unknown mechanism gets UNSUPPORTED_SASL_MECHANISM with the enabled list, a SASL request
//!   out of order ILLEGAL_SASL_STATE, a failed exchange SASL_AUTHENTICATION_FAILED with Kafka's
//!   message; each of these then closes the connection;
//! - once authenticated (or with SASL off) both requests get ILLEGAL_SASL_STATE, as Kafka's
//!   request handler answers them; sessions have no lifetime (`session_lifetime_ms` 0), so there
//!   is no re-authentication;
//! - a SCRAM exchange for an unknown user proceeds with an unmatchable credential (its salt
//!   stable per name) and fails only at the proof, and PLAIN for an unknown user costs the same
//!   PBKDF2 as for a known one, so answers do not reveal which users exist.
//!
//! After a v0 handshake the exchange continues as raw size-prefixed tokens (what librdkafka,
//! kafka-python and others send to brokers without SaslAuthenticate): the same state machine
//! runs, a failure closes the connection without a reply, as Kafka does. Older librdkafka
//! (before 2.x's KIP-896 work) also requires v0 to be advertised before it uses v1 at all.

use std::sync::OnceLock;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use tracing::{debug, info, warn};
use tributary_api::Engine;
use tributary_api::users::{self, ScramCredential, ScramMechanism};

use super::str_bytes;
use crate::error::SaslError;
use crate::metrics;
use crate::scram::{self, AwaitingClientFinal};

/// Every mechanism offered, in the order SaslHandshake lists them.
pub(crate) const MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];
/// Kafka's answer to a wrong PLAIN password.
const PLAIN_FAILED: &str = "Authentication failed: Invalid username or password";

/// A mechanism this broker serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mechanism {
    Plain,
    Scram(ScramMechanism),
}

impl Mechanism {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "PLAIN" => Some(Self::Plain),
            other => ScramMechanism::from_name(other).map(Self::Scram),
        }
    }

    /// The SASL name, also the metric label.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::Scram(scram) => scram.name(),
        }
    }
}

/// Where one connection is in authentication.
#[derive(Debug)]
pub(crate) enum SaslState {
    /// SASL is off on this listener: every request is served.
    Off,
    AwaitingHandshake,
    AwaitingToken(Mechanism),
    AwaitingClientFinal(Box<AwaitingClientFinal>),
    /// Authenticated as this user (the principal `User:<name>` of the authorizer).
    Authenticated(String),
}

/// One connection's authentication.
#[derive(Debug)]
pub(crate) struct SaslSession {
    state: SaslState,
    /// Set by a v0 handshake: the exchange continues as raw size-prefixed SASL tokens instead
    /// of SaslAuthenticate requests (KIP-43 framing, before KIP-152).
    raw_tokens: bool,
}

/// What the connection does after answering a SASL request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    Continue,
    /// Close the connection once the response is written (Kafka does after a failure).
    Close,
}

impl SaslSession {
    pub(crate) fn new(enabled: bool) -> Self {
        let state = if enabled {
            SaslState::AwaitingHandshake
        } else {
            SaslState::Off
        };
        Self {
            state,
            raw_tokens: false,
        }
    }

    /// Whether a request with `api_key` may be decoded and served in the current state.
    pub(crate) fn admits(&self, api_key: i16) -> bool {
        let is = |api: ApiKey| api_key == api as i16;
        match self.state {
            SaslState::Off | SaslState::Authenticated(_) => true,
            SaslState::AwaitingHandshake => {
                is(ApiKey::ApiVersions) || is(ApiKey::SaslHandshake) || is(ApiKey::SaslAuthenticate)
            }
            SaslState::AwaitingToken(_) | SaslState::AwaitingClientFinal(_) => {
                is(ApiKey::SaslAuthenticate)
            }
        }
    }

    /// Whether SaslHandshake and SaslAuthenticate belong to this state machine (rather than to
    /// the request handler, which refuses them with ILLEGAL_SASL_STATE).
    pub(crate) fn in_progress(&self) -> bool {
        !matches!(self.state, SaslState::Off | SaslState::Authenticated(_))
    }

    /// The authenticated user, once there is one.
    pub(crate) fn user(&self) -> Option<&str> {
        match &self.state {
            SaslState::Authenticated(user) => Some(user),
            _ => None,
        }
    }

    /// Whether the next frame is a raw SASL token (after a v0 handshake) rather than a request.
    pub(crate) fn awaits_raw_token(&self) -> bool {
        self.raw_tokens
            && matches!(
                self.state,
                SaslState::AwaitingToken(_) | SaslState::AwaitingClientFinal(_)
            )
    }

    /// One raw token after a v0 handshake: the reply token to send (empty for PLAIN's success,
    /// as Kafka sends), or none and a close on failure (raw framing has no error field).
    pub(crate) async fn raw_token(
        &mut self,
        engine: &Engine,
        peer: &str,
        token: bytes::Bytes,
    ) -> (Option<bytes::Bytes>, After) {
        let request = SaslAuthenticateRequest::default().with_auth_bytes(token);
        let (response, after) = self.authenticate(engine, peer, &request).await;
        if response.error_code == 0 {
            (Some(response.auth_bytes), after)
        } else {
            (None, After::Close)
        }
    }

    pub(crate) fn handshake(
        &mut self,
        peer: &str,
        version: i16,
        request: &SaslHandshakeRequest,
    ) -> (SaslHandshakeResponse, After) {
        let listed = MECHANISMS.iter().map(|name| str_bytes(name)).collect();
        let response = SaslHandshakeResponse::default().with_mechanisms(listed);
        if !matches!(self.state, SaslState::AwaitingHandshake) {
            warn!(
                peer,
                "SaslHandshake during a SASL exchange; closing the connection"
            );
            return (illegal_handshake(), After::Close);
        }
        match Mechanism::from_name(request.mechanism.as_str()) {
            Some(mechanism) => {
                debug!(peer, mechanism = mechanism.name(), "SASL handshake");
                self.state = SaslState::AwaitingToken(mechanism);
                self.raw_tokens = version == 0;
                (response, After::Continue)
            }
            None => {
                info!(
                    peer,
                    mechanism = %request.mechanism.as_str(),
                    "unsupported SASL mechanism; closing the connection"
                );
                let error = ResponseError::UnsupportedSaslMechanism.code();
                (response.with_error_code(error), After::Close)
            }
        }
    }

    pub(crate) async fn authenticate(
        &mut self,
        engine: &Engine,
        peer: &str,
        request: &SaslAuthenticateRequest,
    ) -> (SaslAuthenticateResponse, After) {
        let state = std::mem::replace(&mut self.state, SaslState::AwaitingHandshake);
        let (mechanism, step) = match state {
            SaslState::AwaitingToken(Mechanism::Plain) => (
                Mechanism::Plain,
                plain(engine, &request.auth_bytes).await.map(Step::Done),
            ),
            SaslState::AwaitingToken(Mechanism::Scram(scram)) => (
                Mechanism::Scram(scram),
                scram_first(engine, scram, &request.auth_bytes).await,
            ),
            SaslState::AwaitingClientFinal(awaiting) => {
                let mechanism = awaiting.mechanism();
                let step = awaiting
                    .client_final(&request.auth_bytes)
                    .map(|(server_final, user)| Step::Done((user, server_final.into_bytes())));
                (Mechanism::Scram(mechanism), step)
            }
            other => {
                warn!(
                    peer,
                    "SaslAuthenticate before SaslHandshake; closing the connection"
                );
                self.state = other;
                return (illegal_authenticate("before SaslHandshake"), After::Close);
            }
        };
        let label = mechanism.name();
        match step {
            Ok(Step::Continue(next, server_first)) => {
                self.state = SaslState::AwaitingClientFinal(next);
                let response = SaslAuthenticateResponse::default().with_auth_bytes(server_first);
                (response, After::Continue)
            }
            Ok(Step::Done((user, server_final))) => {
                debug!(peer, user = %user, mechanism = label, "SASL authentication succeeded");
                ::metrics::counter!(metrics::SASL_SUCCESSES, "mechanism" => label).increment(1);
                self.state = SaslState::Authenticated(user);
                let response = SaslAuthenticateResponse::default()
                    .with_auth_bytes(server_final.into())
                    .with_session_lifetime_ms(0);
                (response, After::Continue)
            }
            Err(error) => {
                match &error {
                    SaslError::UserStore(_) | SaslError::Internal => {
                        warn!(peer, mechanism = label, error = %error_chain(&error), "SASL authentication failed")
                    }
                    _ => {
                        info!(peer, mechanism = label, error = %error, "SASL authentication failed")
                    }
                }
                ::metrics::counter!(metrics::SASL_FAILURES, "mechanism" => label).increment(1);
                let message = match mechanism {
                    Mechanism::Plain => PLAIN_FAILED.to_owned(),
                    // Kafka's wording for every failed SCRAM exchange.
                    Mechanism::Scram(_) => format!(
                        "Authentication failed during authentication due to invalid credentials with SASL mechanism {label}"
                    ),
                };
                let response = SaslAuthenticateResponse::default()
                    .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                    .with_error_message(Some(str_bytes(&message)));
                (response, After::Close)
            }
        }
    }
}

/// One step of an exchange: `Continue` with the next state and the bytes to send, or `Done`
/// with the user and the final bytes.
enum Step {
    Continue(Box<AwaitingClientFinal>, bytes::Bytes),
    Done((String, Vec<u8>)),
}

/// PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd`.
async fn plain(engine: &Engine, token: &[u8]) -> Result<(String, Vec<u8>), SaslError> {
    let text = std::str::from_utf8(token).map_err(|_| SaslError::Malformed("not UTF-8"))?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed(
            "PLAIN needs three NUL-separated fields",
        ));
    };
    if user.is_empty() || password.is_empty() {
        return Err(SaslError::Malformed("empty PLAIN user name or password"));
    }
    if !authzid.is_empty() && authzid != user {
        return Err(SaslError::AuthorizationIdMismatch);
    }
    // An unknown user costs the same PBKDF2 as a known one, so timing does not tell them apart.
    let credential = match lookup(engine, user).await? {
        Some(record) => record.credential(ScramMechanism::Sha256).cloned(),
        None => None,
    };
    let known = credential.is_some();
    let credential = match credential {
        Some(credential) => credential,
        None => unknown_user(ScramMechanism::Sha256, user)?,
    };
    let password = password.to_owned();
    // PBKDF2 with thousands of iterations: off the async workers.
    let verified = tokio::task::spawn_blocking(move || credential.verify_password(&password))
        .await
        .map_err(|_| SaslError::Internal)?
        .map_err(|_| SaslError::Internal)?;
    if verified && known {
        Ok((user.to_owned(), Vec::new()))
    } else {
        Err(SaslError::BadCredentials)
    }
}

/// SCRAM client-first: look the user up and answer server-first.
async fn scram_first(
    engine: &Engine,
    mechanism: ScramMechanism,
    token: &[u8],
) -> Result<Step, SaslError> {
    let first = scram::parse_client_first(token)?;
    let known = lookup(engine, &first.user)
        .await?
        .and_then(|record| record.credential(mechanism).cloned());
    let credential = match known {
        Some(credential) => credential,
        None => unknown_user(mechanism, &first.user)?,
    };
    let (server_first, next) = first.server_first(credential, &scram::server_nonce()?);
    Ok(Step::Continue(
        Box::new(next),
        server_first.into_bytes().into(),
    ))
}

/// The stand-in credential of an unknown user. Its salt is `HMAC(process secret, name)`, so
/// asking twice gives the same salt, as for a real user (it changes when the broker restarts).
fn unknown_user(mechanism: ScramMechanism, user: &str) -> Result<ScramCredential, SaslError> {
    static SECRET: OnceLock<Option<[u8; 32]>> = OnceLock::new();
    let secret = SECRET.get_or_init(|| {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).ok().map(|()| secret)
    });
    let secret = secret.as_ref().ok_or(SaslError::Internal)?;
    let mut salt = mechanism
        .hmac(secret, user.as_bytes())
        .map_err(|_| SaslError::Internal)?;
    salt.truncate(users::SALT_BYTES);
    ScramCredential::unmatchable(mechanism, salt).map_err(|_| SaslError::Internal)
}

async fn lookup(engine: &Engine, user: &str) -> Result<Option<users::UserRecord>, SaslError> {
    if users::validate_user_name(user).is_err() {
        return Ok(None);
    }
    users::get_user(engine.metadata.as_ref(), user)
        .await
        .map_err(SaslError::UserStore)
}

fn error_chain(error: &SaslError) -> String {
    let mut detail = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    detail
}

fn illegal_handshake() -> SaslHandshakeResponse {
    SaslHandshakeResponse::default().with_error_code(ResponseError::IllegalSaslState.code())
}

fn illegal_authenticate(when: &str) -> SaslAuthenticateResponse {
    SaslAuthenticateResponse::default()
        .with_error_code(ResponseError::IllegalSaslState.code())
        .with_error_message(Some(str_bytes(&format!(
            "SaslAuthenticate request received {when}"
        ))))
}

/// SaslHandshake once past authentication (or with SASL off): ILLEGAL_SASL_STATE, as Kafka.
pub(crate) fn handshake_refused() -> SaslHandshakeResponse {
    illegal_handshake()
}

/// SaslAuthenticate once past authentication (or with SASL off): ILLEGAL_SASL_STATE.
pub(crate) fn authenticate_refused() -> SaslAuthenticateResponse {
    illegal_authenticate("after successful authentication")
}
