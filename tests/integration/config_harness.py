"""Helpers for the config-srv integration tests (test_config.py).

Builds on harness.py: the message classes of platform.config.v1 (generated
with protoc and loaded by file path, like harness.protos()), a client for
every Config method, config-srv started with the harness Server class on
the test database, and the PostgreSQL control command of the outage test.

Environment (scripts/test sets both):
  PLATFORM_TEST_DATABASE  conninfo of the PostgreSQL the tests may write to
  PLATFORM_TEST_PG_CTL    a command taking `stop` / `start` for that
                          database; only set when it is our own scripts/pg
"""

import json
import os
import subprocess

import grpc

import harness
from harness import RPC_TIMEOUT, Server, WatchReader

CONFIG_BIN = os.path.join(harness.BUILD_DIR, 'services', 'config',
                          'config-srv')
CONFIG_SERVICE = 'platform.config.v1.Config'
CONFIG_PREFIX = '/' + CONFIG_SERVICE + '/'

DATABASE = os.environ.get('PLATFORM_TEST_DATABASE') or None
PG_CTL = os.environ.get('PLATFORM_TEST_PG_CTL') or None

MAX_JSON = 256 * 1024          # bytes of one document
MAX_NAMESPACE = 128
MAX_PATH = 256
MAX_AUTHOR = 128
MAX_COMMENT = 1024

# ---------------------------------------------------------------- protos

pb = harness.proto_module('platform/config/v1/config.proto',
                          'it_config_pb2')


# ---------------------------------------------------------------- names

RUN = harness.RUN


def uniq_ns(prefix='ns'):
    """A namespace no other test (or earlier run) uses: one segment."""
    return harness.uniq('it-' + prefix)


def uniq_path(prefix='p'):
    """A path no other test (or earlier run) uses."""
    return harness.uniq(prefix)


def dumps(obj):
    return json.dumps(obj, ensure_ascii=False)


def loads(text):
    """Parses JSON, rejecting duplicate keys like the server does."""
    def hook(pairs):
        d = {}
        for k, v in pairs:
            if k in d:
                raise ValueError('duplicate key %r' % k)
            d[k] = v
        return d
    return json.loads(text, object_pairs_hook=hook)


# ---------------------------------------------------------------- client

class ConfigClient(harness.ServiceClient):
    """platform.config.v1.Config over a channel. Every unary method takes
    the request's fields as keyword arguments (or a request via *_req)."""

    PREFIX = CONFIG_PREFIX
    METHODS = ('Read', 'Update', 'Delete', 'History', 'Diff', 'Rollback',
               'List')
    STREAMS = ('Watch',)

    def __init__(self, channel):
        super().__init__(channel, pb())

    def call(self, method, req, timeout=RPC_TIMEOUT):
        return self._m[method](req, timeout=timeout)

    def future(self, method, req, timeout=RPC_TIMEOUT):
        return self._m[method].future(req, timeout=timeout)

    def _req(self, method, kw):
        return getattr(self.pb, method + 'Request')(**kw)

    def read(self, namespace, path, timeout=RPC_TIMEOUT, **kw):
        return self.call('Read', self._req(
            'Read', dict(namespace=namespace, path=path, **kw)), timeout)

    def update(self, namespace, path, value, timeout=RPC_TIMEOUT, **kw):
        """value: the JSON text as it goes on the wire."""
        return self.call('Update', self._req(
            'Update', dict(namespace=namespace, path=path, json=value,
                           **kw)), timeout)

    def put(self, namespace, path, obj, timeout=RPC_TIMEOUT, **kw):
        """Update with obj serialized to JSON; returns the new Value."""
        return self.update(namespace, path, dumps(obj), timeout, **kw).value

    def delete(self, namespace, path, timeout=RPC_TIMEOUT, **kw):
        return self.call('Delete', self._req(
            'Delete', dict(namespace=namespace, path=path, **kw)), timeout)

    def history(self, namespace, path, timeout=RPC_TIMEOUT, **kw):
        return self.call('History', self._req(
            'History', dict(namespace=namespace, path=path, **kw)), timeout)

    def diff(self, namespace, path, timeout=RPC_TIMEOUT, **kw):
        return self.call('Diff', self._req(
            'Diff', dict(namespace=namespace, path=path, **kw)), timeout)

    def rollback(self, namespace, path, timeout=RPC_TIMEOUT, **kw):
        return self.call('Rollback', self._req(
            'Rollback', dict(namespace=namespace, path=path, **kw)), timeout)

    def list(self, namespace, timeout=RPC_TIMEOUT, **kw):
        return self.call('List', self._req(
            'List', dict(namespace=namespace, **kw)), timeout)

    def watch(self, namespaces=(), prefix='', after_revision=0):
        """A harness.WatchReader on Watch."""
        req = self.pb.WatchRequest(namespaces=list(namespaces), prefix=prefix,
                                   after_revision=after_revision)
        return WatchReader(self._m['Watch'](req))

    def watch_req(self, req):
        return WatchReader(self._m['Watch'](req))

    # -- whole listings

    def history_all(self, namespace, path, page_size=0):
        """Every version (newest first) and the page sizes seen."""
        out, pages, token = [], [], ''
        for _ in range(10000):
            r = self.history(namespace, path, page_size=page_size,
                             page_token=token)
            out.extend(r.versions)
            pages.append(len(r.versions))
            token = r.next_page_token
            if not token:
                return out, pages
        raise AssertionError('History never ended')

    def list_all(self, namespace, prefix='', page_size=0,
                 include_deleted=False):
        """Every listed Value and the page sizes seen."""
        out, pages, token = [], [], ''
        for _ in range(10000):
            r = self.list(namespace, prefix=prefix, page_size=page_size,
                          page_token=token, include_deleted=include_deleted)
            out.extend(r.values)
            pages.append(len(r.values))
            token = r.next_page_token
            if not token:
                return out, pages
        raise AssertionError('List never ended')


def new_client(address):
    """A client on a channel of its own (close it with client.channel)."""
    return ConfigClient(grpc.insecure_channel(address,
                                              options=harness.CHANNEL_OPTIONS))


# ---------------------------------------------------------------- servers

def config_server(name=None, database=None, discovery=None, extra_args=(),
                  env=None, wait=True, port=None, timeout=30.0):
    """config-srv on a free port with the test database. The conninfo goes
    in PLATFORM_DATABASE, not on the command line, so that the password is
    not in the process list or in the harness's failure messages."""
    e = {'PLATFORM_DATABASE': database or DATABASE}
    e.update(env or {})
    return Server(binary=CONFIG_BIN, port=port, discovery=discovery,
                  extra_args=extra_args, env=e, name=name or 'config-srv',
                  wait=wait, timeout=timeout)


def client_of(srv):
    return ConfigClient(srv.get_channel())


def database_password():
    """The password in the test conninfo (a URL), or None."""
    if not DATABASE:
        return None
    from urllib.parse import urlsplit
    try:
        pw = urlsplit(DATABASE).password
    except ValueError:
        return None
    return pw or None


def pg_ctl(action, timeout=120):
    """Runs PLATFORM_TEST_PG_CTL with `stop` or `start` (a shell command,
    as the C unit test runs it); raises on failure."""
    r = subprocess.run('%s %s' % (PG_CTL, action), shell=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    if r.returncode != 0:
        raise AssertionError('%s %s failed (%d): %s'
                             % (PG_CTL, action, r.returncode,
                                r.stdout.decode('utf-8', 'replace')))
