#!/usr/bin/env node
// Print the RFC 7638 JWK thumbprint (SHA-256, hex) that npm `jose` computes for
// every key of a JWKS, to cross-check the `kid` an issuer assigns.
//
//   node thumbprint.mjs --jwks-file FILE     (or the JWKS JSON on stdin: --jwks-file -)
//
// Prints one JSON line: {"keys":[{"kid":"<kid as published or null>","thumbprint_hex":"...",
// "thumbprint_b64url":"...","matches_kid":true|false}, ...]}; exit 0, or 1 on an error.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { calculateJwkThumbprint } from 'jose';

try {
  const { values: args } = parseArgs({
    options: { 'jwks-file': { type: 'string', default: '-' } },
    strict: true,
  });
  const text = readFileSync(args['jwks-file'] === '-' ? 0 : args['jwks-file'], 'utf8');
  const jwks = JSON.parse(text);
  if (!Array.isArray(jwks.keys)) throw new Error('not a JWKS: no "keys" array');
  const keys = [];
  for (const jwk of jwks.keys) {
    const b64 = await calculateJwkThumbprint(jwk, 'sha256');
    const hex = Buffer.from(b64, 'base64url').toString('hex');
    keys.push({
      kid: jwk.kid ?? null,
      thumbprint_hex: hex,
      thumbprint_b64url: b64,
      matches_kid: jwk.kid === hex,
    });
  }
  process.stdout.write(`${JSON.stringify({ keys })}\n`);
} catch (err) {
  process.stdout.write(`${JSON.stringify({ ok: false, error: `${err.name}: ${err.message}` })}\n`);
  process.exitCode = 1;
}
