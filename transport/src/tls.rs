//! The cluster CA, node certificates, and the rustls/quinn configurations that check them.
//!
//! Every node of a cluster holds a certificate signed by one cluster CA (Ed25519,
//! self-signed, made by `ckpt cert`). The certificate's only subject alternative name is
//! the DNS name `node-<id>.ckpt` ([`server_name`]), which is how a node proves its id:
//!
//! - a dialing node names the server `node-<id>.ckpt`, so the standard server-name check
//!   refuses a server whose certificate names another node;
//! - an accepting node requires a client certificate from the cluster CA and reads the
//!   client's id out of it with [`node_id_from_cert`].
//!
//! QUIC here is always TLS 1.3 with ALPN [`ALPN`], with an explicit *ring* crypto
//! provider (never the process default). Ed25519 keeps signatures fixed-length, which the
//! deterministic simulation needs.
//!
//! Files, as [`write_cluster_certs`] lays them out in one directory: [`CA_CERT_FILE`],
//! [`CA_KEY_FILE`], and per node `node-<id>.pem` and `node-<id>.key` ([`node_cert_path`],
//! [`node_key_path`]). Keys are created with mode 0600.
//!
//! ```
//! use ckpt_transport::tls;
//!
//! let ca = tls::generate_ca()?;
//! let node = tls::issue_node_cert(&ca, 7)?;
//! let identity = node.identity()?;
//! assert_eq!(identity.node(), 7);
//! let roots = ca.roots()?;
//! let settings = tls::TransportSettings::default();
//! let _server = tls::quinn_server_config(&identity, &roots, &settings)?;
//! let _client = tls::quinn_client_config(&identity, &roots, &settings)?;
//! # Ok::<(), tls::TlsError>(())
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{NoInitialCipherSuite, QuicClientConfig, QuicServerConfig};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::client::Resumption;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;

/// The ALPN protocol id of the node-to-node protocol.
pub const ALPN: &[u8] = b"ckpt/1";

/// File name of the cluster CA certificate inside a certificate directory.
pub const CA_CERT_FILE: &str = "ca.pem";

/// File name of the cluster CA private key inside a certificate directory.
pub const CA_KEY_FILE: &str = "ca.key";

/// Common name of the cluster CA that [`generate_ca`] makes.
const CA_COMMON_NAME: &str = "ckpt cluster CA";

/// Errors of certificate generation, loading and TLS configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file that would be written already exists and overwriting was not asked for.
    #[error("{} already exists; refusing to overwrite it (use --force)", path.display())]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// The CA certificate and the CA key do not belong together.
    #[error("the CA key does not match the CA certificate")]
    CaKeyMismatch,
    /// Only one of the CA certificate and CA key exists.
    #[error("{} exists but {} does not; restore it, or use --force to make a new CA", present.display(), missing.display())]
    CaIncomplete {
        /// The file that exists.
        present: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },
    /// rcgen could not make, sign or parse a certificate or key.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be read, created or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A certificate does not name exactly one node (`node-<id>.ckpt`).
    #[error("the certificate does not name a node (its only SAN must be node-<id>.ckpt)")]
    MissingNodeId,
    /// A PEM input holds no certificate.
    #[error("no certificate in the PEM input")]
    MissingCertificate,
    /// A PEM input holds no usable private key.
    #[error("no private key in the PEM input: {0}")]
    MissingKey(rustls_pki_types::pem::Error),
    /// quinn refused the rustls configuration (it lacks the QUIC initial cipher suite).
    #[error(transparent)]
    NoInitialCipherSuite(#[from] NoInitialCipherSuite),
    /// A transport setting is out of the range QUIC can encode.
    #[error("transport setting {0} is out of range")]
    OutOfRange(&'static str),
    /// rustls refused a certificate, a key or a configuration.
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
    /// A certificate verifier could not be built (for instance, no CA root).
    #[error(transparent)]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// The DNS name a node's certificate carries and a dialer asks for: `node-<id>.ckpt`.
pub fn server_name(node: u32) -> String {
    format!("node-{node}.ckpt")
}

/// The node id a certificate (DER) names, or `None`.
///
/// The certificate's subject alternative names must be exactly one DNS name of the form
/// [`server_name`] produces (decimal id, no leading zeros). This does not verify the
/// certificate: the TLS handshake does that.
pub fn node_id_from_cert(der: &[u8]) -> Option<u32> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let [GeneralName::DNSName(name)] = san.value.general_names.as_slice() else {
        return None;
    };
    let id: u32 = name
        .strip_prefix("node-")?
        .strip_suffix(".ckpt")?
        .parse()
        .ok()?;
    // Canonical form only: rejects "+7", "07" and the like.
    (server_name(id) == *name).then_some(id)
}

/// Path of node `node`'s certificate inside a certificate directory.
pub fn node_cert_path(dir: &Path, node: u32) -> PathBuf {
    dir.join(format!("node-{node}.pem"))
}

/// Path of node `node`'s private key inside a certificate directory.
pub fn node_key_path(dir: &Path, node: u32) -> PathBuf {
    dir.join(format!("node-{node}.key"))
}

/// A cluster CA: its certificate and its signing key.
pub struct ClusterCa {
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl ClusterCa {
    /// Loads a CA from its certificate and key in PEM, checking that they belong together.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        let key = KeyPair::from_pem(key_pem)?;
        let cert_der = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .next()
            .ok_or(TlsError::MissingCertificate)?
            .map_err(|_| TlsError::MissingCertificate)?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|_| rcgen::Error::CouldNotParseCertificate)?;
        if parsed
            .tbs_certificate
            .subject_pki
            .subject_public_key
            .data
            .as_ref()
            != key.public_key_raw()
        {
            return Err(TlsError::CaKeyMismatch);
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            cert_der,
            issuer,
        })
    }

    /// Loads a CA from `ca.pem` and `ca.key` in `dir`.
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        let cert = read_to_string(&dir.join(CA_CERT_FILE))?;
        let key = read_to_string(&dir.join(CA_KEY_FILE))?;
        Self::from_pem(&cert, &key)
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key, PEM (PKCS#8). Keep it secret.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The trust roots made of this CA alone.
    pub fn roots(&self) -> Result<CaRoots, TlsError> {
        CaRoots::from_der(self.cert_der.clone())
    }
}

impl fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterCa").finish_non_exhaustive()
    }
}

/// Makes a new cluster CA: an Ed25519 key and a self-signed CA certificate.
///
/// The certificate keeps rcgen's default validity (1975 to 4096): the cluster has no
/// rotation procedure yet, and an expiring CA would silently split it.
pub fn generate_ca() -> Result<ClusterCa, TlsError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key)?;
    let cert_der = cert.der().clone();
    Ok(ClusterCa {
        cert_pem: cert.pem(),
        cert_der,
        issuer: Issuer::new(params, key),
    })
}

/// A node's certificate and private key, as issued by [`issue_node_cert`].
#[derive(Clone)]
pub struct NodeMaterial {
    /// The node id the certificate names.
    pub node: u32,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM (PKCS#8). Keep it secret.
    pub key_pem: String,
}

impl NodeMaterial {
    /// The identity a mesh presents with this certificate.
    pub fn identity(&self) -> Result<NodeIdentity, TlsError> {
        NodeIdentity::from_pem(&self.cert_pem, &self.key_pem)
    }
}

impl fmt::Debug for NodeMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeMaterial")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// Issues node `node` a certificate signed by `ca`, with a fresh Ed25519 key.
///
/// The certificate's only subject alternative name is [`server_name`]`(node)`, and it is
/// good for both TLS server and client authentication.
pub fn issue_node_cert(ca: &ClusterCa, node: u32) -> Result<NodeMaterial, TlsError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
    let name = server_name(node);
    let mut params = CertificateParams::new(vec![name.clone()])?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &ca.issuer)?;
    Ok(NodeMaterial {
        node,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// What [`write_cluster_certs`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenCerts {
    /// The CA already existed in the directory and signed the new certificates.
    pub ca_reused: bool,
    /// The files written, in order.
    pub files: Vec<PathBuf>,
}

/// Writes a cluster's certificates into `dir` (created if missing).
///
/// If `dir` holds both `ca.pem` and `ca.key`, that CA is reused (so a node can be added
/// later), otherwise a new CA is made and written. Then each node in `nodes` gets
/// `node-<id>.pem` and `node-<id>.key`. Keys are mode 0600, certificates 0644.
///
/// Files are created exclusively: without `force`, an existing node file (or a CA with
/// only one of its two files present) is an error, checked before anything is written.
/// `force` overwrites node files and replaces an incomplete CA; it never replaces a
/// complete CA (delete `ca.pem` and `ca.key` for that, and reissue every node).
pub fn write_cluster_certs(
    dir: &Path,
    nodes: &[u32],
    force: bool,
) -> Result<WrittenCerts, TlsError> {
    fs::create_dir_all(dir).map_err(|source| TlsError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let ca_cert = dir.join(CA_CERT_FILE);
    let ca_key = dir.join(CA_KEY_FILE);
    let nodes: BTreeSet<u32> = nodes.iter().copied().collect();

    let ca_reused = match (exists(&ca_cert)?, exists(&ca_key)?) {
        (true, true) => true,
        (false, false) => false,
        (true, false) | (false, true) if force => false,
        (true, false) => {
            return Err(TlsError::CaIncomplete {
                present: ca_cert,
                missing: ca_key,
            });
        }
        (false, true) => {
            return Err(TlsError::CaIncomplete {
                present: ca_key,
                missing: ca_cert,
            });
        }
    };
    if !force {
        for &node in &nodes {
            for path in [node_cert_path(dir, node), node_key_path(dir, node)] {
                if exists(&path)? {
                    return Err(TlsError::AlreadyExists { path });
                }
            }
        }
    }

    let mut files = Vec::new();
    let ca = if ca_reused {
        ClusterCa::load(dir)?
    } else {
        let ca = generate_ca()?;
        write_file(&ca_key, ca.key_pem().as_bytes(), 0o600, force)?;
        files.push(ca_key);
        write_file(&ca_cert, ca.cert_pem().as_bytes(), 0o644, force)?;
        files.push(ca_cert);
        ca
    };
    for node in nodes {
        let material = issue_node_cert(&ca, node)?;
        let key = node_key_path(dir, node);
        write_file(&key, material.key_pem.as_bytes(), 0o600, force)?;
        files.push(key);
        let cert = node_cert_path(dir, node);
        write_file(&cert, material.cert_pem.as_bytes(), 0o644, force)?;
        files.push(cert);
    }
    Ok(WrittenCerts { ca_reused, files })
}

/// The CA roots a node trusts: in practice the cluster CA alone.
#[derive(Debug, Clone)]
pub struct CaRoots {
    store: Arc<RootCertStore>,
}

impl CaRoots {
    /// Roots from one DER certificate.
    pub fn from_der(cert: CertificateDer<'static>) -> Result<Self, TlsError> {
        let mut store = RootCertStore::empty();
        store.add(cert)?;
        Ok(Self {
            store: Arc::new(store),
        })
    }

    /// Roots from every certificate in a PEM input (at least one).
    pub fn from_pem(pem: &str) -> Result<Self, TlsError> {
        let mut store = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            store.add(cert.map_err(|_| TlsError::MissingCertificate)?)?;
        }
        if store.is_empty() {
            return Err(TlsError::MissingCertificate);
        }
        Ok(Self {
            store: Arc::new(store),
        })
    }

    /// Roots from a PEM file, such as `ca.pem`.
    pub fn load(path: &Path) -> Result<Self, TlsError> {
        Self::from_pem(&read_to_string(path)?)
    }
}

/// A node's own certificate chain and private key, as presented to peers.
pub struct NodeIdentity {
    node: u32,
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl NodeIdentity {
    /// Parses a certificate chain (leaf first) and a private key from PEM; the node id is
    /// the one the leaf certificate names.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        let cert_chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| TlsError::MissingCertificate)?;
        let leaf = cert_chain.first().ok_or(TlsError::MissingCertificate)?;
        let node = node_id_from_cert(leaf).ok_or(TlsError::MissingNodeId)?;
        let key =
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(TlsError::MissingKey)?;
        Ok(Self {
            node,
            cert_chain,
            key,
        })
    }

    /// Loads a certificate chain and key from PEM files.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        Self::from_pem(&read_to_string(cert_path)?, &read_to_string(key_path)?)
    }

    /// Loads node `node`'s files from a certificate directory, checking that the
    /// certificate names that node.
    pub fn load_node(dir: &Path, node: u32) -> Result<Self, TlsError> {
        let identity = Self::load(&node_cert_path(dir, node), &node_key_path(dir, node))?;
        if identity.node != node {
            return Err(TlsError::MissingNodeId);
        }
        Ok(identity)
    }

    /// The node id the certificate names.
    pub fn node(&self) -> u32 {
        self.node
    }

    /// The certificate chain, leaf first.
    pub fn cert_chain(&self) -> &[CertificateDer<'static>] {
        &self.cert_chain
    }
}

impl Clone for NodeIdentity {
    fn clone(&self) -> Self {
        Self {
            node: self.node,
            cert_chain: self.cert_chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// QUIC transport settings of the node-to-node connections (from the cluster file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportSettings {
    /// Interval of keep-alive packets on an otherwise idle connection.
    pub keep_alive: Duration,
    /// A connection that hears nothing for this long is lost.
    pub idle_timeout: Duration,
    /// The round-trip time assumed before one is measured.
    pub initial_rtt: Duration,
    /// Bytes a peer may send on one stream beyond what was read.
    pub stream_receive_window: u64,
    /// Bytes a peer may send on all streams of a connection beyond what was read.
    pub receive_window: u64,
    /// Bytes this side may have in flight unacknowledged on one connection.
    pub send_window: u64,
}

impl Default for TransportSettings {
    /// 250 ms keep-alive, 1 s idle timeout, 10 ms initial RTT, 16 MiB stream window and
    /// 32 MiB connection windows.
    fn default() -> Self {
        Self {
            keep_alive: Duration::from_millis(250),
            idle_timeout: Duration::from_secs(1),
            initial_rtt: Duration::from_millis(10),
            stream_receive_window: 16 << 20,
            receive_window: 32 << 20,
            send_window: 32 << 20,
        }
    }
}

impl TransportSettings {
    /// The quinn transport configuration these settings make.
    ///
    /// It allows the peer **no** streams of either kind: the mesh grants a dialer its one
    /// unidirectional stream only after checking its identity
    /// (`Connection::set_max_concurrent_uni_streams`), so a dialer's stream opens only once
    /// the accepting node has accepted it. Datagrams are off.
    pub fn quinn_transport_config(&self) -> Result<quinn::TransportConfig, TlsError> {
        let varint = |value: u64, name| {
            quinn::VarInt::from_u64(value).map_err(|_| TlsError::OutOfRange(name))
        };
        let mut config = quinn::TransportConfig::default();
        config
            .keep_alive_interval(Some(self.keep_alive))
            .max_idle_timeout(Some(
                quinn::IdleTimeout::try_from(self.idle_timeout)
                    .map_err(|_| TlsError::OutOfRange("idle_timeout"))?,
            ))
            .initial_rtt(self.initial_rtt)
            .stream_receive_window(varint(self.stream_receive_window, "stream_receive_window")?)
            .receive_window(varint(self.receive_window, "receive_window")?)
            .send_window(self.send_window)
            .max_concurrent_bidi_streams(quinn::VarInt::from_u32(0))
            .max_concurrent_uni_streams(quinn::VarInt::from_u32(0))
            .datagram_receive_buffer_size(None);
        Ok(config)
    }
}

/// The explicit crypto provider of every configuration here.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The QUIC server configuration of a node: TLS 1.3, ALPN [`ALPN`], presenting
/// `identity`, and requiring a client certificate that chains to `roots`.
///
/// Session resumption is off, so every connection verifies the full chain. Connection
/// migration is off: nodes do not roam.
pub fn quinn_server_config(
    identity: &NodeIdentity,
    roots: &CaRoots,
    transport: &TransportSettings,
) -> Result<quinn::ServerConfig, TlsError> {
    quinn_server_config_with(provider(), identity, roots, transport)
}

/// [`quinn_server_config`] with another crypto provider (a simulation's seeded one).
pub fn quinn_server_config_with(
    provider: Arc<CryptoProvider>,
    identity: &NodeIdentity,
    roots: &CaRoots,
    transport: &TransportSettings,
) -> Result<quinn::ServerConfig, TlsError> {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(roots.store.clone(), provider.clone())
            .build()?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.cert_chain.clone(), identity.key.clone_key())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.session_storage = Arc::new(NoServerSessionStorage {});
    tls.send_tls13_tickets = 0;
    let crypto = QuicServerConfig::try_from(tls)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(transport.quinn_transport_config()?));
    config.migration(false);
    Ok(config)
}

/// The QUIC client configuration of a node: TLS 1.3, ALPN [`ALPN`], presenting `identity`
/// as its client certificate, and accepting only servers that chain to `roots`.
///
/// The server name a connection is opened with ([`server_name`]) is checked against the
/// server's certificate, so dialing node 3 and reaching node 2 fails the handshake.
pub fn quinn_client_config(
    identity: &NodeIdentity,
    roots: &CaRoots,
    transport: &TransportSettings,
) -> Result<quinn::ClientConfig, TlsError> {
    quinn_client_config_with(provider(), identity, roots, transport)
}

/// [`quinn_client_config`] with another crypto provider (a simulation's seeded one).
pub fn quinn_client_config_with(
    provider: Arc<CryptoProvider>,
    identity: &NodeIdentity,
    roots: &CaRoots,
    transport: &TransportSettings,
) -> Result<quinn::ClientConfig, TlsError> {
    let verifier =
        WebPkiServerVerifier::builder_with_provider(roots.store.clone(), provider.clone())
            .build()?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_webpki_verifier(verifier)
        .with_client_auth_cert(identity.cert_chain.clone(), identity.key.clone_key())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.resumption = Resumption::disabled();
    tls.enable_early_data = false;
    let crypto = QuicClientConfig::try_from(tls)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport.quinn_transport_config()?));
    Ok(config)
}

fn read_to_string(path: &Path) -> Result<String, TlsError> {
    fs::read_to_string(path).map_err(|source| TlsError::Io {
        path: path.to_owned(),
        source,
    })
}

fn exists(path: &Path) -> Result<bool, TlsError> {
    path.try_exists().map_err(|source| TlsError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Writes `contents` to a new file of mode `mode`; with `force`, an existing file is
/// truncated and given `mode`.
fn write_file(path: &Path, contents: &[u8], mode: u32, force: bool) -> Result<(), TlsError> {
    let io_err = |source| TlsError::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = OpenOptions::new();
    options.write(true).mode(mode);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            TlsError::AlreadyExists {
                path: path.to_owned(),
            }
        } else {
            io_err(e)
        }
    })?;
    if force {
        file.set_permissions(Permissions::from_mode(mode))
            .map_err(io_err)?;
    }
    file.write_all(contents).map_err(io_err)?;
    file.sync_all().map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_name_is_decimal_node_dot_ckpt() {
        assert_eq!(server_name(0), "node-0.ckpt");
        assert_eq!(server_name(4_294_967_295), "node-4294967295.ckpt");
    }

    #[test]
    fn issued_certificate_names_its_node() {
        let ca = generate_ca().unwrap();
        let sut = issue_node_cert(&ca, 42).unwrap();
        let identity = sut.identity().unwrap();
        assert_eq!(identity.node(), 42);
        assert_eq!(node_id_from_cert(&identity.cert_chain()[0]), Some(42));
    }

    #[test]
    fn ca_reloaded_from_pem_issues_certificates() {
        let ca = generate_ca().unwrap();
        let sut = ClusterCa::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
        let node = issue_node_cert(&sut, 3).unwrap();
        assert_eq!(node.identity().unwrap().node(), 3);
    }

    #[test]
    fn ca_with_another_key_is_refused() {
        let ca = generate_ca().unwrap();
        let other = generate_ca().unwrap();
        let err = ClusterCa::from_pem(ca.cert_pem(), &other.key_pem()).unwrap_err();
        assert!(matches!(err, TlsError::CaKeyMismatch), "{err}");
    }

    /// A fresh empty directory under the system temp directory.
    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ckpt-tls-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn write_cluster_certs_writes_private_keys_refuses_overwrite_and_reuses_the_ca() {
        let dir = scratch_dir("write");
        let sut = write_cluster_certs(&dir, &[1, 2, 2], false).unwrap();
        assert!(!sut.ca_reused);
        assert_eq!(sut.files.len(), 6);
        for key in [
            dir.join(CA_KEY_FILE),
            node_key_path(&dir, 1),
            node_key_path(&dir, 2),
        ] {
            assert_eq!(mode(&key), 0o600, "{}", key.display());
        }
        let ca_pem = fs::read_to_string(dir.join(CA_CERT_FILE)).unwrap();

        let err = write_cluster_certs(&dir, &[3, 2], false).unwrap_err();
        assert!(matches!(err, TlsError::AlreadyExists { .. }), "{err}");
        assert!(
            !node_cert_path(&dir, 3).exists(),
            "nothing is written after a refusal"
        );

        let added = write_cluster_certs(&dir, &[3], false).unwrap();
        assert!(added.ca_reused);
        assert_eq!(
            added.files,
            vec![node_key_path(&dir, 3), node_cert_path(&dir, 3)]
        );
        assert_eq!(fs::read_to_string(dir.join(CA_CERT_FILE)).unwrap(), ca_pem);
        assert_eq!(NodeIdentity::load_node(&dir, 3).unwrap().node(), 3);

        fs::set_permissions(node_key_path(&dir, 2), Permissions::from_mode(0o644)).unwrap();
        let forced = write_cluster_certs(&dir, &[2], true).unwrap();
        assert!(forced.ca_reused);
        assert_eq!(mode(&node_key_path(&dir, 2)), 0o600);
        assert_eq!(NodeIdentity::load_node(&dir, 2).unwrap().node(), 2);

        // Files named for node 5 that hold node 2's certificate are refused as node 5.
        fs::copy(node_cert_path(&dir, 2), node_cert_path(&dir, 5)).unwrap();
        fs::copy(node_key_path(&dir, 2), node_key_path(&dir, 5)).unwrap();
        assert!(NodeIdentity::load_node(&dir, 5).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn write_cluster_certs_refuses_a_ca_without_its_key() {
        let dir = scratch_dir("half-ca");
        write_cluster_certs(&dir, &[], false).unwrap();
        fs::remove_file(dir.join(CA_KEY_FILE)).unwrap();
        let err = write_cluster_certs(&dir, &[1], false).unwrap_err();
        assert!(matches!(err, TlsError::CaIncomplete { .. }), "{err}");
        let forced = write_cluster_certs(&dir, &[1], true).unwrap();
        assert!(!forced.ca_reused);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn node_id_from_cert_rejects_non_canonical_and_extra_names() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        for sans in [
            vec!["node-07.ckpt".to_owned()],
            vec!["node-+7.ckpt".to_owned()],
            vec!["node-7.ckpt".to_owned(), "node-8.ckpt".to_owned()],
            vec!["node-4294967296.ckpt".to_owned()],
            vec!["node-7.ckpt.example".to_owned()],
            vec![],
        ] {
            let cert = CertificateParams::new(sans.clone())
                .unwrap()
                .self_signed(&key)
                .unwrap();
            assert_eq!(node_id_from_cert(cert.der()), None, "{sans:?}");
        }
        assert_eq!(node_id_from_cert(b"not a certificate"), None);
    }
}
