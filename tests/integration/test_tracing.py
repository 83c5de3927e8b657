#!/usr/bin/python3
"""Tracing in every server, over real gRPC: W3C traceparent in and out,
server and client spans exported by OTLP/gRPC to a collector the test
runs (TraceService/Export, the OTLP messages compiled from proto/), log
lines that carry the trace, sampling decided at the root and honoured
after, and an exporter that holds spans while the collector is away.
"""

import atexit
import os
import queue
import shutil
import subprocess
import sys
import tempfile
from concurrent import futures

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

import harness  # noqa: E402
import kv_harness as kh  # noqa: E402
from harness import Server, rpc_error, wait_for  # noqa: E402

C = grpc.StatusCode
EXPORT = '/opentelemetry.proto.collector.trace.v1.TraceService/Export'
OTLP = ['opentelemetry/proto/common/v1/common.proto',
        'opentelemetry/proto/resource/v1/resource.proto',
        'opentelemetry/proto/trace/v1/trace.proto',
        'opentelemetry/proto/collector/trace/v1/trace_service.proto']
SERVER, CLIENT = 2, 3           # Span.SpanKind


def otlp():
    """The OTLP modules, importable by their own package names (they
    import each other)."""
    out = tempfile.mkdtemp(prefix='platform-it-otlp-')
    atexit.register(shutil.rmtree, out, True)
    subprocess.run(['protoc', '--python_out=' + out, '-I',
                    os.path.join(harness.SOURCE_DIR, 'proto')] + OTLP,
                   check=True)
    sys.path.insert(0, out)
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    return trace_service_pb2


TS = otlp()


class Collector:
    """An OTLP/gRPC trace collector on a free port: every span it is sent,
    with its resource's service.name, on a queue."""

    def __init__(self, port=None):
        self.port = port or harness.free_port()
        self.address = '127.0.0.1:%d' % self.port
        self.spans = queue.Queue()
        self.server = None
        self.start()

    def _export(self, req, context):
        for rs in req.resource_spans:
            svc = {a.key: a.value.string_value
                   for a in rs.resource.attributes}.get('service.name')
            for ss in rs.scope_spans:
                for s in ss.spans:
                    self.spans.put((svc, s))
        return TS.ExportTraceServiceResponse()

    def start(self):
        handler = grpc.method_handlers_generic_handler(
            'opentelemetry.proto.collector.trace.v1.TraceService', {
                'Export': grpc.unary_unary_rpc_method_handler(
                    self._export,
                    request_deserializer=(
                        TS.ExportTraceServiceRequest.FromString),
                    response_serializer=(
                        TS.ExportTraceServiceResponse.SerializeToString)),
            })
        self.server = grpc.server(futures.ThreadPoolExecutor(4))
        self.server.add_generic_rpc_handlers((handler,))
        self.server.add_insecure_port(self.address)
        self.server.start()

    def stop(self):
        self.server.stop(0).wait()

    def of_trace(self, trace_id, n, timeout=harness.TIMEOUT):
        """The first n spans of the trace (hex id) that arrive; other
        traces' spans are put aside."""
        got, others = [], []
        try:
            wait_for(lambda: self._take(trace_id, got, others) >= n,
                     timeout=timeout, what='%d spans of %s' % (n, trace_id))
        finally:
            for o in others:
                self.spans.put(o)
        return got

    def _take(self, trace_id, got, others):
        while True:
            try:
                svc, s = self.spans.get_nowait()
            except queue.Empty:
                return len(got)
            (got if s.trace_id.hex() == trace_id else others).append(
                (svc, s))


def traceparent(sampled=True):
    tid, sid = os.urandom(16).hex(), os.urandom(8).hex()
    return tid, sid, '00-%s-%s-%s' % (tid, sid, '01' if sampled else '00')


def attrs(span):
    return {a.key: a.value.string_value for a in span.attributes}


class TracingTest(harness.ServiceCase):
    """A discovery-srv and two kv-srv nodes (each key on one, so a call to
    the other is forwarded), all exporting to one collector."""

    @classmethod
    def setUpClass(cls):
        cls.col = Collector()
        cls.addClassCleanup(cls.col.stop)
        trace = ['--trace-endpoint', cls.col.address]
        cls.disc = Server(discovery='self', name='discovery-traced',
                          extra_args=trace)
        cls.addClassCleanup(cls.disc.kill)
        cls.nodes = kh.ring_nodes(2, 'kv-traced', cls.disc.address, 1,
                                  extra=trace,
                                  cleanup=cls.addClassCleanup)

    @classmethod
    def tearDownClass(cls):
        for n in cls.nodes:
            n.stop_clean()
        cls.disc.stop_clean()

    def call(self, node, method, md=None, **kw):
        c = kh.client_of(node)
        req = getattr(c.pb, method + 'Request')(**kw)
        return c._m[method](req, timeout=harness.RPC_TIMEOUT,
                            metadata=md or [])

    def test_server_span_is_the_callers_child(self):
        tid, sid, tp = traceparent()
        dc = self.disc.discovery_client()
        dc._m['ListServices'](dc.pb.ListServicesRequest(),
                              metadata=[('traceparent', tp),
                                        ('tracestate', 'vendor=x')],
                              timeout=harness.RPC_TIMEOUT)
        [(svc, s)] = self.col.of_trace(tid, 1)
        self.assertEqual(svc, 'discovery-srv')
        self.assertEqual(s.kind, SERVER)
        self.assertEqual(s.parent_span_id.hex(), sid)
        self.assertNotEqual(s.span_id.hex(), sid)
        self.assertEqual(s.name,
                         'platform.discovery.v1.Discovery/ListServices')
        self.assertEqual(s.trace_state, 'vendor=x')
        self.assertEqual(attrs(s)['rpc.method'], 'ListServices')
        self.assertGreaterEqual(s.end_time_unix_nano, s.start_time_unix_nano)
        self.assertEqual(s.status.code, 0)

    def test_forwarded_call_is_one_trace(self):
        # Keys until one is forwarded: the node called is not its owner.
        t = harness.uniq('tr').replace('-', '_')
        for i in range(50):
            tid, sid, tp = traceparent()
            before = harness.metric(self.nodes[0].mport, 'kv_forwarded_total')
            self.call(self.nodes[0], 'Put', md=[('traceparent', tp)],
                      table=t, key='k%d' % i, value=b'v')
            if harness.metric(self.nodes[0].mport,
                              'kv_forwarded_total') > before:
                break
        else:
            self.fail('no key owned by the other node')
        spans = self.col.of_trace(tid, 3)
        by_kind = {}
        for svc, s in spans:
            by_kind.setdefault((svc, s.kind), []).append(s)
        entry = by_kind[('kv-srv', SERVER)]
        client = by_kind[('kv-srv', CLIENT)][0]
        # The entry node's server span, its client span to the owner, and
        # the owner's server span: one chain.
        first = next(s for s in entry if s.parent_span_id.hex() == sid)
        self.assertEqual(client.parent_span_id, first.span_id)
        owner = next(s for s in entry if s is not first)
        self.assertEqual(owner.parent_span_id, client.span_id)
        self.assertEqual(owner.name, 'platform.kv.v1.KV/Put')

    def test_error_logged_with_its_trace(self):
        tid, sid, tp = traceparent()
        err = rpc_error(self.call, self.nodes[1], 'Get',
                        md=[('traceparent', tp)], table='none', key='k')
        self.assertEqual(err.code(), C.NOT_FOUND)
        [(_, s)] = [x for x in self.col.of_trace(tid, 1)
                    if x[1].parent_span_id.hex() == sid]
        self.assertEqual(s.status.code, 0)      # NOT_FOUND: not a fault

        def logged():
            for line in harness.log_lines(self.nodes[1]):
                if line.get('msg') == 'call' and \
                        line.get('trace_id') == tid:
                    return line
        line = wait_for(logged, what='the call logged with its trace id')
        self.assertEqual(line['span_id'], s.span_id.hex())

    def test_unsampled_caller_is_not_recorded(self):
        tid, sid, tp = traceparent(sampled=False)
        dc = self.disc.discovery_client()
        dc._m['ListServices'](dc.pb.ListServicesRequest(),
                              metadata=[('traceparent', tp)],
                              timeout=harness.RPC_TIMEOUT)
        # A sampled call after it arrives; the unsampled one never does.
        tid2, _, tp2 = traceparent()
        dc._m['ListServices'](dc.pb.ListServicesRequest(),
                              metadata=[('traceparent', tp2)],
                              timeout=harness.RPC_TIMEOUT)
        self.col.of_trace(tid2, 1)
        with self.assertRaises(AssertionError):
            self.col.of_trace(tid, 1, timeout=0.5)

    def test_bad_traceparent_starts_a_new_trace(self):
        dc = self.disc.discovery_client()
        for bad in ('garbage', '00-' + '0' * 32 + '-' + '1' * 16 + '-01',
                    '00-' + 'A' * 32 + '-' + '1' * 16 + '-01'):
            with self.subTest(traceparent=bad):
                dc._m['ListServices'](dc.pb.ListServicesRequest(),
                                      metadata=[('traceparent', bad)],
                                      timeout=harness.RPC_TIMEOUT)


class ExporterTest(harness.ServiceCase):
    """The collector away: calls go on, spans wait in the buffer and
    arrive once it is up; sampling 0 records only sampled callers."""

    def test_held_until_the_collector_comes(self):
        port = harness.free_port()
        mport = harness.free_port()
        srv = Server(discovery='self', name='discovery-held', extra_args=[
            '--trace-endpoint', '127.0.0.1:%d' % port,
            '--metrics-listen', '127.0.0.1:%d' % mport])
        self.addCleanup(srv.kill)
        tid, _, tp = traceparent()
        dc = srv.discovery_client()
        dc._m['ListServices'](dc.pb.ListServicesRequest(),
                              metadata=[('traceparent', tp)],
                              timeout=harness.RPC_TIMEOUT)
        wait_for(lambda: harness.metric(
            mport, 'platform_trace_send_failures_total') > 0,
            what='a send that failed')
        col = Collector(port)
        self.addCleanup(col.stop)
        col.of_trace(tid, 1)
        srv.stop_clean()

    def test_sample_zero_keeps_sampled_callers(self):
        col = Collector()
        self.addCleanup(col.stop)
        srv = Server(discovery='self', name='discovery-sample0', extra_args=[
            '--trace-endpoint', col.address, '--trace-sample', '0'])
        self.addCleanup(srv.kill)
        dc = srv.discovery_client()
        dc._m['ListServices'](dc.pb.ListServicesRequest(),
                              timeout=harness.RPC_TIMEOUT)
        tid, _, tp = traceparent()
        dc._m['ListServices'](dc.pb.ListServicesRequest(),
                              metadata=[('traceparent', tp)],
                              timeout=harness.RPC_TIMEOUT)
        got = col.of_trace(tid, 1)
        self.assertEqual(len(got), 1)
        # Nothing else came: the root without a caller was not sampled.
        self.assertTrue(col.spans.empty())
        srv.stop_clean()

    def test_bad_settings(self):
        for args, flag in ((['--trace-sample', '2'], '--trace-sample'),
                           (['--trace-sample', 'x'], '--trace-sample'),
                           (['--trace-endpoint', 'nowhere'],
                            '--trace-endpoint')):
            with self.subTest(args=args):
                r = harness.run_binary(args)
                self.assertEqual(r.code, 2, r.stderr)
                self.assertIn(flag, r.stderr)


if __name__ == '__main__':
    harness.run_tests()
