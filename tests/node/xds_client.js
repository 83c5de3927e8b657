// A proxyless xDS client that is not ours: grpc-js with @grpc/grpc-js-xds
// calling platform.probe.v1.Probe/Ping at TARGET (xds:///probe), routed
// by whatever the xDS server in $GRPC_XDS_BOOTSTRAP (router-srv) says.
// Driven line by line over stdin, one JSON line out per command:
//
//   calls N [MS]  N Pings, 8 at a time, each with a deadline of MS
//             (20000): {"nodes": {node_id: n, ...},
//             "errors": {code: n, ...}, "messages": [first few]}
//   quit      exit 0
//
//   node xds_client.js TARGET PROTO_DIR
'use strict';

const path = require('path');
const readline = require('readline');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
require('@grpc/grpc-js-xds').register();

const [target, protoDir] = process.argv.slice(2);
if (!target || !protoDir) {
  console.error('usage: xds_client.js TARGET PROTO_DIR');
  process.exit(2);
}
const def = protoLoader.loadSync(
  path.join(protoDir, 'platform/probe/v1/probe.proto'),
  { keepCase: true, includeDirs: [protoDir] });
const Probe = grpc.loadPackageDefinition(def).platform.probe.v1.Probe;
const client = new Probe(target, grpc.credentials.createInsecure());

function ping(ms) {
  return new Promise((resolve) => {
    client.Ping({ payload: 'x' }, { deadline: Date.now() + ms },
      (err, resp) => resolve(err ? { err } : { node: resp.node_id }));
  });
}

async function calls(n, ms) {
  const out = { nodes: {}, errors: {}, messages: [] };
  let next = 0;
  async function worker() {
    while (next < n) {
      next++;
      const r = await ping(ms);
      if (r.err) {
        out.errors[r.err.code] = (out.errors[r.err.code] || 0) + 1;
        if (out.messages.length < 3) out.messages.push(r.err.details);
      } else {
        out.nodes[r.node] = (out.nodes[r.node] || 0) + 1;
      }
    }
  }
  await Promise.all(Array.from({ length: 8 }, worker));
  return out;
}

// One command at a time, in order.
let queue = Promise.resolve();
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  queue = queue.then(async () => {
    const [cmd, arg, ms] = line.trim().split(/\s+/);
    if (cmd === 'calls') {
      process.stdout.write(JSON.stringify(await calls(Number(arg),
        Number(ms || 20000))) + '\n');
    } else if (cmd === 'quit') {
      client.close();
      process.exit(0);
    } else {
      process.stdout.write(JSON.stringify({ error: 'unknown: ' + line }) +
        '\n');
    }
  });
}).on('close', () => queue.then(() => process.exit(0)));
