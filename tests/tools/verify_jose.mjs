#!/usr/bin/env node
// Verify a Pomerium-style identity assertion with npm `jose`, the library many
// upstream apps use.
//
//   node verify_jose.mjs (--jwks-url URL | --jwks-file FILE) --token TOKEN \
//     --issuer ISS --audience AUD [--clock-tolerance SECONDS]
//
// Prints one JSON line and exits 0 on success, 1 on a failed verification, 2 on bad usage:
//   {"ok":true,"payload":{...},"header":{...}}
//   {"ok":false,"error":"...","code":"ERR_..."}
// Only ES256 is accepted; iss, aud and exp/nbf are checked.

import { readFileSync } from 'node:fs';

import { createLocalJWKSet, createRemoteJWKSet, jwtVerify } from 'jose';

import { emit as out, parseOptions } from './json_line.mjs';

const args = parseOptions({
  'jwks-url': { type: 'string' },
  'jwks-file': { type: 'string' },
  token: { type: 'string' },
  issuer: { type: 'string' },
  audience: { type: 'string' },
  'clock-tolerance': { type: 'string', default: '0' },
});

if (args) {
  const missing = ['token', 'issuer', 'audience'].filter((k) => !args[k]);
  if (missing.length || !!args['jwks-url'] === !!args['jwks-file']) {
    out({
      ok: false,
      error: 'usage: node verify_jose.mjs (--jwks-url URL | --jwks-file FILE) --token T --issuer ISS --audience AUD',
    }, 2);
  } else {
    try {
      const keys = args['jwks-url']
        ? createRemoteJWKSet(new URL(args['jwks-url']), { timeoutDuration: 10_000 })
        : createLocalJWKSet(JSON.parse(readFileSync(args['jwks-file'], 'utf8')));
      const { payload, protectedHeader } = await jwtVerify(args.token, keys, {
        algorithms: ['ES256'],
        issuer: args.issuer,
        audience: args.audience,
        clockTolerance: Number(args['clock-tolerance']),
        requiredClaims: ['exp'],
      });
      out({ ok: true, payload, header: protectedHeader }, 0);
    } catch (err) {
      out({ ok: false, error: `${err.name}: ${err.message}`, code: err.code }, 1);
    }
  }
}
