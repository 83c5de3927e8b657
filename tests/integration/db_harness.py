"""Helpers for the db-srv integration tests (test_db.py).

Builds on harness.py: the message classes of platform.db.v1, a client
for every DB method, db-srv started with the harness Server class on the
test database (PLATFORM_TEST_DATABASE, which scripts/test sets from
scripts/pg), and an independent evaluation of filters in Python that the
tests check the server's SQL against.
"""

import json
import os

import grpc

import harness
from harness import RPC_TIMEOUT, Server, WatchReader

DB_BIN = os.path.join(harness.BUILD_DIR, 'services', 'db', 'db-srv')
DB_SERVICE = 'platform.db.v1.DB'
DB_PREFIX = '/' + DB_SERVICE + '/'

DATABASE = os.environ.get('PLATFORM_TEST_DATABASE') or None

pb = harness.proto_module('platform/db/v1/db.proto', 'it_db_pb2')


def uniq_name(prefix='d'):
    """A database or collection name no other test (or run) uses."""
    return harness.uniq(prefix).replace('.', '-')[:63]


class DBClient(harness.ServiceClient):
    """platform.db.v1.DB over a channel. call(method, **fields) sends a
    request built from keyword arguments."""

    PREFIX = DB_PREFIX
    METHODS = ('CreateDatabase', 'ListDatabases', 'DropDatabase',
               'CreateCollection', 'ListCollections', 'DropCollection',
               'Create', 'Read', 'Update', 'Delete', 'BatchWrite',
               'Search', 'Count', 'CreateIndex', 'ListIndexes',
               'DropIndex')
    STREAMS = ('Watch',)

    def __init__(self, channel):
        super().__init__(channel, pb())

    def call(self, method, timeout=RPC_TIMEOUT, **kw):
        req = getattr(self.pb, method + 'Request')(**kw)
        return self._m[method](req, timeout=timeout)

    def req(self, method, req, timeout=RPC_TIMEOUT):
        return self._m[method](req, timeout=timeout)

    def future(self, method, timeout=RPC_TIMEOUT, **kw):
        req = getattr(self.pb, method + 'Request')(**kw)
        return self._m[method].future(req, timeout=timeout)

    # -- documents, with JSON as Python values

    def create(self, db, coll, obj, id='', **kw):
        return self.call('Create', database=db, collection=coll, id=id,
                         json=json.dumps(obj), **kw).document

    def read(self, db, coll, id, **kw):
        return self.call('Read', database=db, collection=coll, id=id,
                         **kw).document

    def update(self, db, coll, id, obj, **kw):
        return self.call('Update', database=db, collection=coll, id=id,
                         json=json.dumps(obj), **kw).document

    def delete(self, db, coll, id, **kw):
        return self.call('Delete', database=db, collection=coll, id=id,
                         **kw)

    def search_all(self, db, coll, page_size=0, **kw):
        """Every document over all pages, and the page sizes seen."""
        out, pages, token = [], [], ''
        for _ in range(100000):
            r = self.call('Search', database=db, collection=coll,
                          page_size=page_size, page_token=token, **kw)
            out.extend(r.documents)
            pages.append(len(r.documents))
            token = r.next_page_token
            if not token:
                return out, pages
        raise AssertionError('Search never ended')

    def watch(self, db, coll, **kw):
        return WatchReader(self._m['Watch'](self.pb.WatchRequest(
            database=db, collection=coll, **kw)))


def urlsplit_password(url):
    """The password in a conninfo URL, or None."""
    from urllib.parse import urlsplit
    try:
        return urlsplit(url).password or None
    except ValueError:
        return None


def client_of(srv):
    return DBClient(srv.get_channel())


def new_client(address):
    return DBClient(grpc.insecure_channel(address,
                                          options=harness.CHANNEL_OPTIONS))


def db_server(name=None, database=None, extra_args=(), env=None,
              wait=True, port=None, discovery=None):
    """db-srv on a free port with the test database; the conninfo goes in
    PLATFORM_DATABASE, never on the command line."""
    e = {'PLATFORM_DATABASE': database or DATABASE}
    e.update(env or {})
    return Server(binary=DB_BIN, port=port, extra_args=list(extra_args),
                  env=e, name=name or 'db-srv', wait=wait,
                  discovery=discovery)


# ---------------------------------------------------------------- filters

NO_VALUE = object()


def cond(path, op, value=NO_VALUE):
    """A Filter holding one Condition; value is a Python value (JSON'd;
    None is JSON null); none given leaves the field empty."""
    P = pb()
    c = P.Condition(path=path, op=getattr(P, 'OPERATOR_' + op))
    if value is not NO_VALUE:
        c.value = json.dumps(value)
    return P.Filter(condition=c)


def all_of(*fs):
    return pb().Filter(all=list(fs))


def any_of(*fs):
    return pb().Filter(any=list(fs))


def not_of(f):
    P = pb()
    out = P.Filter()
    getattr(out, 'not').CopyFrom(f)
    return out


_MISSING = object()


def get_path(doc, path):
    cur = doc
    for seg in path.split('.'):
        if isinstance(cur, dict):
            if seg not in cur:
                return _MISSING
            cur = cur[seg]
        elif isinstance(cur, list) and seg.isdigit():
            i = int(seg)
            if i >= len(cur):
                return _MISSING
            cur = cur[i]
        else:
            return _MISSING
    return cur


def _kind(v):
    if v is None:
        return 'null'
    if isinstance(v, bool):
        return 'bool'
    if isinstance(v, (int, float)):
        return 'number'
    if isinstance(v, str):
        return 'string'
    if isinstance(v, list):
        return 'array'
    return 'object'


def json_equal(a, b):
    """Equality as JSONB has it: numbers by value, booleans never
    numbers."""
    ka, kb = _kind(a), _kind(b)
    if ka != kb:
        return False
    if ka == 'array':
        return len(a) == len(b) and all(json_equal(x, y)
                                        for x, y in zip(a, b))
    if ka == 'object':
        return a.keys() == b.keys() and all(json_equal(a[k], b[k])
                                            for k in a)
    return a == b


def json_contains(a, b, top=True):
    """JSONB's @>."""
    if _kind(b) == 'object':
        return _kind(a) == 'object' and all(
            k in a and json_contains(a[k], v, False) for k, v in b.items())
    if _kind(b) == 'array':
        if _kind(a) != 'array':
            return False
        for e in b:
            if _kind(e) in ('object', 'array'):
                ok = any(_kind(f) == _kind(e) and json_contains(f, e, False)
                         for f in a)
            else:
                ok = any(_kind(f) not in ('object', 'array') and
                         json_equal(f, e) for f in a)
            if not ok:
                return False
        return True
    if top and _kind(a) == 'array':
        return any(_kind(f) not in ('object', 'array') and json_equal(f, b)
                   for f in a)
    return json_equal(a, b)


def _utf8(s):
    return s.encode('utf-8')


def evaluate(f, doc):
    """Whether doc matches Filter f, decided in Python from the proto's
    own description, independently of the server."""
    P = pb()
    which = [n for n in ('condition', 'all', 'any', 'not')
             if (f.HasField(n) if n in ('condition', 'not')
                 else len(getattr(f, n)) > 0)]
    if not which:
        return True
    w = which[0]
    if w == 'all':
        return all(evaluate(x, doc) for x in f.all)
    if w == 'any':
        return any(evaluate(x, doc) for x in f.any)
    if w == 'not':
        return not evaluate(getattr(f, 'not'), doc)
    c = f.condition
    x = get_path(doc, c.path)
    v = json.loads(c.value) if c.value else True
    op = c.op
    if op == P.OPERATOR_EQ:
        return x is not _MISSING and json_equal(x, v)
    if op == P.OPERATOR_NE:
        return x is _MISSING or not json_equal(x, v)
    if op in (P.OPERATOR_LT, P.OPERATOR_LE, P.OPERATOR_GT, P.OPERATOR_GE):
        if x is _MISSING or _kind(x) != _kind(v):
            return False
        if _kind(v) == 'string':
            x, v = _utf8(x), _utf8(v)
        return {P.OPERATOR_LT: x < v, P.OPERATOR_LE: x <= v,
                P.OPERATOR_GT: x > v, P.OPERATOR_GE: x >= v}[op]
    if op == P.OPERATOR_IN:
        return x is not _MISSING and any(json_equal(x, e) for e in v)
    if op == P.OPERATOR_PREFIX:
        return isinstance(x, str) and x.startswith(v)
    if op == P.OPERATOR_EXISTS:
        return (x is not _MISSING) == v
    if op == P.OPERATOR_CONTAINS:
        return x is not _MISSING and json_contains(x, v)
    raise ValueError('unknown op %r' % op)
