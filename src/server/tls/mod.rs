//! TLS for the listeners: the server configuration built from `tls.*`, swapped on SIGHUP, and
//! the handshake every TLS connection runs in its own task ([`handshake`]).
//!
//! Invariants worth naming:
//! - one [`TlsServer`] serves every TLS listener; each new connection takes the configuration
//!   current at its accept, so a reload reaches new connections only and never an open one;
//! - a reload that fails (an unreadable file, a key that does not match, a CA file with no
//!   certificate) changes nothing: the configuration in use stays, and the caller logs why;
//! - the crypto provider is aws-lc-rs, the one the default build already compiles.

pub mod handshake;
pub mod subject;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

use super::alarms::Reload;
use crate::config::{ClientAuth, Config, RocketMqTls, TlsConfig};

/// Why a TLS configuration could not be built; each names the key and file concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("is not set")]
    Missing { key: &'static str },
    #[error("cannot read {path}: {detail}")]
    Read {
        key: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("{path} holds no PEM {what}")]
    Empty {
        key: &'static str,
        path: PathBuf,
        what: &'static str,
    },
    #[error("{path}: the certificate or key is not usable (or they do not match): {source}")]
    Certificate {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("{path}: cannot verify client certificates with these CAs: {detail}")]
    ClientCas {
        key: &'static str,
        path: PathBuf,
        detail: String,
    },
}

impl TlsError {
    /// The configuration key the error is about.
    pub fn key(&self) -> &'static str {
        match self {
            Self::Missing { key }
            | Self::Read { key, .. }
            | Self::Empty { key, .. }
            | Self::Certificate { key, .. }
            | Self::ClientCas { key, .. } => key,
        }
    }
}

/// How one listener uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsRole {
    /// Plain TCP.
    #[default]
    Off,
    /// TLS only.
    On,
    /// Both: a connection whose first byte starts a TLS record (0x16) gets TLS.
    Permissive,
}

impl TlsRole {
    /// How the role is logged.
    pub fn label(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::On => "on",
            Self::Permissive => "permissive",
        }
    }
}

impl From<RocketMqTls> for TlsRole {
    fn from(mode: RocketMqTls) -> Self {
        match mode {
            RocketMqTls::Disabled => Self::Off,
            RocketMqTls::Permissive => Self::Permissive,
            RocketMqTls::Enforcing => Self::On,
        }
    }
}

/// The TLS configuration every TLS listener serves, replaceable at run time.
#[derive(Debug)]
pub struct TlsServer {
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsServer {
    /// Built from `config`, or `None` when no listener speaks TLS.
    pub fn for_config(config: &Config) -> Result<Option<Arc<Self>>, TlsError> {
        if !config.tls_on() {
            return Ok(None);
        }
        let current = server_config(&config.tls)?;
        Ok(Some(Arc::new(Self {
            current: RwLock::new(current),
        })))
    }

    /// The configuration a new connection is served with.
    pub fn current(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.current.read())
    }

    /// Reads the files again; on success new connections get the new configuration, on
    /// failure nothing changes.
    pub fn reload(&self, settings: &TlsConfig) -> Result<(), TlsError> {
        let next = server_config(settings)?;
        *self.current.write() = next;
        Ok(())
    }
}

/// On every SIGHUP, reads the configuration again with `reload` and swaps in its certificate,
/// key and CAs; a failure is logged and the configuration in use stays. Listeners are not
/// added or removed at run time.
pub fn spawn_reload_on_hangup(server: Arc<TlsServer>, reload: Reload) {
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(error) => {
            warn!(%error, "cannot listen for SIGHUP; the TLS certificate stays as loaded");
            return;
        }
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            // The file reads and key checks are blocking work.
            let server = Arc::clone(&server);
            let reload = Arc::clone(&reload);
            let outcome = tokio::task::spawn_blocking(move || {
                let config = reload().map_err(|error| error.to_string())?;
                server
                    .reload(&config.tls)
                    .map_err(|error| format!("`{}` {error}", error.key()))
            })
            .await;
            match outcome {
                Ok(Ok(())) => {
                    info!("SIGHUP: TLS certificate, key and CAs reloaded; new connections use them")
                }
                Ok(Err(error)) => error!(
                    error,
                    "SIGHUP: cannot reload TLS; the certificate in use stays"
                ),
                Err(error) => {
                    error!(%error, "SIGHUP: the TLS reload panicked; the certificate in use stays")
                }
            }
        }
    });
}

/// The provider every TLS listener uses.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Builds the server configuration from the files `settings` names.
pub fn server_config(settings: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_path = required(&settings.cert_file, "tls.cert_file")?;
    let key_path = required(&settings.key_file, "tls.key_file")?;
    let chain = certificates(cert_path, "tls.cert_file")?;
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|error| match error {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            key: "tls.key_file",
            path: key_path.to_owned(),
            what: "private key",
        },
        other => read_error("tls.key_file", key_path, other),
    })?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Certificate {
            key: "tls.cert_file",
            path: cert_path.to_owned(),
            source,
        })?;
    let builder = match settings.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        auth => {
            let ca_path = required(&settings.ca_file, "tls.ca_file")?;
            let mut roots = RootCertStore::empty();
            for ca in certificates(ca_path, "tls.ca_file")? {
                roots.add(ca).map_err(|error| TlsError::ClientCas {
                    key: "tls.ca_file",
                    path: ca_path.to_owned(),
                    detail: error.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match auth {
                ClientAuth::Optional => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            let verifier = verifier.build().map_err(|error| TlsError::ClientCas {
                key: "tls.ca_file",
                path: ca_path.to_owned(),
                detail: error.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Certificate {
            key: "tls.key_file",
            path: key_path.to_owned(),
            source,
        })?;
    Ok(Arc::new(config))
}

fn required<'a>(path: &'a Option<PathBuf>, key: &'static str) -> Result<&'a Path, TlsError> {
    path.as_deref().ok_or(TlsError::Missing { key })
}

/// Every certificate of a PEM file, in order; at least one.
fn certificates(path: &Path, key: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|error| read_error(key, path, error))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| read_error(key, path, error))?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            key,
            path: path.to_owned(),
            what: "certificate",
        });
    }
    Ok(certs)
}

fn read_error(key: &'static str, path: &Path, error: rustls::pki_types::pem::Error) -> TlsError {
    let detail = match error {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    };
    TlsError::Read {
        key,
        path: path.to_owned(),
        detail,
    }
}
