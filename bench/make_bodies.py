#!/usr/bin/python3
"""Writes the gRPC-framed request bodies bench/run loads with.

  make_bodies.py PROTO_DIR OUT_DIR

Each file is one gRPC message frame (1 byte compressed flag = 0, 4 bytes
big-endian length, the protobuf message), which is what h2load -d sends as
the request body.

Discovery, config and kv messages come from proto/ through protoc
--python_out (loaded by file path); etcd's messages are hand-encoded
(etcd's protos are not in the tree): RangeRequest{key = 1} and
PutRequest{key = 1, value = 2}.

Files written:
  register.bin     discovery Register: SERVICE 1.0.0 with 3 nodes, TTL 3600
  getservice.bin   discovery GetService{name: SERVICE}
  echo.bin         the echo payload: the same bytes as getservice.bin
  etcd_put.bin     etcd Put{key: ETCD_KEY, value: ETCD_VALUE}
  etcd_range.bin   etcd Range{key: ETCD_KEY}
  config_seed.bin  config Update of the document Read loads: CONFIG_NS,
                   CONFIG_READ_PATH, CONFIG_DOC (written once, beforehand)
  config_read.bin  config Read{namespace, path}: the latest version of it
  config_update.bin  config Update of CONFIG_DOC at CONFIG_WRITE_PATH with
                   expected_version 0 (unconditional): every request writes
                   a new version
  kv_seed.bin      kv Put of KV_VALUE at KV_TABLE / KV_GET_KEY: the entry
                   kv_get.bin reads (sent once, beforehand)
  kv_get.bin       kv Get{table: KV_TABLE, key: KV_GET_KEY}
  kv_put.bin       kv Put of KV_VALUE at KV_TABLE / KV_PUT_KEY,
                   unconditional: every request a new version of one key
  kv_value.bin     KV_VALUE alone, unframed (redis-cli -x SET preloads the
                   key redis-benchmark's GET reads with the same bytes)
"""
import importlib.util
import os
import struct
import subprocess
import sys
import tempfile

SERVICE = "bench.target"
NODES = 3
ETCD_KEY = b"/bench/platform/bench.target"
ETCD_VALUE = b"10.0.0.1:8080"
CONFIG_NS = "bench"
CONFIG_READ_PATH = "bench/read"
CONFIG_WRITE_PATH = "bench/write"
# A small document, as a service's settings are: about 100 bytes.
CONFIG_DOC = ('{"owner": "payments-eu", "enabled": true, "limits": '
              '{"daily": {"max": 1000, "currency": "EUR"}, "burst": 20}}')
KV_TABLE = "bench"
KV_GET_KEY = "bench/get"
KV_PUT_KEY = "bench/put"
# 100 bytes, as redis-benchmark -d 100 writes; the probe looks for its
# first words in Get's and Put's answers.
KV_VALUE = (b"kv-bench-value:" + b"0123456789abcdef" * 6)[:100]
assert len(KV_VALUE) == 100


def frame(msg_bytes):
    return struct.pack(">BI", 0, len(msg_bytes)) + msg_bytes


# The tests' wire helpers: a length-delimited protobuf field (wire type 2).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tests", "integration"))
from harness import ld_field as pb_bytes  # noqa: E402


def proto_module(proto_dir, tmp, rel):
    subprocess.run(["protoc", "--python_out=" + tmp, "-I", proto_dir,
                    os.path.join(proto_dir, rel)], check=True)
    path = os.path.join(tmp, rel[:-len(".proto")] + "_pb2.py")
    name = "bench_" + os.path.basename(rel)[:-len(".proto")] + "_pb2"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    proto_dir, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-pb-") as tmp:
        d = proto_module(proto_dir, tmp,
                         "platform/discovery/v1/discovery.proto")
        c = proto_module(proto_dir, tmp, "platform/config/v1/config.proto")
        k = proto_module(proto_dir, tmp, "platform/kv/v1/kv.proto")

    reg = d.RegisterRequest(ttl_seconds=3600)
    reg.service.name = SERVICE
    reg.service.version = "1.0.0"
    reg.service.endpoints.add(name="Target.Get")
    for i in range(1, NODES + 1):
        n = reg.service.nodes.add(id="%s-node-%d" % (SERVICE, i),
                                  address="10.0.0.%d:8080" % i)
        n.metadata["zone"] = "zone-%d" % i
    get = d.GetServiceRequest(name=SERVICE)
    seed = c.UpdateRequest(namespace=CONFIG_NS, path=CONFIG_READ_PATH,
                           json=CONFIG_DOC, expected_version=0,
                           author="bench", comment="bench: Read's document")
    read = c.ReadRequest(namespace=CONFIG_NS, path=CONFIG_READ_PATH)
    update = c.UpdateRequest(namespace=CONFIG_NS, path=CONFIG_WRITE_PATH,
                             json=CONFIG_DOC, expected_version=0,
                             author="bench", comment="bench: Update load")
    kv_seed = k.PutRequest(table=KV_TABLE, key=KV_GET_KEY, value=KV_VALUE)
    kv_get = k.GetRequest(table=KV_TABLE, key=KV_GET_KEY)
    kv_put = k.PutRequest(table=KV_TABLE, key=KV_PUT_KEY, value=KV_VALUE)

    files = {
        "register.bin": reg.SerializeToString(),
        "getservice.bin": get.SerializeToString(),
        "echo.bin": get.SerializeToString(),
        "etcd_put.bin": pb_bytes(1, ETCD_KEY) + pb_bytes(2, ETCD_VALUE),
        "etcd_range.bin": pb_bytes(1, ETCD_KEY),
        "config_seed.bin": seed.SerializeToString(),
        "config_read.bin": read.SerializeToString(),
        "config_update.bin": update.SerializeToString(),
        "kv_seed.bin": kv_seed.SerializeToString(),
        "kv_get.bin": kv_get.SerializeToString(),
        "kv_put.bin": kv_put.SerializeToString(),
    }
    for name, msg in files.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(frame(msg))
    with open(os.path.join(out, "kv_value.bin"), "wb") as f:
        f.write(KV_VALUE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
