"""Helpers for the router-srv integration tests (test_router.py,
test_ctl_route.py) and bench/router_bench.py.

The message classes of platform.router.v1 and platform.probe.v1, a
client for every Router method, and the processes of a fleet: router-srv
on the test database, probe-srv nodes (tests/probe_srv.c: told to be
slow or to fail) and router-client (tests/router_client.c: a libplatform
client calling probe-srv by name, driven line by line over its stdin).
"""

import json
import os
import subprocess
import tempfile
import threading

import harness
from harness import RPC_TIMEOUT, Server, WatchReader
from config_harness import DATABASE, PG_CTL  # noqa: F401 - re-exported

ROUTER_BIN = os.path.join(harness.BUILD_DIR, 'services', 'router',
                          'router-srv')
PROBE_BIN = os.path.join(harness.BUILD_DIR, 'tests', 'probe-srv')
CLIENT_BIN = os.path.join(harness.BUILD_DIR, 'tests', 'router-client')
ROUTER_PREFIX = '/platform.router.v1.Router/'
PROBE_PREFIX = '/platform.probe.v1.Probe/'

pb = harness.proto_module('platform/router/v1/router.proto', 'it_router_pb2')
probe_pb = harness.proto_module('platform/probe/v1/probe.proto',
                                'it_probe_pb2')
uniq = harness.uniq


class RouterClient(harness.ServiceClient):
    """platform.router.v1.Router over a channel."""

    PREFIX = ROUTER_PREFIX
    METHODS = ('Select', 'Report', 'Stats', 'GetRules', 'SetRules',
               'DeleteRules', 'ListRules')
    STREAMS = ('Watch',)

    def __init__(self, channel):
        super().__init__(channel, pb())

    def call(self, method, timeout=RPC_TIMEOUT, **kw):
        req = getattr(self.pb, method + 'Request')(**kw)
        return self._m[method](req, timeout=timeout)

    def set_rules(self, service, expected_version=0, **fields):
        rules = self.pb.Rules(service=service, **fields)
        return self.call('SetRules', rules=rules,
                         expected_version=expected_version).rules

    def watch(self, **kw):
        return WatchReader(self._m['Watch'](self.pb.WatchRequest(**kw)))


class ProbeClient(harness.ServiceClient):
    PREFIX = PROBE_PREFIX
    METHODS = ('Ping', 'SetBehaviour')

    def __init__(self, channel):
        super().__init__(channel, probe_pb())

    def behave(self, delay_ms=0, fail_percent=0):
        self._m['SetBehaviour'](self.pb.SetBehaviourRequest(
            delay_ms=delay_ms, fail_percent=fail_percent),
            timeout=RPC_TIMEOUT)


def router_server(discovery, name=None, database=None, extra_args=(),
                  env=None, port=None, wait=True):
    """router-srv on a free port with the test database (in the
    environment, so the password is not in the process list)."""
    e = {'PLATFORM_DATABASE': database or DATABASE}
    e.update(env or {})
    return Server(binary=ROUTER_BIN, port=port, discovery=discovery,
                  extra_args=list(extra_args), env=e,
                  name=name or 'router-srv', wait=wait)


def probe_server(discovery, node_id, version='1', delay_ms=0,
                 fail_percent=0):
    srv = Server(binary=PROBE_BIN, discovery=discovery,
                 extra_args=['--node-id', node_id, '--register-ttl', '5'],
                 env={'PROBE_VERSION': version,
                      'PROBE_DELAY_MS': str(delay_ms),
                      'PROBE_FAIL_PERCENT': str(fail_percent)},
                 name='probe-' + node_id)
    srv.node_id = node_id
    srv.probe = ProbeClient(srv.get_channel())
    return srv


class LineClient:
    """A client process driven line by line over its stdin, one JSON
    line out per command (router-client, tests/node/xds_client.js)."""

    def __init__(self, args, name, env=None, cwd=None):
        fd, self.stderr_path = tempfile.mkstemp(
            prefix=name + '-', suffix='.err', dir=harness.log_dir())
        self.name = name
        self._err = os.fdopen(fd, 'wb')
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._err, env=harness.child_env(env), cwd=cwd)
        self.lock = threading.Lock()

    def ask(self, line, timeout=120):
        with self.lock:
            self.proc.stdin.write((line + '\n').encode())
            self.proc.stdin.flush()
            out = self.proc.stdout.readline()
        if not out:
            raise AssertionError('%s ended: %s' % (self.name, self.stderr()))
        return json.loads(out)

    def stderr(self):
        with open(self.stderr_path, 'rb') as f:
            return f.read().decode(errors='replace')

    def close(self):
        """quit; exit 0 and no sanitizer report."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(b'quit\n')
                self.proc.stdin.flush()
            except BrokenPipeError:
                pass
        code = self.proc.wait(harness.TIMEOUT)
        self._close_pipes()
        err = self.stderr()
        findings = harness.sanitizer_findings(err)
        assert code == 0 and not findings, (code, err[-3000:])

    def _close_pipes(self):
        for f in (self.proc.stdin, self.proc.stdout, self._err):
            try:
                f.close()
            except (OSError, BrokenPipeError):
                pass

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close_pipes()


class Client(LineClient):
    """router-client: a libplatform client calling probe by name."""

    def __init__(self, discovery, labels=(), router=True, service='probe'):
        args = [CLIENT_BIN, '--discovery', discovery, '--service', service]
        if not router:
            args.append('--no-router')
        for kv in labels:
            args += ['--label', kv]
        super().__init__(args, 'router-client')

    def calls(self, n, header=None):
        return self.ask('calls %d%s' % (n, ' ' + header if header else ''))

    def views(self):
        return self.ask('views')['views']

    def weights(self):
        return self.ask('weights')['weights']


def start_fleet(cls, versions, router_args=()):
    """On a test class: discovery-srv (cls.d), router-srv (cls.r, its
    client cls.rc) and one probe-srv node per version (cls.probes, node
    ids p0, p1, ...), every node in router-srv's view before it
    returns. Each is killed at the class's clean-up at the latest."""
    cls.d = Server(discovery='self', name='discovery-' + cls.__name__)
    cls.addClassCleanup(cls.d.kill)
    cls.r = router_server(cls.d.address, name='router-' + cls.__name__,
                          extra_args=router_args)
    cls.addClassCleanup(cls.r.kill)
    cls.rc = RouterClient(cls.r.get_channel())
    cls.probes = []
    for i, v in enumerate(versions):
        p = probe_server(cls.d.address, 'p%d' % i, version=v)
        cls.addClassCleanup(p.kill)
        cls.probes.append(p)
    harness.wait_for(lambda: len(cls.rc.call(
        'Select', service='probe').view.nodes) == len(versions),
        timeout=60, what='every probe node in router-srv')


def stop_fleet(cls):
    """SIGTERM to what start_fleet started: exit 0 and no sanitizer
    report from each."""
    for p in cls.probes:
        p.stop_clean()
    if cls.r.running():
        cls.r.stop_clean()
    cls.d.stop_clean()


def shares(result):
    """{node_id: share of the successful calls} of a calls answer."""
    nodes = result['nodes']
    total = sum(nodes.values()) or 1
    return {k: v / total for k, v in nodes.items()}
