// The graphql-http conformance audit (GraphQL over HTTP spec) against a running server.
//
//   node audit.mjs URL [--header 'Authorization: Bearer <token>']... [--json]
//
// Every request the audit makes carries the given headers (the gateway answers 401 without a token). Prints one line
// per audit (ok / FAIL with the reason) and a summary per level; with --json, one JSON document instead.
// Exit status: 1 when any MUST fails, 0 otherwise (SHOULD and MAY failures are reported, not fatal).
import { auditServer } from "graphql-http";

function usage(message) {
  console.error(`${message}\nusage: node audit.mjs URL [--header 'Name: value']... [--json]`);
  process.exit(2);
}

function parseArgs(argv) {
  const options = { url: undefined, headers: {}, json: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--header") {
      const value = argv[++i];
      const colon = value?.indexOf(":") ?? -1;
      if (colon < 1) usage(`--header needs 'Name: value', got ${value}`);
      options.headers[value.slice(0, colon).trim().toLowerCase()] = value.slice(colon + 1).trim();
    } else if (arg === "--json") {
      options.json = true;
    } else if (!arg.startsWith("--") && options.url === undefined) {
      options.url = arg;
    } else {
      usage(`unexpected argument ${arg}`);
    }
  }
  if (options.url === undefined) usage("the server URL is missing");
  return options;
}

const options = parseArgs(process.argv.slice(2));

// The audit's own headers win over ours, except that ours are added when it sets none of the same name.
function fetchWithHeaders(input, init = {}) {
  const headers = new Headers(init.headers);
  for (const [name, value] of Object.entries(options.headers)) {
    if (!headers.has(name)) headers.set(name, value);
  }
  return fetch(input, { ...init, headers });
}

const results = await auditServer({ url: options.url, fetchFn: fetchWithHeaders });

const levels = { MUST: { ok: 0, failed: 0 }, SHOULD: { ok: 0, failed: 0 }, MAY: { ok: 0, failed: 0 } };
const report = [];
for (const result of results) {
  const level = result.name.split(" ", 1)[0];
  const passed = result.status === "ok";
  levels[level][passed ? "ok" : "failed"] += 1;
  const entry = { id: result.id, level, name: result.name, status: result.status };
  if (!passed) {
    entry.reason = result.reason;
    entry.httpStatus = result.response.status;
    entry.contentType = result.response.headers.get("content-type");
    entry.body = await result.response.text().catch(() => "");
  }
  report.push(entry);
}

if (options.json) {
  console.log(JSON.stringify({ url: options.url, levels, results: report }, null, 2));
} else {
  for (const entry of report) {
    const mark = entry.status === "ok" ? "ok  " : "FAIL";
    console.log(`${mark} [${entry.id}] ${entry.name}`);
    if (entry.status !== "ok") {
      console.log(`       ${entry.reason} (HTTP ${entry.httpStatus}, ${entry.contentType}): ${entry.body.slice(0, 300)}`);
    }
  }
  for (const [level, counts] of Object.entries(levels)) {
    console.log(`${level}: ${counts.ok} passed, ${counts.failed} failed`);
  }
}
process.exit(levels.MUST.failed > 0 ? 1 : 0);
