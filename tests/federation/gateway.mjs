// A federation gateway (@apollo/gateway in Apollo Server) serving a composed supergraph.
//
//   node gateway.mjs --supergraph supergraph.graphql [--port 0] [--host 127.0.0.1]
//
// Every subgraph request carries the caller's own Authorization header: the contact gateway answers 401 without a
// bearer token, and its scopes decide what each caller may read. When listening, prints one line to stdout:
// `gateway ready at http://HOST:PORT/` (port 0 picks a free port). SIGTERM or SIGINT stops it.
import { readFile } from "node:fs/promises";

import { ApolloGateway, RemoteGraphQLDataSource } from "@apollo/gateway";
import { ApolloServer } from "@apollo/server";
import { startStandaloneServer } from "@apollo/server/standalone";

function usage(message) {
  console.error(`${message}\nusage: node gateway.mjs --supergraph FILE [--port 0] [--host 127.0.0.1]`);
  process.exit(2);
}

function parseArgs(argv) {
  const options = { supergraph: undefined, port: 0, host: "127.0.0.1" };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[++i];
    if (value === undefined) usage(`${flag} needs a value`);
    if (flag === "--supergraph") options.supergraph = value;
    else if (flag === "--port") options.port = Number.parseInt(value, 10);
    else if (flag === "--host") options.host = value;
    else usage(`unexpected argument ${flag}`);
  }
  if (options.supergraph === undefined) usage("--supergraph is missing");
  if (!Number.isInteger(options.port) || options.port < 0) usage("--port must be a port number (0: any free one)");
  return options;
}

/** Forwards the incoming request's Authorization header to every subgraph. */
class AuthorizationForwarding extends RemoteGraphQLDataSource {
  willSendRequest({ request, context }) {
    if (context.authorization) request.http.headers.set("authorization", context.authorization);
  }
}

const options = parseArgs(process.argv.slice(2));

const gateway = new ApolloGateway({
  supergraphSdl: await readFile(options.supergraph, "utf8"),
  buildService: ({ url }) => new AuthorizationForwarding({ url }),
});
const server = new ApolloServer({ gateway });
const { url } = await startStandaloneServer(server, {
  listen: { port: options.port, host: options.host },
  context: async ({ req }) => ({ authorization: req.headers.authorization }),
});
console.log(`gateway ready at ${url}`);

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.once(signal, async () => {
    await server.stop();
    process.exit(0);
  });
}
