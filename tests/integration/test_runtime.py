#!/usr/bin/python3
"""The server runtime, seen through discovery-srv over real gRPC.

Health, unknown methods, oversized and malformed messages, invalid UTF-8,
cancelled streams, graceful shutdown with deregistration, re-registration
after a discovery restart, bad settings and a port already in use.
Run: /usr/bin/python3 tests/integration/test_runtime.py (meson sets
PLATFORM_BUILD_DIR and PLATFORM_SOURCE_DIR).
"""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

import harness  # noqa: E402
from harness import (Server, WatchReader, free_port, ld_field,  # noqa: E402
                     port_listening, rpc_error, run_binary, wait_for)

PROTOS = harness.protos()
P = PROTOS.discovery
H = PROTOS.health
C = grpc.StatusCode
SERVING = H.HealthCheckResponse.SERVING
SERVICE_UNKNOWN = H.HealthCheckResponse.SERVICE_UNKNOWN

uniq = harness.uniq


def now_ms():
    return int(time.time() * 1000)


def simple_service(name, nid=None, address='h:1', version='v1'):
    s = P.Service(name=name, version=version)
    s.nodes.add(id=nid or name + '-n', address=address)
    return s


def nodes_at(client, name, address):
    """Nodes of service `name` at `address` (empty if none or NOT_FOUND)."""
    try:
        got = client.get(name)
    except grpc.RpcError as e:
        if e.code() == C.NOT_FOUND:
            return []
        raise
    return [(s, n) for s in got.services for n in s.nodes
            if n.address == address]


class Case(harness.ServiceCase):
    def start(self, **kw):
        """A server that is killed at the end of the test whatever
        happens."""
        srv = Server(**kw)
        self.addCleanup(srv.kill)
        return srv


class RuntimeTest(Case):
    """One self-registered discovery-srv shared by the class; it must exit
    0 on SIGTERM at the end with no sanitizer report, after everything the
    tests threw at it."""

    @classmethod
    def setUpClass(cls):
        cls.srv = Server(discovery='self', name='runtime')
        cls.addClassCleanup(cls.srv.kill)
        cls.c = cls.srv.discovery_client()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop_clean()

    def health_watch(self, service, channel=None):
        ch = channel or self.srv.get_channel()
        call = ch.unary_stream(
            harness.HEALTH_PREFIX + 'Watch',
            request_serializer=H.HealthCheckRequest.SerializeToString,
            response_deserializer=H.HealthCheckResponse.FromString)(
                H.HealthCheckRequest(service=service))
        return WatchReader(call)

    def assert_still_serving(self):
        self.assertEqual(self.srv.health_check('').status, SERVING)
        name = uniq('alive')
        self.c.register(simple_service(name))
        self.assertEqual(len(self.c.get(name).services), 1)
        self.assertEqual(self.c.deregister(name, 'v1').removed, 1)

    # -- health

    def test_health_check(self):
        self.assertEqual(self.srv.health_check('').status, SERVING)
        self.assertEqual(
            self.srv.health_check(harness.DISCOVERY_SERVICE).status, SERVING)
        self.assertCode(rpc_error(self.srv.health_check, 'nope'),
                        C.NOT_FOUND)

    def test_health_watch(self):
        for service, first in (('', SERVING),
                               (harness.DISCOVERY_SERVICE, SERVING),
                               ('nope', SERVICE_UNKNOWN)):
            with self.subTest(service=service):
                w = self.health_watch(service)
                try:
                    self.assertEqual(w.next().status, first)
                finally:
                    w.close()

    # -- unknown methods

    def test_unknown_method(self):
        ch = self.srv.get_channel()
        for path in ('/platform.discovery.v1.Discovery/NoSuchMethod',
                     '/no.such.Service/Call',
                     '/grpc.health.v1.Health/Nope'):
            with self.subTest(path=path, kind='unary'):
                e = rpc_error(ch.unary_unary(path), b'', timeout=15)
                self.assertCode(e, C.UNIMPLEMENTED)
            with self.subTest(path=path, kind='stream'):
                call = ch.unary_stream(path)(b'', timeout=15)
                with self.assertRaises(grpc.RpcError) as cm:
                    next(call)
                self.assertCode(cm.exception, C.UNIMPLEMENTED)
        self.assert_still_serving()

    # -- malformed, oversized, invalid UTF-8

    def test_malformed_protobuf(self):
        garbage = [b'\xff\xff\xff',
                   b'\x0a\xff\xff\xff\xff\x0f',   # length beyond the end
                   b'\x0a\x05ab',                 # truncated string
                   b'\x07']                       # bad wire type
        for payload in garbage:
            for method in ('Register', 'Deregister', 'GetService',
                           'ListServices'):
                with self.subTest(method=method, payload=payload):
                    self.assertCode(rpc_error(self.c.raw, method, payload),
                                    C.INVALID_ARGUMENT)
            with self.subTest(method='Watch', payload=payload):
                self.assertCode(rpc_error(self.c.raw, 'Watch', payload,
                                          stream=True), C.INVALID_ARGUMENT)
            with self.subTest(method='Health/Check', payload=payload):
                e = rpc_error(self.srv.get_channel().unary_unary(
                    harness.HEALTH_PREFIX + 'Check'), payload, timeout=10)
                self.assertCode(e, C.INVALID_ARGUMENT)
        self.assert_still_serving()

    def test_oversized_message(self):
        name = uniq('big')
        s = simple_service(name)
        s.metadata['blob'] = 'x' * (5 * 1024 * 1024)
        e = rpc_error(self.c.register, s)
        self.assertCode(e, C.RESOURCE_EXHAUSTED)
        self.assertCode(rpc_error(self.c.get, name), C.NOT_FOUND)

        # Under the message limit but over the metadata limit: the field.
        s.metadata['blob'] = 'x' * (2 * 1024 * 1024)
        e = rpc_error(self.c.register, s)
        self.assertCode(e, C.INVALID_ARGUMENT, 'service.metadata')
        self.assertCode(rpc_error(self.c.get, name), C.NOT_FOUND)
        self.assert_still_serving()

    def test_invalid_utf8(self):
        for bad in (b'ab\xffc', b'ab\xc3\x28', b'\xed\xa0\x80'):
            with self.subTest(method='GetService', bytes=bad):
                self.assertCode(rpc_error(self.c.raw, 'GetService',
                                          ld_field(1, bad)),
                                C.INVALID_ARGUMENT)
            with self.subTest(method='Watch', bytes=bad):
                self.assertCode(rpc_error(self.c.raw, 'Watch',
                                          ld_field(1, bad), stream=True),
                                C.INVALID_ARGUMENT)
            with self.subTest(method='Register', bytes=bad):
                name = uniq('utf')
                s = simple_service(name)
                s.metadata['k'] = 'PLACEHOLDER'
                wire = P.RegisterRequest(service=s).SerializeToString()
                raw = wire.replace(b'PLACEHOLDER',
                                   (bad + b'zzzzzzzzzzz')[:11])
                self.assertCode(rpc_error(self.c.raw, 'Register', raw),
                                C.INVALID_ARGUMENT)
                self.assertCode(rpc_error(self.c.get, name), C.NOT_FOUND)
        self.assert_still_serving()

    # -- cancelled streams

    def test_cancelled_watch(self):
        name = uniq('cancel')
        self.c.register(simple_service(name))
        w = self.c.watch('')
        while w.next().type != P.EVENT_TYPE_SYNCED:
            pass
        w.cancel()
        err = w.end()
        self.assertIsNotNone(err)
        self.assertEqual(err.code(), C.CANCELLED)
        self.assertEqual(len(self.c.get(name).services), 1)

        # 50 more: half cancelled at once, half after the initial state.
        readers = []
        for i in range(50):
            r = self.c.watch(name if i % 3 else '')
            if i % 2:
                r.cancel()
            readers.append(r)
        for i, r in enumerate(readers):
            if i % 2 == 0:
                while r.next().type != P.EVENT_TYPE_SYNCED:
                    pass
                r.cancel()
        for r in readers:
            r.end()
        self.assertEqual(len(self.c.get(name).services), 1)

        # Changes now fan out to no one; the registry still works and a new
        # watcher still gets live events.
        self.c.register(simple_service(name, name + '-2', 'h:2'))
        w = self.c.watch(name)
        try:
            types = []
            while True:
                e = w.next()
                types.append(e.type)
                if e.type == P.EVENT_TYPE_SYNCED:
                    break
            self.assertEqual(types.count(P.EVENT_TYPE_CREATED), 2)
            self.c.deregister(name, 'v1', name + '-2')
            e = w.next()
            self.assertEqual(e.type, P.EVENT_TYPE_DELETED)
            self.assertEqual(e.reason, 'deregistered')
        finally:
            w.close()
        self.assert_still_serving()

    def test_disconnected_watch(self):
        """A client that goes away (its channel closed) mid-stream."""
        name = uniq('gone')
        self.c.register(simple_service(name))
        for _ in range(10):
            ch = grpc.insecure_channel(self.srv.address)
            try:
                cl = harness.DiscoveryClient(ch)
                r = cl.watch(name)
                while r.next().type != P.EVENT_TYPE_SYNCED:
                    pass
                hw = self.health_watch('', channel=ch)
                self.assertEqual(hw.next().status, SERVING)
            finally:
                ch.close()
            r.end()
            hw.end()
        self.c.register(simple_service(name, name + '-x', 'h:3'))
        self.assertEqual(self.c.deregister(name, 'v1').removed, 2)
        self.assert_still_serving()


class ShutdownTest(Case):
    """SIGTERM deregisters and exits 0; re-registration after a restart."""

    def wait_listed(self, disc, srv, what):
        return wait_for(lambda: nodes_at(disc.discovery_client(),
                                         'discovery', srv.address),
                        what=what)

    def test_sigterm_deregisters(self):
        a = self.start(name='disc-a')
        b = self.start(name='disc-b', discovery=a.address)
        ca = a.discovery_client()
        [(s, n)] = self.wait_listed(a, b, 'B registered in A')
        self.assertEqual(s.version, harness.project_version())
        self.assertTrue(n.id)

        w = ca.watch('discovery')
        self.addCleanup(w.close)
        created = []
        while True:
            e = w.next()
            if e.type == P.EVENT_TYPE_SYNCED:
                break
            self.assertEqual(e.type, P.EVENT_TYPE_CREATED)
            created.append(e)
        self.assertIn(n.id, [x.id for e in created for x in e.service.nodes])

        self.assertEqual(b.stop_clean(signal.SIGTERM), 0)
        # Deregistration happens before the exit: no poll needed.
        self.assertEqual(nodes_at(ca, 'discovery', b.address), [])
        e = w.next()
        self.assertEqual(e.type, P.EVENT_TYPE_DELETED)
        self.assertEqual([x.id for x in e.service.nodes], [n.id])
        self.assertEqual(e.reason, 'deregistered')
        a.stop_clean()

    def test_self_registered_sigterm(self):
        a = self.start(name='self', discovery='self')
        wait_for(lambda: nodes_at(a.discovery_client(), 'discovery',
                                  a.address), what='self-registration')
        self.assertEqual(a.stop_clean(signal.SIGTERM), 0)

    def test_sigterm_with_idle_client(self):
        """A client keeps its connection open (no call in flight) while
        the server stops: still a clean exit 0 within the bounded wait."""
        a = self.start(name='idle-client')
        self.assertEqual(a.health_check('').status, SERVING)
        other = grpc.insecure_channel(a.address)
        self.addCleanup(other.close)
        harness.DiscoveryClient(other).list()
        self.assertEqual(a.stop_clean(signal.SIGTERM, keep_channel=True), 0)

    def test_sigint(self):
        a = self.start(name='sigint')
        self.assertEqual(a.stop_clean(signal.SIGINT), 0)

    def test_sigterm_with_open_streams(self):
        a = self.start(name='streams', discovery='self',
                       extra_args=['--grace-ms', '1000'])
        c = a.discovery_client()
        readers = [c.watch('') for _ in range(5)]
        for r in readers:
            while r.next().type != P.EVENT_TYPE_SYNCED:
                pass
        self.assertEqual(a.stop_clean(signal.SIGTERM), 0)
        for r in readers:
            r.end()     # the streams end (with whatever status)

    def test_register_ttl_and_restart(self):
        port_a = free_port()
        a = self.start(name='disc-a', port=port_a)
        b = self.start(name='disc-b', discovery=a.address,
                       extra_args=['--register-ttl', '3'])
        [(s, n)] = self.wait_listed(a, b, 'B registered in A')
        # B's own TTL is 3 s and it heartbeats every second.
        self.assertLessEqual(n.expires_unix_ms, now_ms() + 3000 + 2000)
        self.assertGreater(n.expires_unix_ms, now_ms() - 2000)

        self.assertEqual(a.stop_clean(), 0)
        a2 = self.start(name='disc-a2', port=port_a)
        [(s2, n2)] = wait_for(
            lambda: nodes_at(a2.discovery_client(), 'discovery', b.address),
            timeout=20, what='B to re-register with the restarted A')
        self.assertEqual(n2.id, n.id)
        self.assertEqual(s2.version, s.version)

        self.assertEqual(b.stop_clean(), 0)
        self.assertEqual(nodes_at(a2.discovery_client(), 'discovery',
                                  b.address), [])
        self.assertEqual(a2.stop_clean(), 0)


def norm(text):
    return text.lower().replace('_', '-')


class SettingsTest(Case):
    """Bad settings: exit 2 with one line naming the setting, nothing
    listening; --help; a port already in use."""

    def run_bad(self, args, setting, env=None, port=None):
        r = run_binary(args, env=env)
        self.assertEqual(r.sanitizer_findings(), [], r.stderr)
        self.assertEqual(r.code, 2, 'exit code %d for %r; stderr: %r'
                         % (r.code, args, r.stderr))
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        self.assertEqual(len(lines), 1, 'want one stderr line, got %r'
                         % r.stderr)
        self.assertIn(setting, norm(lines[0]))
        if port is not None:
            self.assertFalse(port_listening(port),
                             'something listens on %d' % port)

    def test_bad_settings(self):
        cases = [
            (['--workers', 'abc'], 'workers'),
            (['--workers=abc'], 'workers'),
            (['--workers', '0'], 'workers'),
            (['--workers', '257'], 'workers'),
            (['--workers', '4x'], 'workers'),
            (['--workers'], 'workers'),
            (['--register-ttl', '2'], 'register-ttl'),
            (['--register-ttl', '3601'], 'register-ttl'),
            (['--max-message-bytes', '1023'], 'max-message-bytes'),
            (['--max-message-bytes', '67108865'], 'max-message-bytes'),
            (['--grace-ms', '-1'], 'grace-ms'),
            (['--grace-ms', '600001'], 'grace-ms'),
            (['--log-format', 'xml'], 'log-format'),
            (['--log-level', 'loud'], 'log-level'),
            (['--discovery', 'nope'], 'discovery'),
            (['--discovery', 'h:0'], 'discovery'),
            (['--advertise', 'nope'], 'advertise'),
            (['--tls-cert', '/nonexistent/cert.pem',
              '--tls-key', '/nonexistent/key.pem'], 'tls'),
            (['--tls-cert', os.path.abspath(__file__)], 'tls'),
            (['--bogus-flag'], 'bogus-flag'),
            (['--bogus-flag=1'], 'bogus-flag'),
        ]
        for extra, setting in cases:
            port = free_port()
            args = ['--listen', '127.0.0.1:%d' % port, '--log-format',
                    'json'] + extra
            with self.subTest(args=extra):
                self.run_bad(args, setting, port=port)
        # Port 0 is valid for --listen: it asks for a free port.
        for listen in ('nope', '127.0.0.1', '127.0.0.1:65536', ':7070',
                       '127.0.0.1:http'):
            with self.subTest(listen=listen):
                self.run_bad(['--listen', listen], 'listen')
        port = free_port()
        with self.subTest(env='PLATFORM_WORKERS=abc'):
            self.run_bad(['--listen', '127.0.0.1:%d' % port],
                         'workers', env={'PLATFORM_WORKERS': 'abc'},
                         port=port)
        with self.subTest(env='PLATFORM_LISTEN=nope'):
            self.run_bad([], 'listen', env={'PLATFORM_LISTEN': 'nope'})

    def test_help(self):
        r = run_binary(['--help'])
        self.assertEqual(r.sanitizer_findings(), [])
        self.assertEqual(r.code, 0, r.stderr)
        self.assertIn('--listen', r.stdout + r.stderr)

    def test_listen_from_environment(self):
        srv = self.start(name='env-listen', listen_flag=False)
        self.assertEqual(srv.health_check('').status, SERVING)
        self.assertEqual(srv.stop_clean(), 0)

    def test_port_in_use(self):
        a = self.start(name='first')
        r = run_binary(['--listen', a.address, '--log-format', 'json'])
        self.assertEqual(r.sanitizer_findings(), [], r.stderr)
        self.assertNotEqual(r.code, 0)
        self.assertIn(a.address, r.stderr)
        self.assertEqual(a.health_check('').status, SERVING)
        self.assertEqual(a.stop_clean(), 0)


if __name__ == '__main__':
    harness.run_tests()
