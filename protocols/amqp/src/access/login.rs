//! `connection.start-ok` credentials: PLAIN (`authzid \0 user \0 password`) and AMQPLAIN (a
//! field table without its length prefix, keys `LOGIN` and `PASSWORD`), checked against the
//! broker's user store ([`tributary_api::users`], shared with Kafka SASL); and EXTERNAL, where a
//! verified TLS client certificate's common name names a stored user (as RabbitMQ's
//! `rabbitmq_auth_mechanism_ssl` with its default `ssl_cert_login_from = common_name`).
//!
//! Invariants: the built-in `guest`/`guest` applies only while the store has no `guest` record
//! (a stored `guest` wins, as `rabbitmqctl change_password guest` would); users named in
//! `loopback_users` are refused unless the peer is a loopback address; password hashing runs on
//! the blocking pool, never on a connection task; EXTERNAL is offered only on a connection with
//! a verified client certificate, and accepts only a user the store holds (the built-in
//! `guest` is not one), under the same loopback rule.

use std::net::SocketAddr;

use tributary_api::users::get_user;
use tributary_api::{CertificateIdentity, MetadataStore};

use crate::codec::table::{FieldTable, FieldValue};
use crate::codec::wire::Reader;

use super::DEFAULT_USER;

/// The user and password a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

/// Decodes PLAIN or AMQPLAIN; `None` for another mechanism or a malformed response.
pub fn parse_credentials(mechanism: &str, response: &[u8]) -> Option<Credentials> {
    let (user, password) = match mechanism {
        "PLAIN" => {
            let mut parts = response.split(|b| *b == 0);
            let _authzid = parts.next();
            let (user, password) = (parts.next()?, parts.next()?);
            if parts.next().is_some() {
                return None;
            }
            (user.to_vec(), password.to_vec())
        }
        "AMQPLAIN" => {
            let table = FieldTable::decode_entries(&mut Reader::new(response), 0).ok()?;
            let field = |name| match table.get(name) {
                Some(FieldValue::LongString(v)) => Some(v.to_vec()),
                _ => None,
            };
            (field("LOGIN")?, field("PASSWORD")?)
        }
        _ => return None,
    };
    Some(Credentials {
        user: String::from_utf8(user).ok()?,
        password: String::from_utf8(password).ok()?,
    })
}

/// The mechanism named by a client certificate.
pub const EXTERNAL: &str = "EXTERNAL";

/// EXTERNAL: the user named by the certificate's common name, when the store holds that user
/// and the loopback rule lets it in from `peer`; `Err` carries the reason for the broker log.
pub async fn verify_external(
    store: &dyn MetadataStore,
    certificate: Option<&CertificateIdentity>,
    peer: SocketAddr,
    loopback_users: &[String],
) -> Result<String, String> {
    let certificate = certificate.ok_or("no verified client certificate on this connection")?;
    let user = certificate.common_name.clone().ok_or_else(|| {
        format!(
            "client certificate '{}' has no common name",
            certificate.subject
        )
    })?;
    if loopback_users.contains(&user) && !peer.ip().is_loopback() {
        return Err(format!(
            "user '{user}' can only connect via localhost (loopback_users)"
        ));
    }
    match get_user(store, &user).await {
        Ok(Some(_)) => Ok(user),
        Ok(None) => Err(format!(
            "client certificate common name '{user}' is not a broker user"
        )),
        Err(error) => Err(format!("cannot read user '{user}': {error}")),
    }
}

/// Checks credentials; `Err` carries the reason for the broker log (never for the client).
pub async fn verify(
    store: &dyn MetadataStore,
    credentials: &Credentials,
    peer: SocketAddr,
    loopback_users: &[String],
) -> Result<(), String> {
    let Credentials { user, password } = credentials;
    if loopback_users.iter().any(|name| name == user) && !peer.ip().is_loopback() {
        return Err(format!(
            "user '{user}' can only connect via localhost (loopback_users)"
        ));
    }
    let record = get_user(store, user)
        .await
        .map_err(|error| format!("cannot read user '{user}': {error}"))?;
    let accepted = match record {
        Some(record) => {
            let password = password.clone();
            tokio::task::spawn_blocking(move || record.verify_plain(&password))
                .await
                .map_err(|error| format!("password check failed: {error}"))?
                .map_err(|error| format!("password check failed: {error}"))?
        }
        None => user == DEFAULT_USER && password == DEFAULT_USER,
    };
    if accepted {
        Ok(())
    } else {
        Err(format!("invalid credentials for user '{user}'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_amqplain_responses_decode() {
        let plain = parse_credentials("PLAIN", b"\0alice\0s3cret").unwrap();
        assert_eq!(plain.user, "alice");
        assert_eq!(plain.password, "s3cret");
        assert!(parse_credentials("PLAIN", b"alice").is_none());
        assert!(parse_credentials("EXTERNAL", b"").is_none());
        let mut table = FieldTable::default();
        table.insert("LOGIN", FieldValue::LongString("bob".into()));
        table.insert("PASSWORD", FieldValue::LongString("pw".into()));
        let mut wire = bytes::BytesMut::new();
        table.encode(&mut wire);
        let amqplain = parse_credentials("AMQPLAIN", &wire[4..]).unwrap();
        assert_eq!(amqplain.user, "bob");
        assert_eq!(amqplain.password, "pw");
    }
}
