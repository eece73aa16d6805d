//! The server side of a SCRAM exchange (RFC 5802, with SHA-256/512 as in RFC 7677), sans-IO:
//! client-first in, server-first out; client-final in, server-final out.
//!
//! ```text
//! C: n,,n=user,r=<client nonce>                      (gs2 header "n,," then client-first-bare)
//! S: r=<client nonce><server nonce>,s=<salt>,i=<iterations>
//! C: c=biws,r=<both nonces>,p=<ClientProof>
//! S: v=<ServerSignature>
//! ```
//!
//! Invariants: channel binding is never used (`p=` is refused, `n` and `y` are accepted, and
//! `c=` must echo the gs2 header exactly); the client-final nonce must equal the combined nonce,
//! or the client nonce followed by it: librdkafka before 2.6.1 repeats its own nonce there
//! (librdkafka #4895; Kafka 3.8.1 accepts it too), and Debian's kcat still links such a build;
//! the proof is checked as `H(ClientProof XOR HMAC(StoredKey, AuthMessage)) == StoredKey` in
//! constant time. Each step consumes its state, so an exchange cannot be replayed or resumed
//! after a failure.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tributary_api::users::{ScramCredential, ScramMechanism, same_bytes, xor_into};

use crate::error::SaslError;

/// The client-first message, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientFirst {
    /// `n,,` (or `y,,`, or with an `a=` authorization id), echoed back base64 in `c=`.
    gs2_header: String,
    /// The user name, `=2C` and `=3D` decoded.
    pub(crate) user: String,
    client_nonce: String,
    /// The message without the gs2 header: part of the AuthMessage.
    bare: String,
}

/// Waiting for the client-final message.
#[derive(Debug, Clone)]
pub(crate) struct AwaitingClientFinal {
    credential: ScramCredential,
    user: String,
    gs2_header: String,
    nonce: String,
    /// `client nonce + nonce`: what librdkafka before 2.6.1 sends back.
    doubled_nonce: String,
    /// `client-first-bare "," server-first`: the AuthMessage up to the client-final part.
    auth_prefix: String,
}

/// Parses a client-first message.
pub(crate) fn parse_client_first(message: &[u8]) -> Result<ClientFirst, SaslError> {
    let text = std::str::from_utf8(message).map_err(|_| SaslError::Malformed("not UTF-8"))?;
    let (cbind_flag, rest) = text
        .split_once(',')
        .ok_or(SaslError::Malformed("no gs2 header"))?;
    match cbind_flag {
        "n" | "y" => {}
        flag if flag.starts_with("p=") => return Err(SaslError::ChannelBindingUnsupported),
        _ => return Err(SaslError::Malformed("bad channel binding flag")),
    }
    let (authzid, bare) = rest
        .split_once(',')
        .ok_or(SaslError::Malformed("no gs2 header"))?;
    let gs2_header = format!("{cbind_flag},{authzid},");
    let mut attributes = bare.split(',');
    let user = match attributes.next().and_then(|a| a.strip_prefix("n=")) {
        Some(name) => decode_sasl_name(name)?,
        // `m=` (mandatory extension) or anything else before the user name.
        None => return Err(SaslError::Malformed("client-first does not start with n=")),
    };
    if !authzid.is_empty() {
        let requested = authzid
            .strip_prefix("a=")
            .ok_or(SaslError::Malformed("bad authorization id"))?;
        if decode_sasl_name(requested)? != user {
            return Err(SaslError::AuthorizationIdMismatch);
        }
    }
    let client_nonce = attributes
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .filter(|nonce| is_printable_nonce(nonce))
        .ok_or(SaslError::Malformed("bad client nonce"))?;
    // Further attributes are extensions (Kafka's `tokenauth`); none changes password auth.
    Ok(ClientFirst {
        gs2_header,
        client_nonce: client_nonce.to_owned(),
        user,
        bare: bare.to_owned(),
    })
}

impl ClientFirst {
    /// Answers with the server-first message for `credential`, appending `server_nonce`.
    pub(crate) fn server_first(
        self,
        credential: ScramCredential,
        server_nonce: &str,
    ) -> (String, AwaitingClientFinal) {
        let nonce = format!("{}{server_nonce}", self.client_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&credential.salt),
            credential.iterations
        );
        let auth_prefix = format!("{},{server_first}", self.bare);
        let doubled_nonce = format!("{}{nonce}", self.client_nonce);
        let next = AwaitingClientFinal {
            credential,
            user: self.user,
            gs2_header: self.gs2_header,
            nonce,
            doubled_nonce,
            auth_prefix,
        };
        (server_first, next)
    }
}

impl AwaitingClientFinal {
    pub(crate) fn mechanism(&self) -> ScramMechanism {
        self.credential.mechanism
    }

    /// Checks the client-final message; on success returns the server-final message and the
    /// authenticated user.
    pub(crate) fn client_final(self, message: &[u8]) -> Result<(String, String), SaslError> {
        let text = std::str::from_utf8(message).map_err(|_| SaslError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(SaslError::Malformed("no proof"))?;
        let mut attributes = without_proof.split(',');
        let binding = attributes
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(SaslError::Malformed("client-final does not start with c="))?;
        if BASE64.decode(binding).ok().as_deref() != Some(self.gs2_header.as_bytes()) {
            return Err(SaslError::ChannelBindingMismatch);
        }
        let nonce = attributes
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(SaslError::Malformed("no nonce in client-final"))?;
        if nonce != self.nonce && nonce != self.doubled_nonce {
            return Err(SaslError::NonceMismatch);
        }
        let mechanism = self.credential.mechanism;
        let proof = BASE64
            .decode(proof)
            .ok()
            .filter(|proof| proof.len() == mechanism.key_len())
            .ok_or(SaslError::Malformed("bad proof"))?;
        let auth_message = format!("{},{without_proof}", self.auth_prefix);
        let mac = |key: &[u8]| {
            mechanism
                .hmac(key, auth_message.as_bytes())
                .map_err(|_| SaslError::Internal)
        };
        let mut client_key = mac(&self.credential.stored_key)?;
        xor_into(&mut client_key, &proof);
        if !same_bytes(&mechanism.hash(&client_key), &self.credential.stored_key) {
            return Err(SaslError::BadCredentials);
        }
        let server_signature = mac(&self.credential.server_key)?;
        Ok((format!("v={}", BASE64.encode(server_signature)), self.user))
    }
}

/// A fresh server nonce: 18 random bytes as base64 (printable, no comma).
pub(crate) fn server_nonce() -> Result<String, SaslError> {
    let mut bytes = [0u8; 18];
    getrandom::fill(&mut bytes).map_err(|_| SaslError::Internal)?;
    Ok(BASE64.encode(bytes))
}

/// `saslname` of RFC 5802: `=2C` is `,` and `=3D` is `=`; any other `=` is an error.
fn decode_sasl_name(name: &str) -> Result<String, SaslError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3);
        match escape {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(SaslError::Malformed("bad escape in user name")),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    if out.is_empty() {
        return Err(SaslError::Malformed("empty user name"));
    }
    Ok(out)
}

/// RFC 5802 `printable`: ASCII 0x21..=0x7E except `,`.
fn is_printable_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_api::users::MIN_ITERATIONS;

    /// RFC 7677 §3: user "user", password "pencil".
    const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const SERVER_FIRST: &str = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn rfc_credential(password: &str) -> ScramCredential {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        ScramCredential::derive(ScramMechanism::Sha256, password, &salt, MIN_ITERATIONS).unwrap()
    }

    fn after_server_first(credential: ScramCredential) -> AwaitingClientFinal {
        let first = parse_client_first(CLIENT_FIRST.as_bytes()).unwrap();
        assert_eq!(first.user, "user");
        let (server_first, next) = first.server_first(credential, SERVER_NONCE);
        assert_eq!(server_first, SERVER_FIRST);
        next
    }

    #[test]
    fn rfc_7677_sha256_exchange_gives_the_rfc_server_signature() {
        let next = after_server_first(rfc_credential("pencil"));
        let (server_final, user) = next.client_final(CLIENT_FINAL.as_bytes()).unwrap();
        assert_eq!(server_final, SERVER_FINAL);
        assert_eq!(user, "user");
    }

    #[test]
    fn old_librdkafkas_repeated_client_nonce_is_accepted() {
        // librdkafka < 2.6.1 sends `r=<client nonce><server's r>`, and computes its proof over
        // that message; it is otherwise the RFC exchange.
        let salt = b"salty";
        let mechanism = ScramMechanism::Sha256;
        let credential = ScramCredential::derive(mechanism, "pw", salt, MIN_ITERATIONS).unwrap();
        let first = parse_client_first(b"n,,n=kc,r=cn").unwrap();
        let (server_first, next) = first.server_first(credential, "sn");
        let without_proof = "c=biws,r=cncnsn";
        let auth_message = format!("n=kc,r=cn,{server_first},{without_proof}");
        let salted = mechanism
            .salted_password(b"pw", salt, MIN_ITERATIONS)
            .unwrap();
        let client_key = mechanism.hmac(&salted, b"Client Key").unwrap();
        let stored_key = mechanism.hash(&client_key);
        let mut proof = mechanism
            .hmac(&stored_key, auth_message.as_bytes())
            .unwrap();
        xor_into(&mut proof, &client_key);
        let message = format!("{without_proof},p={}", BASE64.encode(&proof));
        assert!(next.clone().client_final(message.as_bytes()).is_ok());
        // Anything else around the nonce still fails.
        let tripled = message.replace("r=cncnsn", "r=cncncnsn");
        assert!(matches!(
            next.client_final(tripled.as_bytes()),
            Err(SaslError::NonceMismatch)
        ));
    }

    #[test]
    fn a_wrong_password_fails_at_the_proof() {
        let next = after_server_first(rfc_credential("pencil2"));
        assert!(matches!(
            next.client_final(CLIENT_FINAL.as_bytes()),
            Err(SaslError::BadCredentials)
        ));
    }

    #[test]
    fn tampered_client_final_messages_fail() {
        let next = after_server_first(rfc_credential("pencil"));
        let other_nonce = CLIENT_FINAL.replace("k0,p=", "k1,p=");
        assert!(matches!(
            next.clone().client_final(other_nonce.as_bytes()),
            Err(SaslError::NonceMismatch)
        ));
        // `eSws` is base64 of "y,,": the binding must echo the client-first header.
        let other_binding = CLIENT_FINAL.replace("c=biws", "c=eSws");
        assert!(matches!(
            next.clone().client_final(other_binding.as_bytes()),
            Err(SaslError::ChannelBindingMismatch)
        ));
        let flipped = CLIENT_FINAL.replace("p=dHzb", "p=dHzc");
        assert!(matches!(
            next.clone().client_final(flipped.as_bytes()),
            Err(SaslError::BadCredentials)
        ));
        for garbage in ["", "c=biws", "p=", "c=biws,p=AAAA", "\u{fffd}"] {
            assert!(next.clone().client_final(garbage.as_bytes()).is_err());
        }
    }

    #[test]
    fn client_first_messages_are_parsed_strictly() {
        let escaped = parse_client_first(b"n,a=a=2Cb,n=a=2Cb,r=abc,ext=1").unwrap();
        assert_eq!(escaped.user, "a,b");
        assert_eq!(escaped.gs2_header, "n,a=a=2Cb,");
        assert_eq!(escaped.bare, "n=a=2Cb,r=abc,ext=1");
        assert!(matches!(
            parse_client_first(b"p=tls-unique,,n=u,r=abc"),
            Err(SaslError::ChannelBindingUnsupported)
        ));
        assert!(matches!(
            parse_client_first(b"n,a=other,n=u,r=abc"),
            Err(SaslError::AuthorizationIdMismatch)
        ));
        for bad in [
            &b""[..],
            b"n,,",
            b"x,,n=u,r=abc",
            b"n,,m=ext,n=u,r=abc",
            b"n,,n=,r=abc",
            b"n,,n=a=3,r=abc",
            b"n,,n=u",
            b"n,,n=u,r=",
            b"n,,n=u,r=a b",
            b"\xff,,n=u,r=abc",
        ] {
            assert!(parse_client_first(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sha512_exchange_round_trips_with_a_client_computed_proof() {
        let mechanism = ScramMechanism::Sha512;
        let credential =
            ScramCredential::derive(mechanism, "pw", b"salt-bytes", MIN_ITERATIONS).unwrap();
        let first = parse_client_first(b"n,,n=bob,r=cnonce").unwrap();
        let (server_first, next) = first.server_first(credential, &server_nonce().unwrap());
        // The client side, as RFC 5802 §3 computes it.
        let nonce = server_first
            .split(',')
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .unwrap();
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("n=bob,r=cnonce,{server_first},{without_proof}");
        let salted = mechanism
            .salted_password(b"pw", b"salt-bytes", MIN_ITERATIONS)
            .unwrap();
        let client_key = mechanism.hmac(&salted, b"Client Key").unwrap();
        let stored_key = mechanism.hash(&client_key);
        let mut proof = mechanism
            .hmac(&stored_key, auth_message.as_bytes())
            .unwrap();
        xor_into(&mut proof, &client_key);
        let final_message = format!("{without_proof},p={}", BASE64.encode(&proof));
        let (server_final, user) = next.client_final(final_message.as_bytes()).unwrap();
        let server_key = mechanism.hmac(&salted, b"Server Key").unwrap();
        let expected = mechanism
            .hmac(&server_key, auth_message.as_bytes())
            .unwrap();
        assert_eq!(server_final, format!("v={}", BASE64.encode(expected)));
        assert_eq!(user, "bob");
    }
}
