// The output and option parsing the scripts here share: each prints exactly one
// JSON line and sets the exit code (0 success, 1 failure, 2 bad usage).

import { parseArgs } from 'node:util';

/** Prints `obj` as one JSON line and sets the process exit code to `code`. */
export function emit(obj, code) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
  process.exitCode = code;
}

/**
 * Parses the command line by `options` (strict), then runs `check` on the
 * values, which may throw. Returns the values; on an error prints
 * {"ok":false,"error":"usage: ..."} with exit code 2 and returns undefined.
 */
export function parseOptions(options, check = () => {}) {
  try {
    const { values } = parseArgs({ options, strict: true });
    check(values);
    return values;
  } catch (err) {
    emit({ ok: false, error: `usage: ${err.message}` }, 2);
    return undefined;
  }
}
