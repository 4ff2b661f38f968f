// Composes Apollo Federation v2 subgraphs into a supergraph with BOTH Apollo's and The Guild's composition.
//
//   node compose.mjs --subgraph NAME=URL [--sdl NAME=FILE] ... --out supergraph.graphql
//                    [--out-guild guild-supergraph.graphql] [--header 'Authorization: Bearer <token>']...
//
// --subgraph: a subgraph's name and routing URL (where a gateway sends its queries). Its SDL is read from
//             --sdl NAME=FILE when given, else fetched from the URL with `{ _service { sdl } }` (sending --header).
// --out:       the supergraph SDL of @apollo/composition; --out-guild: that of @theguild/federation-composition.
// Exit status: 1 when either tool refuses the subgraphs (their errors on stderr), 2 on bad arguments.
import { readFile, writeFile } from "node:fs/promises";

import { composeServices as apolloCompose } from "@apollo/composition";
import { composeServices as guildCompose, compositionHasErrors } from "@theguild/federation-composition";
import { parse } from "graphql";

function usage(message) {
  console.error(
    `${message}\nusage: node compose.mjs --subgraph NAME=URL [--sdl NAME=FILE]... --out FILE [--out-guild FILE]` +
      " [--header 'Name: value']...",
  );
  process.exit(2);
}

function pair(value, flag) {
  const at = value?.indexOf("=") ?? -1;
  if (at < 1) usage(`${flag} needs NAME=VALUE, got ${value}`);
  return [value.slice(0, at), value.slice(at + 1)];
}

function parseArgs(argv) {
  const options = { subgraphs: new Map(), sdlFiles: new Map(), headers: {}, out: undefined, outGuild: undefined };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[++i];
    if (value === undefined) usage(`${flag} needs a value`);
    if (flag === "--subgraph") {
      const [name, url] = pair(value, flag);
      options.subgraphs.set(name, url);
    } else if (flag === "--sdl") {
      const [name, file] = pair(value, flag);
      options.sdlFiles.set(name, file);
    } else if (flag === "--header") {
      const colon = value.indexOf(":");
      if (colon < 1) usage(`--header needs 'Name: value', got ${value}`);
      options.headers[value.slice(0, colon).trim()] = value.slice(colon + 1).trim();
    } else if (flag === "--out") {
      options.out = value;
    } else if (flag === "--out-guild") {
      options.outGuild = value;
    } else {
      usage(`unexpected argument ${flag}`);
    }
  }
  if (options.subgraphs.size === 0) usage("name at least one --subgraph");
  if (options.out === undefined) usage("--out is missing");
  for (const name of options.sdlFiles.keys()) {
    if (!options.subgraphs.has(name)) usage(`--sdl ${name}: no --subgraph of that name`);
  }
  return options;
}

async function fetchSdl(name, url, headers) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json", ...headers },
    body: JSON.stringify({ query: "{ _service { sdl } }" }),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${url} answered HTTP ${response.status}: ${text.slice(0, 500)}`);
  const body = JSON.parse(text);
  const sdl = body?.data?._service?.sdl;
  if (typeof sdl !== "string") throw new Error(`no _service.sdl from ${url}: ${text.slice(0, 500)}`);
  return sdl;
}

const options = parseArgs(process.argv.slice(2));

const services = [];
for (const [name, url] of options.subgraphs) {
  const file = options.sdlFiles.get(name);
  try {
    const sdl = file ? await readFile(file, "utf8") : await fetchSdl(name, url, options.headers);
    services.push({ name, url, typeDefs: parse(sdl) });
  } catch (error) {
    console.error(`subgraph ${name}: ${error.message}`);
    process.exit(1);
  }
}

const failures = [];

const apollo = apolloCompose(services);
if (apollo.errors?.length) {
  failures.push(...apollo.errors.map((error) => `@apollo/composition: ${error.extensions?.code ?? ""} ${error.message}`));
} else {
  for (const hint of apollo.hints ?? []) console.error(`@apollo/composition hint: ${hint.definition.code} ${hint.message}`);
}

const guild = guildCompose(services);
if (compositionHasErrors(guild)) {
  failures.push(
    ...guild.errors.map((error) => `@theguild/federation-composition: ${error.extensions?.code ?? ""} ${error.message}`),
  );
}

if (failures.length) {
  for (const failure of failures) console.error(failure);
  process.exit(1);
}

await writeFile(options.out, apollo.supergraphSdl);
if (options.outGuild) await writeFile(options.outGuild, guild.supergraphSdl);
console.log(
  `composed ${services.map((s) => s.name).join(", ")} with @apollo/composition and ` +
    `@theguild/federation-composition: ${options.out}${options.outGuild ? `, ${options.outGuild}` : ""}`,
);
