#!/usr/bin/env node
// A real OpenID Connect provider for tests: npm `oidc-provider` on loopback.
//
//   node idp.mjs --port 0 --client-id ID --client-secret S \
//     --redirect-uri URI [--redirect-uri URI2 ...] \
//     [--post-logout-redirect-uri URI ...] [--host 127.0.0.1] [--issuer-host NAME] \
//     [--token-auth-method client_secret_basic|client_secret_post] \
//     [--skip-consent] [--ignore-stdin] [--extra-client ID:SECRET ...]
//
// `--extra-client` registers more clients with the same redirect URIs (a relying
// party with one OAuth client per application).
//
// Once listening it prints exactly one JSON line on stdout:
//   {"issuer":"http://127.0.0.1:PORT","port":PORT}
// and keeps running until its stdin closes (the parent test process went away),
// or it gets SIGTERM/SIGINT. `--ignore-stdin` turns off the stdin watch for use
// from a shell where stdin is /dev/null. Everything else goes to stderr.
//
// Accounts: any login name is accepted (the password is ignored).
//   sub = id; email = "<id>@example.com" (an id containing '@' is the email itself);
//   email_verified = true (false when the id starts with "unverified");
//   name derived from the id ("alice.smith" -> "Alice Smith");
//   groups = ["users"], plus "admins" when the id starts with "admin".
// Scopes: openid email profile groups (the `groups` scope yields the `groups` claim).
// conformIdTokenClaims is false, so the ID token itself carries email/name/groups.
// PKCE is required for every authorization request and only S256 is accepted.
//
// Resource indicators (RFC 8707): an authorization request that adds `resource=<https
// URL>` and the scope `api` gets, at the token endpoint (send `resource` there too), a
// JWT access token (RS256, the provider's key) whose `aud` is that URL, carrying the
// account's `email` and `groups`; such a token is for that resource, not for userinfo.
// Without `resource` the access token is opaque and works at userinfo as before.
//
// Endpoints (issuer-relative): /.well-known/openid-configuration, /auth, /token,
// /me (userinfo), /jwks, /session/end (RP-initiated logout), /interaction/:uid.
//
// Logging in with a plain HTTP client (what the dev interactions expect).
// Keep a cookie jar for the IdP's origin and follow each redirect by hand. Location
// headers are sometimes relative (/interaction/<uid>) and sometimes absolute
// (http://127.0.0.1:PORT/auth/<uid>): resolve them against the issuer. Form actions
// are absolute. Redirects are 303 ("See Other": follow with GET).
//   1. GET  /auth?response_type=code&client_id=ID&redirect_uri=URI&scope=openid%20email%20profile%20groups
//           &state=S&nonce=N&code_challenge=C&code_challenge_method=S256
//      -> 303 Location: /interaction/<uid>; sets cookies `_interaction` (path /interaction/<uid>)
//         and `_interaction_resume` (path /auth/<uid>).
//   2. GET  /interaction/<uid> -> 200 HTML login page: <form method="post" action="/interaction/<uid>">
//         with fields  prompt=login (hidden), login (text), password (password).
//   3. POST /interaction/<uid>  Content-Type: application/x-www-form-urlencoded
//         body: prompt=login&login=<id>&password=x
//      -> 303 Location: /auth/<uid>
//   4. GET  /auth/<uid> -> sets `_session`; 303 Location: /interaction/<uid2> (the consent prompt;
//         new `_interaction`/`_interaction_resume` cookies for <uid2>).
//   5. GET  /interaction/<uid2> -> 200 HTML consent page: <form method="post" action="/interaction/<uid2>">
//         with the single hidden field prompt=consent and a "Continue" button.
//   6. POST /interaction/<uid2>  body: prompt=consent
//      -> 303 Location: /auth/<uid2>
//   7. GET  /auth/<uid2> -> 303 Location: <redirect_uri>?code=...&state=S&iss=<issuer>
// With --skip-consent, steps 4-6 disappear: step 4 redirects straight to the redirect_uri.
// Cancelling is GET /interaction/<uid>/abort (-> redirect_uri?error=access_denied).
//
// RP-initiated logout: GET /session/end?id_token_hint=...&post_logout_redirect_uri=...&state=...
// renders a confirmation page whose form (id "op.logoutForm", action /session/end/confirm)
// holds a hidden `xsrf` field; submitting it with `logout=yes` ends the IdP session and
// redirects to the post_logout_redirect_uri (which must be registered with
// --post-logout-redirect-uri).

import { randomBytes } from 'node:crypto';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import { exportJWK, generateKeyPair } from 'jose';

// oidc-provider prints notices with console.info; stdout is reserved for the one JSON line.
console.info = (...args) => console.error(...args);
console.log = (...args) => console.error(...args);

const { default: Provider, errors } = await import('oidc-provider');

function usage(msg) {
  console.error(`idp.mjs: ${msg}`);
  console.error('usage: node idp.mjs --port 0 --client-id ID --client-secret S --redirect-uri URI '
    + '[--redirect-uri URI2] [--post-logout-redirect-uri URI] [--host H] [--issuer-host NAME] '
    + '[--token-auth-method M] [--skip-consent] [--ignore-stdin]');
  process.exit(2);
}

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      port: { type: 'string', default: '0' },
      host: { type: 'string', default: '127.0.0.1' },
      'issuer-host': { type: 'string' },
      'client-id': { type: 'string' },
      'client-secret': { type: 'string' },
      'redirect-uri': { type: 'string', multiple: true },
      'post-logout-redirect-uri': { type: 'string', multiple: true },
      'token-auth-method': { type: 'string', default: 'client_secret_basic' },
      'skip-consent': { type: 'boolean', default: false },
      'ignore-stdin': { type: 'boolean', default: false },
      'extra-client': { type: 'string', multiple: true },
    },
    strict: true,
  }));
} catch (err) {
  usage(err.message);
}
if (!args['client-id']) usage('--client-id is required');
if (!args['client-secret']) usage('--client-secret is required');
if (!args['redirect-uri']?.length) usage('at least one --redirect-uri is required');
const port = Number(args.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) usage(`bad --port ${args.port}`);

function accountClaims(id) {
  const email = id.includes('@') ? id : `${id}@example.com`;
  const local = email.split('@')[0];
  const name = local
    .split(/[._\-+]+/)
    .filter(Boolean)
    .map((w) => w[0].toUpperCase() + w.slice(1))
    .join(' ') || id;
  const groups = ['users'];
  if (id.startsWith('admin')) groups.push('admins');
  return {
    sub: id,
    email,
    email_verified: !id.startsWith('unverified'),
    name,
    preferred_username: local,
    groups,
  };
}

// Listen first so the issuer can carry the real port, then attach the provider.
const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, args.host, resolve);
});
const boundPort = server.address().port;
const issuerHost = args['issuer-host'] ?? args.host;
const issuer = `http://${issuerHost}:${boundPort}`;

const { privateKey } = await generateKeyPair('RS256', { extractable: true, modulusLength: 2048 });
const signingJwk = { ...(await exportJWK(privateKey)), use: 'sig', alg: 'RS256' };

const client = (id, secret) => ({
  client_id: id,
  client_secret: secret,
  redirect_uris: args['redirect-uri'],
  post_logout_redirect_uris: args['post-logout-redirect-uri'] ?? [],
  grant_types: ['authorization_code'],
  response_types: ['code'],
  token_endpoint_auth_method: args['token-auth-method'],
});
const extraClients = (args['extra-client'] ?? []).map((pair) => {
  const at = pair.indexOf(':');
  if (at < 1) usage(`bad --extra-client ${pair} (want ID:SECRET)`);
  return client(pair.slice(0, at), pair.slice(at + 1));
});

const configuration = {
  clients: [client(args['client-id'], args['client-secret']), ...extraClients],
  responseTypes: ['code'],
  pkce: { required: () => true },
  conformIdTokenClaims: false,
  scopes: ['openid', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  features: {
    devInteractions: { enabled: true },
    userinfo: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => undefined,
      useGrantedResource: async () => true,
      async getResourceServerInfo(ctx, resourceIndicator) {
        if (!resourceIndicator.startsWith('https://')) {
          throw new errors.InvalidTarget('resource must be an https URL');
        }
        return {
          scope: 'api',
          audience: resourceIndicator,
          accessTokenTTL: 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  async extraTokenClaims(ctx, token) {
    if (token.kind !== 'AccessToken' || !token.accountId) return undefined;
    const { email, groups } = accountClaims(token.accountId);
    return { email, groups };
  },
  jwks: { keys: [signingJwk] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return accountClaims(id);
      },
    };
  },
};

if (args['skip-consent']) {
  // Grant every requested OIDC scope and claim up front, so no consent prompt is shown.
  configuration.loadExistingGrant = async (ctx) => {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid email profile groups');
    // Any resource asked for (see "Resource indicators" above) is granted its scope.
    const resource = ctx.oidc.params?.resource;
    for (const r of [resource].flat().filter(Boolean)) grant.addResourceScope(r, 'api');
    await grant.save();
    return grant;
  };
}

const provider = new Provider(issuer, configuration);
provider.on('server_error', (ctx, err) => console.error('idp server_error:', err));
server.on('request', provider.callback());

process.stdout.write(`${JSON.stringify({ issuer, port: boundPort })}\n`);

function shutdown() {
  server.close();
  server.closeAllConnections?.();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
if (!args['ignore-stdin']) {
  process.stdin.on('end', shutdown);
  process.stdin.on('close', shutdown);
  process.stdin.on('error', shutdown);
  process.stdin.resume();
}
