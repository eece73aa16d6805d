//! The TLS settings: the one certificate every TLS listener serves, the client CAs, and which
//! listeners speak TLS (`kafka.tls_port`, `amqp.tls_port`, `rocketmq.tls`, `http.tls`).
//!
//! Invariants worth naming: everything is off by default; a validated [`Config`] that turns on
//! any TLS listener has a certificate and key that load and match, and a CA file whenever
//! `tls.client_auth` asks for client certificates (the files are read at validation, so a
//! broken file stops the start, and a broken file at SIGHUP keeps the certificate in use).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, ListenerSpec, Problem};

/// `tls.*`: the files every TLS listener uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The server certificate (PEM), followed by its chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates must chain to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Whether clients must present a certificate.
    pub client_auth: ClientAuth,
}

/// `tls.client_auth`, as Kafka's `ssl.client.auth`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// Client certificates are not asked for.
    #[default]
    None,
    /// Asked for; a client without one is served, one with a bad one is refused.
    Optional,
    /// A client without a certificate that chains to `tls.ca_file` is refused.
    Required,
}

/// `rocketmq.tls`, as RocketMQ's `tlsMode` on the name server and broker ports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RocketMqTls {
    /// Plain TCP only.
    #[default]
    Disabled,
    /// TLS and plain TCP on the same ports (a TLS ClientHello is told by its first byte).
    Permissive,
    /// TLS only.
    Enforcing,
}

macro_rules! text_enum {
    ($ty:ident { $($variant:ident => $text:literal),+ }) => {
        impl FromStr for $ty {
            type Err = ();
            fn from_str(text: &str) -> Result<Self, ()> {
                match text.trim().to_ascii_lowercase().as_str() {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(()),
                }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self { $(Self::$variant => $text,)+ })
            }
        }
    };
}

text_enum!(ClientAuth { None => "none", Optional => "optional", Required => "required" });
text_enum!(RocketMqTls { Disabled => "disabled", Permissive => "permissive", Enforcing => "enforcing" });

impl Config {
    /// The listeners that speak TLS, by the key that turns each on.
    pub fn tls_listener_keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.kafka.enabled && self.kafka.tls_port.is_some() {
            keys.push("kafka.tls_port");
        }
        if self.amqp.enabled && self.amqp.tls_port.is_some() {
            keys.push("amqp.tls_port");
        }
        if self.rocketmq.enabled && self.rocketmq.tls != RocketMqTls::Disabled {
            keys.push("rocketmq.tls");
        }
        if self.http.enabled && self.http.tls {
            keys.push("http.tls");
        }
        keys
    }

    /// Kafka's TLS listener (`kafka.tls_port`): the plain listener's limits on another port.
    pub fn kafka_tls_listener(&self) -> Option<ListenerSpec> {
        let port = self.kafka.tls_port?;
        Some(ListenerSpec {
            port,
            ..self.kafka_listener()
        })
    }

    /// The AMQPS listener (`amqp.tls_port`): the plain listener's limits on another port.
    pub fn amqp_tls_listener(&self) -> Option<ListenerSpec> {
        let port = self.amqp.tls_port?;
        Some(ListenerSpec {
            port,
            ..self.amqp_listener()
        })
    }

    /// Whether any listener speaks TLS.
    pub fn tls_on(&self) -> bool {
        !self.tls_listener_keys().is_empty()
    }

    /// With a TLS listener on: the files are named, load, and match.
    pub(super) fn validate_tls(&self) -> Result<(), ConfigError> {
        let Some(listener) = self.tls_listener_keys().first().copied() else {
            return Ok(());
        };
        let tls = &self.tls;
        for (key, file) in [
            ("tls.cert_file", &tls.cert_file),
            ("tls.key_file", &tls.key_file),
        ] {
            if file.is_none() {
                return Err(ConfigError::Invalid {
                    key,
                    problem: Problem::RequiredByTls { listener },
                });
            }
        }
        if tls.client_auth != ClientAuth::None && tls.ca_file.is_none() {
            return Err(ConfigError::Invalid {
                key: "tls.ca_file",
                problem: Problem::RequiredByClientAuth(tls.client_auth),
            });
        }
        crate::server::tls::server_config(tls)
            .map(drop)
            .map_err(|error| ConfigError::Invalid {
                key: error.key(),
                problem: Problem::Tls(error),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_from_the_words_operators_write() {
        assert_eq!("Required".parse(), Ok(ClientAuth::Required));
        assert_eq!(" none ".parse(), Ok(ClientAuth::None));
        assert_eq!("permissive".parse(), Ok(RocketMqTls::Permissive));
        assert_eq!("on".parse::<RocketMqTls>(), Err(()));
        assert_eq!(RocketMqTls::Enforcing.to_string(), "enforcing");
    }

    #[test]
    fn a_tls_listener_needs_a_certificate_and_key() {
        let mut config = Config::default();
        config.validate().expect("no TLS listener, no files needed");
        config.amqp.tls_port = Some(0);
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.contains("tls.cert_file") && error.contains("amqp.tls_port"),
            "{error}"
        );
        config.amqp.tls_port = None;
        config.rocketmq.tls = RocketMqTls::Enforcing;
        config.tls.cert_file = Some("/nonexistent/h17t-cert.pem".into());
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("tls.key_file"), "{error}");
        config.tls.key_file = Some("/nonexistent/h17t-key.pem".into());
        config.tls.client_auth = ClientAuth::Required;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("tls.ca_file"), "{error}");
        config.tls.client_auth = ClientAuth::None;
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.contains("tls.cert_file") && error.contains("h17t-cert.pem"),
            "{error}"
        );
    }
}
