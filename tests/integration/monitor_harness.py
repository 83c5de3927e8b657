"""Helpers for the monitor-srv integration tests (test_monitor.py).

The message classes of platform.monitor.v1, a client for every Monitor
method, monitor-srv started with the harness Server class on the test
database, and a reader of WatchStatus that keeps every change it saw.
"""

import os
import threading

import harness
from harness import RPC_TIMEOUT, Server, WatchReader
from config_harness import DATABASE, PG_CTL  # noqa: F401 - re-exported

MONITOR_BIN = os.path.join(harness.BUILD_DIR, 'services', 'monitor',
                           'monitor-srv')
MONITOR_PREFIX = '/platform.monitor.v1.Monitor/'

pb = harness.proto_module('platform/monitor/v1/monitor.proto',
                          'it_monitor_pb2')
uniq = harness.uniq

PASSING, WARNING, CRITICAL = 1, 2, 3
NAMES = {0: 'unspecified', 1: 'passing', 2: 'warning', 3: 'critical'}


class MonitorClient(harness.ServiceClient):
    """platform.monitor.v1.Monitor over a channel. Methods take the
    request's fields as keyword arguments."""

    PREFIX = MONITOR_PREFIX
    METHODS = ('ReportCheck', 'GetStatus', 'ListChecks',
               'SetServiceSettings', 'GetServiceSettings', 'Stats')

    def __init__(self, channel):
        super().__init__(channel, pb())
        self._watch = channel.unary_stream(
            MONITOR_PREFIX + 'WatchStatus',
            request_serializer=self.pb.WatchStatusRequest.SerializeToString,
            response_deserializer=self.pb.StatusEvent.FromString)

    def call(self, method, timeout=RPC_TIMEOUT, **kw):
        req = getattr(self.pb, method + 'Request')(**kw)
        return self._m[method](req, timeout=timeout)

    def report(self, node_id, service, name, status, output='', ttl_ms=5000):
        return self.call('ReportCheck', node_id=node_id, service=service,
                         name=name, status=status, output=output,
                         ttl_ms=ttl_ms)

    def node(self, node_id):
        """The NodeStatus of node_id in GetStatus, or None."""
        for s in self.call('GetStatus').services:
            for n in s.nodes:
                if n.node_id == node_id:
                    return n
        return None

    def check(self, node_id, name):
        """A node's check by name in ListChecks, or None."""
        for c in self.call('ListChecks', node_id=node_id).checks:
            if c.name == name:
                return c
        return None

    def set_settings(self, service, interval_ms, timeout_ms):
        return self.call('SetServiceSettings', settings=self.pb.ServiceSettings(
            service=service, interval_ms=interval_ms, timeout_ms=timeout_ms))

    def watch(self, service=''):
        return StatusWatch(self._watch(
            self.pb.WatchStatusRequest(service=service)))


class StatusWatch(WatchReader):
    """A WatchStatus stream read on a thread: after the initial state,
    every change is kept (node id, previous, status) for the tests to
    count."""

    def __init__(self, call):
        self.lock = threading.Lock()
        self.initial = {}
        self.changes = []
        self.caught_up = threading.Event()
        super().__init__(call)

    def _run(self):
        try:
            for m in self.call:
                with self.lock:
                    if m.caught_up:
                        self.caught_up.set()
                    elif m.initial:
                        self.initial[m.node.node_id] = m.node.status
                    else:
                        self.changes.append((m.node.node_id, m.previous,
                                             m.node.status, m.removed))
                self.q.put(m)
        except Exception as e:  # noqa: BLE001 - surfaced to the test
            self.error = e
        self.q.put(self._END)

    def of(self, node_id):
        """The (previous, status) changes of one node, removals left out."""
        with self.lock:
            return [(p, s) for n, p, s, r in self.changes
                    if n == node_id and not r]


def client_of(srv):
    return MonitorClient(srv.get_channel())


def monitor_server(discovery, name=None, database=None, extra_args=(),
                   env=None, port=None, wait=True):
    """monitor-srv on a free port with the test database (in the
    environment, so the password is not in the process list)."""
    e = {'PLATFORM_DATABASE': database or DATABASE}
    e.update(env or {})
    return Server(binary=MONITOR_BIN, port=port, discovery=discovery,
                  extra_args=list(extra_args), env=e,
                  name=name or 'monitor-srv', wait=wait)
