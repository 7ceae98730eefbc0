//! What the pipeline knows about a request as it passes the stages: the
//! client connection, the normalised target, and what admission decided.
//! Plain data shared by the stages; it imports no other proxy module.

use crate::identity::session::Session;
use crate::model::Route;
use std::net::SocketAddr;
use std::sync::Arc;

/// Facts about the client connection.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The client's address.
    pub remote: SocketAddr,
    /// True on the HTTPS listener.
    pub tls: bool,
    /// The handshake asked for a client certificate (its SNI name is a host
    /// of a route with `tls_downstream_client_ca`).
    pub client_auth_asked: bool,
    /// The client certificate chain presented, leaf first (shared by every
    /// request of the connection). Only its key's possession is proven at
    /// the handshake; each route checks the chain against its own CA.
    pub client_cert: Option<Arc<Vec<rustls::pki_types::CertificateDer<'static>>>>,
}

/// The request as routing and policy see it (normalised).
pub(crate) struct Target {
    /// The normalised host.
    pub host: String,
    /// The normalised path.
    pub path: String,
    /// The query as sent.
    pub query: Option<String>,
}

/// What the pipeline decided before forwarding.
pub(crate) struct Admitted<'a> {
    /// The route the request is forwarded on.
    pub route: &'a Route,
    /// The user's session, where the route uses one.
    pub session: Option<Session>,
    /// The normalised target.
    pub target: Target,
}
