'use strict';
// Node side of the grpc-terminal interop tests (@grpc/grpc-js + protobufjs).
//
//   node peer.js server --protos DIR...             serve gtinterop.NodePeer/Fail on 127.0.0.1:0,
//                                                   print {"port": N}
//   node peer.js client --protos DIR... --addr A K  call /test.Probe/Unary with each key K and
//                                                   print one JSON line per call
//
// --protos names the directories .proto imports are resolved against: the
// repository's proto/ and the site-packages directory that holds
// googleapis-common-protos' google/rpc/*.proto. The server exits when stdin
// closes, so a test that dies cannot leave it behind; the client exits when
// its calls (each with a 10 s deadline) are done.

const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protobuf = require('protobufjs');

const DETAILS_KEY = 'grpc-status-details-bin';
const TYPE_PREFIX = 'type.googleapis.com/';

function parseArgs(argv) {
  const out = { mode: argv[0], protos: [], addr: '', keys: [] };
  for (let i = 1; i < argv.length; i++) {
    if (argv[i] === '--protos') out.protos.push(argv[++i]);
    else if (argv[i] === '--addr') out.addr = argv[++i];
    else out.keys.push(argv[i]);
  }
  return out;
}

function loadRoot(dirs) {
  const root = new protobuf.Root();
  const fallback = root.resolvePath;
  root.resolvePath = (origin, target) => {
    for (const dir of dirs) {
      const candidate = path.join(dir, target);
      if (fs.existsSync(candidate)) return candidate;
    }
    return fallback.call(root, origin, target);
  };
  root.loadSync(
    [
      'google/protobuf/wrappers.proto',
      'google/rpc/status.proto',
      'google/rpc/error_details.proto',
      'c1/connector/v2/annotation_provision_failure.proto',
    ],
    { keepCase: true },
  );
  root.resolveAll();
  return root;
}

function exitOnStdinEnd(cleanup) {
  process.stdin.on('end', () => {
    cleanup();
    process.exit(0);
  });
  process.stdin.resume();
}

function pack(root, typeName, fields) {
  const type = root.lookupType(typeName);
  const err = type.verify(fields);
  if (err) throw new Error(`${typeName}: ${err}`);
  return { type_url: TYPE_PREFIX + typeName, value: type.encode(type.create(fields)).finish() };
}

function unpack(root, any) {
  const name = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
  let type;
  try {
    type = root.lookupType(name);
  } catch (e) {
    return { '@type': any.type_url };
  }
  const obj = type.toObject(type.decode(any.value), { enums: String, longs: Number, defaults: true });
  return Object.assign({ '@type': name }, obj);
}

function codec(type) {
  return {
    serialize: (obj) => Buffer.from(type.encode(type.create(obj)).finish()),
    deserialize: (buf) => type.toObject(type.decode(buf), { defaults: true }),
  };
}

function serve(root) {
  const StringValue = root.lookupType('google.protobuf.StringValue');
  const Status = root.lookupType('google.rpc.Status');
  const Reason = root.lookupEnum('c1.connector.v2.ProvisionFailureDetail.Reason');
  const c = codec(StringValue);
  const service = {
    Fail: {
      path: '/gtinterop.NodePeer/Fail',
      requestStream: false,
      responseStream: false,
      requestSerialize: c.serialize,
      requestDeserialize: c.deserialize,
      responseSerialize: c.serialize,
      responseDeserialize: c.deserialize,
    },
  };
  const fail = (call, callback) => {
    const name = call.request.value;
    const number = Reason.values['REASON_' + name];
    if (number === undefined) {
      callback({ code: grpc.status.INVALID_ARGUMENT, details: `unknown reason ${name}` });
      return;
    }
    const code = name === 'OPERATION_NOT_PERMITTED' ? grpc.status.PERMISSION_DENIED
      : grpc.status.FAILED_PRECONDITION;
    const detail = `Node: seat pool 'prod' is full (${name}, 100% used) — ünïcode`;
    const status = Status.create({
      code,
      message: detail,
      details: [
        pack(root, 'c1.connector.v2.ProvisionFailureDetail', { reason: number, detail }),
        pack(root, 'google.rpc.ErrorInfo', {
          reason: name, domain: 'node.example', metadata: { peer: 'grpc-js' },
        }),
      ],
    });
    const metadata = new grpc.Metadata();
    metadata.set(DETAILS_KEY, Buffer.from(Status.encode(status).finish()));
    callback({ code, details: detail, metadata });
  };
  const server = new grpc.Server();
  server.addService(service, { Fail: fail });
  server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
    if (err) {
      console.error('peer: bind failed:', err.message);
      process.exit(1);
    }
    process.stdout.write(JSON.stringify({ port }) + '\n');
  });
  exitOnStdinEnd(() => server.forceShutdown());
}

function callOnce(client, StringValue, root, key) {
  const Status = root.lookupType('google.rpc.Status');
  const c = codec(StringValue);
  return new Promise((resolve) => {
    const deadline = new Date(Date.now() + 10000);
    client.makeUnaryRequest('/test.Probe/Unary', c.serialize, c.deserialize, { value: key },
      new grpc.Metadata(), { deadline }, (err, value) => {
        if (!err) {
          resolve({ key, code: 0, value: value.value });
          return;
        }
        const result = {
          key, code: err.code, message: err.details,
          pushback: err.metadata ? err.metadata.get('grpc-retry-pushback-ms') : [],
          status: null,
        };
        const raw = err.metadata ? err.metadata.get(DETAILS_KEY) : [];
        if (raw.length > 0) {
          const st = Status.decode(raw[0]);
          result.status = {
            code: st.code, message: st.message, details: st.details.map((any) => unpack(root, any)),
          };
        }
        resolve(result);
      });
  });
}

async function runClient(root, addr, keys) {
  const StringValue = root.lookupType('google.protobuf.StringValue');
  const client = new grpc.Client(addr, grpc.credentials.createInsecure());
  for (const key of keys) {
    const result = await callOnce(client, StringValue, root, key);
    process.stdout.write(JSON.stringify(result) + '\n');
  }
  client.close();
  process.exit(0);
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const root = loadRoot(args.protos);
  if (args.mode === 'server') serve(root);
  else if (args.mode === 'client') runClient(root, args.addr, args.keys);
  else {
    console.error('usage: node peer.js server|client --protos DIR... [--addr HOST:PORT KEY...]');
    process.exit(2);
  }
}

main();
