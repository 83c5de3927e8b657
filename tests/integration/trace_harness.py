"""Helpers for the trace-srv tests (test_trace.py, test_tracing.py,
test_ctl_trace.py).

The OTLP message classes (compiled from proto/opentelemetry, importable
by their own package names since they import each other), the
platform.trace.v1 classes, a client for Export and every Trace method,
OTLP spans made to order, and trace-srv started with the harness Server
class on the test database.
"""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import harness
from harness import RPC_TIMEOUT, Server
from config_harness import DATABASE, PG_CTL  # noqa: F401 - re-exported

TRACE_BIN = os.path.join(harness.BUILD_DIR, 'services', 'trace', 'trace-srv')
TRACE_PREFIX = '/platform.trace.v1.Trace/'
EXPORT = '/opentelemetry.proto.collector.trace.v1.TraceService/Export'
OTLP = ['opentelemetry/proto/common/v1/common.proto',
        'opentelemetry/proto/resource/v1/resource.proto',
        'opentelemetry/proto/trace/v1/trace.proto',
        'opentelemetry/proto/collector/trace/v1/trace_service.proto']
SERVER, CLIENT, INTERNAL = 2, 3, 1      # Span.SpanKind
STATUS_ERROR = 2

pb = harness.proto_module('platform/trace/v1/trace.proto', 'it_trace_pb2')
uniq = harness.uniq

_otlp = []
_otlp_lock = threading.Lock()


def otlp():
    """The module of trace_service.proto (its messages reach the rest:
    otlp().ExportTraceServiceRequest, and trace_pb2 through otlp_trace)."""
    with _otlp_lock:
        if not _otlp:
            out = tempfile.mkdtemp(prefix='platform-it-otlp-')
            atexit.register(shutil.rmtree, out, True)
            subprocess.run(['protoc', '--python_out=' + out, '-I',
                            os.path.join(harness.SOURCE_DIR, 'proto')]
                           + OTLP, check=True)
            sys.path.insert(0, out)
            from opentelemetry.proto.collector.trace.v1 import \
                trace_service_pb2
            from opentelemetry.proto.trace.v1 import trace_pb2
            _otlp.append((trace_service_pb2, trace_pb2))
        return _otlp[0]


def ids():
    """A new (trace id, span id) as bytes."""
    return os.urandom(16), os.urandom(8)


def now_ns():
    return time.time_ns()


def span(trace_id, span_id, name='op', parent=b'', start_ns=None,
         duration_ns=1000000, kind=SERVER, error=False, attrs=None,
         message=''):
    """One OTLP Span message."""
    _, T = otlp()
    start = start_ns if start_ns is not None else now_ns()
    s = T.Span(trace_id=trace_id, span_id=span_id, parent_span_id=parent,
               name=name, kind=kind, start_time_unix_nano=start,
               end_time_unix_nano=start + duration_ns)
    for k, v in (attrs or {}).items():
        kv = s.attributes.add(key=k)
        if isinstance(v, bool):
            kv.value.bool_value = v
        elif isinstance(v, int):
            kv.value.int_value = v
        else:
            kv.value.string_value = v
    if error:
        s.status.code = STATUS_ERROR
        s.status.message = message
    return s


def request(service, spans, node=''):
    """An ExportTraceServiceRequest of spans from one service."""
    TS, _ = otlp()
    req = TS.ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    a = rs.resource.attributes.add(key='service.name')
    a.value.string_value = service
    if node:
        a = rs.resource.attributes.add(key='service.instance.id')
        a.value.string_value = node
    ss = rs.scope_spans.add()
    ss.scope.name = 'test'
    ss.spans.extend(spans)
    return req


class TraceClient(harness.ServiceClient):
    """platform.trace.v1.Trace and OTLP Export over a channel."""

    PREFIX = TRACE_PREFIX
    METHODS = ('GetTrace', 'Search', 'Services', 'Operations',
               'Dependencies')

    def __init__(self, channel):
        super().__init__(channel, pb())
        TS, _ = otlp()
        self._export = channel.unary_unary(
            EXPORT, request_serializer=TS.ExportTraceServiceRequest
            .SerializeToString,
            response_deserializer=TS.ExportTraceServiceResponse.FromString)

    def call(self, method, timeout=RPC_TIMEOUT, **kw):
        req = getattr(self.pb, method + 'Request')(**kw)
        return self._m[method](req, timeout=timeout)

    def export(self, req, timeout=RPC_TIMEOUT):
        return self._export(req, timeout=timeout)

    def spans(self, trace_id_hex):
        return list(self.call('GetTrace', trace_id=trace_id_hex).spans)

    def wait_spans(self, trace_id_hex, n, timeout=harness.TIMEOUT):
        """The trace once it holds at least n spans (the fleet's
        exporters send in the background)."""
        got = []

        def enough():
            try:
                got[:] = self.spans(trace_id_hex)
            except Exception:  # noqa: BLE001 - NOT_FOUND until it comes
                return False
            return len(got) >= n
        harness.wait_for(enough, timeout=timeout,
                         what='%d spans of trace %s' % (n, trace_id_hex))
        return got


def client_of(srv):
    return TraceClient(srv.get_channel())


def trace_server(name=None, database=None, discovery=None, extra_args=(),
                 env=None, port=None, wait=True, metrics=False):
    """trace-srv on a free port with the test database (in the
    environment, so the password is not in the process list); with
    metrics, on a metrics port too (srv.mport)."""
    e = {'PLATFORM_DATABASE': database or DATABASE}
    e.update(env or {})
    args = list(extra_args)
    mport = None
    if metrics:
        mport = harness.free_port()
        args += ['--metrics-listen', '127.0.0.1:%d' % mport]
    srv = Server(binary=TRACE_BIN, port=port, discovery=discovery,
                 extra_args=args, env=e, name=name or 'trace-srv',
                 wait=wait)
    srv.mport = mport
    return srv
