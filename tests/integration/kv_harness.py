"""Helpers for the kv-srv integration tests (test_kv.py).

The message classes of platform.kv.v1, a client for every KV method, and
kv-srv started with the harness Server class: one node, or a ring of
nodes registered with a discovery-srv (Ring, used by test_kv.py and
test_faults.py).
"""

import os
import shutil
import socket
import subprocess
import tempfile

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



REDIS_BIN = shutil.which('redis-server') or '/usr/bin/redis-server'


class RedisServer:
    """A real redis-server on a free loopback port, nothing saved to disk.
    start() again after stop() serves the same port (empty: no
    persistence)."""

    def __init__(self, extra_args=()):
        self.port = harness.free_port()
        self.address = '127.0.0.1:%d' % self.port
        self.extra_args = list(extra_args)
        self.proc = None
        self.start()

    def start(self):
        self.dir = tempfile.mkdtemp(prefix='redis-', dir=harness.log_dir())
        self.log_path = os.path.join(self.dir, 'redis.log')
        self.proc = subprocess.Popen(
            [REDIS_BIN, '--port', str(self.port), '--bind', '127.0.0.1',
             '--save', '', '--appendonly', 'no', '--dir', self.dir,
             '--logfile', self.log_path] + self.extra_args,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        harness.wait_for(lambda: self.command('PING') == b'+PONG',
                         what='redis-server to answer PING')

    def command(self, *args):
        """One command in the Redis protocol: a status or integer reply's
        line, or a bulk string's bytes (None when nothing answers)."""
        req = b'*%d\r\n' % len(args) + b''.join(
            b'$%d\r\n%s\r\n' % (len(a), a) for a in
            (x if isinstance(x, bytes) else str(x).encode() for x in args))
        try:
            with socket.create_connection(('127.0.0.1', self.port),
                                          timeout=2) as s:
                s.sendall(req)
                f = s.makefile('rb')
                line = f.readline().rstrip(b'\r\n')
                if line.startswith(b'$') and line != b'$-1':
                    return f.read(int(line[1:]) + 2)[:-2]
                return line
        except OSError:
            return None

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


class RedisCluster:
    """A Redis Cluster of n masters (no replicas) on loopback, made with
    redis-cli --cluster create; every node agrees the cluster is ok."""

    def __init__(self, n=3):
        # The bus port is given: port + 10000 may be past 65535.
        self.nodes = [RedisServer(['--cluster-enabled', 'yes',
                                   '--cluster-config-file', 'nodes.conf',
                                   '--cluster-port',
                                   str(harness.free_port())])
                      for _ in range(n)]
        self.address = self.nodes[0].address
        try:
            subprocess.run(
                [shutil.which('redis-cli') or '/usr/bin/redis-cli',
                 '--cluster', 'create'] + [x.address for x in self.nodes] +
                ['--cluster-replicas', '0', '--cluster-yes'],
                check=True, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                timeout=harness.TIMEOUT)
            for x in self.nodes:
                harness.wait_for(
                    lambda x=x: b'cluster_state:ok' in (
                        x.command('CLUSTER', 'INFO') or b''),
                    what='redis %s to see the cluster ok' % x.address)
        except BaseException:
            self.stop()
            raise

    def stop(self):
        for x in self.nodes:
            x.stop()

    def cli(self, node, *args):
        """redis-cli's output lines for one command to node."""
        r = subprocess.run(
            [shutil.which('redis-cli') or '/usr/bin/redis-cli', '-p',
             str(node.port)] + [str(a) for a in args], check=True,
            stdin=subprocess.DEVNULL, capture_output=True,
            timeout=harness.TIMEOUT)
        return r.stdout.decode().splitlines()

    def owner(self, key):
        """The master that serves key (the others answer MOVED)."""
        for x in self.nodes:
            if not (x.command('TYPE', key) or b'-MOVED').startswith(
                    b'-MOVED'):
                return x
        raise AssertionError('no master serves %r' % key)

    def move_slot_of(self, key, dst):
        """Migrates key's slot, with its keys, to the master dst, as a
        resharding does (the other masters learn it by gossip)."""
        src = self.owner(key)
        slot = int(self.cli(src, 'CLUSTER', 'KEYSLOT', key)[0])
        src_id = self.cli(src, 'CLUSTER', 'MYID')[0]
        dst_id = self.cli(dst, 'CLUSTER', 'MYID')[0]
        self.cli(dst, 'CLUSTER', 'SETSLOT', slot, 'IMPORTING', src_id)
        self.cli(src, 'CLUSTER', 'SETSLOT', slot, 'MIGRATING', dst_id)
        keys = self.cli(src, 'CLUSTER', 'GETKEYSINSLOT', slot, 100000)
        if keys:
            self.cli(src, 'MIGRATE', '127.0.0.1', dst.port, '', 0, 5000,
                     'KEYS', *keys)
        for x in (dst, src):
            self.cli(x, 'CLUSTER', 'SETSLOT', slot, 'NODE', dst_id)
        harness.wait_for(lambda: self.owner(key) is dst,
                         what='the slot of %r to move' % key)
def metric(srv, name):
    """A sample of a node started by metered()."""
    return harness.metric(srv.mport, name)


def metered(name, discovery=None, extra=(), port=None):
    """kv_server with --metrics-listen on a free port (srv.mport)."""
    mport = harness.free_port()
    srv = kv_server(name=name, discovery=discovery, extra_args=[
        '--metrics-listen', '127.0.0.1:%d' % mport] + list(extra),
        port=port)
    srv.mport = mport
    return srv


def ring_nodes(n, prefix, discovery, replicas, extra=(), cleanup=None):
    """n metered kv-srv nodes named prefix-i on discovery, once each sees
    the ring of n; cleanup(node.kill) is called for each as it starts."""
    nodes = []
    for i in range(n):
        node = metered('%s-%d' % (prefix, i), discovery, extra=list(extra) +
                       ['--replicas', str(replicas)])
        if cleanup is not None:
            cleanup(node.kill)
        nodes.append(node)
    for node in nodes:
        wait_for(lambda node=node: metric(node, 'kv_ring_members') == n,
                 what='%s to see a ring of %d' % (node.name, n))
    return nodes


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
