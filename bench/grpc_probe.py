#!/usr/bin/python3
"""Proves that an h2load request body really succeeds over gRPC.

h2load counts an HTTP 200 as a success even when the gRPC status in the
trailers is an error, so bench/run sends the exact body file it will load
with through a real gRPC client first (Debian's python3-grpcio): the file's
5-byte gRPC frame prefix is checked and stripped, the rest is sent as-is
with an identity serializer, and the call must end with status OK and a
non-empty response (optionally containing given bytes, and optionally
holding given protobuf fields with a non-zero value).

  grpc_probe.py TARGET PATH BODY.bin [--contains TEXT]... [--field N.M]...
                [--quiet]

--field takes a dotted path of field numbers into the response message:
"1.3" is field 3 of the message in field 1 (config's UpdateResponse
value.version, etcd's PutResponse header.revision). The last field must be
there with a non-zero varint or a non-empty length-delimited value. The
response is decoded from the wire format alone, so no .proto is needed.

Exit 0 on success, 1 on any failure (with the reason on stderr).
Also used by bench/run to register the benchmark's service and to put the
etcd key, since those are one unary call each.
"""
import argparse
import struct
import sys

import grpc


def read_frame(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 5:
        raise ValueError("%s: shorter than a gRPC frame prefix" % path)
    flag, length = struct.unpack(">BI", data[:5])
    if flag != 0:
        raise ValueError("%s: compressed flag set" % path)
    if length != len(data) - 5:
        raise ValueError("%s: frame says %d bytes, file holds %d"
                         % (path, length, len(data) - 5))
    return data[5:]


def varint(buf, i):
    n = shift = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def fields(buf):
    """(field number, wire type, value) of each field of a message."""
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(buf, i)
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 2:
            n, i = varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError("wire type %d" % wt)
        if i > len(buf):
            raise ValueError("truncated field %d" % num)
        yield num, wt, v


def field_value(msg, path):
    """The value at a dotted field path (the last occurrence, as protobuf
    merges), or None when absent."""
    nums = [int(p) for p in path.split(".")]
    cur = msg
    for depth, want in enumerate(nums):
        found = None
        for num, wt, v in fields(cur):
            if num == want:
                found = (wt, v)
        if found is None:
            return None
        wt, v = found
        if depth < len(nums) - 1:
            if wt != 2:
                raise ValueError("field %d is not a message" % want)
            cur = v
        else:
            return v
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target", help="host:port")
    ap.add_argument("path", help="/package.Service/Method")
    ap.add_argument("body", help="request body file, gRPC-framed")
    ap.add_argument("--contains", action="append", default=[],
                    help="text the response bytes must contain")
    ap.add_argument("--field", action="append", default=[],
                    help="dotted field path that must be set and non-zero")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()

    try:
        payload = read_frame(a.body)
    except (OSError, ValueError) as e:
        print("grpc_probe: %s" % e, file=sys.stderr)
        return 1
    identity = lambda b: b  # noqa: E731
    with grpc.insecure_channel(a.target) as ch:
        call = ch.unary_unary(a.path, request_serializer=identity,
                              response_deserializer=identity)
        try:
            resp, info = call.with_call(payload, timeout=a.timeout)
        except grpc.RpcError as e:
            print("grpc_probe: %s %s: %s: %s" % (a.target, a.path,
                  e.code().name, e.details()), file=sys.stderr)
            return 1
    if info.code() != grpc.StatusCode.OK:
        print("grpc_probe: %s: status %s" % (a.path, info.code().name),
              file=sys.stderr)
        return 1
    if not resp:
        print("grpc_probe: %s: empty response" % a.path, file=sys.stderr)
        return 1
    for text in a.contains:
        if text.encode() not in resp:
            print("grpc_probe: %s: response lacks %r" % (a.path, text),
                  file=sys.stderr)
            return 1
    seen = []
    for path in a.field:
        try:
            v = field_value(resp, path)
        except ValueError as e:
            print("grpc_probe: %s: response is not a protobuf message "
                  "(%s)" % (a.path, e), file=sys.stderr)
            return 1
        if not v:
            print("grpc_probe: %s: response field %s is missing or zero"
                  % (a.path, path), file=sys.stderr)
            return 1
        seen.append("field %s = %s" % (path, v if isinstance(v, int)
                                        else "%d bytes" % len(v)))
    if not a.quiet:
        print("grpc_probe: %s %s OK, %d request bytes -> %d response bytes%s"
              % (a.target, a.path, len(payload), len(resp),
                 "".join(", " + x for x in seen)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
