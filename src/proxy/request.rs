//! What the pipeline knows about a request as it passes the stages: the
//! client connection, the normalised target, and what admission decided.
//! Plain data shared by the stages; it imports no other proxy module.

use crate::identity::session::Session;
use crate::model::Route;
use crate::model::routing::{Scheme, TableRef};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Facts about the client connection.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The TCP peer's address.
    pub remote: SocketAddr,
    /// The client's address: the PROXY protocol header's source when the
    /// listeners take one, else the TCP peer's; per request, the trusted
    /// `X-Forwarded-For` entry when there are trusted hops
    /// (`proxy::client_addr`). The access log, `source_ip` and
    /// `X-Forwarded-For` read this.
    pub client: IpAddr,
    /// The `X-Forwarded-For` to send upstream when trusted hops named the
    /// client (`None`: the client address alone).
    pub forwarded_for: Option<http::HeaderValue>,
    /// True on the HTTPS listener.
    pub tls: bool,
    /// Which listener the request came in on.
    pub listener: Listener,
    /// The handshake asked for a client certificate (its SNI name is a host
    /// of a route with `tls_downstream_client_ca`).
    pub client_auth_asked: bool,
    /// The client certificate chain presented, leaf first (shared by every
    /// request of the connection). Only its key's possession is proven at
    /// the handshake; each route checks the chain against its own CA.
    pub client_cert: Option<Arc<Vec<rustls::pki_types::CertificateDer<'static>>>>,
}

/// The listener a connection was accepted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// The HTTPS listener.
    Tls,
    /// The HTTPS listener's routes served without TLS (`insecure_server`,
    /// behind a load balancer that terminates TLS).
    Insecure,
    /// The plain-HTTP listener: a Gateway's `HTTP` listeners' routes, and
    /// the redirect to HTTPS.
    Plain,
    /// A Gateway port's own listener, on this proxy port: that Gateway's
    /// routes only, over TLS or plain HTTP.
    Gateway {
        /// The proxy port (the key of the snapshot's Gateway tables).
        port: u16,
        /// TLS is terminated on it (an `HTTPS` listener's port).
        tls: bool,
    },
}

impl ConnInfo {
    /// A connection from `remote`, before anything names another client.
    pub fn new(remote: SocketAddr, tls: bool, listener: Listener) -> Self {
        ConnInfo {
            remote,
            client: remote.ip(),
            forwarded_for: None,
            tls,
            listener,
            client_auth_asked: false,
            client_cert: None,
        }
    }
}

impl Listener {
    /// The route table requests on this listener are looked up in.
    pub fn table(self) -> TableRef {
        match self {
            Listener::Tls | Listener::Insecure => TableRef::Shared(Scheme::Tls),
            Listener::Plain => TableRef::Shared(Scheme::Plain),
            Listener::Gateway { port, .. } => TableRef::GatewayPort(port),
        }
    }

    /// Plain HTTP from the client, where a route that needs sign-in is
    /// redirected to HTTPS: the plain-HTTP listener, a Gateway's `HTTP` port.
    pub fn is_plain(self) -> bool {
        matches!(self, Listener::Plain | Listener::Gateway { tls: false, .. })
    }
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
