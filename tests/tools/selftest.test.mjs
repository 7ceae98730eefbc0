// Self-test of the test helpers in this folder, run with `node --test` by scripts/test
// before the Rust tiers, so a broken helper fails here with a clear message instead
// of as a confusing proxy-test failure.
//
// Env: JETBRIDGE_PYTHON (python with PyJWT; default python3), JETBRIDGE_CHROMIUM
// (default /usr/bin/chromium), JETBRIDGE_REQUIRE_REAL_PARTS=1 turns "skipped because
// a part is missing" into a failure.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import * as http from 'node:http';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';

import { SignJWT, calculateJwkThumbprint, decodeJwt, exportJWK, generateKeyPair } from 'jose';

const here = path.dirname(fileURLToPath(import.meta.url));
const python = process.env.JETBRIDGE_PYTHON || 'python3';
const chromiumPath = process.env.JETBRIDGE_CHROMIUM || '/usr/bin/chromium';
const requireReal = process.env.JETBRIDGE_REQUIRE_REAL_PARTS === '1';
const tmp = mkdtempSync(path.join(process.env.TMPDIR || tmpdir(), 'jetbridge-support-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

// Run a command to completion; resolves {code, stdout, stderr}.
function run(cmd, args, { timeout = 60_000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeout);
    child.on('error', reject);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

function oneJsonLine(stdout) {
  const lines = stdout.trim().split('\n');
  assert.equal(lines.length, 1, `expected one JSON line, got: ${stdout}`);
  return JSON.parse(lines[0]);
}

// Start a long-running helper that prints one JSON line when ready.
function startReady(cmd, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let buf = '';
    let err = '';
    child.stderr.on('data', (d) => { err += d; });
    child.on('error', reject);
    child.on('exit', (code) => reject(new Error(`${cmd} exited ${code}: ${err}`)));
    child.stdout.on('data', (d) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) resolve({ child, info: JSON.parse(buf.slice(0, nl)) });
    });
  });
}

function serve(handler) {
  return new Promise((resolve) => {
    const server = http.createServer(handler);
    server.listen(0, '127.0.0.1', () => resolve({ server, port: server.address().port }));
  });
}

function skipOrFail(t, why) {
  if (requireReal) assert.fail(`${why} (JETBRIDGE_REQUIRE_REAL_PARTS=1)`);
  t.skip(why);
}

describe('verifiers', () => {
  let jwksFile;
  let jwksUrl;
  let jwksServer;
  let kid;
  let key;
  let otherKey;
  let rsaKey;
  const iss = 'app.example.test';
  const aud = 'app.example.test';

  before(async () => {
    ({ privateKey: key } = await generateKeyPair('ES256', { extractable: true }));
    ({ privateKey: otherKey } = await generateKeyPair('ES256', { extractable: true }));
    ({ privateKey: rsaKey } = await generateKeyPair('RS256', { extractable: true }));
    const { d, ...pub } = await exportJWK(key);
    kid = Buffer.from(await calculateJwkThumbprint(pub, 'sha256'), 'base64url').toString('hex');
    const jwks = { keys: [{ ...pub, kid, alg: 'ES256', use: 'sig' }] };
    jwksFile = path.join(tmp, 'jwks.json');
    writeFileSync(jwksFile, JSON.stringify(jwks));
    let port;
    ({ server: jwksServer, port } = await serve((req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(jwks));
    }));
    jwksUrl = `http://127.0.0.1:${port}/.well-known/pomerium/jwks.json`;
  });
  after(() => jwksServer?.close());

  function mint({
    signer = key, alg = 'ES256', k = kid, claims = {}, exp = '5m', audience = aud, issuer = iss,
  } = {}) {
    return new SignJWT({
      sub: 'alice', user: 'alice', email: 'alice@example.com', groups: ['users'], ...claims,
    })
      .setProtectedHeader({ alg, typ: 'JWT', kid: k })
      .setIssuer(issuer)
      .setAudience(audience)
      .setIssuedAt()
      .setExpirationTime(exp)
      .setJti(randomBytes(16).toString('hex'))
      .sign(signer);
  }

  const verifiers = [
    ['verify_jose.mjs', process.execPath, [path.join(here, 'verify_jose.mjs')]],
    ['verify_pyjwt.py', python, [path.join(here, 'verify_pyjwt.py')]],
  ];

  for (const [name, cmd, pre] of verifiers) {
    for (const source of ['--jwks-url', '--jwks-file']) {
      const where = () => (source === '--jwks-url' ? jwksUrl : jwksFile);
      const verify = (token, extra = []) => run(cmd, [...pre, source, where(), '--token', token,
        '--issuer', iss, '--audience', aud, ...extra]);

      test(`${name} ${source} accepts a good ES256 assertion`, async () => {
        const r = await verify(await mint());
        const out = oneJsonLine(r.stdout);
        assert.equal(r.code, 0, r.stdout + r.stderr);
        assert.equal(out.ok, true);
        assert.equal(out.payload.email, 'alice@example.com');
        assert.deepEqual(out.payload.groups, ['users']);
        assert.equal(out.header.kid, kid);
        assert.equal(out.header.alg, 'ES256');
      });

      const bad = {
        'a wrong audience': () => mint({ audience: 'other.example.test' }),
        'a wrong issuer': () => mint({ issuer: 'other.example.test' }),
        'an expired assertion': () => mint({ exp: Math.floor(Date.now() / 1000) - 60 }),
        'a signature by another key under the same kid': () => mint({ signer: otherKey }),
        'an unknown kid': () => mint({ k: 'f'.repeat(64) }),
        'an RS256 assertion': () => mint({ signer: rsaKey, alg: 'RS256' }),
        'a tampered payload': async () => {
          const [h, , s] = (await mint()).split('.');
          const p = Buffer.from(JSON.stringify({ sub: 'mallory', iss, aud, exp: 4102444800 })).toString('base64url');
          return `${h}.${p}.${s}`;
        },
      };
      for (const [what, make] of Object.entries(bad)) {
        test(`${name} ${source} rejects ${what}`, async () => {
          const r = await verify(await make());
          const out = oneJsonLine(r.stdout);
          assert.equal(r.code, 1, r.stdout + r.stderr);
          assert.equal(out.ok, false);
          assert.ok(out.error.length > 0);
        });
      }
    }
  }

  test('thumbprint.mjs gives the RFC 7638 hex thumbprint used as kid', async () => {
    const r = await run(process.execPath, [path.join(here, 'thumbprint.mjs'), '--jwks-file', jwksFile]);
    assert.equal(r.code, 0, r.stderr);
    const out = oneJsonLine(r.stdout);
    assert.equal(out.keys.length, 1);
    assert.equal(out.keys[0].thumbprint_hex, kid);
    assert.equal(out.keys[0].matches_kid, true);
  });

  test('thumbprint.mjs matches the RFC 7638 section 3.1 example', async () => {
    const rfc = {
      kty: 'RSA',
      e: 'AQAB',
      n: '0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw',
      kid: '2011-04-29',
    };
    const f = path.join(tmp, 'rfc.json');
    writeFileSync(f, JSON.stringify({ keys: [rfc] }));
    const r = await run(process.execPath, [path.join(here, 'thumbprint.mjs'), '--jwks-file', f]);
    const out = oneJsonLine(r.stdout);
    assert.equal(out.keys[0].thumbprint_b64url, 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs');
    assert.equal(out.keys[0].matches_kid, false);
  });
});

describe('idp.mjs', () => {
  let idp;
  let issuer;
  const redirectUri = 'http://127.0.0.1:9/callback';

  before(async () => {
    idp = await startReady(process.execPath, [path.join(here, 'idp.mjs'), '--port', '0',
      '--client-id', 'test-client', '--client-secret', 'test-secret',
      '--redirect-uri', redirectUri, '--post-logout-redirect-uri', 'http://127.0.0.1:9/bye']);
    ({ issuer } = idp.info);
  });
  after(() => idp?.child.stdin.end()); // closing stdin stops it

  test('prints its issuer and serves discovery', async () => {
    assert.match(issuer, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(issuer, `http://127.0.0.1:${idp.info.port}`);
    const d = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
    assert.equal(d.issuer, issuer);
    assert.deepEqual(d.code_challenge_methods_supported, ['S256']);
    assert.ok(d.end_session_endpoint);
    assert.ok(d.userinfo_endpoint);
    for (const s of ['openid', 'email', 'profile', 'groups']) assert.ok(d.scopes_supported.includes(s), s);
  });

  // The non-interactive login an HTTP-client test does (documented in idp.mjs).
  async function login(id, { pkce = true } = {}) {
    const jar = new Map();
    const cookieHeader = () => [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    async function req(url, init = {}) {
      const res = await fetch(url, { ...init, redirect: 'manual', headers: { ...init.headers, cookie: cookieHeader() } });
      for (const c of res.headers.getSetCookie()) {
        const [kv] = c.split(';');
        const i = kv.indexOf('=');
        jar.set(kv.slice(0, i), kv.slice(i + 1));
      }
      return res;
    }
    const verifier = randomBytes(32).toString('base64url');
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    const auth = new URL(`${issuer}/auth`);
    auth.search = new URLSearchParams({
      response_type: 'code',
      client_id: 'test-client',
      redirect_uri: redirectUri,
      scope: 'openid email profile groups',
      state: 'st-1',
      nonce: 'n-1',
      ...(pkce ? { code_challenge: challenge, code_challenge_method: 'S256' } : {}),
    });
    const steps = [];
    let res = await req(auth.href);
    let url = auth.href;
    for (let i = 0; i < 12; i += 1) {
      steps.push(res.status);
      if (res.status >= 300 && res.status < 400) {
        url = new URL(res.headers.get('location'), url).href;
        if (url.startsWith(redirectUri)) break;
        res = await req(url);
        continue;
      }
      assert.equal(res.status, 200, `unexpected ${res.status} at ${url}`);
      const html = await res.text();
      const action = html.match(/<form[^>]*action="([^"]+)"/)[1];
      const prompt = html.match(/name="prompt" value="([^"]+)"/)[1];
      const body = prompt === 'login'
        ? new URLSearchParams({ prompt: 'login', login: id, password: 'x' })
        : new URLSearchParams({ prompt: 'consent' });
      url = new URL(action, url).href;
      res = await req(url, { method: 'POST', body, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    }
    return { callback: new URL(url), verifier, steps };
  }

  async function tokens(code, verifier) {
    const res = await fetch(`${issuer}/token`, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from('test-client:test-secret').toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({
        grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier,
      }),
    });
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    return body;
  }

  test('HTTP-client login (login form, consent form) yields a code, tokens and userinfo', async () => {
    const { callback, verifier, steps } = await login('admin.alice');
    assert.deepEqual(steps, [303, 200, 303, 303, 200, 303, 303]);
    assert.equal(callback.searchParams.get('state'), 'st-1');
    assert.equal(callback.searchParams.get('iss'), issuer);
    const code = callback.searchParams.get('code');
    assert.ok(code);
    const t = await tokens(code, verifier);
    const id = decodeJwt(t.id_token);
    assert.equal(id.iss, issuer);
    assert.equal(id.aud, 'test-client');
    assert.equal(id.sub, 'admin.alice');
    assert.equal(id.email, 'admin.alice@example.com');
    assert.equal(id.email_verified, true);
    assert.equal(id.name, 'Admin Alice');
    assert.deepEqual(id.groups, ['users', 'admins']);
    assert.equal(id.nonce, 'n-1');
    const me = await (await fetch(`${issuer}/me`, { headers: { authorization: `Bearer ${t.access_token}` } })).json();
    assert.equal(me.email, 'admin.alice@example.com');
    assert.deepEqual(me.groups, ['users', 'admins']);
  });

  test('an id with @ is the email; no admin group for others', async () => {
    const { callback, verifier } = await login('bob@corp.example');
    const id = decodeJwt((await tokens(callback.searchParams.get('code'), verifier)).id_token);
    assert.equal(id.sub, 'bob@corp.example');
    assert.equal(id.email, 'bob@corp.example');
    assert.deepEqual(id.groups, ['users']);
  });

  test('PKCE is required', async () => {
    const { callback } = await login('carol', { pkce: false });
    assert.equal(callback.searchParams.get('error'), 'invalid_request');
  });
});

describe('login_browser.mjs', () => {
  test('logs in through the IdP pages in Chromium and lands on the redirect URI', async (t) => {
    if (!existsSync(chromiumPath)) {
      skipOrFail(t, `no Chromium at ${chromiumPath}`);
      return;
    }
    const { server, port } = await serve((req, res) => {
      res.setHeader('content-type', 'text/html');
      res.end('<html><body><p>landed on the callback</p></body></html>');
    });
    const redirectUri = `http://app.jetbridge.test:${port}/callback`;
    const idp = await startReady(process.execPath, [path.join(here, 'idp.mjs'), '--port', '0',
      '--client-id', 'c', '--client-secret', 's', '--redirect-uri', redirectUri]);
    try {
      const auth = new URL(`${idp.info.issuer}/auth`);
      auth.search = new URLSearchParams({
        response_type: 'code',
        client_id: 'c',
        redirect_uri: redirectUri,
        scope: 'openid email groups',
        state: 'st',
        nonce: 'n',
        code_challenge: createHash('sha256').update('v'.repeat(43)).digest('base64url'),
        code_challenge_method: 'S256',
      });
      const shot = path.join(tmp, 'landed.png');
      const r = await run(process.execPath, [path.join(here, 'login_browser.mjs'),
        '--start-url', auth.href, '--login', 'alice', '--map', 'app.jetbridge.test',
        '--until', `http://app.jetbridge.test:${port}/`, '--screenshot', shot], { timeout: 90_000 });
      const out = oneJsonLine(r.stdout);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.equal(out.ok, true);
      assert.equal(out.logged_in, true);
      assert.match(out.final_url, new RegExp(`^http://app\\.jetbridge\\.test:${port}/callback\\?code=`));
      assert.match(out.body_text, /landed on the callback/);
      assert.ok(out.blocked.every((o) => !o.includes('127.0.0.1')), JSON.stringify(out.blocked));
      assert.ok(existsSync(shot));
    } finally {
      idp.child.kill('SIGTERM');
      server.close();
    }
  });
});
