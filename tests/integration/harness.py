"""Shared helpers for the integration tests.

The tests start the real server binaries on free loopback ports and talk to
them over real gRPC with Debian's python3-grpcio (run them with
/usr/bin/python3). Message classes are generated with protoc at start into a
temporary folder; there is no grpc_tools, so methods are called through
channel.unary_unary / unary_stream with explicit (de)serializers.

Environment (set by meson):
  PLATFORM_BUILD_DIR   meson build root (binaries under services/, cli/)
  PLATFORM_SOURCE_DIR  source root (proto/ lives there)

Every wait is a bounded poll; every started process is killed at the end
even when a test fails (class cleanups plus an atexit fallback).
"""

import atexit
import importlib.util
import itertools
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get('PLATFORM_SOURCE_DIR') or \
    os.path.dirname(os.path.dirname(HERE))
BUILD_DIR = os.environ.get('PLATFORM_BUILD_DIR') or \
    os.path.join(SOURCE_DIR, 'build')

DISCOVERY_BIN = os.path.join(BUILD_DIR, 'services', 'discovery',
                             'discovery-srv')
PLATFORMCTL_BIN = os.path.join(BUILD_DIR, 'cli', 'platformctl')

TIMEOUT = 15.0          # default bound of every poll, seconds
POLL = 0.05             # poll interval, seconds
RPC_TIMEOUT = 10.0      # deadline of a single unary call, seconds

SANITIZER_MARKERS = (
    'ERROR: AddressSanitizer',
    'ERROR: LeakSanitizer',
    'runtime error:',
)

DISCOVERY_SERVICE = 'platform.discovery.v1.Discovery'
DISCOVERY_PREFIX = '/' + DISCOVERY_SERVICE + '/'
HEALTH_PREFIX = '/grpc.health.v1.Health/'

# Channel options: never let the client side refuse a big message, so that
# limits are the server's to enforce.
CHANNEL_OPTIONS = [
    ('grpc.max_send_message_length', -1),
    ('grpc.max_receive_message_length', -1),
    ('grpc.enable_retries', 0),
]


def project_version():
    """The project version from the top-level meson.build."""
    with open(os.path.join(SOURCE_DIR, 'meson.build')) as f:
        m = re.search(r"version\s*:\s*'([^']*)'", f.read())
    return m.group(1) if m else None


# ---------------------------------------------------------------- protos

_protos = None
_protos_lock = threading.Lock()


class _Protos:
    pass


def _load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def protos():
    """Generates the message classes once per process.

    Returns an object with .discovery (discovery_pb2) and .health
    (health_pb2). The modules are loaded by file path: the generated
    package names (platform.*, grpc.*) would clash with the standard
    library's `platform` and with grpcio's `grpc`.
    """
    global _protos
    with _protos_lock:
        if _protos is not None:
            return _protos
        out = tempfile.mkdtemp(prefix='platform-it-proto-')
        atexit.register(shutil.rmtree, out, True)
        proto_dir = os.path.join(SOURCE_DIR, 'proto')
        files = ['platform/discovery/v1/discovery.proto',
                 'grpc/health/v1/health.proto']
        subprocess.run(['protoc', '--python_out=' + out, '-I', proto_dir]
                       + files, check=True)
        p = _Protos()
        p.discovery = _load_module(
            'it_discovery_pb2',
            os.path.join(out, 'platform/discovery/v1/discovery_pb2.py'))
        p.health = _load_module(
            'it_health_pb2',
            os.path.join(out, 'grpc/health/v1/health_pb2.py'))
        _protos = p
        return p


def compile_proto(rel_path, module_name):
    """The message classes of one .proto under proto/ (protoc into a
    temporary folder removed at exit), loaded by file path."""
    out = tempfile.mkdtemp(prefix='platform-it-proto-')
    atexit.register(shutil.rmtree, out, True)
    subprocess.run(['protoc', '--python_out=' + out, '-I',
                    os.path.join(SOURCE_DIR, 'proto'), rel_path], check=True)
    return _load_module(module_name, os.path.join(
        out, rel_path[:-len('.proto')] + '_pb2.py'))


def proto_module(rel_path, module_name):
    """A function returning the Python module of rel_path, generated on
    its first call (once per process, whichever thread calls first)."""
    lock = threading.Lock()
    made = []

    def get():
        with lock:
            if not made:
                made.append(compile_proto(rel_path, module_name))
            return made[0]
    return get


# ---------------------------------------------------------------- names

# Tests share one database and one discovery across runs: every name a
# test makes carries this run's random part, so a rerun never sees an
# earlier run's data.
RUN = os.urandom(4).hex()
_seq = itertools.count(1)


def uniq(prefix='t'):
    """A name no other test (or earlier run) uses."""
    return '%s-%s-%d' % (prefix, RUN, next(_seq))


# ---------------------------------------------------------------- ports

def free_port():
    """A port that was free a moment ago on 127.0.0.1."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]
    finally:
        s.close()


def port_listening(port, host='127.0.0.1'):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def metric(mport, name):
    """The value of one sample of a server's --metrics-listen (the first
    with that name, any labels), or -1 when it has none."""
    url = 'http://127.0.0.1:%d/metrics' % mport
    with urllib.request.urlopen(url, timeout=RPC_TIMEOUT) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + '{') or line.startswith(name + ' '):
                return float(line.rsplit(' ', 1)[1])
    return -1


# ---------------------------------------------------------------- asserting

def log_lines(srv):
    """The JSON log records a server wrote on stderr."""
    out = []
    for ln in srv.stderr().splitlines():
        try:
            out.append(json.loads(ln))
        except ValueError:
            pass
    return out


def assert_no_secrets(srv, secrets):
    """None of the secrets (8 characters or more) is in srv's output."""
    text = srv.stderr() + srv.stdout()
    for s in secrets:
        if s and len(s) >= 8 and s in text:
            raise AssertionError('%s logged a secret or token (%s...)'
                                 % (srv.name, s[:6]))


class ServiceCase(unittest.TestCase):
    """What every server's tests assert with. STREAM_ITEM names the
    field of a watch stream's messages that carries the change (beside
    caught_up)."""

    STREAM_ITEM = 'value'

    def until_caught_up(self, w):
        """The replayed changes up to the caught_up marker."""
        out = []
        for _ in range(1000000):
            m = w.next()
            if m.caught_up:
                return out
            out.append(getattr(m, self.STREAM_ITEM))
        self.fail('no caught_up')

    def assertCode(self, err, code, field=None):
        """err is a gRPC error with this status code and, given field,
        a message that names it."""
        self.assertIsInstance(err, grpc.RpcError)
        self.assertEqual(err.code(), code,
                         'got %s: %s' % (err.code(), err.details()))
        if field is not None:
            self.assertIn(field, err.details() or '',
                          'status message does not name the field')


# ---------------------------------------------------------------- waiting

def wait_for(pred, timeout=TIMEOUT, interval=POLL, what='condition'):
    """Polls pred() until it returns a true value, which is returned.

    Raises AssertionError naming `what` after `timeout` seconds.
    Exceptions from pred() count as false; the last one is reported.
    """
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - reported below
            last_exc = e
        if time.monotonic() >= deadline:
            msg = 'timed out after %.0fs waiting for %s' % (timeout, what)
            if last_exc is not None:
                msg += ' (last error: %r)' % (last_exc,)
            raise AssertionError(msg)
        time.sleep(interval)


# ---------------------------------------------------------------- processes

_live = set()
_live_lock = threading.Lock()


def _kill_all():
    with _live_lock:
        procs = list(_live)
    for p in procs:
        try:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


atexit.register(_kill_all)

_logdir = None


def log_dir():
    global _logdir
    if _logdir is None:
        base = os.environ.get('PLATFORM_IT_LOGDIR')
        if base:
            os.makedirs(base, exist_ok=True)
            _logdir = tempfile.mkdtemp(prefix='it-', dir=base)
        else:
            _logdir = tempfile.mkdtemp(prefix='platform-it-logs-')
    return _logdir


# The integration tests test features, not the guard: servers run with
# the development switch unless a test turns the guard on (test_guard.py)
# by passing GUARD_ON in env.
GUARD_ON = {'PLATFORM_INSECURE_NO_AUTH': ''}


def child_env(extra=None):
    env = dict(os.environ)
    # Keep the sanitizers' reports on stderr and their exit codes non-zero.
    env.setdefault('ASAN_OPTIONS', 'detect_leaks=1')
    env.setdefault('UBSAN_OPTIONS', 'print_stacktrace=1')
    # The platform's own settings must come from the test, not the shell.
    for k in list(env):
        if k.startswith('PLATFORM_') and k not in (
                'PLATFORM_BUILD_DIR', 'PLATFORM_SOURCE_DIR',
                'PLATFORM_IT_LOGDIR', 'PLATFORM_IT_KEEP_LOGS'):
            del env[k]
    env['PLATFORM_INSECURE_NO_AUTH'] = '1'
    if extra:
        env.update(extra)
    return env


def sanitizer_findings(text):
    """Lines of text that carry a sanitizer report."""
    return [ln for ln in text.splitlines()
            if any(m in ln for m in SANITIZER_MARKERS)]


def _read(path):
    try:
        with open(path, 'rb') as f:
            return f.read().decode('utf-8', 'replace')
    except OSError:
        return ''


class Run:
    """The result of running a binary to completion (run_binary)."""

    def __init__(self, code, stdout, stderr):
        self.code = code
        self.stdout = stdout
        self.stderr = stderr

    def sanitizer_findings(self):
        return sanitizer_findings(self.stderr) + \
            sanitizer_findings(self.stdout)


def run_binary(args, binary=DISCOVERY_BIN, timeout=TIMEOUT, env=None):
    """Runs a binary that is expected to exit by itself; kills it after
    `timeout` seconds and raises AssertionError in that case."""
    tag = os.path.basename(binary)
    fd, out_path = tempfile.mkstemp(prefix=tag + '-', suffix='.out',
                                    dir=log_dir())
    os.close(fd)
    err_path = out_path[:-4] + '.err'
    with open(out_path, 'wb') as out, open(err_path, 'wb') as err:
        p = subprocess.Popen([binary] + list(args), stdin=subprocess.DEVNULL,
                             stdout=out, stderr=err, env=child_env(env))
        with _live_lock:
            _live.add(p)
        try:
            code = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)
            raise AssertionError('%s %s did not exit within %.0fs; stderr:\n%s'
                                 % (tag, ' '.join(args), timeout,
                                    _read(err_path)[-4000:]))
        finally:
            with _live_lock:
                _live.discard(p)
    return Run(code, _read(out_path), _read(err_path))


class Server:
    """A server binary on a free loopback port.

    Server(discovery='self') makes the server register with itself;
    discovery=ADDR registers it with another discovery; None: no
    registration. extra_args are appended after the common flags.
    """

    def __init__(self, binary=DISCOVERY_BIN, port=None, discovery=None,
                 extra_args=(), env=None, name=None, wait=True,
                 timeout=TIMEOUT, listen_flag=True):
        self.binary = binary
        self.port = port or free_port()
        self.address = '127.0.0.1:%d' % self.port
        self.name = name or os.path.basename(binary)
        if discovery == 'self':
            discovery = self.address
        self.discovery = discovery
        self.env = dict(env or {})
        if listen_flag:
            self.args = ['--listen', self.address]
        else:
            # The listen address from the environment only.
            self.args = []
            self.env['PLATFORM_LISTEN'] = self.address
        self.args += ['--log-format', 'json']
        if discovery:
            self.args += ['--discovery', discovery]
        self.args += list(extra_args)
        self.proc = None
        self.channel = None
        self.returncode = None
        self.start()
        if wait:
            try:
                self.wait_serving(timeout)
            except BaseException:
                self.kill()
                raise

    # -- lifecycle

    def start(self):
        d = log_dir()
        fd, self.stdout_path = tempfile.mkstemp(
            prefix='%s-%d-' % (self.name, self.port), suffix='.out', dir=d)
        os.close(fd)
        self.stderr_path = self.stdout_path[:-4] + '.err'
        self._out = open(self.stdout_path, 'wb')
        self._err = open(self.stderr_path, 'wb')
        self.proc = subprocess.Popen(
            [self.binary] + self.args, stdin=subprocess.DEVNULL,
            stdout=self._out, stderr=self._err, env=child_env(self.env))
        with _live_lock:
            _live.add(self.proc)

    def _reaped(self):
        with _live_lock:
            _live.discard(self.proc)
        for f in (self._out, self._err):
            try:
                f.close()
            except OSError:
                pass
        if self.channel is not None:
            self.channel.close()
            self.channel = None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_serving(self, timeout=TIMEOUT):
        """Polls grpc.health.v1.Health/Check("") until SERVING."""
        P = protos()
        deadline = time.monotonic() + timeout
        last = None
        while True:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.returncode = code
                self._reaped()
                raise AssertionError(
                    '%s %s exited with %d before serving; stderr:\n%s'
                    % (self.name, ' '.join(self.args), code,
                       self.stderr()[-4000:]))
            # Connect only once the port is open: a channel whose first
            # attempt was refused waits for gRPC's 5 s backup poller
            # before it tries again when nothing else drives it.
            if not port_listening(self.port):
                last = 'port %d not open' % self.port
            else:
                try:
                    resp = self.health_check('', timeout=1.0)
                    if resp.status == P.health.HealthCheckResponse.SERVING:
                        return
                    last = 'status %d' % resp.status
                except grpc.RpcError as e:
                    last = '%s %s' % (e.code(), e.details())
            if time.monotonic() >= deadline:
                raise AssertionError('%s on %s not SERVING within %.0fs '
                                     '(last: %s); stderr:\n%s'
                                     % (self.name, self.address, timeout,
                                        last, self.stderr()[-4000:]))
            time.sleep(POLL)

    def stop(self, sig=signal.SIGTERM, timeout=TIMEOUT, keep_channel=False):
        """Sends sig and waits for the exit; returns the exit code
        (negative: killed by that signal). SIGKILLs after timeout and
        raises AssertionError then."""
        if self.proc is None:
            return None
        if not keep_channel and self.channel is not None:
            # Our own idle connection would only slow the drain down;
            # ShutdownTest covers a client still connected at SIGTERM.
            self.channel.close()
            self.channel = None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                self.returncode = self.proc.returncode
                self._reaped()
                raise AssertionError('%s on %s did not exit within %.0fs of '
                                     'signal %d' % (self.name, self.address,
                                                    timeout, sig))
        self.returncode = self.proc.returncode
        self._reaped()
        return self.returncode

    def kill(self):
        """SIGKILL if still running; a no-op otherwise."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self.returncode is None:
            self.returncode = self.proc.returncode
        self._reaped()

    # -- logs

    def stderr(self):
        return _read(self.stderr_path)

    def stdout(self):
        return _read(self.stdout_path)

    def sanitizer_findings(self):
        return sanitizer_findings(self.stderr()) + \
            sanitizer_findings(self.stdout())

    def check_sanitizers(self):
        """Raises AssertionError with the report if a sanitizer spoke."""
        found = self.sanitizer_findings()
        if found:
            raise AssertionError(
                '%s on %s: sanitizer report:\n%s\n--- stderr tail ---\n%s'
                % (self.name, self.address, '\n'.join(found),
                   self.stderr()[-8000:]))

    def stop_clean(self, sig=signal.SIGTERM, expect_code=0,
                   keep_channel=False):
        """stop(), then fail on a sanitizer report or an exit code other
        than expect_code. Returns the exit code."""
        try:
            code = self.stop(sig, keep_channel=keep_channel)
        finally:
            self.kill()
        self.check_sanitizers()
        if expect_code is not None and code != expect_code:
            raise AssertionError('%s on %s exited with %r after signal %d, '
                                 'expected %d; stderr tail:\n%s'
                                 % (self.name, self.address, code, sig,
                                    expect_code, self.stderr()[-4000:]))
        return code

    # -- gRPC

    def get_channel(self):
        if self.channel is None:
            self.channel = grpc.insecure_channel(self.address,
                                                 options=CHANNEL_OPTIONS)
        return self.channel

    def health_check(self, service='', timeout=RPC_TIMEOUT):
        P = protos()
        m = self.get_channel().unary_unary(
            HEALTH_PREFIX + 'Check',
            request_serializer=P.health.HealthCheckRequest.SerializeToString,
            response_deserializer=P.health.HealthCheckResponse.FromString)
        return m(P.health.HealthCheckRequest(service=service),
                 timeout=timeout)

    def discovery_client(self):
        return DiscoveryClient(self.get_channel())


# ---------------------------------------------------------------- clients

def identity(b):
    return b


class ServiceClient:
    """One service's methods over a channel. A subclass names its PREFIX
    ("/pkg.Service/"), its unary METHODS and server-streaming STREAMS;
    each method M has messages MRequest and MResponse in the pb module
    it is given. self._m[M] is the callable of M."""

    PREFIX = ''
    METHODS = ()
    STREAMS = ()

    def __init__(self, channel, P):
        self.channel = channel
        self.pb = P
        self._m = {}
        for kinds, make in ((self.METHODS, channel.unary_unary),
                            (self.STREAMS, channel.unary_stream)):
            for m in kinds:
                self._m[m] = make(
                    self.PREFIX + m,
                    request_serializer=getattr(
                        P, m + 'Request').SerializeToString,
                    response_deserializer=getattr(
                        P, m + 'Response').FromString)

    def raw(self, method, payload, timeout=RPC_TIMEOUT, stream=False):
        """Sends payload bytes as they are to a method; returns the raw
        response bytes (unary) or the first raw message (stream)."""
        if stream:
            call = self.channel.unary_stream(
                self.PREFIX + method, request_serializer=identity,
                response_deserializer=identity)(payload, timeout=timeout)
            try:
                return next(call)
            finally:
                call.cancel()
        return self.channel.unary_unary(
            self.PREFIX + method, request_serializer=identity,
            response_deserializer=identity)(payload, timeout=timeout)


class DiscoveryClient(ServiceClient):
    """platform.discovery.v1.Discovery over a channel."""

    PREFIX = DISCOVERY_PREFIX
    METHODS = ('Register', 'Deregister', 'GetService', 'ListServices')
    STREAMS = ('Watch',)

    def __init__(self, channel):
        super().__init__(channel, protos().discovery)

    def register(self, service, ttl_seconds=0, timeout=RPC_TIMEOUT):
        return self._m['Register'](self.pb.RegisterRequest(
            service=service, ttl_seconds=ttl_seconds), timeout=timeout)

    def register_req(self, req, timeout=RPC_TIMEOUT):
        return self._m['Register'](req, timeout=timeout)

    def deregister(self, name, version='', node_id='', timeout=RPC_TIMEOUT):
        return self._m['Deregister'](self.pb.DeregisterRequest(
            name=name, version=version, node_id=node_id), timeout=timeout)

    def get(self, name, timeout=RPC_TIMEOUT):
        return self._m['GetService'](self.pb.GetServiceRequest(name=name),
                         timeout=timeout)

    def list(self, page_size=0, page_token='', timeout=RPC_TIMEOUT):
        return self._m['ListServices'](self.pb.ListServicesRequest(
            page_size=page_size, page_token=page_token), timeout=timeout)

    def watch(self, service=''):
        """A WatchReader on Watch(service)."""
        return WatchReader(self._m['Watch'](
            self.pb.WatchRequest(service=service)))


class WatchReader:
    """Reads a server stream on a thread into a queue so every read can be
    bounded. next(timeout) returns the next message or raises
    AssertionError; the stream's end (or error) is returned as the
    grpc.RpcError / StopIteration object with next(..., allow_end=True)."""

    _END = object()

    def __init__(self, call):
        self.call = call
        self.q = queue.Queue()
        self.error = None
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        try:
            for msg in self.call:
                self.q.put(msg)
        except grpc.RpcError as e:
            self.error = e
        except Exception as e:  # noqa: BLE001 - surfaced to the test
            self.error = e
        self.q.put(self._END)

    def next(self, timeout=TIMEOUT):
        try:
            m = self.q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError('no stream message within %.0fs' % timeout)
        if m is self._END:
            self.q.put(self._END)
            if self.error is not None:
                raise self.error
            raise AssertionError('stream ended')
        return m

    def end(self, timeout=TIMEOUT):
        """Waits for the stream to end; returns the grpc.RpcError that
        ended it (or None for an OK end). Messages before are dropped."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError('stream did not end within %.0fs'
                                     % timeout)
            try:
                m = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if m is self._END:
                self.q.put(self._END)
                return self.error

    def cancel(self):
        self.call.cancel()

    def close(self, timeout=TIMEOUT):
        self.call.cancel()
        self.t.join(timeout)


def rpc_error(fn, *args, **kwargs):
    """Calls fn and returns the grpc.RpcError it raised; AssertionError
    if it succeeded."""
    try:
        r = fn(*args, **kwargs)
    except grpc.RpcError as e:
        return e
    raise AssertionError('call succeeded unexpectedly: %r' % (r,))


# ---------------------------------------------------------------- wire

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7f
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def ld_field(num, payload):
    """A length-delimited field (string, bytes, message) on the wire."""
    return varint((num << 3) | 2) + varint(len(payload)) + payload


def varint_field(num, value):
    return varint(num << 3) + varint(value)


def run_tests():
    """unittest.main with verbose output; exits non-zero on failure."""
    import unittest
    if not os.path.exists(DISCOVERY_BIN):
        sys.stderr.write('missing %s (PLATFORM_BUILD_DIR=%s)\n'
                         % (DISCOVERY_BIN, BUILD_DIR))
        sys.exit(1)
    prog = unittest.main(verbosity=2, exit=False)
    ok = prog.result.wasSuccessful()
    _kill_all()
    d = log_dir()
    if ok and not os.environ.get('PLATFORM_IT_KEEP_LOGS') and \
            not os.environ.get('PLATFORM_IT_LOGDIR'):
        shutil.rmtree(d, True)
    else:
        sys.stderr.write('server logs kept in %s\n' % d)
    sys.exit(0 if ok else 1)
