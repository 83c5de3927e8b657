"""Helpers for the sync-srv integration tests (test_sync.py).

The message classes of platform.sync.v1, a client for every Sync method
(KeepAlive as a bidi stream), and sync-srv started with the harness
Server class on the test database.
"""

import os
import queue
import threading

import harness
from harness import RPC_TIMEOUT, Server, WatchReader
from config_harness import DATABASE, PG_CTL  # noqa: F401 - re-exported

SYNC_BIN = os.path.join(harness.BUILD_DIR, 'services', 'sync', 'sync-srv')
SYNC_PREFIX = '/platform.sync.v1.Sync/'

pb = harness.proto_module('platform/sync/v1/sync.proto', 'it_sync_pb2')
uniq = harness.uniq


class KeepAlive:
    """A KeepAlive stream: send(lease_id) and read answers with next()."""

    def __init__(self, method):
        self.q = queue.Queue()
        self.out = queue.Queue()
        self.call = method(iter(self.q.get, None))
        self.error = None
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        try:
            for m in self.call:
                self.out.put(m)
        except Exception as e:  # noqa: BLE001 - surfaced to the test
            self.error = e
        self.out.put(None)

    def send(self, lease_id):
        self.q.put(pb().KeepAliveRequest(lease_id=lease_id))

    def next(self, timeout=harness.TIMEOUT):
        m = self.out.get(timeout=timeout)
        if m is None:
            self.out.put(None)
            if self.error is not None:
                raise self.error
            raise AssertionError('KeepAlive ended')
        return m

    def close(self):
        self.q.put(None)
        self.t.join(harness.TIMEOUT)


class SyncClient(harness.ServiceClient):
    """platform.sync.v1.Sync over a channel. Methods take the request's
    fields as keyword arguments."""

    PREFIX = SYNC_PREFIX
    METHODS = ('Grant', 'Revoke', 'TimeToLive', 'Lock', 'Unlock',
               'Campaign', 'Proclaim', 'Resign', 'Leader')
    STREAMS = ('Observe',)

    def __init__(self, channel):
        super().__init__(channel, pb())
        self._ka = channel.stream_stream(
            SYNC_PREFIX + 'KeepAlive',
            request_serializer=self.pb.KeepAliveRequest.SerializeToString,
            response_deserializer=self.pb.KeepAliveResponse.FromString)

    def call(self, method, timeout=RPC_TIMEOUT, **kw):
        req = getattr(self.pb, method + 'Request')(**kw)
        return self._m[method](req, timeout=timeout)

    def grant(self, ttl_ms=10000):
        return self.call('Grant', ttl_ms=ttl_ms).lease_id

    def lock(self, name, lease_id, timeout=RPC_TIMEOUT, **kw):
        return self.call('Lock', timeout, name=name, lease_id=lease_id,
                         **kw).token

    def unlock(self, name, lease_id):
        return self.call('Unlock', name=name, lease_id=lease_id)

    def keepalive(self):
        return KeepAlive(self._ka)

    def observe(self, election):
        return WatchReader(self._m['Observe'](
            self.pb.ObserveRequest(election=election)))


def client_of(srv):
    return SyncClient(srv.get_channel())


def sync_server(name=None, database=None, discovery=None, extra_args=(),
                env=None, port=None, wait=True):
    """sync-srv on a free port with the test database (in the
    environment, so the password is not in the process list)."""
    e = {'PLATFORM_DATABASE': database or DATABASE}
    e.update(env or {})
    return Server(binary=SYNC_BIN, port=port, discovery=discovery,
                  extra_args=list(extra_args), env=e,
                  name=name or 'sync-srv', wait=wait)
