//! Authentication endpoints served by the proxy itself.
//!
//! - On the authenticate host (`authenticate_service_url`):
//!   `/.pomerium/sign_in` starts the OIDC flow (state bound to the browser by
//!   a sealed, short-lived cookie), `/oauth2/callback` is the single IdP
//!   redirect URI for every route, and `/.pomerium/signed_out`.
//! - On every route host: `/.pomerium/callback` (accepts the signed,
//!   one-time, 60-second hand-off and sets that host's cookie), `/.pomerium/`
//!   (who you are), `/.pomerium/user` (JSON), `/.pomerium/sign_out`.
//!
//! A sign-in is bound to the browser that started it: the route host that
//! sends a browser to sign in sets a random nonce in a host-only cookie named
//! after the nonce's hash, and only the hash travels (sign-in URL, sealed
//! state, sealed hand-off). The route host accepts a hand-off only from a
//! browser presenting that nonce, so a hand-off URL is worthless in another
//! browser, on any replica.
//!
//! Every redirect target is validated: only https URLs on hosts that are
//! routes (or the authenticate host), on this proxy's port, without
//! credentials or control characters.
//!
//! On the host of `forward_auth_url`, `forward_auth` answers other
//! proxies' checks (`/verify?uri=`, `/?uri=`), and starts their sign-ins
//! on the checked URL's own host (`/.pomerium/forward_auth/sign_in`).
//!
//! `state` holds what every request shares, `credentials` reads a request's
//! tokens, `cookies` names and writes the sign-in cookies, `endpoints`
//! serves the flow; the HTML is `proxy::pages`.

pub mod cookies;
pub mod credentials;
pub mod endpoints;
pub mod forward_auth;
pub mod state;
