#!/usr/bin/env node
// Line-protocol driver for the official OpenFeature OFREP provider (Node).
//
// Needs the pinned packages in ./package.json: `npm ci --prefix tests/ofrep`.
//
// Reads one JSON command per line on stdin, writes one JSON answer per line on stdout:
//   {"op":"init","base_url":URL,"headers":{...},"timeout":5.0}   -> {"ok":true}
//   {"op":"bool","flag":KEY,"default":false,"targeting_key":U|null,"attributes":{...}}
//       -> {"ok":true,"value":..,"reason":..,"variant":..,"error_code":..,"error_message":..,
//           "flag_metadata":{...}}
//   ("string", "number", "object" work the same way with the matching getter.)
//   {"op":"close"}                                                -> {"ok":true}, then exit
// Any exception -> {"ok":false,"error":"..."}. Nothing but answers is written to stdout.
import { createInterface } from 'node:readline';
import { OpenFeature } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';

// Keep stdout for the protocol: SDK/provider logging goes to stderr.
const stderrLogger = {
  error: (...a) => console.error('[error]', ...a),
  warn: (...a) => console.error('[warn]', ...a),
  info: () => {},
  debug: () => {},
};
OpenFeature.setLogger(stderrLogger);

let client = null;

async function init(cmd) {
  const options = { baseUrl: cmd.base_url };
  if (cmd.headers && Object.keys(cmd.headers).length > 0) {
    options.headers = { ...cmd.headers };
  }
  // @openfeature/ofrep-provider 0.1.3 has no timeout option; its documented
  // fetchImplementation hook is the way to bound a request.
  if (cmd.timeout != null) {
    const ms = Math.round(Number(cmd.timeout) * 1000);
    options.fetchImplementation = (req) => fetch(req, { signal: AbortSignal.timeout(ms) });
  }
  const provider = new OFREPProvider(options);
  await OpenFeature.setProviderAndWait(provider);
  client = OpenFeature.getClient();
  return { ok: true };
}

const GETTERS = {
  bool: 'getBooleanDetails',
  string: 'getStringDetails',
  number: 'getNumberDetails',
  object: 'getObjectDetails',
};

async function evaluate(op, cmd) {
  if (!client) throw new Error('init first');
  const ctx = { ...(cmd.attributes ?? {}) };
  if (cmd.targeting_key != null) ctx.targetingKey = cmd.targeting_key;
  const d = await client[GETTERS[op]](cmd.flag, cmd.default ?? false, ctx);
  return {
    ok: true,
    value: d.value ?? null,
    reason: d.reason ?? null,
    variant: d.variant ?? null,
    error_code: d.errorCode ?? null,
    error_message: d.errorMessage ?? null,
    flag_metadata: d.flagMetadata ?? {},
  };
}

function answer(obj) {
  return new Promise((resolve) => process.stdout.write(JSON.stringify(obj) + '\n', resolve));
}

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const raw of rl) {
  const line = raw.trim();
  if (!line) continue;
  let op = null;
  let out;
  try {
    const cmd = JSON.parse(line);
    op = cmd.op;
    if (op === 'init') out = await init(cmd);
    else if (Object.hasOwn(GETTERS, op ?? "")) out = await evaluate(op, cmd);
    else if (op === 'close') {
      await OpenFeature.close();
      out = { ok: true };
    } else throw new Error(`unknown op ${JSON.stringify(op)}`);
  } catch (e) {
    out = { ok: false, error: `${e?.name ?? 'Error'}: ${e?.message ?? String(e)}` };
  }
  await answer(out);
  if (op === 'close') {
    rl.close();
    process.exit(0);
  }
}
