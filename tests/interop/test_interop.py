#!/usr/bin/python3
"""Interop: discovery-srv driven by a gRPC client that is not ours.

The client is Debian's python3-grpcio (grpc C core underneath, but its own
HTTP/2 client, channel and stream code paths), run with /usr/bin/python3.
Message classes for the standard protocols (grpc.health.v1, server
reflection v1alpha and v1) are generated with protoc --python_out at test
start; the discovery messages are NOT generated: they are built from the
descriptors the server hands out over reflection, the way grpcurl, buf
curl or Postman call a server with no .proto at hand.

Environment (set by meson):
  PLATFORM_BUILD_DIR   build tree holding services/discovery/discovery-srv
  PLATFORM_SOURCE_DIR  source tree holding proto/ (defaults to ../.. of here)

Self-contained on purpose: it shares no harness with tests/integration.
"""
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("PLATFORM_SOURCE_DIR",
                            os.path.normpath(os.path.join(HERE, "..", "..")))
BUILD_DIR = os.environ.get("PLATFORM_BUILD_DIR",
                           os.path.join(SOURCE_DIR, "build"))
BINARY = os.path.join(BUILD_DIR, "services", "discovery", "discovery-srv")
PROTO_DIR = os.path.join(SOURCE_DIR, "proto")

DISCOVERY_SERVICE = "platform.discovery.v1.Discovery"
DISCOVERY_FILE = "platform/discovery/v1/discovery.proto"
HEALTH_SERVICE = "grpc.health.v1.Health"
REFLECTION_V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "LeakSanitizer",
                     "runtime error:")
START_TIMEOUT = 30.0      # sanitizer builds start slowly
STOP_TIMEOUT = 30.0       # longer than the server's default grace period
RPC_TIMEOUT = 10.0

NOT_FOUND = 5             # grpc status code, as reflection's error_code

# Filled by setUpModule.
TMP = None
PB = {}                   # "health", "v1alpha", "v1" -> generated module


def _load_generated(name, path):
    """Imports a generated _pb2 by file path under a private module name.

    The generated files live at grpc/health/v1/... and so would shadow the
    grpc package itself if imported through sys.path.
    """
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def setUpModule():
    global TMP
    TMP = tempfile.mkdtemp(prefix="interop-")
    protos = {
        "health": "grpc/health/v1/health.proto",
        "v1alpha": "grpc/reflection/v1alpha/reflection.proto",
        "v1": "grpc/reflection/v1/reflection.proto",
    }
    gen = os.path.join(TMP, "gen")
    os.mkdir(gen)
    subprocess.run(["protoc", "--python_out=" + gen, "-I", PROTO_DIR] +
                   [os.path.join(PROTO_DIR, p) for p in protos.values()],
                   check=True)
    for key, rel in protos.items():
        path = os.path.join(gen, rel[:-len(".proto")] + "_pb2.py")
        PB[key] = _load_generated("interop_%s_pb2" % key, path)


def tearDownModule():
    if TMP is not None:
        shutil.rmtree(TMP, ignore_errors=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def message_class(desc):
    """A message class from a descriptor, across protobuf 4.x APIs."""
    get = getattr(message_factory, "GetMessageClass", None)
    if get is not None:
        return get(desc)
    return message_factory.MessageFactory(desc.file.pool).GetPrototype(desc)


class DiscoveryServer:
    """One discovery-srv process on a free loopback port."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.proc = None
        self.port = None
        self.stderr_path = os.path.join(workdir, "discovery-srv.stderr")
        self.stdout_path = os.path.join(workdir, "discovery-srv.stdout")

    def start(self):
        if not os.access(BINARY, os.X_OK):
            raise AssertionError("no server binary at %s" % BINARY)
        last = ""
        # The port is free when chosen but another process may take it
        # before the server binds; try a few ports.
        for _ in range(3):
            self.port = free_port()
            addr = "127.0.0.1:%d" % self.port
            with open(self.stdout_path, "wb") as out, \
                    open(self.stderr_path, "wb") as err:
                # The interop clients test the protocol, not the
                # guard: run it with the development switch.
                self.proc = subprocess.Popen(
                    [BINARY, "--listen", addr, "--discovery", addr,
                     "--log-format", "json", "--insecure-no-auth"],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=err)
            if self._wait_serving():
                return
            last = self.stderr()
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    "discovery-srv did not become SERVING within %.0fs; "
                    "stderr:\n%s" % (START_TIMEOUT, last))
        raise AssertionError("discovery-srv exited at start (code %s); "
                             "stderr:\n%s" % (self.proc.returncode, last))

    def _wait_serving(self):
        deadline = time.monotonic() + START_TIMEOUT
        health = PB["health"]
        with grpc.insecure_channel(self.target) as ch:
            check = ch.unary_unary(
                "/grpc.health.v1.Health/Check",
                request_serializer=health.HealthCheckRequest.SerializeToString,
                response_deserializer=health.HealthCheckResponse.FromString)
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    return False
                try:
                    r = check(health.HealthCheckRequest(service=""),
                              timeout=1.0)
                    if r.status == health.HealthCheckResponse.SERVING:
                        return True
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        return False

    @property
    def target(self):
        return "127.0.0.1:%d" % self.port

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def sanitizer_report(self):
        text = self.stderr()
        for marker in SANITIZER_MARKERS:
            if marker in text:
                return marker, text
        return None, text

    def stop(self):
        """SIGTERM, then the exit code (None if it had to be killed)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None


class InteropTest(unittest.TestCase):
    server = None
    channel = None

    @classmethod
    def setUpClass(cls):
        cls.server = DiscoveryServer(TMP)
        cls.server.start()
        cls.channel = grpc.insecure_channel(cls.server.target)

    @classmethod
    def tearDownClass(cls):
        if cls.channel is not None:
            cls.channel.close()
        if cls.server is None or cls.server.proc is None:
            return
        alive_before = cls.server.proc.poll() is None
        rc = cls.server.stop()
        marker, text = cls.server.sanitizer_report()
        problems = []
        if not alive_before:
            problems.append("discovery-srv died during the tests (exit %s)"
                            % cls.server.proc.returncode)
        elif rc is None:
            problems.append("discovery-srv did not exit within %.0fs of "
                            "SIGTERM (killed)" % STOP_TIMEOUT)
        elif rc != 0:
            problems.append("discovery-srv exited %d after SIGTERM, want 0"
                            % rc)
        if marker is not None:
            problems.append("sanitizer report in stderr (%r)" % marker)
        if problems:
            raise AssertionError("; ".join(problems) +
                                 "\n--- discovery-srv stderr ---\n" + text)

    def setUp(self):
        # A crash in an earlier test would make every later one time out.
        rc = self.server.proc.poll()
        if rc is not None:
            self.fail("discovery-srv is not running (exit %s); stderr:\n%s"
                      % (rc, self.server.stderr()))

    # --- grpc.health.v1 -------------------------------------------------

    def _health(self, method, kind):
        health = PB["health"]
        return getattr(self.channel, kind)(
            "/grpc.health.v1.Health/" + method,
            request_serializer=health.HealthCheckRequest.SerializeToString,
            response_deserializer=health.HealthCheckResponse.FromString)

    def test_health_check_server(self):
        health = PB["health"]
        r = self._health("Check", "unary_unary")(
            health.HealthCheckRequest(service=""), timeout=RPC_TIMEOUT)
        self.assertEqual(r.status, health.HealthCheckResponse.SERVING)

    def test_health_check_discovery_service(self):
        health = PB["health"]
        r = self._health("Check", "unary_unary")(
            health.HealthCheckRequest(service=DISCOVERY_SERVICE),
            timeout=RPC_TIMEOUT)
        self.assertEqual(r.status, health.HealthCheckResponse.SERVING)

    def test_health_check_unknown_service_is_not_found(self):
        health = PB["health"]
        with self.assertRaises(grpc.RpcError) as cm:
            self._health("Check", "unary_unary")(
                health.HealthCheckRequest(service="no.such.Service"),
                timeout=RPC_TIMEOUT)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_health_watch_first_message_serving(self):
        health = PB["health"]
        stream = self._health("Watch", "unary_stream")(
            health.HealthCheckRequest(service=""), timeout=RPC_TIMEOUT)
        try:
            first = next(stream)
            self.assertEqual(first.status, health.HealthCheckResponse.SERVING)
        finally:
            stream.cancel()
        # The server must still answer after the watcher went away.
        r = self._health("Check", "unary_unary")(
            health.HealthCheckRequest(service=""), timeout=RPC_TIMEOUT)
        self.assertEqual(r.status, health.HealthCheckResponse.SERVING)

    # --- server reflection ----------------------------------------------

    def _reflect(self, version, requests):
        """Sends requests on ONE ServerReflectionInfo stream (as grpcurl
        does) and returns the responses, one per request, in order."""
        pb = PB[version]
        service = REFLECTION_V1ALPHA if version == "v1alpha" else \
            REFLECTION_V1
        call = self.channel.stream_stream(
            "/%s/ServerReflectionInfo" % service,
            request_serializer=pb.ServerReflectionRequest.SerializeToString,
            response_deserializer=pb.ServerReflectionResponse.FromString)
        responses = list(call(iter(requests), timeout=RPC_TIMEOUT))
        self.assertEqual(len(responses), len(requests),
                         "one response per reflection request")
        return responses

    def _list_services(self, version):
        pb = PB[version]
        (resp,) = self._reflect(version, [
            pb.ServerReflectionRequest(list_services="")])
        self.assertEqual(resp.WhichOneof("message_response"),
                         "list_services_response", str(resp))
        return {s.name for s in resp.list_services_response.service}

    def _files_for_symbol(self, version, symbol):
        pb = PB[version]
        (resp,) = self._reflect(version, [
            pb.ServerReflectionRequest(file_containing_symbol=symbol)])
        self.assertEqual(resp.WhichOneof("message_response"),
                         "file_descriptor_response", str(resp))
        files = []
        for raw in resp.file_descriptor_response.file_descriptor_proto:
            fdp = descriptor_pb2.FileDescriptorProto()
            fdp.ParseFromString(raw)
            files.append(fdp)
        self.assertTrue(files, "no FileDescriptorProto for " + symbol)
        return files

    def test_reflection_list_services(self):
        want = {DISCOVERY_SERVICE, HEALTH_SERVICE, REFLECTION_V1ALPHA,
                REFLECTION_V1}
        for version in ("v1alpha", "v1"):
            with self.subTest(version=version):
                names = self._list_services(version)
                self.assertTrue(want <= names,
                                "missing %s in %s" % (want - names, names))

    def test_reflection_file_containing_symbol(self):
        for version in ("v1alpha", "v1"):
            with self.subTest(version=version):
                files = self._files_for_symbol(version, DISCOVERY_SERVICE)
                self.assertEqual(files[0].name, DISCOVERY_FILE)
                self.assertEqual(files[0].package, "platform.discovery.v1")
                svc = [s for s in files[0].service if s.name == "Discovery"]
                self.assertEqual(len(svc), 1)
                methods = {m.name: m for m in svc[0].method}
                for name in ("Register", "Deregister", "GetService",
                             "ListServices", "Watch"):
                    self.assertIn(name, methods)
                self.assertTrue(methods["Watch"].server_streaming)
                self.assertFalse(methods["GetService"].server_streaming)
                self.assertFalse(methods["GetService"].client_streaming)

    def test_reflection_symbol_kinds(self):
        # grpcurl asks for methods and messages by their full names too.
        for version in ("v1alpha", "v1"):
            for symbol in (DISCOVERY_SERVICE + ".GetService",
                           "platform.discovery.v1.Node",
                           "platform.discovery.v1.EventType"):
                with self.subTest(version=version, symbol=symbol):
                    files = self._files_for_symbol(version, symbol)
                    self.assertEqual(files[0].name, DISCOVERY_FILE)
            with self.subTest(version=version, symbol=HEALTH_SERVICE):
                files = self._files_for_symbol(version, HEALTH_SERVICE)
                self.assertEqual(files[0].package, "grpc.health.v1")

    def test_reflection_file_by_filename(self):
        for version in ("v1alpha", "v1"):
            pb = PB[version]
            with self.subTest(version=version):
                (resp,) = self._reflect(version, [
                    pb.ServerReflectionRequest(file_by_filename=DISCOVERY_FILE)
                ])
                self.assertEqual(resp.WhichOneof("message_response"),
                                 "file_descriptor_response", str(resp))
                raw = resp.file_descriptor_response.file_descriptor_proto
                self.assertGreaterEqual(len(raw), 1)
                fdp = descriptor_pb2.FileDescriptorProto.FromString(raw[0])
                self.assertEqual(fdp.name, DISCOVERY_FILE)
                self.assertEqual(
                    {m.name for m in fdp.message_type} >=
                    {"RegisterRequest", "GetServiceRequest",
                     "GetServiceResponse", "Node", "Service"}, True)

    def test_reflection_unknown_symbol_and_file_not_found(self):
        for version in ("v1alpha", "v1"):
            pb = PB[version]
            with self.subTest(version=version):
                reqs = [
                    pb.ServerReflectionRequest(
                        file_containing_symbol="no.such.pkg.Nothing"),
                    pb.ServerReflectionRequest(
                        file_by_filename="no/such/file.proto"),
                ]
                for resp in self._reflect(version, reqs):
                    self.assertEqual(resp.WhichOneof("message_response"),
                                     "error_response", str(resp))
                    self.assertEqual(resp.error_response.error_code,
                                     NOT_FOUND, str(resp))

    def test_reflection_many_requests_on_one_stream(self):
        # grpcurl keeps one stream open and asks several questions.
        for version in ("v1alpha", "v1"):
            pb = PB[version]
            with self.subTest(version=version):
                reqs = [
                    pb.ServerReflectionRequest(list_services=""),
                    pb.ServerReflectionRequest(
                        file_containing_symbol=DISCOVERY_SERVICE),
                    pb.ServerReflectionRequest(
                        file_containing_symbol="no.such.Symbol"),
                    pb.ServerReflectionRequest(file_by_filename=DISCOVERY_FILE),
                ]
                got = [r.WhichOneof("message_response")
                       for r in self._reflect(version, reqs)]
                self.assertEqual(got, ["list_services_response",
                                       "file_descriptor_response",
                                       "error_response",
                                       "file_descriptor_response"])

    # --- calling discovery from reflected descriptors only --------------

    def _reflected_pool(self, version):
        """A fresh descriptor pool holding only what reflection returned."""
        files = {f.name: f for f in
                 self._files_for_symbol(version, DISCOVERY_SERVICE)}
        pool = descriptor_pool.DescriptorPool()
        added = set()
        # Add in dependency order; every dependency must have been sent.
        while len(added) < len(files):
            progress = False
            for name, fdp in files.items():
                if name in added:
                    continue
                missing = [d for d in fdp.dependency if d not in files]
                self.assertEqual(missing, [], "reflection answer for %s "
                                 "lacks dependencies" % name)
                if all(d in added for d in fdp.dependency):
                    pool.Add(fdp)
                    added.add(name)
                    progress = True
            self.assertTrue(progress, "dependency cycle in reflected files")
        return pool

    def _dynamic_unary(self, pool, method_name):
        svc = pool.FindServiceByName(DISCOVERY_SERVICE)
        method = svc.methods_by_name[method_name]
        req_cls = message_class(method.input_type)
        resp_cls = message_class(method.output_type)
        call = self.channel.unary_unary(
            "/%s/%s" % (svc.full_name, method.name),
            request_serializer=req_cls.SerializeToString,
            response_deserializer=resp_cls.FromString)
        return req_cls, call

    def test_dynamic_register_and_get_service(self):
        for version in ("v1alpha", "v1"):
            with self.subTest(version=version):
                self._register_and_get(version)

    def _register_and_get(self, version):
        pool = self._reflected_pool(version)
        name = "interop.dynamic.%s.%d" % (version, os.getpid())
        node_id = "%s-node-1" % name
        address = "127.0.0.1:1%04d" % (os.getpid() % 10000)

        reg_cls, register = self._dynamic_unary(pool, "Register")
        self.assertEqual(reg_cls.DESCRIPTOR.full_name,
                         "platform.discovery.v1.RegisterRequest")
        req = reg_cls()
        req.service.name = name
        req.service.version = "1.2.3"
        req.service.metadata["team"] = "interop"
        ep = req.service.endpoints.add()
        ep.name = "Interop.Echo"
        node = req.service.nodes.add()
        node.id = node_id
        node.address = address
        node.metadata["zone"] = "loopback"
        req.ttl_seconds = 60
        before_ms = int(time.time() * 1000)
        resp = register(req, timeout=RPC_TIMEOUT)
        self.assertEqual(resp.ttl_seconds, 60)
        self.assertGreater(resp.revision, 0)

        get_cls, get_service = self._dynamic_unary(pool, "GetService")
        self.assertEqual(get_cls.DESCRIPTOR.full_name,
                         "platform.discovery.v1.GetServiceRequest")
        got = get_service(get_cls(name=name), timeout=RPC_TIMEOUT)
        self.assertEqual(len(got.services), 1, str(got))
        svc = got.services[0]
        self.assertEqual(svc.name, name)
        self.assertEqual(svc.version, "1.2.3")
        self.assertEqual(dict(svc.metadata), {"team": "interop"})
        self.assertEqual([e.name for e in svc.endpoints], ["Interop.Echo"])
        self.assertEqual(len(svc.nodes), 1, str(svc))
        self.assertEqual(svc.nodes[0].id, node_id)
        self.assertEqual(svc.nodes[0].address, address)
        self.assertEqual(dict(svc.nodes[0].metadata), {"zone": "loopback"})
        # The TTL is in force: expiry is about 60 s from now.
        self.assertGreater(svc.nodes[0].expires_unix_ms, before_ms + 50000)
        self.assertLess(svc.nodes[0].expires_unix_ms,
                        int(time.time() * 1000) + 70000)

        dereg_cls, deregister = self._dynamic_unary(pool, "Deregister")
        out = deregister(dereg_cls(name=name, version="1.2.3",
                                   node_id=node_id), timeout=RPC_TIMEOUT)
        self.assertEqual(out.removed, 1)

    def test_dynamic_bad_input_is_invalid_argument(self):
        # A Register with no node is the caller's mistake, not INTERNAL.
        pool = self._reflected_pool("v1")
        reg_cls, register = self._dynamic_unary(pool, "Register")
        req = reg_cls()
        req.service.name = "interop.no.nodes"
        req.service.version = "1"
        with self.assertRaises(grpc.RpcError) as cm:
            register(req, timeout=RPC_TIMEOUT)
        self.assertEqual(cm.exception.code(),
                         grpc.StatusCode.INVALID_ARGUMENT)

    def test_unknown_method_is_unimplemented(self):
        call = self.channel.unary_unary(
            "/platform.discovery.v1.Discovery/NoSuchMethod",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b)
        with self.assertRaises(grpc.RpcError) as cm:
            call(b"", timeout=RPC_TIMEOUT)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)


if __name__ == "__main__":
    prog = unittest.main(exit=False, verbosity=2)
    sys.exit(0 if prog.result.wasSuccessful() else 1)
