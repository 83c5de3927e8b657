"""Helpers for the kv-srv integration tests (test_kv.py).

The message classes of platform.kv.v1, a client for every KV method, and
kv-srv started with the harness Server class: one node, or a ring of
nodes registered with a discovery-srv (Ring, used by test_kv.py and
test_faults.py).
"""

import os

import harness
from harness import RPC_TIMEOUT, Server, WatchReader, wait_for

KV_BIN = os.path.join(harness.BUILD_DIR, 'services', 'kv', 'kv-srv')
KV_PREFIX = '/platform.kv.v1.KV/'

pb = harness.proto_module('platform/kv/v1/kv.proto', 'it_kv_pb2')
uniq = harness.uniq


class KVClient(harness.ServiceClient):
    """platform.kv.v1.KV over a channel. Methods take the request's fields
    as keyword arguments."""

    PREFIX = KV_PREFIX
    METHODS = ('Get', 'Put', 'Delete', 'Increment', 'GetMany', 'PutMany',
               'List', 'Replicate')
    STREAMS = ('Watch',)

    def __init__(self, channel):
        super().__init__(channel, pb())

    def call(self, method, timeout=RPC_TIMEOUT, **kw):
        req = getattr(self.pb, method + 'Request')(**kw)
        return self._m[method](req, timeout=timeout)

    def get(self, table, key):
        return self.call('Get', table=table, key=key).entry

    def put(self, table, key, value, **kw):
        return self.call('Put', table=table, key=key, value=value,
                         **kw).entry

    def delete(self, table, key, **kw):
        return self.call('Delete', table=table, key=key, **kw)

    def incr(self, table, key, delta, **kw):
        return self.call('Increment', table=table, key=key, delta=delta,
                         **kw)

    def list_all(self, table, prefix='', page_size=0):
        out, token = [], ''
        for _ in range(100000):
            r = self.call('List', table=table, prefix=prefix,
                          page_size=page_size, page_token=token)
            out.extend(r.entries)
            token = r.next_page_token
            if not token:
                return out
        raise AssertionError('List never ended')

    def watch(self, table, prefix=''):
        return WatchReader(self._m['Watch'](
            self.pb.WatchRequest(table=table, prefix=prefix)))


def client_of(srv):
    return KVClient(srv.get_channel())


def kv_server(name=None, discovery=None, extra_args=(), env=None,
              port=None):
    """kv-srv on a free port (the guard off unless env says otherwise)."""
    return Server(binary=KV_BIN, port=port, discovery=discovery,
                  extra_args=list(extra_args), env=env,
                  name=name or 'kv-srv')



def metric(srv, name):
    """A sample of a node started by metered()."""
    return harness.metric(srv.mport, name)


def metered(name, discovery=None, extra=()):
    """kv_server with --metrics-listen on a free port (srv.mport)."""
    mport = harness.free_port()
    srv = kv_server(name=name, discovery=discovery, extra_args=[
        '--metrics-listen', '127.0.0.1:%d' % mport] + list(extra))
    srv.mport = mport
    return srv


class Ring:
    """A discovery-srv and kv-srv nodes registered with it."""

    def __init__(self, n, replicas=2):
        self.disc = Server(discovery='self', name='discovery-kv')
        self.replicas = replicas
        self.nodes = []
        for _ in range(n):
            self.add()
        self.wait_members()

    def add(self):
        srv = metered('kv-%d' % len(self.nodes), self.disc.address, extra=[
            '--register-ttl', '3', '--replicas', str(self.replicas)])
        self.nodes.append(srv)
        return srv

    def live(self):
        return [s for s in self.nodes if s.running()]

    def wait_members(self, timeout=harness.TIMEOUT):
        n = len(self.live())
        for s in self.live():
            wait_for(lambda: metric(s, 'kv_ring_members') == n,
                     timeout=timeout,
                     what='%s to see a ring of %d' % (s.name, n))

    def stop(self):
        for s in self.live():
            s.stop_clean()
        self.disc.stop_clean()

    def kill(self):
        for s in self.nodes:
            s.kill()
        self.disc.kill()
