//! A certificate authority made for one test, and a TLS-terminating loopback proxy that puts any plain-HTTP fake
//! (or Azurite) behind `https://127.0.0.1:<port>` with a server certificate that authority signed. The tests use
//! them to prove that every outgoing client of the handler trusts `SSL_CERT_FILE` and nothing else.

use crate::server::own_runtime;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::runtime::Runtime;

/// A fresh certificate authority and one server certificate it signed for `127.0.0.1` and `localhost`.
pub struct TestCa {
    name: String,
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

impl TestCa {
    /// Generates the authority (`CN=<name>`) and its server certificate (ECDSA P-256 keys).
    pub fn new(name: &str) -> TestCa {
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca.distinguished_name.push(DnType::CommonName, name);
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("a CA key")).expect("the CA");

        let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("server certificate parameters");
        leaf.distinguished_name.push(DnType::CommonName, "127.0.0.1");
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = KeyPair::generate().expect("a server key");
        let leaf = leaf.signed_by(&leaf_key, &ca).expect("the server certificate");

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone(), CertificateDer::from(ca.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
            )
            .expect("a server configuration");
        TestCa { name: name.to_string(), ca_pem: ca.pem(), server: Arc::new(server) }
    }

    /// The authority's certificate (PEM), what a client is told to trust.
    pub fn pem(&self) -> &str {
        &self.ca_pem
    }

    /// Writes the authority's certificate to `<dir>/<name>.pem` and returns that path (for `SSL_CERT_FILE`).
    pub fn write_pem(&self, dir: &Path) -> PathBuf {
        let path = dir.join(format!("{}.pem", self.name));
        std::fs::write(&path, &self.ca_pem).expect("write the CA certificate");
        path
    }
}

/// `https://127.0.0.1:<port>` in front of a plain TCP service on loopback: each connection's TLS is terminated
/// with the authority's server certificate and its bytes are passed on unchanged. Dropping it stops it.
pub struct TlsProxy {
    /// Its loopback port.
    pub port: u16,
    handshakes: Arc<AtomicU64>,
    runtime: Option<Runtime>,
}

impl TlsProxy {
    /// Starts forwarding to `127.0.0.1:<target>` (on its own small runtime, like the fakes).
    pub fn start(ca: &TestCa, target: u16) -> TlsProxy {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the TLS proxy");
        listener.set_nonblocking(true).expect("a non-blocking listener");
        let port = listener.local_addr().expect("its address").port();
        let runtime = own_runtime("tls-proxy").expect("a runtime for the TLS proxy");
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server.clone());
        let handshakes = Arc::new(AtomicU64::new(0));
        let counted = handshakes.clone();
        let target = SocketAddr::from((Ipv4Addr::LOCALHOST, target));
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, counted) = (acceptor.clone(), counted.clone());
                tokio::spawn(async move {
                    // A client that does not trust the certificate aborts here.
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    counted.fetch_add(1, Ordering::SeqCst);
                    if let Ok(mut plain) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                    }
                });
            }
        });
        TlsProxy { port, handshakes, runtime: Some(runtime) }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// TLS handshakes completed so far (a client that refused the certificate completed none).
    pub fn handshakes(&self) -> u64 {
        self.handshakes.load(Ordering::SeqCst)
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
