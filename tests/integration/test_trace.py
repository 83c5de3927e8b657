#!/usr/bin/python3
"""trace-srv over real gRPC against a real PostgreSQL.

OTLP Export (partial_success for what it refuses, resent spans kept
once), GetTrace as the whole tree, Search by every filter with paging,
Services, Operations, Dependencies, retention dropping old daily
partitions, and bad input for every field.

Needs PLATFORM_TEST_DATABASE (scripts/test sets it from scripts/pg), else
it says so and exits 0. No test asserts a time: each waits for a
condition.
"""

import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

import harness  # noqa: E402
import kv_harness as kh  # noqa: E402
import trace_harness as th  # noqa: E402
from trace_harness import ids, now_ns, request, span, uniq  # noqa: E402
from harness import Server, rpc_error, wait_for  # noqa: E402

C = grpc.StatusCode
DAY_NS = 86400 * 10**9


class TraceCase(harness.ServiceCase):
    """One trace-srv per class, stopped with SIGTERM at the end: exit 0
    and no sanitizer report."""

    @classmethod
    def setUpClass(cls):
        cls.srv = th.trace_server(name=cls.__name__, metrics=True)
        cls.addClassCleanup(cls.srv.kill)
        cls.c = th.client_of(cls.srv)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop_clean()

    def tree(self, svc):
        """A three-span trace of service svc: root, child, grandchild."""
        tid, root = ids()
        child, grand = os.urandom(8), os.urandom(8)
        t0 = now_ns()
        spans = [
            span(tid, root, 'root', start_ns=t0, duration_ns=30000000),
            span(tid, child, 'child', parent=root, kind=th.CLIENT,
                 start_ns=t0 + 1000, duration_ns=20000000),
            span(tid, grand, 'grand', parent=child, kind=th.INTERNAL,
                 start_ns=t0 + 2000, duration_ns=10000000,
                 attrs={'http.status_code': 200, 'peer': 'x'}),
        ]
        return tid.hex(), (root.hex(), child.hex(), grand.hex()), spans


class ExportTest(TraceCase):

    def test_stored_as_a_tree(self):
        svc = uniq('svc')
        tid, (root, child, grand), spans = self.tree(svc)
        resp = self.c.export(request(svc, spans, node='n1'))
        self.assertFalse(resp.HasField('partial_success'))
        got = self.c.spans(tid)
        self.assertEqual([s.span_id for s in got], [root, child, grand])
        self.assertEqual([s.parent_span_id for s in got],
                         ['', root, child])
        self.assertEqual({s.service for s in got}, {svc})
        self.assertEqual(got[0].node, 'n1')
        self.assertEqual(got[0].duration_ns, 30000000)
        self.assertEqual(got[1].kind, th.pb().SPAN_KIND_CLIENT)
        self.assertEqual(dict(got[2].attributes),
                         {'http.status_code': '200', 'peer': 'x'})

    def test_resent_export_is_stored_once(self):
        svc = uniq('svc')
        tid, _, spans = self.tree(svc)
        self.c.export(request(svc, spans))
        self.c.export(request(svc, spans))
        self.assertEqual(len(self.c.spans(tid)), 3)

    def test_error_span(self):
        svc = uniq('svc')
        tid, sid = ids()
        self.c.export(request(svc, [span(tid, sid, 'boom', error=True,
                                         message='it broke')]))
        s, = self.c.spans(tid.hex())
        self.assertTrue(s.error)
        self.assertEqual(s.status_message, 'it broke')

    def test_no_service_name_is_unknown_service(self):
        TS, _ = th.otlp()
        tid, sid = ids()
        req = TS.ExportTraceServiceRequest()
        req.resource_spans.add().scope_spans.add().spans.extend(
            [span(tid, sid)])
        self.c.export(req)
        self.assertEqual(self.c.spans(tid.hex())[0].service,
                         'unknown_service')

    def test_bad_spans_rejected_by_count_the_rest_stored(self):
        svc = uniq('svc')
        tid, sid = ids()
        good = span(tid, sid, 'good')
        bad = [
            span(b'\x01' * 15, os.urandom(8)),            # trace_id length
            span(b'\x00' * 16, os.urandom(8)),            # all zero
            span(tid, b'\x01' * 7),                       # span_id length
            span(tid, b'\x00' * 8),                       # all zero
            span(tid, os.urandom(8), parent=b'\x01' * 3),  # parent length
            span(tid, os.urandom(8), name=''),            # no name
            span(tid, os.urandom(8), kind=9),             # kind
            span(tid, os.urandom(8), start_ns=0),         # no start
            span(tid, os.urandom(8), duration_ns=-5),     # end before start
            span(tid, os.urandom(8),
                 start_ns=now_ns() - 30 * DAY_NS),        # past retention
            span(tid, os.urandom(8),
                 start_ns=now_ns() + 30 * DAY_NS),        # future
            span(tid, os.urandom(8), name='n' * 1025),    # long name
            span(tid, os.urandom(8),
                 attrs={'k%d' % i: 'v' for i in range(129)}),
            span(tid, os.urandom(8), attrs={'': 'v'}),
            span(tid, os.urandom(8), attrs={'big': 'v' * 70000}),
        ]
        resp = self.c.export(request(svc, [good] + bad))
        self.assertEqual(resp.partial_success.rejected_spans, len(bad))
        self.assertIn('trace_id: must be 16 bytes',
                      resp.partial_success.error_message)
        self.assertIn('and %d more' % (len(bad) - 1),
                      resp.partial_success.error_message)
        self.assertEqual([s.name for s in self.c.spans(tid.hex())],
                         ['good'])
        self.assertGreaterEqual(
            harness.metric(self.srv.mport, 'trace_spans_rejected_total'),
            len(bad))

    def test_each_reason_named(self):
        tid, _ = ids()
        cases = [
            (span(b'\x01' * 15, os.urandom(8)), 'trace_id'),
            (span(tid, b'\x00' * 8), 'span_id'),
            (span(tid, os.urandom(8), parent=b'\x01'), 'parent_span_id'),
            (span(tid, os.urandom(8), name=''), 'name'),
            (span(tid, os.urandom(8), duration_ns=-1), 'end_time'),
            (span(tid, os.urandom(8), start_ns=1), 'retention'),
            (span(tid, os.urandom(8), attrs={'': '1'}), 'attributes'),
        ]
        for s, word in cases:
            r = self.c.export(request('x', [s]))
            self.assertEqual(r.partial_success.rejected_spans, 1)
            self.assertIn(word, r.partial_success.error_message)

    def test_malformed_protobuf(self):
        err = rpc_error(self.c.channel.unary_unary(th.EXPORT),
                        b'\xff\xff\xff', timeout=10)
        self.assertCode(err, C.INVALID_ARGUMENT)

    def test_empty_export_is_ok(self):
        TS, _ = th.otlp()
        resp = self.c.export(TS.ExportTraceServiceRequest())
        self.assertFalse(resp.HasField('partial_success'))


class QueryTest(TraceCase):

    def test_get_trace_bad_and_missing(self):
        for bad in ('', 'abc', 'g' * 32, '0' * 32, 'a' * 33):
            self.assertCode(rpc_error(self.c.call, 'GetTrace',
                                      trace_id=bad), C.INVALID_ARGUMENT,
                            'trace_id')
        self.assertCode(rpc_error(self.c.call, 'GetTrace',
                                  trace_id=os.urandom(16).hex()),
                        C.NOT_FOUND)

    def test_get_trace_upper_case_id(self):
        svc = uniq('svc')
        tid, _, spans = self.tree(svc)
        self.c.export(request(svc, spans))
        self.assertEqual(len(self.c.spans(tid.upper())), 3)

    def test_search_filters(self):
        svc = uniq('svc')
        fast_t, slow_t, err_t = ids()[0], ids()[0], ids()[0]
        t0 = now_ns()
        self.c.export(request(svc, [
            span(fast_t, os.urandom(8), 'get', start_ns=t0,
                 duration_ns=1000000, attrs={'user': 'ann'}),
            span(slow_t, os.urandom(8), 'put', start_ns=t0 + 1,
                 duration_ns=900000000, attrs={'user': 'bob'}),
            span(err_t, os.urandom(8), 'get', start_ns=t0 + 2,
                 duration_ns=2000000, error=True, attrs={'user': 'ann'}),
        ]))

        def found(**kw):
            r = self.c.call('Search', service=svc, **kw)
            return {t.trace_id for t in r.traces}
        self.assertEqual(found(), {fast_t.hex(), slow_t.hex(), err_t.hex()})
        self.assertEqual(found(operation='get'), {fast_t.hex(), err_t.hex()})
        self.assertEqual(found(errors_only=True), {err_t.hex()})
        self.assertEqual(found(min_duration_us=500000), {slow_t.hex()})
        self.assertEqual(found(max_duration_us=1500), {fast_t.hex()})
        self.assertEqual(found(attributes={'user': 'ann'}),
                         {fast_t.hex(), err_t.hex()})
        self.assertEqual(found(attributes={'user': 'ann'},
                               errors_only=True), {err_t.hex()})
        self.assertEqual(found(attributes={'user': "x' OR 1=1 --"}), set())
        old = int(t0 / 1e6) - 3600 * 1000
        self.assertEqual(found(start_unix_ms=old - 1000, end_unix_ms=old),
                         set())
        r = self.c.call('Search', service=svc, errors_only=True)
        t, = r.traces
        self.assertEqual((t.span_count, t.error_count), (1, 1))
        self.assertEqual(list(t.services), [svc])
        self.assertEqual(t.root_service, svc)
        self.assertEqual(t.root_name, 'get')

    def test_search_pages(self):
        svc = uniq('svc')
        t0 = now_ns()
        want = []
        spans = []
        for i in range(7):
            tid, sid = ids()
            want.append(tid.hex())
            spans.append(span(tid, sid, 'op', start_ns=t0 + i * 1000))
        self.c.export(request(svc, spans))
        got, token = [], ''
        while True:
            r = self.c.call('Search', service=svc, page_size=3,
                            page_token=token)
            got += [t.trace_id for t in r.traces]
            self.assertLessEqual(len(r.traces), 3)
            token = r.next_page_token
            if not token:
                break
        self.assertEqual(got, list(reversed(want)))   # newest first

    def test_search_bad_input(self):
        bad = [
            (dict(page_size=-1), 'page_size'),
            (dict(page_token='nonsense'), 'page_token'),
            (dict(min_duration_us=-1), 'min_duration_us'),
            (dict(max_duration_us=-1), 'max_duration_us'),
            (dict(min_duration_us=10, max_duration_us=5), 'min_duration_us'),
            (dict(start_unix_ms=-1), 'start_unix_ms'),
            (dict(end_unix_ms=-1), 'end_unix_ms'),
            (dict(start_unix_ms=2000, end_unix_ms=1000), 'start_unix_ms'),
            (dict(service='s' * 1025), 'service'),
            (dict(operation='o' * 1025), 'operation'),
            (dict(attributes={'': 'v'}), 'attributes'),
            (dict(attributes={'k%d' % i: 'v' for i in range(17)}),
             'attributes'),
        ]
        for kw, field in bad:
            self.assertCode(rpc_error(self.c.call, 'Search', **kw),
                            C.INVALID_ARGUMENT, field)

    def test_services_and_operations(self):
        svc = uniq('svc')
        tid, _, spans = self.tree(svc)
        self.c.export(request(svc, spans))
        self.assertIn(svc, self.c.call('Services').services)
        ops = {(o.name, o.kind) for o in
               self.c.call('Operations', service=svc).operations}
        P = th.pb()
        self.assertEqual(ops, {('root', P.SPAN_KIND_SERVER),
                               ('child', P.SPAN_KIND_CLIENT),
                               ('grand', P.SPAN_KIND_INTERNAL)})
        self.assertEqual(list(self.c.call('Operations',
                                          service=uniq('none')).operations),
                         [])
        self.assertCode(rpc_error(self.c.call, 'Operations'),
                        C.INVALID_ARGUMENT, 'service')

    def test_dependencies(self):
        a, b, c = uniq('a'), uniq('b'), uniq('c')
        t0 = now_ns()
        for i in range(4):
            tid, ra = ids()
            ca, sb, cb, sc = (os.urandom(8) for _ in range(4))
            self.c.export(request(a, [
                span(tid, ra, 'in', start_ns=t0),
                span(tid, ca, 'call-b', parent=ra, kind=th.CLIENT,
                     start_ns=t0 + 1)]))
            self.c.export(request(b, [
                span(tid, sb, 'serve', parent=ca, start_ns=t0 + 2,
                     error=(i == 0)),
                span(tid, cb, 'call-c', parent=sb, kind=th.CLIENT,
                     start_ns=t0 + 3)]))
            self.c.export(request(c, [
                span(tid, sc, 'serve', parent=cb, start_ns=t0 + 4)]))
        deps = {(d.parent, d.child): d for d in
                self.c.call('Dependencies').dependencies
                if d.parent in (a, b)}
        self.assertEqual(set(deps), {(a, b), (b, c)})
        self.assertEqual(deps[(a, b)].call_count, 4)
        self.assertEqual(deps[(a, b)].error_count, 1)
        self.assertAlmostEqual(deps[(a, b)].error_rate, 0.25)
        self.assertEqual(deps[(b, c)].error_count, 0)
        self.assertCode(rpc_error(self.c.call, 'Dependencies',
                                  start_unix_ms=5, end_unix_ms=4),
                        C.INVALID_ARGUMENT, 'start_unix_ms')


class FleetTest(harness.ServiceCase):
    """The platform's own servers exporting to trace-srv, found through
    discovery (--trace-endpoint discovery): a Put from an outside client
    (python grpcio, with its own traceparent) through three kv-srv nodes
    (the entry node forwards to the key's primary, which copies it to the
    other owner) is one trace, stored with the right tree."""

    @classmethod
    def setUpClass(cls):
        trace = ['--trace-endpoint', 'discovery']
        cls.disc = Server(discovery='self', name='discovery-fleet',
                          extra_args=trace)
        cls.addClassCleanup(cls.disc.kill)
        cls.ts = th.trace_server(name='trace-fleet',
                                 discovery=cls.disc.address)
        cls.addClassCleanup(cls.ts.kill)
        cls.c = th.client_of(cls.ts)
        cls.nodes = kh.ring_nodes(3, 'kv-fleet', cls.disc.address, 2,
                                  extra=trace,
                                  cleanup=cls.addClassCleanup)

    @classmethod
    def tearDownClass(cls):
        for n in cls.nodes:
            n.stop_clean()
        cls.ts.stop_clean()
        cls.disc.stop_clean()

    def put(self, node, md, **kw):
        c = kh.client_of(node)
        return c._m['Put'](c.pb.PutRequest(**kw), metadata=md,
                           timeout=harness.RPC_TIMEOUT)

    def test_call_through_three_servers_is_one_trace(self):
        entry = self.nodes[0]
        t = uniq('tr').replace('-', '_')
        for i in range(200):
            tid, sid = os.urandom(16).hex(), os.urandom(8).hex()
            tp = '00-%s-%s-01' % (tid, sid)
            fwd = harness.metric(entry.mport, 'kv_forwarded_total')
            keys = harness.metric(entry.mport, 'kv_keys')
            self.put(entry, [('traceparent', tp)], table=t, key='k%d' % i,
                     value=b'v')
            # Forwarded, and not copied back to the entry node: the key's
            # two owners are the other two nodes.
            if harness.metric(entry.mport, 'kv_forwarded_total') > fwd and \
                    harness.metric(entry.mport, 'kv_keys') == keys:
                break
        else:
            self.fail('no key owned by the two other nodes')
        spans = self.c.wait_spans(tid, 5)
        self.assertEqual(len(spans), 5, spans)
        by_id = {s.span_id: s for s in spans}
        roots = [s for s in spans if s.parent_span_id not in by_id]
        # The outside caller's context is continued: one root, its
        # parent the caller's span.
        self.assertEqual(len(roots), 1)
        root = roots[0]
        self.assertEqual(root.parent_span_id, sid)
        self.assertEqual(root.kind, th.pb().SPAN_KIND_SERVER)
        self.assertEqual(root.name, 'platform.kv.v1.KV/Put')
        self.assertEqual({s.trace_id for s in spans}, {tid})
        # server -> client -> server -> client -> server, across three
        # nodes.
        chain, s = [root], root
        while True:
            kids = [k for k in spans if k.parent_span_id == s.span_id]
            if not kids:
                break
            self.assertEqual(len(kids), 1)
            s = kids[0]
            chain.append(s)
        P = th.pb()
        self.assertEqual([x.kind for x in chain],
                         [P.SPAN_KIND_SERVER, P.SPAN_KIND_CLIENT] * 2 +
                         [P.SPAN_KIND_SERVER])
        servers = [x for x in chain if x.kind == P.SPAN_KIND_SERVER]
        self.assertEqual(len({x.node for x in servers}), 3)
        self.assertEqual({x.service for x in spans}, {'kv-srv'})
        for parent, child in zip(chain, chain[1:]):
            self.assertGreaterEqual(child.start_unix_nano,
                                    parent.start_unix_nano)
        # Found by Search, and the kv nodes' calls to each other are an
        # edge of the dependency graph.
        found = self.c.call('Search', service='kv-srv',
                            operation='platform.kv.v1.KV/Put', page_size=1000)
        self.assertIn(tid, [x.trace_id for x in found.traces])
        deps = {(d.parent, d.child) for d in
                self.c.call('Dependencies').dependencies}
        self.assertIn(('kv-srv', 'kv-srv'), deps)


UNSAMPLED = 0x100              # OTLP flags: sampled bit known, and clear


def unsampled(s):
    s.flags = UNSAMPLED
    return s


class TailTest(harness.ServiceCase):
    """Tail-based retention: the spans of traces head sampling left out
    wait in trace-srv for their window; an error or a span over
    --keep-slower-than keeps the whole trace, the rest are discarded
    (counted)."""

    @classmethod
    def setUpClass(cls):
        cls.srv = th.trace_server(name='trace-tail', metrics=True,
                                  extra_args=['--tail-window-ms', '300',
                                              '--keep-slower-than', '100'])
        cls.addClassCleanup(cls.srv.kill)
        cls.c = th.client_of(cls.srv)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop_clean()

    def metric(self, name):
        return harness.metric(self.srv.mport, name)

    def test_error_and_slow_kept_whole_ordinary_discarded(self):
        svc = uniq('svc')
        err_t, slow_t = ids()[0], ids()[0]
        ordinary = [ids()[0] for _ in range(10)]
        root_e, root_s = os.urandom(8), os.urandom(8)
        discarded = self.metric('trace_tail_traces_discarded_total')
        kept = self.metric('trace_tail_traces_kept_total')
        spans = [unsampled(span(err_t, root_e, 'in')),
                 unsampled(span(err_t, os.urandom(8), 'db', parent=root_e,
                                error=True, message='down')),
                 unsampled(span(slow_t, root_s, 'in',
                                duration_ns=150 * 10**6)),
                 unsampled(span(slow_t, os.urandom(8), 'fast',
                                parent=root_s))]
        for t in ordinary:
            spans.append(unsampled(span(t, os.urandom(8), 'in')))
        r = self.c.export(request(svc, spans))
        self.assertFalse(r.HasField('partial_success'))
        wait_for(lambda: self.metric('trace_tail_traces_discarded_total')
                 >= discarded + 10, what='ordinary traces discarded')
        self.assertGreaterEqual(self.metric('trace_tail_traces_kept_total'),
                                kept + 2)
        self.assertEqual(len(self.c.wait_spans(err_t.hex(), 2)), 2)
        self.assertEqual(len(self.c.wait_spans(slow_t.hex(), 2)), 2)
        for t in ordinary:
            self.assertCode(rpc_error(self.c.call, 'GetTrace',
                                      trace_id=t.hex()), C.NOT_FOUND)

    def test_sampled_spans_stored_at_once(self):
        tid, sid = ids()
        s = span(tid, sid, 'sampled')
        s.flags = UNSAMPLED | 1
        self.c.export(request(uniq('svc'), [s]))
        self.assertEqual(len(self.c.spans(tid.hex())), 1)

    def test_buffer_full_refused_and_counted(self):
        srv = th.trace_server(name='trace-tail-small', metrics=True,
                              extra_args=['--tail-buffer-spans', '100',
                                          '--tail-window-ms', '600000'])
        self.addCleanup(srv.kill)
        c = th.client_of(srv)
        r = c.export(request('x', [unsampled(span(ids()[0], os.urandom(8)))
                                   for _ in range(105)]))
        self.assertEqual(r.partial_success.rejected_spans, 5)
        self.assertIn('tail buffer', r.partial_success.error_message)
        self.assertEqual(harness.metric(srv.mport,
                                        'trace_tail_spans_refused_total'), 5)
        self.assertEqual(harness.metric(srv.mport, 'trace_tail_spans_held'),
                         100)
        srv.stop_clean()


class TailFleetTest(harness.ServiceCase):
    """Real servers at 1% head sampling with --trace-tail, exporting to
    trace-srv: sync-srv Lock calls that end DEADLINE_EXCEEDED (a server
    fault, so an error span) are kept whole, ordinary discovery calls of
    unsampled traces are not."""

    def test_errors_kept_under_one_percent(self):
        import sync_harness as sh
        ts = th.trace_server(name='trace-tailfleet', metrics=True,
                             extra_args=['--tail-window-ms', '300'])
        self.addCleanup(ts.kill)
        c = th.client_of(ts)
        trace = ['--trace-endpoint', ts.address, '--trace-sample', '0.01',
                 '--trace-tail']
        disc = Server(discovery='self', name='discovery-tail',
                      extra_args=trace)
        self.addCleanup(disc.kill)
        sync = sh.sync_server(name='sync-tail', extra_args=trace)
        self.addCleanup(sync.kill)
        sc = sh.client_of(sync)
        name = uniq('lock')
        holder = sc.grant(60000)
        sc.lock(name, holder)
        waiter = sc.grant(60000)
        dc = disc.discovery_client()
        errors, ordinary = [], []
        for i in range(5):
            tid = os.urandom(16).hex()
            errors.append(tid)
            md = [('traceparent', '00-%s-%s-00' % (tid, os.urandom(8).hex()))]
            err = rpc_error(sc._m['Lock'], sc.pb.LockRequest(
                name=name, lease_id=waiter), timeout=0.3, metadata=md)
            self.assertEqual(err.code(), C.DEADLINE_EXCEEDED)
        before = harness.metric(ts.mport, 'trace_tail_traces_discarded_total')
        for i in range(50):
            tid = os.urandom(16).hex()
            ordinary.append(tid)
            md = [('traceparent', '00-%s-%s-00' % (tid, os.urandom(8).hex()))]
            dc._m['ListServices'](dc.pb.ListServicesRequest(), metadata=md,
                                  timeout=harness.RPC_TIMEOUT)
        for tid in errors:
            got = c.wait_spans(tid, 1)
            self.assertTrue(any(s.error for s in got))
            self.assertEqual({s.service for s in got}, {'sync-srv'})
        wait_for(lambda: harness.metric(
            ts.mport, 'trace_tail_traces_discarded_total') >= before + 50,
            what='the ordinary traces discarded')
        stored = 0
        for tid in ordinary:
            try:
                c.spans(tid)
                stored += 1
            except grpc.RpcError as e:
                self.assertEqual(e.code(), C.NOT_FOUND)
        self.assertEqual(stored, 0)
        disc.stop_clean()
        sync.stop_clean()
        ts.stop_clean()


class ForwardTest(harness.ServiceCase):
    """--forward: every span trace-srv keeps also goes to an upstream
    OTLP endpoint (a collector the test runs), the tail's kept traces
    included and its discarded ones not; while the upstream is away,
    Export is answered as ever and the spans wait (send failures
    counted), then arrive."""

    def test_forwarded(self):
        from test_tracing import Collector
        port = harness.free_port()
        srv = th.trace_server(name='trace-fwd', metrics=True, extra_args=[
            '--forward', '127.0.0.1:%d' % port, '--tail-window-ms', '200'])
        self.addCleanup(srv.kill)
        c = th.client_of(srv)
        svc = uniq('svc')
        tid, root = ids()
        child = os.urandom(8)
        r = c.export(request(svc, [
            span(tid, root, 'root', attrs={'k': 'v'}),
            span(tid, child, 'child', parent=root, kind=th.CLIENT,
                 error=True, message='bad')], node='n9'))
        self.assertFalse(r.HasField('partial_success'))
        wait_for(lambda: harness.metric(
            srv.mport, 'trace_forward_send_failures_total') > 0,
            what='a forward that failed')
        self.assertEqual(len(c.spans(tid.hex())), 2)   # stored meanwhile
        col = Collector(port)
        self.addCleanup(col.stop)
        got = {s.span_id: (svc_, s) for svc_, s in col.of_trace(tid.hex(), 2)}
        self.assertEqual(set(got), {root, child})
        svc_, s = got[child]
        self.assertEqual(svc_, svc)
        self.assertEqual(s.parent_span_id, root)
        self.assertEqual(s.status.code, th.STATUS_ERROR)
        self.assertEqual(s.status.message, 'bad')
        self.assertEqual(s.kind, th.CLIENT)
        self.assertEqual({a.key: a.value.string_value
                          for a in got[root][1].attributes}, {'k': 'v'})
        # The tail: a kept unsampled trace is forwarded, a discarded one
        # is not.
        kept_t, gone_t = ids()[0], ids()[0]
        discarded = harness.metric(srv.mport,
                                   'trace_tail_traces_discarded_total')
        c.export(request(svc, [
            unsampled(span(kept_t, os.urandom(8), 'e', error=True)),
            unsampled(span(gone_t, os.urandom(8), 'ok'))]))
        col.of_trace(kept_t.hex(), 1)
        wait_for(lambda: harness.metric(
            srv.mport, 'trace_tail_traces_discarded_total') > discarded,
            what='the ordinary trace discarded')
        srv.stop_clean()
        with self.assertRaises(AssertionError):
            col.of_trace(gone_t.hex(), 1, timeout=0.2)

    def test_bad_forward_setting(self):
        r = harness.run_binary(['--forward', 'nowhere'], binary=th.TRACE_BIN,
                               env={'PLATFORM_DATABASE': th.DATABASE})
        self.assertEqual(r.code, 2, r.stderr)
        self.assertIn('--forward', r.stderr)


NODE = shutil.which('node')
NODE_DIR = os.path.join(harness.SOURCE_DIR, 'tests', 'node')


class NodeSdkTest(TraceCase):
    """An OTLP export from the OpenTelemetry JS SDK
    (@opentelemetry/exporter-trace-otlp-grpc from tests/node, scripts/setup
    installs it): stored, and found by Search on its attribute."""

    def test_otel_js_export_stored_and_found(self):
        if NODE is None or not os.path.isdir(
                os.path.join(NODE_DIR, 'node_modules', '@opentelemetry')):
            self.skipTest('node or tests/node/node_modules missing '
                          '(scripts/setup installs them)')
        svc, value = uniq('node-shop'), uniq('order')
        p = subprocess.run([NODE, os.path.join(NODE_DIR, 'otlp_export.js'),
                            self.srv.address, svc, value], cwd=NODE_DIR,
                           capture_output=True, text=True,
                           timeout=harness.TIMEOUT)
        self.assertEqual(p.returncode, 0, p.stderr)
        out = json.loads(p.stdout.strip().splitlines()[-1])
        spans = {s.span_id: s for s in self.c.spans(out['trace_id'])}
        self.assertEqual(set(spans), {out['root'], out['child']})
        root, child = spans[out['root']], spans[out['child']]
        self.assertEqual(root.service, svc)
        self.assertEqual(root.name, 'checkout')
        self.assertEqual(root.parent_span_id, '')
        self.assertEqual(root.attributes['order.id'], value)
        self.assertEqual(root.attributes['order.items'], '3')
        self.assertEqual(child.parent_span_id, out['root'])
        self.assertTrue(child.error)
        self.assertEqual(child.status_message, 'card declined')
        found = self.c.call('Search', attributes={'order.id': value})
        self.assertEqual([t.trace_id for t in found.traces],
                         [out['trace_id']])
        t = found.traces[0]
        self.assertEqual((t.root_service, t.root_name, t.span_count,
                          t.error_count), (svc, 'checkout', 2, 1))


class RoutingTest(harness.ServiceCase):
    """Two trace-srv nodes (each on a database of its own, to see where
    spans land) registered with discovery, and kv-srv nodes exporting
    with --trace-endpoint discovery: every span of a trace goes to the
    node its trace id routes to, so a forwarded Put's three spans from
    two processes are all on one trace-srv, and both get traces."""

    def test_spans_of_a_trace_on_one_node(self):
        import auth_harness as ah
        disc = Server(discovery='self', name='discovery-route')
        self.addCleanup(disc.kill)
        nodes, clients = [], []
        for i in range(2):
            schema, db = ah.new_schema()
            self.addCleanup(ah.drop_schema, schema)
            t = th.trace_server(name='trace-route-%d' % i, database=db,
                                discovery=disc.address)
            self.addCleanup(t.kill)
            nodes.append(t)
            clients.append(th.client_of(t))
        dc = disc.discovery_client()
        wait_for(lambda: sum(len(v.nodes) for v in dc.get('trace').services) == 2,
                 what='two trace-srv nodes registered')
        kvs = []
        for i in range(2):
            mport = harness.free_port()
            n = kh.kv_server(name='kv-route-%d' % i, discovery=disc.address,
                             extra_args=['--trace-endpoint', 'discovery',
                                         '--replicas', '1',
                                         '--metrics-listen',
                                         '127.0.0.1:%d' % mport])
            n.mport = mport
            self.addCleanup(n.kill)
            kvs.append(n)
        for n in kvs:
            wait_for(lambda n=n: harness.metric(n.mport,
                                                'kv_ring_members') == 2,
                     what='a ring of two')
        t = uniq('rt').replace('-', '_')
        kc = kh.client_of(kvs[0])
        want = {}
        for i in range(24):
            tid = os.urandom(16).hex()
            fwd = harness.metric(kvs[0].mport, 'kv_forwarded_total')
            kc._m['Put'](kc.pb.PutRequest(table=t, key='k%d' % i, value=b'v'),
                         metadata=[('traceparent', '00-%s-%s-01' % (
                             tid, os.urandom(8).hex()))],
                         timeout=harness.RPC_TIMEOUT)
            forwarded = harness.metric(kvs[0].mport,
                                       'kv_forwarded_total') > fwd
            want[tid] = 3 if forwarded else 1
        self.assertIn(3, want.values())

        def count(c, tid):
            try:
                return len(c.spans(tid))
            except grpc.RpcError:
                return 0
        used = set()
        for tid, n in want.items():
            got = []
            wait_for(lambda: sum(got.__setitem__(slice(None), [
                count(c, tid) for c in clients]) or got) >= n,
                what='the spans of %s' % tid)
            self.assertEqual(sorted(got), [0, n], (tid, got))
            used.add(got.index(n))
        self.assertEqual(used, {0, 1})
        for n in kvs + nodes + [disc]:
            n.stop_clean()


class RetentionTest(harness.ServiceCase):
    """A span two days old is kept with --retention 3d and its
    partition dropped when trace-srv restarts with --retention 1d."""

    def test_old_partition_dropped(self):
        srv = th.trace_server(name='trace-ret3', extra_args=[
            '--retention', '3d'])
        self.addCleanup(srv.kill)
        c = th.client_of(srv)
        tid, sid = ids()
        r = c.export(request(uniq('svc'), [span(
            tid, sid, 'old', start_ns=now_ns() - 2 * DAY_NS)]))
        self.assertFalse(r.HasField('partial_success'))
        self.assertEqual(len(c.spans(tid.hex())), 1)
        srv.stop_clean()
        srv = th.trace_server(name='trace-ret1', metrics=True,
                              extra_args=['--retention', '1'])
        self.addCleanup(srv.kill)
        c = th.client_of(srv)
        wait_for(lambda: harness.metric(
            srv.mport, 'trace_partitions_dropped_total') >= 1,
            what='a partition dropped')
        self.assertCode(rpc_error(c.call, 'GetTrace', trace_id=tid.hex()),
                        C.NOT_FOUND)
        # and a span that old is now refused
        r = c.export(request('x', [span(tid, sid, 'old',
                                        start_ns=now_ns() - 2 * DAY_NS)]))
        self.assertEqual(r.partial_success.rejected_spans, 1)
        srv.stop_clean()


class OversizedTest(harness.ServiceCase):
    """A trace past --max-trace-spans: the rest of its spans refused,
    counted and named, never dropped without a word."""

    def test_spans_past_the_limit_refused(self):
        srv = th.trace_server(name='trace-max5', metrics=True,
                              extra_args=['--max-trace-spans', '5'])
        self.addCleanup(srv.kill)
        c = th.client_of(srv)
        tid, _ = ids()
        svc = uniq('svc')
        r = c.export(request(svc, [span(tid, os.urandom(8))
                                   for _ in range(3)]))
        self.assertFalse(r.HasField('partial_success'))
        r = c.export(request(svc, [span(tid, os.urandom(8))
                                   for _ in range(4)]))
        self.assertEqual(r.partial_success.rejected_spans, 2)
        self.assertIn('--max-trace-spans', r.partial_success.error_message)
        self.assertIn(tid.hex(), r.partial_success.error_message)
        self.assertEqual(len(c.spans(tid.hex())), 5)
        # one export over the limit on its own, beside another trace
        t2, _ = ids()
        t3, s3 = ids()
        r = c.export(request(svc, [span(t2, os.urandom(8))
                                   for _ in range(8)] + [span(t3, s3)]))
        self.assertEqual(r.partial_success.rejected_spans, 3)
        self.assertEqual(len(c.spans(t2.hex())), 5)
        self.assertEqual(len(c.spans(t3.hex())), 1)
        self.assertEqual(harness.metric(
            srv.mport, 'trace_spans_oversized_total'), 5)
        srv.stop_clean()


class SettingsTest(harness.ServiceCase):

    def test_bad_settings(self):
        for args, word in ((['--retention', '0'], '--retention'),
                           (['--retention', '3x'], '--retention'),
                           (['--retention', '4000'], '--retention'),
                           (['--max-trace-spans', '0'], '--max-trace-spans'),
                           (['--max-trace-spans', 'x'], '--max-trace-spans')):
            r = harness.run_binary(args,
                                   binary=th.TRACE_BIN,
                                   env={'PLATFORM_DATABASE': th.DATABASE})
            self.assertEqual(r.code, 2, r.stderr)
            self.assertIn(word, r.stderr)
        r = harness.run_binary([], binary=th.TRACE_BIN,
                               env={'PLATFORM_DATABASE': ''})
        self.assertEqual(r.code, 2)
        self.assertIn('--database', r.stderr)


if __name__ == '__main__':
    if not th.DATABASE:
        print('test_trace: PLATFORM_TEST_DATABASE is unset; skipping '
              '(scripts/test sets it)')
        sys.exit(0)
    harness.run_tests()
