//! The snapshot: everything the proxy needs to serve requests, as immutable
//! plain data built by `translate`. No tokio, no kube, no I/O.

pub mod conditions;
pub mod filters;
pub mod pathnorm;
pub mod redirect;
pub mod rewrite;
pub mod routing;
pub mod rule_origin;

use crate::identity::jwks::Document;
pub use crate::identity::oidc::IdpConfig;
use crate::identity::{IssuerFormat, KeySet};
use crate::policy::Program;
use http::{HeaderName, HeaderValue};
use routing::{HostMatch, PathMatch, RouteTable};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// Default upstream response timeout (Pomerium's default route timeout).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default idle timeout of proxied streams.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Default `timeout_idle` (Pomerium's): idle client connections are closed
/// after five minutes.
pub const DEFAULT_CONNECTION_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// The whole serving configuration at one point in time.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases with every published snapshot.
    pub generation: u64,
    /// Each route behind its own `Arc`: a snapshot translated after a
    /// change shares every route the change did not touch with the one
    /// before it.
    pub routes: Vec<Arc<Route>>,
    /// The [`digest_of`] each route in `routes`, made when the route was
    /// built: the fingerprint hashes these instead of every route's text.
    pub route_digests: Vec<[u8; 32]>,
    /// [`block_digest`] of the digests of each block of
    /// [`DIGEST_BLOCK`] route digests, in input order (what the
    /// fingerprint hashes for the routes).
    pub routes_digest: [u8; 32],
    /// The routes served on the TLS listener (every config-file and
    /// Ingress route, a Gateway's `HTTPS` listeners).
    pub table: RouteTable,
    /// The routes served on the plain-HTTP listener (a Gateway's `HTTP`
    /// listeners); a request it has no route for is redirected to HTTPS.
    pub plain_table: RouteTable,
    /// The ACME HTTP-01 challenge answers (cert-manager's solver
    /// Ingresses, one exact path each), served on the plain-HTTP listener
    /// without sign-in before anything else there.
    pub acme_challenges: RouteTable,
    /// The route tables of the Gateway ports, by the proxy port each is
    /// served on (its Gateway's routes only).
    pub gateway_tables: BTreeMap<u16, GatewayTable>,
    pub tls: TlsConfig,
    pub identity: IdentityConfig,
    pub auth: AuthConfig,
    /// Client connections with no request in flight for this long are
    /// closed (`timeout_idle`).
    pub connection_idle_timeout: Duration,
    /// Seals and opens session cookies (derived from `auth.cookie_secret`).
    pub sessions: Arc<crate::identity::session::SessionCodec>,
    /// Some route passes the IdP's tokens upstream, so sessions keep them.
    pub keep_idp_tokens: bool,
    /// Problems found while translating, one per bad object or field.
    pub diagnostics: Vec<Diagnostic>,
}

impl Snapshot {
    /// Looks up the route for a normalised host and path.
    pub fn route(&self, host: &str, path: &str) -> Option<&Route> {
        self.table
            .lookup(host, path)
            .and_then(|i| self.routes.get(i).map(AsRef::as_ref))
    }
    /// Looks up the route for a request, checking routes' method, header
    /// and query conditions too.
    pub fn route_request(
        &self,
        host: &str,
        path: &str,
        request: &conditions::RequestView<'_>,
    ) -> Option<&Route> {
        self.table
            .lookup_request(host, path, Some(request))
            .and_then(|i| self.routes.get(i).map(AsRef::as_ref))
    }
    /// The route table of the listener kind `scheme`.
    pub fn table_for(&self, scheme: routing::Scheme) -> &RouteTable {
        match scheme {
            routing::Scheme::Tls => &self.table,
            routing::Scheme::Plain => &self.plain_table,
        }
    }
    /// The route table `at` names: a shared listener's, or a Gateway
    /// port's (`None` when this snapshot serves no Gateway port there).
    pub fn table_at(&self, at: routing::TableRef) -> Option<&RouteTable> {
        match at {
            routing::TableRef::Shared(scheme) => Some(self.table_for(scheme)),
            routing::TableRef::GatewayPort(p) => self.gateway_tables.get(&p).map(|t| &t.table),
        }
    }
    /// [`Snapshot::route_request`] in the table `at` names (a listener
    /// kind, or a Gateway port).
    pub fn route_on(
        &self,
        at: impl Into<routing::TableRef>,
        host: &str,
        path: &str,
        request: &conditions::RequestView<'_>,
    ) -> Option<&Route> {
        let at = at.into();
        if at == routing::TableRef::Shared(routing::Scheme::Plain)
            && let Some(r) = self.acme_challenge(host, path)
        {
            return Some(r);
        }
        self.table_at(at)?
            .lookup_request(host, path, Some(request))
            .and_then(|i| self.routes.get(i).map(AsRef::as_ref))
    }
    /// The ACME HTTP-01 challenge answer for `host` and `path`, if a
    /// solver serves exactly that.
    pub fn acme_challenge(&self, host: &str, path: &str) -> Option<&Route> {
        self.acme_challenges
            .lookup(host, path)
            .and_then(|i| self.routes.get(i).map(AsRef::as_ref))
    }
    /// Whether the plain-HTTP listener answers for `host` itself (a route
    /// or 404) rather than redirecting to HTTPS: its table names the host,
    /// or it has a route for any host and the TLS listener's table does not
    /// name this one (an Ingress host stays redirected).
    pub fn plain_http_host(&self, host: &str) -> bool {
        self.plain_table.host_known(host)
            || (self.plain_table.serves_any_host()
                && !self.host_known(host)
                && !self.table.serves_any_host())
    }
    /// Whether the table `at` names may serve `host`: some route of it
    /// names the host or takes every host, or the host is the
    /// authenticate host or the forward-auth host (whose endpoints every
    /// listener answers).
    pub fn serves_host_at(&self, at: routing::TableRef, host: &str) -> bool {
        let Some(table) = self.table_at(at) else {
            return false;
        };
        table.host_known(host)
            || table.serves_any_host()
            || self.auth.authenticate_host.as_deref() == Some(host)
            || self.auth.forward_auth_host.as_deref() == Some(host)
    }
    /// True if the host is served by some route (or is the authenticate host).
    pub fn host_known(&self, host: &str) -> bool {
        self.table.host_known(host) || self.auth.authenticate_host.as_deref() == Some(host)
    }
    /// A content fingerprint that ignores the generation, used to publish
    /// only when something changed: the SHA-256 of every route's digest
    /// (made when the route was built) and of the `Debug` text of the rest.
    pub fn fingerprint(&self) -> [u8; 32] {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(self.routes_digest);
        h.update(digest_of(&(
            // Gateway ports without routes, and their listeners' hostnames.
            self.gateway_tables
                .values()
                .map(|t| (&t.port, &t.hostnames))
                .collect::<Vec<_>>(),
            &self.diagnostics,
            &self.auth,
            &self.identity.jwks.etag,
            &self.tls.fingerprint,
            self.connection_idle_timeout,
        )));
        h.finalize().into()
    }
}

/// How many route digests one block of [`block_digest`] holds.
pub const DIGEST_BLOCK: usize = 256;

/// The SHA-256 of digests in order: of one block of [`DIGEST_BLOCK`]
/// route digests, and of the blocks' digests (the routes' digest, so a
/// change of one route hashes its block and the block digests again, not
/// every route's).
pub fn block_digest<'a>(digests: impl IntoIterator<Item = &'a [u8; 32]>) -> [u8; 32] {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for d in digests {
        h.update(d);
    }
    h.finalize().into()
}

/// The SHA-256 of a value's `Debug` text, hashed as it is written (the
/// text itself, kilobytes for a route, is never held).
pub fn digest_of(value: &impl std::fmt::Debug) -> [u8; 32] {
    use sha2::Digest as _;
    use std::fmt::Write as _;
    struct Hasher(sha2::Sha256);
    impl std::fmt::Write for Hasher {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0.update(s.as_bytes());
            Ok(())
        }
    }
    let mut h = Hasher(sha2::Sha256::new());
    let _ = write!(h, "{value:?}");
    h.0.finalize().into()
}

/// The routes served on one Gateway port.
#[derive(Debug, Clone)]
pub struct GatewayTable {
    /// The Gateway port: its Gateway, the port its listeners name, and
    /// whether TLS is terminated on it.
    pub port: routing::GatewayPort,
    pub table: RouteTable,
    /// The hostnames its listeners name (claimed in `table`).
    pub hostnames: Vec<routing::HostMatch>,
}

/// Signing keys and the pre-serialised documents derived from them.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub keys: Arc<KeySet>,
    /// JWKS of every published key (configured plus retired-but-valid).
    pub jwks: Document,
    pub issuer_format: IssuerFormat,
}

/// Authentication settings (sessions and the IdP).
#[derive(Clone, PartialEq, Default)]
pub struct AuthConfig {
    /// `authenticate_service_url`, e.g. `https://authenticate.example.com`.
    pub authenticate_url: Option<String>,
    /// Host of the authenticate service (served by this proxy).
    pub authenticate_host: Option<String>,
    /// Host of `forward_auth_url`: answers other proxies' forward-auth
    /// checks (served by this proxy).
    pub forward_auth_host: Option<String>,
    pub idp: Option<IdpConfig>,
    pub cookie_name: String,
    pub cookie_expire: Duration,
    /// Key material for sealing cookies (32 bytes).
    pub cookie_secret: [u8; 32],
    /// Key material for signing hand-offs between hosts (32 bytes).
    pub shared_secret: [u8; 32],
    /// `/.pomerium/jwt` is served (runtime flag `pomerium_jwt_endpoint`).
    pub jwt_endpoint: bool,
    /// The routes' own OAuth clients (`idp_client_id`), by [`RouteIdp::id`]:
    /// what a sign-in link may name.
    pub route_idps: BTreeMap<String, Arc<IdpConfig>>,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use sha2::Digest;
        // Secrets appear only as a short digest, so a change is visible
        // without the value ever being printed.
        let digest = |b: &[u8]| hex::encode(&sha2::Sha256::digest(b)[..4]);
        f.debug_struct("AuthConfig")
            .field("authenticate_url", &self.authenticate_url)
            .field("forward_auth_host", &self.forward_auth_host)
            .field("idp", &self.idp)
            .field("cookie_name", &self.cookie_name)
            .field("cookie_expire", &self.cookie_expire)
            .field("cookie_secret", &digest(&self.cookie_secret))
            .field("shared_secret", &digest(&self.shared_secret))
            .field("jwt_endpoint", &self.jwt_endpoint)
            .field("route_idps", &self.route_idps)
            .finish()
    }
}

/// A route's own OAuth client at the global identity provider.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteIdp {
    /// Names the client in sign-in links and sessions: the start of the
    /// SHA-256 of its client id (hex), never the secret.
    pub id: String,
    /// The global provider's settings with this client's id and secret.
    pub config: Arc<IdpConfig>,
}

impl RouteIdp {
    /// The client `client_id` / `client_secret` at the provider `global`.
    pub fn new(global: &IdpConfig, client_id: &str, client_secret: &str) -> RouteIdp {
        use sha2::Digest as _;
        RouteIdp {
            id: hex::encode(&sha2::Sha256::digest(client_id.as_bytes())[..8]),
            config: Arc::new(IdpConfig {
                client_id: client_id.to_string(),
                client_secret: client_secret.to_string(),
                ..global.clone()
            }),
        }
    }
}

/// Server certificates for the HTTPS listener.
#[derive(Clone, Default)]
pub struct TlsConfig {
    /// Certificates by exact lower-case DNS name.
    pub by_name: HashMap<String, Arc<rustls::sign::CertifiedKey>>,
    /// Certificates by wildcard suffix (`*.example.com` → `example.com`).
    pub by_wildcard: HashMap<String, Arc<rustls::sign::CertifiedKey>>,
    /// Served when no name matches (or the client sent no SNI).
    pub default: Option<Arc<rustls::sign::CertifiedKey>>,
    /// Exact names owned by another namespace than the wildcard certificate
    /// covering them: they get the default certificate, never that one.
    pub not_by_wildcard: std::collections::HashSet<String>,
    /// Expiry (unix seconds) per certificate, labelled by its first name.
    pub expiry: Vec<(String, i64)>,
    /// Changes when any certificate changes.
    pub fingerprint: String,
    /// Handshakes that ask for a client certificate (optionally): those for
    /// the hosts of routes with `tls_downstream_client_ca`. `None`: no route
    /// has one, and no handshake asks.
    pub client_auth: Option<ClientAuthNames>,
}

/// The SNI names whose handshakes ask for a client certificate, and the CA
/// names offered as hints. The handshake accepts any certificate whose key
/// the client proves it holds; each route then checks the chain against its
/// own CA ([`ClientCa::verify`]).
#[derive(Clone, Debug, Default)]
pub struct ClientAuthNames {
    /// Exact lower-case names.
    pub by_name: std::collections::HashSet<String>,
    /// Wildcard suffixes (`*.example.com` → `example.com`).
    pub by_wildcard: std::collections::HashSet<String>,
    /// A route for every host has a CA: every handshake asks.
    pub any: bool,
    /// Subjects of every route CA, offered in the CertificateRequest.
    pub subjects: Vec<rustls::DistinguishedName>,
    /// `downstream_mtls` with `enforcement: reject_connection`: every
    /// handshake requires a certificate chaining to one of these (the
    /// global CA and every route's).
    pub required: Option<Arc<rustls::RootCertStore>>,
    /// Changes when the names or the CAs change (a short digest).
    pub fingerprint: String,
}

impl ClientAuthNames {
    /// Whether a handshake for this SNI name asks for a client certificate.
    pub fn covers(&self, sni: Option<&str>) -> bool {
        if self.any {
            return true;
        }
        let Some(name) = sni else {
            return false;
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.by_name.contains(&name)
            || name
                .split_once('.')
                .is_some_and(|(_, parent)| self.by_wildcard.contains(parent))
    }
}

/// The CA bundle a route's client certificates must chain to
/// (`tls_downstream_client_ca`, or `downstream_mtls`), with its verifier
/// built once. Cheap to clone: routes sharing a CA share one.
#[derive(Clone)]
pub struct ClientCa(Arc<ClientCaInner>);

struct ClientCaInner {
    pem: String,
    /// Hex of the first 8 bytes of the PEM's SHA-256: what `Debug` (and so
    /// the snapshot fingerprint) shows.
    digest: String,
    subjects: Vec<rustls::DistinguishedName>,
    roots: Arc<rustls::RootCertStore>,
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
}

impl ClientCa {
    /// Parses a PEM bundle: every certificate must parse and there must be
    /// at least one.
    pub fn parse(pem: &str) -> Result<Self, OptionError> {
        Self::parse_as("tls_downstream_client_ca", pem)
    }

    /// [`ClientCa::parse`], with errors naming `key`.
    pub fn parse_as(key: &str, pem: &str) -> Result<Self, OptionError> {
        let err = |message: String| OptionError::ClientCa {
            key: key.to_string(),
            message,
        };
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        use sha2::Digest;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| err(e.to_string()))?;
            roots.add(cert).map_err(|e| err(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(err("no certificates found".to_string()));
        }
        let subjects = roots.subjects();
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider)
                .build()
                .map_err(|e| err(e.to_string()))?;
        Ok(ClientCa(Arc::new(ClientCaInner {
            pem: pem.to_string(),
            digest: hex::encode(&sha2::Sha256::digest(pem.as_bytes())[..8]),
            subjects,
            roots,
            verifier,
        })))
    }

    /// The PEM bundle as configured.
    pub fn pem(&self) -> &str {
        &self.0.pem
    }

    /// A short digest of the bundle (changes when it does).
    pub fn digest(&self) -> &str {
        &self.0.digest
    }

    /// Subjects of its certificates (handshake hints).
    pub fn subjects(&self) -> &[rustls::DistinguishedName] {
        &self.0.subjects
    }

    /// Its certificates as trust anchors.
    pub fn roots(&self) -> &rustls::RootCertStore {
        &self.0.roots
    }

    /// Checks a presented chain (leaf first) against this CA at `now`.
    pub fn verify(
        &self,
        chain: &[rustls_pki_types::CertificateDer<'_>],
        now: rustls_pki_types::UnixTime,
    ) -> Result<(), ClientCertError> {
        let (leaf, intermediates) = chain.split_first().ok_or(ClientCertError::Missing)?;
        self.0
            .verifier
            .verify_client_cert(leaf, intermediates, now)
            .map(|_| ())
            .map_err(ClientCertError::Refused)
    }
}

impl PartialEq for ClientCa {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.pem == other.0.pem
    }
}

impl std::fmt::Debug for ClientCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ClientCa").field(&self.0.digest).finish()
    }
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("names", &self.by_name.len())
            .field("wildcards", &self.by_wildcard.len())
            .field("not_by_wildcard", &self.not_by_wildcard.len())
            .field("fingerprint", &self.fingerprint)
            .field(
                "client_auth",
                &self.client_auth.as_ref().map(|c| &c.fingerprint),
            )
            .finish()
    }
}

impl TlsConfig {
    /// The certificate for an SNI name.
    pub fn resolve(&self, sni: Option<&str>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        if let Some(name) = sni {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if let Some(c) = self.by_name.get(&name) {
                return Some(c.clone());
            }
            if let Some((_, parent)) = name.split_once('.')
                && !self.not_by_wildcard.contains(&name)
                && let Some(c) = self.by_wildcard.get(parent)
            {
                return Some(c.clone());
            }
        }
        self.default.clone()
    }
}

/// How the proxy speaks to an upstream: the scheme of its `to` URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UpstreamScheme {
    /// `http`: HTTP/1.1 in clear text.
    Http,
    /// `https`: TLS, HTTP/1.1 or HTTP/2 as negotiated.
    Https,
    /// `h2c`: HTTP/2 in clear text (prior knowledge).
    H2c,
}

impl UpstreamScheme {
    /// The scheme named in a `to` URL (`http`, `https` or `h2c`), if it is
    /// one of these.
    pub fn from_url_scheme(scheme: &str) -> Option<Self> {
        match scheme {
            "http" => Some(Self::Http),
            "https" => Some(Self::Https),
            "h2c" => Some(Self::H2c),
            _ => None,
        }
    }

    /// The name as written in a `to` URL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
            Self::H2c => "h2c",
        }
    }

    /// The scheme of the URI the proxy sends on the wire: `https` over TLS,
    /// `http` otherwise (h2c included).
    pub fn wire(self) -> &'static str {
        match self {
            Self::Https => "https",
            Self::Http | Self::H2c => "http",
        }
    }

    /// The port a `to` URL without one means.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Https => 443,
            Self::Http | Self::H2c => 80,
        }
    }
}

impl std::fmt::Display for UpstreamScheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A routable destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// How the proxy speaks to it.
    pub scheme: UpstreamScheme,
    /// `host:port`.
    pub authority: String,
    /// Path prefix of the `to` URL (without trailing slash), prepended to requests.
    pub base_path: String,
}

impl Upstream {
    /// Display form, e.g. `http://10.0.0.1:8080`.
    pub fn url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority, self.base_path)
    }
}

/// TLS settings towards an upstream.
#[derive(Clone, PartialEq, Eq, Default, Hash)]
pub struct UpstreamTls {
    pub skip_verify: bool,
    /// PEM CA bundle to trust instead of the public roots.
    pub custom_ca_pem: Option<String>,
    /// SNI / name to verify, if not the upstream host.
    pub server_name: Option<String>,
    /// PEM certificate chain presented when the upstream asks for a client
    /// certificate (`tls_client_cert`).
    pub client_cert_pem: Option<String>,
    /// PEM private key of `client_cert_pem` (`tls_client_key`).
    pub client_key_pem: Option<String>,
    /// Offer only HTTP/1.1 (no ALPN `h2`): a Gateway API HTTPRoute sends
    /// the client's `Host`, which an HTTP/2 upstream would not see (its
    /// `:authority` is the target's address); GRPCRoutes need HTTP/2.
    pub http1_only: bool,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use sha2::Digest;
        // The key appears only as a short digest: a change is visible (the
        // snapshot fingerprint), the key never is.
        let key = self
            .client_key_pem
            .as_ref()
            .map(|k| hex::encode(&sha2::Sha256::digest(k.as_bytes())[..4]));
        f.debug_struct("UpstreamTls")
            .field("skip_verify", &self.skip_verify)
            .field("custom_ca_pem", &self.custom_ca_pem)
            .field("server_name", &self.server_name)
            .field("client_cert_pem", &self.client_cert_pem)
            .field("client_key", &key)
            .field("http1_only", &self.http1_only)
            .finish()
    }
}

/// Why a presented client certificate does not chain to a route's CA.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ClientCertError {
    /// The connection presented no certificate.
    #[error("no client certificate")]
    Missing,
    /// The verifier refused the chain (its message).
    #[error(transparent)]
    Refused(rustls::Error),
}

/// Why a route's upstream TLS settings cannot be used; each message names
/// the setting, never key material.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamTlsError {
    /// `tls_custom_ca` (the reader's message, or no certificate in it).
    #[error("tls_custom_ca: {0}")]
    CustomCa(String),
    /// A client certificate without its key.
    #[error("tls_client_key is missing (tls_client_cert is set)")]
    ClientKeyMissing,
    /// A client key without its certificate.
    #[error("tls_client_cert is missing (tls_client_key is set)")]
    ClientCertMissing,
    /// `tls_client_cert` (the reader's message, or no certificate in it).
    #[error("tls_client_cert: {0}")]
    ClientCert(String),
    /// `tls_client_key` holds no private key.
    #[error("tls_client_key: no private key (PKCS#8, PKCS#1 or SEC1 PEM) found")]
    NoClientKey,
    /// `tls_client_key` is a key the crypto provider cannot use.
    #[error("tls_client_key: not a usable private key")]
    UnusableClientKey,
    /// The client key is not the client certificate's.
    #[error("tls_client_cert and tls_client_key do not match (the key is not the certificate's)")]
    KeyMismatch,
    /// `tls_server_name` is not a DNS name.
    #[error("tls_server_name {0:?} is not a valid DNS name")]
    ServerName(String),
}

/// A client certificate chain and its private key.
pub type ClientAuthCert = (
    Vec<rustls_pki_types::CertificateDer<'static>>,
    rustls_pki_types::PrivateKeyDer<'static>,
);

impl UpstreamTls {
    /// The trust roots of `custom_ca_pem`, if set: every certificate in the
    /// bundle must parse, and there must be at least one.
    pub fn custom_roots(&self) -> Result<Option<rustls::RootCertStore>, UpstreamTlsError> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let Some(pem) = &self.custom_ca_pem else {
            return Ok(None);
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| UpstreamTlsError::CustomCa(e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| UpstreamTlsError::CustomCa(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(UpstreamTlsError::CustomCa("no certificates found".into()));
        }
        Ok(Some(roots))
    }

    /// The client certificate and key to present, if set: the chain must
    /// parse, the key must be a private key the crypto provider can use, and
    /// the two must belong together. Errors name the setting, never the key.
    pub fn client_auth(&self) -> Result<Option<ClientAuthCert>, UpstreamTlsError> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let (cert, key) = match (&self.client_cert_pem, &self.client_key_pem) {
            (None, None) => return Ok(None),
            (Some(_), None) => return Err(UpstreamTlsError::ClientKeyMissing),
            (None, Some(_)) => return Err(UpstreamTlsError::ClientCertMissing),
            (Some(c), Some(k)) => (c, k),
        };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| UpstreamTlsError::ClientCert(e.to_string()))?;
        if chain.is_empty() {
            return Err(UpstreamTlsError::ClientCert(
                "no CERTIFICATE block found".into(),
            ));
        }
        // The parser's message could quote the input: say only what is wrong.
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
            .map_err(|_| UpstreamTlsError::NoClientKey)?;
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let signing = provider
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|_| UpstreamTlsError::UnusableClientKey)?;
        rustls::sign::CertifiedKey::new(chain.clone(), signing)
            .keys_match()
            .map_err(|_| UpstreamTlsError::KeyMismatch)?;
        Ok(Some((chain, key)))
    }

    /// The name to verify on the upstream's certificate, if set.
    pub fn server_name(
        &self,
    ) -> Result<Option<rustls_pki_types::ServerName<'static>>, UpstreamTlsError> {
        self.server_name
            .as_ref()
            .map(|name| {
                rustls_pki_types::ServerName::try_from(name.clone())
                    .map_err(|_| UpstreamTlsError::ServerName(name.clone()))
            })
            .transpose()
    }
}

/// Who may use a route.
#[derive(Clone, Debug)]
pub enum Access {
    /// `allow_public_unauthenticated_access`: no session needed, no policy.
    Public,
    /// Sign-in needed; the program decides.
    Policy(Program),
    /// The route's configuration is invalid: every request is refused.
    Invalid(String),
}

impl PartialEq for Access {
    fn eq(&self, other: &Self) -> bool {
        format!("{self:?}") == format!("{other:?}")
    }
}

/// Whose rules a route follows where Pomerium's (config-file and Ingress
/// routes) and the Gateway API's differ.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Contract {
    /// A route whose configuration is invalid answers 403; a wildcard
    /// host `*.example.com` covers one label.
    #[default]
    Pomerium,
    /// A route whose configuration is invalid answers 500 (the spec's
    /// answer for a rule whose backendRefs or filters are invalid); a
    /// wildcard host covers one or more labels.
    GatewayApi,
}

/// One route: a host and path, where it goes, and who may use it.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    /// Stable identifier (`namespace/name` or `routes[i]`), used in logs and metrics.
    pub id: String,
    pub host: HostMatch,
    pub path: PathMatch,
    /// The proxy listeners the route is reachable on.
    pub listeners: routing::Listeners,
    /// Whose rules it follows (how an invalid route answers).
    pub contract: Contract,
    pub upstreams: Vec<Upstream>,
    pub upstream_tls: UpstreamTls,
    /// Client certificates must chain to this CA (`tls_downstream_client_ca`).
    pub client_ca: Option<ClientCa>,
    /// How a target among `upstreams` is picked.
    pub load_balancing: LoadBalancing,
    pub access: Access,
    /// Where the rules of the program in `access` came from (empty for a
    /// public or invalid route).
    pub rule_origins: Vec<rule_origin::RuleOrigin>,
    pub pass_identity_headers: bool,
    pub allow_websockets: bool,
    /// Other `Upgrade` protocols passed through (lower case; `spdy/3.1` with
    /// `allow_spdy`).
    pub allow_upgrades: Vec<String>,
    /// CORS preflights (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`) pass without sign-in or policy.
    pub cors_allow_preflight: bool,
    /// `Bearer <service-account token>` sent, with the user's
    /// `Impersonate-*` headers, on requests with a session (Kubernetes API
    /// routes); client-sent `Impersonate-*` headers are always removed here.
    pub kubernetes_token: Option<HeaderValue>,
    /// Groups kept in the assertion (`None`: all of them).
    pub jwt_groups_filter: Option<Vec<String>>,
    /// How the assertion's `iss` is written on this route.
    pub issuer_format: IssuerFormat,
    /// What `Authorization: Bearer <token>` means on this route.
    pub bearer_token_format: BearerTokenFormat,
    /// This route's own OAuth client at the identity provider
    /// (`idp_client_id`); `None`: the global one.
    pub idp: Option<RouteIdp>,
    /// Audiences an IdP access token must name here (checked as a JWT
    /// signed by the IdP); empty: the IdP's userinfo endpoint decides.
    pub access_token_audiences: Vec<String>,
    /// `name`, `description` and `logo_url`, as `/.pomerium/routes` lists them.
    pub info: RouteInfo,
    /// Hosts (lower case, no port) a browser signing in here is then
    /// signed in to as well (`depends_on`).
    pub depends_on: Vec<String>,
    /// Active health checks of the targets; a target failing any is tried last.
    pub health_checks: Vec<HealthCheck>,
    /// Below this share (%) of healthy targets, health is ignored (Envoy's
    /// panic mode); 0: failing targets are never used. Default 50.
    pub healthy_panic_threshold: u32,
    /// Passive ejection of targets that keep failing.
    pub outlier_detection: Option<OutlierDetection>,
    /// A bound on requests in flight to the route's targets.
    pub circuit_breaker: Option<CircuitBreaker>,
    /// How the forwarded path is made from the client's.
    pub path_rewrite: rewrite::PathRewrite,
    /// Where the forwarded `Host` comes from.
    pub host_rewrite: rewrite::HostRewrite,
    pub set_request_headers: Vec<(HeaderName, HeaderValue)>,
    /// Request headers whose value holds `${pomerium.jwt}`, filled in per
    /// request with the route's assertion.
    pub templated_request_headers: Vec<(HeaderName, String)>,
    /// Response headers set on forwarded responses (an empty value removes one).
    pub set_response_headers: Vec<(HeaderName, HeaderValue)>,
    pub rewrite_response_headers: Vec<rewrite::ResponseHeaderRewrite>,
    pub remove_request_headers: Vec<HeaderName>,
    /// Request headers appended after any the client sent.
    pub add_request_headers: Vec<(HeaderName, HeaderValue)>,
    /// Response headers appended after any the upstream sent.
    pub add_response_headers: Vec<(HeaderName, HeaderValue)>,
    /// Where copies of requests without a body go (one of them, round robin).
    pub mirror_to: Vec<Upstream>,
    /// Answer with this redirect instead of forwarding.
    pub redirect: Option<redirect::Redirect>,
    /// (header, claim) pairs for `X-Pomerium-Claim-*` style headers.
    pub jwt_claims_headers: Vec<(HeaderName, String)>,
    /// Time to the upstream's response head, per attempt ([`Duration::MAX`]:
    /// none).
    pub timeout: Duration,
    pub idle_timeout: Duration,
    /// The route's behaviour as the proxy applies it, derived from the
    /// fields above by [`Route::compiled`].
    pub compiled: filters::Compiled,
}

impl Route {
    /// The route with its [`filters::Compiled`] form computed from its
    /// fields; route building ends with this.
    pub fn compiled(mut self) -> Route {
        self.compiled = filters::compile(&self);
        self
    }

    /// The OAuth client this route signs in through and whose sessions it
    /// counts: its own ([`RouteIdp::id`]), or the global one (empty).
    pub fn idp_id(&self) -> &str {
        self.idp.as_ref().map_or("", |i| i.id.as_str())
    }

    /// Whether forwarding on this route reads the user's session: for its
    /// policy, the identity headers, a `${pomerium.jwt}` header, Kubernetes
    /// impersonation or session affinity. A public route with none of these
    /// never opens the cookie.
    pub fn uses_session(&self) -> bool {
        matches!(self.access, Access::Policy(_))
            || self.pass_identity_headers
            || !self.templated_request_headers.is_empty()
            || self.kubernetes_token.is_some()
            || self.load_balancing == LoadBalancing::ConsistentHash
    }
}

/// An active health check of a route's targets (Pomerium's
/// `health_checks`, Envoy's `HealthCheck`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HealthCheck {
    /// Between two probes of one target.
    pub interval: Duration,
    /// For one probe.
    pub timeout: Duration,
    /// Failed probes in a row that make a healthy target unhealthy.
    pub unhealthy_threshold: u32,
    /// Passed probes in a row that make an unhealthy target healthy.
    pub healthy_threshold: u32,
    pub probe: Probe,
}

/// Passive health (Pomerium's `outlier_detection`, Envoy's consecutive
/// failure ejection): a target that fails this many requests in a row is
/// tried last for `base_ejection_time` × the times it was ejected (at most
/// `max_ejection_time`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OutlierDetection {
    /// 5xx answers (and failed connections, timeouts) in a row; `None`: off.
    pub consecutive_5xx: Option<u32>,
    /// 502, 503, 504 (and failed connections, timeouts) in a row; `None`: off.
    pub consecutive_gateway_failure: Option<u32>,
    pub base_ejection_time: Duration,
    pub max_ejection_time: Duration,
    /// At most this share of the route's targets is ejected at once (at
    /// least one always may be).
    pub max_ejection_percent: u32,
}

/// Pomerium's `circuit_breaker_thresholds`: requests to a route's targets
/// in flight at once, beyond which the route answers 503 at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CircuitBreaker {
    pub max_requests: u32,
}

/// What one health check probe does.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Probe {
    /// `GET path` (with `Host: host`, else the target's address); healthy
    /// when the status is in one of the `[start, end)` ranges.
    Http {
        path: String,
        host: Option<String>,
        expected: Vec<(u16, u16)>,
    },
    /// Connect, write `send`, and read until every `receive` pattern has
    /// been seen in order (only the connect when both are empty).
    Tcp {
        send: Vec<u8>,
        receive: Vec<Vec<u8>>,
    },
}

/// What a route says about itself (Pomerium's route portal fields).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteInfo {
    pub name: String,
    pub description: String,
    pub logo_url: String,
}

/// `${pomerium.jwt}` in a request header: the route's assertion.
pub const ASSERTION: &str = "${pomerium.jwt}";
/// `${pomerium.id_token}`: the IdP's ID token of the session.
pub const IDP_ID_TOKEN: &str = "${pomerium.id_token}";
/// `${pomerium.access_token}`: the IdP's access token of the session.
pub const IDP_ACCESS_TOKEN: &str = "${pomerium.access_token}";

/// Pomerium's `bearer_token_format`: what `Authorization: Bearer <token>`
/// means on a route.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BearerTokenFormat {
    /// Not a credential here: passed to the upstream untouched (only
    /// `Bearer Pomerium-<token>` is jetbridge's own).
    #[default]
    Default,
    /// An access token issued by the identity provider, checked at its
    /// userinfo endpoint.
    IdpAccessToken,
    /// An ID token issued by the identity provider, checked against its keys.
    IdpIdentityToken,
}

impl BearerTokenFormat {
    /// Pomerium's values (empty: the default).
    pub fn parse(text: &str) -> Result<Self, OptionError> {
        match text {
            "" | "default" => Ok(BearerTokenFormat::Default),
            "idp_access_token" => Ok(BearerTokenFormat::IdpAccessToken),
            "idp_identity_token" => Ok(BearerTokenFormat::IdpIdentityToken),
            other => Err(OptionError::BearerTokenFormat(other.to_string())),
        }
    }
}

/// Pomerium's `load_balancing_policy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LoadBalancing {
    #[default]
    RoundRobin,
    Random,
    /// The target with the fewest requests in flight from this worker.
    LeastRequest,
    /// Consistent: the same session (else client address) keeps its target
    /// while the target set does not change (`ring_hash` and `maglev`).
    ConsistentHash,
}

impl LoadBalancing {
    /// Pomerium's values.
    pub fn parse(text: &str) -> Result<Self, OptionError> {
        Ok(match text {
            "round_robin" => LoadBalancing::RoundRobin,
            "random" => LoadBalancing::Random,
            "least_request" => LoadBalancing::LeastRequest,
            "ring_hash" | "maglev" => LoadBalancing::ConsistentHash,
            other => return Err(OptionError::LoadBalancing(other.to_string())),
        })
    }
}

/// A route option's value the model cannot take; each message names the key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    /// `bearer_token_format`.
    #[error("bearer_token_format {0:?}: expected default, idp_access_token or idp_identity_token")]
    BearerTokenFormat(String),
    /// `load_balancing_policy`.
    #[error(
        "load_balancing_policy {0:?}: expected round_robin, random, least_request, ring_hash \
         or maglev"
    )]
    LoadBalancing(String),
    /// A client CA bundle (`key` names the setting).
    #[error("{key}: {message}")]
    ClientCa { key: String, message: String },
}

/// Severity of a diagnostic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Warning,
    Error,
}

/// The object a diagnostic is about: a Kubernetes object (`Ingress shop/web`)
/// or a place in the config file (`routes[2]`). What an Event's `regarding`
/// and a status condition need.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    /// `Ingress`, `Policy`, `Secret`…; empty for a config-file location.
    pub kind: String,
    pub namespace: String,
    /// The object's name, or the config-file location.
    pub name: String,
}

impl ObjectRef {
    /// A namespaced Kubernetes object.
    pub fn kube(kind: &str, namespace: &str, name: &str) -> Self {
        ObjectRef {
            kind: kind.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    /// A place in the config file, e.g. `routes[2]` or `certificates[0]`.
    pub fn file(location: impl Into<String>) -> Self {
        ObjectRef {
            name: location.into(),
            ..ObjectRef::default()
        }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.kind.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// Why a diagnostic was raised: a short machine reason (an Event's `reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The route exists but refuses every request (bad setting, backend, policy).
    InvalidRoute,
    /// The route cannot exist (no host, a bad host or path).
    NotServed,
    /// Another, older object already serves this host and path.
    HostConflict,
    /// A `Policy` object does not compile.
    InvalidPolicy,
    /// A certificate is unusable or does not cover the host it was given for.
    InvalidCertificate,
    /// A `Policy` compiles and applies, but a rule can never match or is
    /// likely not what was meant (what `jetbridge policy check` warns about).
    PolicyWarning,
    /// A setting is given under more than one annotation prefix with equal
    /// values; it applies, and one of the keys can go.
    DuplicateAnnotation,
    /// A global setting of the config file is ignored, deprecated or risky;
    /// the configuration applies.
    Setting,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidRoute => "InvalidRoute",
            Reason::NotServed => "NotServed",
            Reason::HostConflict => "HostConflict",
            Reason::InvalidPolicy => "InvalidPolicy",
            Reason::InvalidCertificate => "InvalidCertificate",
            Reason::PolicyWarning => "PolicyWarning",
            Reason::DuplicateAnnotation => "DuplicateAnnotation",
            Reason::Setting => "Setting",
        }
    }
}

/// A problem with one input object, reported where the user looks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// An error denies (or refuses) what it concerns; a warning does not.
    pub severity: Severity,
    /// The object or config-file place it concerns (empty for the
    /// configuration as a whole).
    pub object: ObjectRef,
    /// The short machine reason (an Event's `reason`).
    pub reason: Reason,
    /// What is wrong, in words.
    pub message: String,
}

impl Diagnostic {
    /// An error on `object`: its route exists but denies every request.
    pub fn invalid_route(object: &ObjectRef, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            object: object.clone(),
            reason: Reason::InvalidRoute,
            message: message.into(),
        }
    }

    /// A warning about a global setting of the configuration, which still
    /// applies; it concerns no one object, so it reads as its message alone.
    pub fn setting(message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            object: ObjectRef::default(),
            reason: Reason::Setting,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.object == ObjectRef::default() {
            return f.write_str(&self.message);
        }
        write!(f, "{}: {}", self.object, self.message)
    }
}
