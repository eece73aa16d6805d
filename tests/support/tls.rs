//! Certificates made by the test (rcgen) and a blocking rustls client for TLS listeners.
//! Include it with `#[path = "../support/tls.rs"] mod tls_support;`.
//!
//! [`Pki::create`] writes `ca.pem`, `server.pem` and `server-key.pem` (for `localhost` and
//! 127.0.0.1) into a directory; [`Pki::client`] issues a client certificate for a common name.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// A test CA, the server certificate it issued, and where their files are.
pub(crate) struct Pki {
    pub(crate) dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A client certificate and key, as PEM.
pub(crate) struct ClientCert {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
    pub(crate) cert_file: PathBuf,
    pub(crate) key_file: PathBuf,
}

pub(crate) type TlsStream = StreamOwned<ClientConnection, TcpStream>;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl Pki {
    /// A new CA (`CN=<ca_name>`) and a server certificate signed by it, written to `dir`.
    pub(crate) fn create(dir: &Path, ca_name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = name(ca_name);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        let pki = Self {
            dir: dir.to_owned(),
            ca,
        };
        pki.write_server("server.pem", "server-key.pem");
        pki
    }

    /// Issues a new server certificate into `cert`/`key` (relative to the directory).
    pub(crate) fn write_server(&self, cert: &str, key: &str) {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name = name("tributary-test-server");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key_pair = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key_pair, &self.ca).unwrap();
        std::fs::write(self.dir.join(cert), certificate.pem()).unwrap();
        std::fs::write(self.dir.join(key), key_pair.serialize_pem()).unwrap();
    }

    /// The server certificate file's DER, to compare with what a connection was served.
    pub(crate) fn server_der(&self, cert: &str) -> Vec<u8> {
        CertificateDer::from_pem_file(self.dir.join(cert))
            .unwrap()
            .to_vec()
    }

    /// A client certificate for `CN=<common_name>`, also written as `<cn>.pem`/`<cn>-key.pem`.
    pub(crate) fn client(&self, common_name: &str) -> ClientCert {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = name(common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key_pair = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key_pair, &self.ca).unwrap();
        let cert_file = self.dir.join(format!("{common_name}.pem"));
        let key_file = self.dir.join(format!("{common_name}-key.pem"));
        std::fs::write(&cert_file, certificate.pem()).unwrap();
        std::fs::write(&key_file, key_pair.serialize_pem()).unwrap();
        ClientCert {
            cert_pem: certificate.pem(),
            key_pem: key_pair.serialize_pem(),
            cert_file,
            key_file,
        }
    }

    /// Environment variables that point the broker at these files.
    pub(crate) fn env(&self, client_auth: &str) -> Vec<(String, String)> {
        let path = |file: &str| self.dir.join(file).display().to_string();
        vec![
            ("TRIBUTARY_TLS_CERT_FILE".into(), path("server.pem")),
            ("TRIBUTARY_TLS_KEY_FILE".into(), path("server-key.pem")),
            ("TRIBUTARY_TLS_CA_FILE".into(), path("ca.pem")),
            ("TRIBUTARY_TLS_CLIENT_AUTH".into(), client_auth.into()),
        ]
    }

    /// A client trusting this CA, presenting `client` if given.
    pub(crate) fn client_config(&self, client: Option<&ClientCert>) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(self.dir.join("ca.pem")).unwrap())
            .unwrap();
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match client {
            Some(client) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_slice(client.cert_pem.as_bytes()).unwrap()],
                    PrivateKeyDer::from_pem_slice(client.key_pem.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        Arc::new(config)
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Tributary tests");
    name.push(DnType::CommonName, common_name);
    name
}

/// Connects and completes the TLS handshake (as `localhost`); `Err` carries the failure.
pub(crate) fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> std::io::Result<TlsStream> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let server = ServerName::try_from("localhost").unwrap();
    let connection = ClientConnection::new(config, server).map_err(std::io::Error::other)?;
    let mut stream = StreamOwned::new(connection, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// The DER of the certificate the server presented.
pub(crate) fn served_certificate(stream: &TlsStream) -> Vec<u8> {
    stream.conn.peer_certificates().unwrap()[0].to_vec()
}

/// `GET /health` over HTTPS; the status line.
pub(crate) fn https_health(addr: SocketAddr, config: Arc<ClientConfig>) -> String {
    let mut stream = connect(addr, config).expect("TLS handshake");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = Vec::new();
    // A peer that closes without close_notify ends the read with UnexpectedEof; what came
    // before it is the response.
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    text.lines().next().unwrap_or_default().to_owned()
}

/// Whether a plaintext peer on `addr` is closed without being served: it writes `hello`,
/// then the read must end (EOF or reset) within the timeout, with nothing readable but
/// perhaps a TLS alert.
pub(crate) fn plaintext_is_refused(addr: SocketAddr, hello: &[u8]) -> bool {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = tcp.write_all(hello);
    let mut buf = [0u8; 256];
    match tcp.read(&mut buf) {
        Ok(0) => true,
        // A TLS alert record (content type 21) is a refusal too.
        Ok(_) => buf[0] == 21,
        Err(error) => error.kind() == std::io::ErrorKind::ConnectionReset,
    }
}
