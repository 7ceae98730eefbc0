//! OpenID Connect relying party over the `openidconnect` crate, with its HTTP
//! calls made on the project's own hyper + rustls stack.
//!
//! Authorization-code flow with PKCE S256, `state` and `nonce`; ID-token
//! validation per OIDC Core 3.1.3.7 (issuer, audience, azp, asymmetric
//! algorithms only, expiry, issue-time window, nonce); claims from the ID
//! token merged with userinfo; refresh with the refresh token.

use base64::Engine as _;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, TokenResponse,
};
use serde_json::{Map, Value};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// Time limit for each call to the IdP.
pub const IDP_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest IdP response accepted.
pub const MAX_IDP_BODY: usize = 1024 * 1024;

/// OpenID Connect identity-provider settings.
#[derive(Clone, PartialEq, Default)]
pub struct IdpConfig {
    pub provider: String,
    pub issuer_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub scopes: Vec<String>,
    pub groups_claim: String,
}

impl std::fmt::Debug for IdpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use sha2::Digest as _;
        // The secret only as a short digest: a change shows (the snapshot
        // fingerprint is made from this text), the value never does.
        let digest = hex::encode(&sha2::Sha256::digest(self.client_secret.as_bytes())[..4]);
        f.debug_struct("IdpConfig")
            .field("provider", &self.provider)
            .field("issuer_url", &self.issuer_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &digest)
            .field("scopes", &self.scopes)
            .field("groups_claim", &self.groups_claim)
            .finish()
    }
}

/// The warning for an issuer URL served over plain `http` on a host that is
/// not loopback: the client secret, authorization codes and tokens would
/// cross the network unencrypted, and anyone on the path could serve their
/// own keys. Loopback (`localhost`, `127.0.0.0/8`, `::1`) is exempt: that
/// traffic never leaves the machine (a development provider such as the
/// demo's). `None` for https, loopback, or a URL that does not parse (its
/// discovery reports that).
pub fn plain_http_issuer_warning(issuer: &str) -> Option<String> {
    let url = url::Url::parse(issuer).ok()?;
    if url.scheme() != "http" {
        return None;
    }
    let loopback = match url.host()? {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    };
    (!loopback).then(|| {
        format!(
            "idp_provider_url {issuer:?} uses plain http: the client secret, sign-in codes and \
             tokens travel unencrypted and the provider's keys can be forged on the way; use \
             the provider's https URL (plain http is accepted without this warning only on \
             loopback)"
        )
    })
}

/// Errors talking to the IdP or validating what it sent. Messages are safe to
/// show (they never contain tokens).
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("identity provider unreachable: {0}")]
    Unreachable(String),
    #[error("identity provider discovery failed: {0}")]
    Discovery(String),
    #[error("token exchange failed: {0}")]
    Exchange(String),
    #[error("ID token rejected: {0}")]
    IdToken(String),
    #[error("userinfo failed: {0}")]
    UserInfo(String),
    #[error("access token rejected: {0}")]
    AccessToken(String),
    #[error("configuration: {0}")]
    Config(String),
}

/// Why one HTTP exchange with the identity provider failed (short,
/// token-free messages); `openidconnect` reports it as its transport error.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// No response within [`IDP_TIMEOUT`].
    #[error("timed out")]
    TimedOut,
    /// The response body did not arrive within [`IDP_TIMEOUT`].
    #[error("timed out reading the response")]
    ReadTimedOut,
    /// The connection or the body failed (the client's message).
    #[error("{0}")]
    Failed(String),
}

/// One HTTP exchange with the identity provider. The relying party is pure
/// protocol; the caller supplies the I/O (the proxy's pooled hyper + rustls
/// client), bounded by [`IDP_TIMEOUT`] and [`MAX_IDP_BODY`].
pub trait Transport: Send + Sync + 'static {
    fn exchange(&self, req: http::Request<Vec<u8>>) -> Exchange<'_>;
}

/// The pending response of one [`Transport::exchange`] (errors are short,
/// token-free messages).
pub type Exchange<'a> =
    Pin<Box<dyn Future<Output = Result<http::Response<Vec<u8>>, TransportError>> + Send + 'a>>;

/// An owned, cloneable HTTP client for `openidconnect` over a [`Transport`].
#[derive(Clone)]
pub struct OidcHttp {
    transport: std::sync::Arc<dyn Transport>,
}

impl OidcHttp {
    /// Wraps a transport.
    pub fn new(transport: impl Transport) -> Self {
        OidcHttp {
            transport: std::sync::Arc::new(transport),
        }
    }

    async fn send(
        &self,
        req: openidconnect::HttpRequest,
    ) -> Result<openidconnect::HttpResponse, TransportError> {
        self.transport.exchange(req).await
    }
}

impl<'c> openidconnect::AsyncHttpClient<'c> for OidcHttp {
    type Error = TransportError;
    type Future = Pin<
        Box<dyn Future<Output = Result<openidconnect::HttpResponse, TransportError>> + Send + 'c>,
    >;
    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

/// What the browser must keep (sealed) between sign-in and callback.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PendingLogin {
    /// The `state` sent to the IdP.
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    /// Validated absolute URL to return to.
    pub return_to: String,
    /// Unix seconds.
    pub exp: i64,
}

/// The identity established by a login or refresh.
#[derive(Clone, Debug)]
pub struct LoginResult {
    pub sub: String,
    pub email: String,
    pub name: String,
    pub groups: Vec<String>,
    /// Other claims (ID token merged with userinfo), for `claim/…` policies.
    pub claims: Map<String, Value>,
    pub refresh_token: Option<String>,
    /// When the IdP's tokens expire (unix seconds), if known.
    pub expires_at: Option<i64>,
    /// The IdP's ID token, as it sent it.
    pub id_token: Option<String>,
    /// The IdP's access token.
    pub access_token: Option<String>,
}

/// The `openidconnect` client type after discovery (auth URL set; token and
/// userinfo URLs as the provider advertised them).
type OidcClient = openidconnect::Client<
    openidconnect::EmptyAdditionalClaims,
    openidconnect::core::CoreAuthDisplay,
    openidconnect::core::CoreGenderClaim,
    openidconnect::core::CoreJweContentEncryptionAlgorithm,
    openidconnect::core::CoreJsonWebKey,
    openidconnect::core::CoreAuthPrompt,
    openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    openidconnect::core::CoreTokenResponse,
    openidconnect::core::CoreTokenIntrospectionResponse,
    openidconnect::core::CoreRevocableToken,
    openidconnect::core::CoreRevocationErrorResponse,
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// A discovered provider.
pub struct Provider {
    client: OidcClient,
    http: OidcHttp,
    config: IdpConfig,
    userinfo_url: Option<String>,
    /// RP-initiated logout endpoint, if advertised.
    pub end_session_endpoint: Option<String>,
}

impl Provider {
    /// Fetches the discovery document and the provider's keys.
    pub async fn discover(
        config: &IdpConfig,
        redirect_uri: &str,
        http: OidcHttp,
    ) -> Result<Self, OidcError> {
        let issuer = IssuerUrl::new(config.issuer_url.clone())
            .map_err(|e| OidcError::Config(format!("idp_provider_url: {e}")))?;
        let metadata = CoreProviderMetadata::discover_async(issuer.clone(), &http)
            .await
            .map_err(|e| OidcError::Discovery(error_chain(&e)))?;
        let userinfo_url = metadata.userinfo_endpoint().map(|u| u.url().to_string());
        // end_session_endpoint is not part of the core metadata type.
        let end_session_endpoint = fetch_json(
            &http,
            &format!(
                "{}/.well-known/openid-configuration",
                config.issuer_url.trim_end_matches('/')
            ),
            None,
            OidcError::Discovery,
        )
        .await
        .ok()
        .and_then(|v| {
            v.get("end_session_endpoint")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(config.client_id.clone()),
            (!config.client_secret.is_empty())
                .then(|| ClientSecret::new(config.client_secret.clone())),
        )
        .set_redirect_uri(
            RedirectUrl::new(redirect_uri.to_string())
                .map_err(|e| OidcError::Config(format!("redirect URI: {e}")))?,
        );
        Ok(Provider {
            client,
            http,
            config: config.clone(),
            userinfo_url,
            end_session_endpoint,
        })
    }

    /// Starts a login: the IdP URL to redirect to, and what to keep for the callback.
    pub fn begin(&self, return_to: String, now: i64) -> (String, PendingLogin) {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = random_token();
        let nonce = random_token();
        let (s, n) = (state.clone(), nonce.clone());
        let mut req = self
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(s),
                move || Nonce::new(n),
            )
            .set_pkce_challenge(challenge);
        for scope in &self.config.scopes {
            if scope != "openid" {
                req = req.add_scope(Scope::new(scope.clone()));
            }
        }
        let (url, _, _) = req.url();
        (
            url.to_string(),
            PendingLogin {
                state,
                nonce,
                pkce_verifier: verifier.secret().clone(),
                return_to,
                exp: now + 600,
            },
        )
    }

    /// Exchanges the code and validates the ID token; merges userinfo.
    pub async fn finish(
        &self,
        code: &str,
        pending: &PendingLogin,
        now: i64,
    ) -> Result<LoginResult, OidcError> {
        let token = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| OidcError::Config(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(exchange_error)?;
        let id_token = token
            .id_token()
            .ok_or_else(|| OidcError::IdToken("the token response has no id_token".into()))?;
        let verifier = self.id_token_verifier(now);
        let nonce = Nonce::new(pending.nonce.clone());
        let claims = id_token
            .claims(&verifier, &nonce)
            .map_err(|e| OidcError::IdToken(error_chain(&e)))?;
        self.check_authorized_party(claims.authorized_party())?;
        if let Some(expected) = claims.access_token_hash() {
            let alg = id_token
                .signing_alg()
                .map_err(|e| OidcError::IdToken(e.to_string()))?;
            let key = id_token
                .signing_key(&verifier)
                .map_err(|e| OidcError::IdToken(e.to_string()))?;
            let actual = AccessTokenHash::from_token(token.access_token(), alg, key)
                .map_err(|e| OidcError::IdToken(e.to_string()))?;
            if actual != *expected {
                return Err(OidcError::IdToken(
                    "at_hash does not match the access token".into(),
                ));
            }
        }
        // The signature is verified above; read the payload for non-standard
        // claims such as groups.
        let raw = payload_claims(&id_token.to_string())?;
        let expires_at = token.expires_in().map(|d| now + d.as_secs() as i64);
        let userinfo = self
            .userinfo(token.access_token().secret(), claims.subject().as_str())
            .await?;
        let mut login = self.result(
            raw,
            userinfo,
            token.refresh_token().map(|r| r.secret().clone()),
            expires_at,
        );
        login.id_token = Some(id_token.to_string());
        login.access_token = Some(token.access_token().secret().clone());
        Ok(login)
    }

    /// Refreshes with a refresh token; the new ID token (if any) is validated.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        expected_sub: &str,
        now: i64,
    ) -> Result<LoginResult, OidcError> {
        let rt = RefreshToken::new(refresh_token.to_string());
        let token = self
            .client
            .exchange_refresh_token(&rt)
            .map_err(|e| OidcError::Config(e.to_string()))?
            .request_async(&self.http)
            .await
            .map_err(exchange_error)?;
        let mut raw = Map::new();
        let refreshed_id_token = token.id_token().map(|t| t.to_string());
        if let Some(id_token) = token.id_token() {
            let verifier = self.id_token_verifier(now);
            let claims = id_token
                .claims(&verifier, |_: Option<&Nonce>| Ok(()))
                .map_err(|e| OidcError::IdToken(error_chain(&e)))?;
            self.check_authorized_party(claims.authorized_party())?;
            if claims.subject().as_str() != expected_sub {
                return Err(OidcError::IdToken(
                    "refreshed ID token is for another subject".into(),
                ));
            }
            raw = payload_claims(&id_token.to_string())?;
        }
        let userinfo = self
            .userinfo(token.access_token().secret(), expected_sub)
            .await?;
        raw.entry("sub")
            .or_insert_with(|| Value::String(expected_sub.to_string()));
        let new_refresh = token
            .refresh_token()
            .map(|r| r.secret().clone())
            .or_else(|| Some(refresh_token.to_string()));
        let mut login = self.result(
            raw,
            userinfo,
            new_refresh,
            token.expires_in().map(|d| now + d.as_secs() as i64),
        );
        login.id_token = refreshed_id_token;
        login.access_token = Some(token.access_token().secret().clone());
        Ok(login)
    }

    /// An ID token the client presents as its credential (Pomerium's
    /// `idp_identity_token` bearer format): signed by one of the provider's
    /// keys with an asymmetric algorithm, issued by it for this client
    /// (`aud`, `azp`), not expired, not issued in the future. There is no
    /// nonce to match and no age limit beyond `exp`.
    pub fn identity_token_login(&self, raw: &str, now: i64) -> Result<LoginResult, OidcError> {
        let id_token: openidconnect::core::CoreIdToken = raw
            .trim()
            .parse()
            .map_err(|_| OidcError::IdToken("not a JWT".into()))?;
        let verifier = self
            .signature_verifier()
            .set_issue_time_verifier_fn(move |iat| match iat.timestamp() {
                iat if iat > now + 60 => Err(format!("issued {}s in the future", iat - now)),
                _ => Ok(()),
            });
        let claims = id_token
            .claims(&verifier, |_: Option<&Nonce>| Ok(()))
            .map_err(|e| OidcError::IdToken(error_chain(&e)))?;
        self.check_authorized_party(claims.authorized_party())?;
        let exp = claims.expiration().timestamp();
        let claims = payload_claims(raw.trim())?;
        let mut login = self.result(claims, Map::new(), None, Some(exp));
        login.id_token = Some(raw.trim().to_string());
        Ok(login)
    }

    /// An access token the client presents as its credential (Pomerium's
    /// `idp_access_token` bearer format): the provider's userinfo endpoint
    /// must accept it and name a subject. A refusal is
    /// `OidcError::UserInfo`; no answer is `OidcError::Unreachable`.
    pub async fn access_token_login(&self, token: &str) -> Result<LoginResult, OidcError> {
        let Some(url) = &self.userinfo_url else {
            return Err(OidcError::Config(
                "the identity provider has no userinfo endpoint to check access tokens".into(),
            ));
        };
        let v = fetch_json(&self.http, url, Some(token.trim()), OidcError::UserInfo).await?;
        let Value::Object(m) = v else {
            return Err(OidcError::UserInfo("response is not a JSON object".into()));
        };
        match m.get("sub").and_then(Value::as_str) {
            Some(sub) if !sub.is_empty() => {}
            _ => return Err(OidcError::UserInfo("no subject for this token".into())),
        }
        let mut login = self.result(Map::new(), m, None, None);
        login.access_token = Some(token.trim().to_string());
        Ok(login)
    }

    /// An access token the client presents where the route lists the
    /// audiences it accepts (Pomerium's `idp_access_token_allowed_audiences`,
    /// for IdPs such as Microsoft Entra whose access tokens are JWTs): it
    /// must be a JWT signed with one of the provider's keys (asymmetric
    /// algorithms only), issued by the provider, unexpired, not issued in
    /// the future, and its `aud` must name one of `audiences`. The identity
    /// comes from its claims; userinfo is not asked.
    pub fn access_token_jwt_login(
        &self,
        raw: &str,
        audiences: &[String],
        now: i64,
    ) -> Result<LoginResult, OidcError> {
        let raw = raw.trim();
        let token: openidconnect::core::CoreIdToken = raw
            .parse()
            .map_err(|_| OidcError::AccessToken("not a JWT".into()))?;
        let jwt_types = ["JWT", "at+jwt"].into_iter().filter_map(|t| {
            openidconnect::JsonWebTokenType::new(t.into())
                .normalize()
                .ok()
        });
        let verifier = self
            .signature_verifier()
            // `aud` is checked below against the route's list, not this client.
            .require_audience_match(false)
            .set_allowed_jose_types(jwt_types)
            .set_issue_time_verifier_fn(move |iat| match iat.timestamp() {
                iat if iat > now + 60 => Err(format!("issued {}s in the future", iat - now)),
                _ => Ok(()),
            });
        let claims = token
            .claims(&verifier, |_: Option<&Nonce>| Ok(()))
            .map_err(|e| OidcError::AccessToken(error_chain(&e)))?;
        let exp = claims.expiration().timestamp();
        let payload = payload_claims(raw)?;
        let named = |a: &Value| a.as_str().is_some_and(|a| audiences.iter().any(|x| x == a));
        let allowed = match payload.get("aud") {
            Some(Value::Array(list)) => list.iter().any(named),
            Some(one) => named(one),
            None => false,
        };
        if !allowed {
            return Err(OidcError::AccessToken(
                "its audience (aud) is not one of idp_access_token_allowed_audiences".into(),
            ));
        }
        let mut login = self.result(payload, Map::new(), None, Some(exp));
        login.access_token = Some(raw.to_string());
        Ok(login)
    }

    /// The provider's keys and this client as the audience, with the
    /// asymmetric algorithms accepted.
    fn signature_verifier(
        &self,
    ) -> openidconnect::IdTokenVerifier<'_, openidconnect::core::CoreJsonWebKey> {
        self.client.id_token_verifier().set_allowed_algs([
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
            CoreJwsSigningAlgorithm::RsaSsaPssSha256,
            CoreJwsSigningAlgorithm::EcdsaP256Sha256,
            CoreJwsSigningAlgorithm::EcdsaP384Sha384,
        ])
    }

    fn id_token_verifier(
        &self,
        now: i64,
    ) -> openidconnect::IdTokenVerifier<'_, openidconnect::core::CoreJsonWebKey> {
        self.signature_verifier()
            .set_issue_time_verifier_fn(move |iat| {
                let iat = iat.timestamp();
                if iat > now + 60 {
                    Err(format!("issued {}s in the future", iat - now))
                } else if iat < now - 600 {
                    Err(format!("issued {}s ago (more than 10 minutes)", now - iat))
                } else {
                    Ok(())
                }
            })
    }

    /// OIDC Core 3.1.3.7 step 5: an `azp` claim must name this client.
    /// (`openidconnect` does not check it; more than one audience is already
    /// rejected because no other audience is trusted.)
    fn check_authorized_party(&self, azp: Option<&ClientId>) -> Result<(), OidcError> {
        match azp {
            Some(azp) if azp.as_str() != self.config.client_id => Err(OidcError::IdToken(format!(
                "authorized party (azp) `{}` is not this client",
                azp.as_str()
            ))),
            _ => Ok(()),
        }
    }

    async fn userinfo(
        &self,
        access_token: &str,
        sub: &str,
    ) -> Result<Map<String, Value>, OidcError> {
        let Some(url) = &self.userinfo_url else {
            return Ok(Map::new());
        };
        let v = fetch_json(&self.http, url, Some(access_token), OidcError::UserInfo).await?;
        let Value::Object(m) = v else {
            return Err(OidcError::UserInfo("response is not a JSON object".into()));
        };
        if m.get("sub").and_then(Value::as_str) != Some(sub) {
            return Err(OidcError::UserInfo(
                "userinfo subject does not match the ID token".into(),
            ));
        }
        Ok(m)
    }

    fn result(
        &self,
        mut claims: Map<String, Value>,
        userinfo: Map<String, Value>,
        refresh_token: Option<String>,
        expires_at: Option<i64>,
    ) -> LoginResult {
        for (k, v) in userinfo {
            claims.insert(k, v);
        }
        let text = |k: &str| {
            claims
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let sub = text("sub");
        let email = text("email");
        let name = text("name");
        let groups = match claims.get(&self.config.groups_claim) {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|g| g.as_str().map(str::to_string))
                .collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        };
        // Keep only small, non-protocol claims for policy evaluation.
        const DROP: [&str; 14] = [
            "iss",
            "aud",
            "exp",
            "iat",
            "nbf",
            "nonce",
            "azp",
            "at_hash",
            "c_hash",
            "auth_time",
            "sid",
            "jti",
            "acr",
            "amr",
        ];
        claims.retain(|k, v| !DROP.contains(&k.as_str()) && v.to_string().len() <= 256);
        LoginResult {
            sub,
            email,
            name,
            groups,
            claims,
            refresh_token,
            expires_at,
            id_token: None,
            access_token: None,
        }
    }
}

fn payload_claims(jwt: &str) -> Result<Map<String, Value>, OidcError> {
    let payload = jwt
        .split('.')
        .nth(1)
        .ok_or_else(|| OidcError::IdToken("malformed".into()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| OidcError::IdToken("malformed payload".into()))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| OidcError::IdToken("payload is not a JSON object".into()))
}

/// GETs a JSON document. Transport failures (no answer) are
/// `OidcError::Unreachable`; answers that are not usable JSON map through `answered`.
async fn fetch_json(
    http: &OidcHttp,
    url: &str,
    bearer: Option<&str>,
    answered: fn(String) -> OidcError,
) -> Result<Value, OidcError> {
    let mut req = http::Request::get(url).header(http::header::ACCEPT, "application/json");
    if let Some(t) = bearer {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req.body(Vec::new()).map_err(|e| answered(e.to_string()))?;
    let resp = http
        .send(req)
        .await
        .map_err(|e| OidcError::Unreachable(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(answered(format!("HTTP {}", resp.status().as_u16())));
    }
    serde_json::from_slice(resp.body()).map_err(|e| answered(format!("invalid JSON: {e}")))
}

/// A token request that never got an answer (connection refused, reset,
/// timed out) means the IdP is unreachable; anything it answered is a refusal.
fn exchange_error<RE, T>(e: RequestTokenError<RE, T>) -> OidcError
where
    RE: std::error::Error + 'static,
    T: openidconnect::ErrorResponse + 'static,
{
    match e {
        RequestTokenError::Request(transport) => OidcError::Unreachable(error_chain(&transport)),
        other => OidcError::Exchange(error_chain(&other)),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A random URL-safe token (256 bits).
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    super::random_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}
