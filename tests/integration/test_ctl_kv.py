#!/usr/bin/python3
"""`platformctl kv ...` against a real kv-srv: get (raw bytes, -o json),
put (argument, stdin, --ttl, --expect-version, --if-absent), delete,
incr, list across pages (--keys-only, --limit), watch seeing a put made
after it started, kv-srv found through a real discovery-srv, and the
exit codes (0 ok, 1 the call failed with its status named, 2 usage)."""

import json
import os
import pty
import queue
import signal
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import kv_harness as kh  # noqa: E402


def run_ctl(args, stdin=None, env=None):
    p = subprocess.run(
        [harness.PLATFORMCTL_BIN, '--timeout', '10000'] + list(args),
        input=stdin, capture_output=True, timeout=harness.TIMEOUT,
        env=harness.child_env(env))
    return p.returncode, p.stdout, p.stderr.decode('utf-8', 'replace')


class Watch:
    """`platformctl kv watch` running, its stdout read line by line on a
    thread so that a test waits for a line, never for a time."""

    def __init__(self, args):
        self.proc = subprocess.Popen(
            [harness.PLATFORMCTL_BIN] + list(args), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=harness.child_env())
        self.lines = queue.Queue()
        self.seen = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for ln in self.proc.stdout:
            self.lines.put(ln.decode('utf-8', 'replace').rstrip('\n'))
        self.lines.put(None)

    def until(self, pred, what):
        """Lines up to the first that pred holds for, which is returned."""
        while True:
            try:
                ln = self.lines.get(timeout=harness.TIMEOUT)
            except queue.Empty:
                raise AssertionError('watch: no %s in %r' % (what, self.seen))
            if ln is None:
                raise AssertionError('watch ended before %s: %r %s' % (
                    what, self.seen, self.proc.stderr.read()))
            self.seen.append(ln)
            if pred(ln):
                return ln

    def interrupt(self):
        """Ctrl-C: the watch ends normally. Its exit code and stderr."""
        self.proc.send_signal(signal.SIGINT)
        err = self.proc.stderr.read().decode('utf-8', 'replace')
        code = self.proc.wait(timeout=harness.TIMEOUT)
        self.kill()
        return code, err

    def kill(self):
        """Ends it if it still runs and closes its pipes (a cleanup)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(timeout=harness.TIMEOUT)
        self.proc.stdout.close()
        self.proc.stderr.close()


class CtlKVTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = kh.kv_server(name='ctl-kv')
        cls.addClassCleanup(cls.srv.stop_clean)
        cls.kv = kh.client_of(cls.srv)

    def setUp(self):
        self.t = kh.uniq('ctl').replace('-', '_')

    def ctl(self, *args, stdin=None, code=0, env=None):
        """platformctl ARGS --kv (after the group's word, where its flags
        go); stdout as bytes, stderr as text."""
        args = list(args)
        at = args.index('kv') + 1
        args[at:at] = ['--kv', self.srv.address]
        rc, out, err = run_ctl(args, stdin=stdin, env=env)
        self.assertEqual(harness.sanitizer_findings(err), [], err)
        self.assertEqual(rc, code, (args, out, err))
        return out, err

    def entry(self, key):
        out, _ = self.ctl('-o', 'json', 'kv', 'get', self.t, key)
        return json.loads(out)

    # ---- get, put

    def test_put_get(self):
        out, _ = self.ctl('kv', 'put', self.t, 'greeting', 'hello world')
        self.assertIn(('%s greeting: version ' % self.t).encode(), out)
        out, _ = self.ctl('kv', 'get', self.t, 'greeting')
        # The bytes as they are: no newline added off a terminal.
        self.assertEqual(out, b'hello world')
        e = self.entry('greeting')
        self.assertEqual((e['table'], e['key'], e['value']),
                         (self.t, 'greeting', 'hello world'))
        self.assertGreater(e['version'], 0)
        self.assertEqual(e['expires_unix_ms'], 0)
        self.assertEqual(self.kv.get(self.t, 'greeting').value,
                         b'hello world')

    def test_put_from_stdin_binary(self):
        data = b'\x00\xff\x1b[31m\nline two\n' + bytes(range(256)) * 64
        self.ctl('kv', 'put', self.t, 'bin', '-', stdin=data)
        out, _ = self.ctl('kv', 'get', self.t, 'bin')
        self.assertEqual(out, data)
        e = self.entry('bin')
        self.assertNotIn('value', e)
        self.assertEqual(self.kv.get(self.t, 'bin').value, data)
        # A value that starts with '-' comes after '--'.
        self.ctl('kv', 'put', self.t, 'dash', '--', '-x')
        self.assertEqual(self.ctl('kv', 'get', self.t, 'dash')[0], b'-x')

    def test_get_on_a_terminal(self):
        # A value cannot drive the terminal: control bytes show as '?',
        # and a newline ends it so that the prompt starts on its own line.
        self.kv.put(self.t, 'esc', b'\x1b[2Jred\tand\nmore\x07')
        master, slave = pty.openpty()
        try:
            p = subprocess.run(
                [harness.PLATFORMCTL_BIN, 'kv', '--kv', self.srv.address,
                 'get', self.t, 'esc'], stdin=subprocess.DEVNULL,
                stdout=slave, stderr=subprocess.PIPE,
                timeout=harness.TIMEOUT, env=harness.child_env())
            os.close(slave)
            slave = None
            out = b''
            while True:
                try:
                    chunk = os.read(master, 4096)
                except OSError:         # EIO: the writer has gone
                    break
                if not chunk:
                    break
                out += chunk
        finally:
            if slave is not None:
                os.close(slave)
            os.close(master)
        self.assertEqual(p.returncode, 0, p.stderr)
        # The terminal turns "\n" into "\r\n".
        self.assertEqual(out, b'?[2Jred\tand\r\nmore?\r\n')

    def test_ttl(self):
        out, _ = self.ctl('-o', 'json', 'kv', 'put', self.t, 'tmp', 'v',
                          '--ttl', '1h')
        e = json.loads(out)
        left = e['expires_unix_ms'] - self.entry('tmp')['expires_unix_ms']
        self.assertEqual(left, 0)
        self.assertEqual(self.kv.get(self.t, 'tmp').expires_unix_ms,
                         e['expires_unix_ms'])
        out, _ = self.ctl('kv', 'put', self.t, 'tmp', 'v', '--ttl', '90')
        self.assertRegex(out.decode(), r'version \d+, expires in \d+s$')
        # Expiry: the key is gone for get once its time is up.
        self.ctl('kv', 'put', self.t, 'short', 'v', '--ttl', '200ms')
        harness.wait_for(
            lambda: run_ctl(['kv', '--kv', self.srv.address, 'get', self.t,
                             'short'])[0] == 1, what='the key expired')

    def test_missing_key(self):
        _, err = self.ctl('kv', 'get', self.t, 'nope', code=1)
        self.assertIn('NOT_FOUND', err)
        self.assertIn('not found', err)
        _, err = self.ctl('kv', 'delete', self.t, 'nope', code=1)
        self.assertIn('NOT_FOUND', err)
        self.assertIn('not found', err)

    # ---- compare-and-set, delete

    def test_cas(self):
        self.ctl('kv', 'put', self.t, 'k', 'one')
        v1 = self.entry('k')['version']
        out, _ = self.ctl('-o', 'json', 'kv', 'put', self.t, 'k', 'two',
                          '--expect-version', str(v1))
        v2 = json.loads(out)['version']
        self.assertGreater(v2, v1)
        # The version moved on: refused, and nothing changed.
        _, err = self.ctl('kv', 'put', self.t, 'k', 'three',
                          '--expect-version', str(v1), code=1)
        self.assertIn('FAILED_PRECONDITION', err)
        self.assertEqual(self.ctl('kv', 'get', self.t, 'k')[0], b'two')
        _, err = self.ctl('kv', 'put', self.t, 'k', 'x', '--if-absent',
                          code=1)
        self.assertIn('ALREADY_EXISTS', err)
        self.ctl('kv', 'put', self.t, 'fresh', 'x', '--if-absent')
        _, err = self.ctl('kv', 'delete', self.t, 'k', '--expect-version',
                          str(v1), code=1)
        self.assertIn('FAILED_PRECONDITION', err)
        self.assertEqual(self.ctl('kv', 'get', self.t, 'k')[0], b'two')
        out, _ = self.ctl('kv', 'delete', self.t, 'k', '--expect-version',
                          str(v2))
        self.assertIn(b'deleted', out)
        self.ctl('kv', 'get', self.t, 'k', code=1)
        out, _ = self.ctl('-o', 'json', 'kv', 'delete', self.t, 'fresh')
        self.assertTrue(json.loads(out)['deleted'])

    # ---- incr

    def test_incr(self):
        self.assertEqual(self.ctl('kv', 'incr', self.t, 'n')[0], b'1\n')
        self.assertEqual(self.ctl('kv', 'incr', self.t, 'n', '41')[0],
                         b'42\n')
        self.assertEqual(self.ctl('kv', 'incr', self.t, 'n', '-50')[0],
                         b'-8\n')
        out, _ = self.ctl('-o', 'json', 'kv', 'incr', self.t, 'n', '10')
        e = json.loads(out)
        self.assertEqual((e['key'], e['value']), ('n', 2))
        self.assertEqual(self.ctl('kv', 'get', self.t, 'n')[0], b'2')
        out, _ = self.ctl('-o', 'json', 'kv', 'incr', self.t, 'n2',
                          '--ttl', '1h')
        self.assertGreater(json.loads(out)['expires_unix_ms'], 0)
        self.ctl('kv', 'put', self.t, 'word', 'abc')
        _, err = self.ctl('kv', 'incr', self.t, 'word', code=1)
        self.assertIn('FAILED_PRECONDITION', err)

    # ---- list

    def test_list_pages(self):
        # 2500 keys under p/: three pages of the 1000 list asks for.
        n = 2500
        for lo in range(0, n, 1000):
            self.kv.call('PutMany', table=self.t, items=[
                kh.pb().PutItem(key='p/%05d' % i, value=b'v%d' % i)
                for i in range(lo, min(n, lo + 1000))])
        self.kv.put(self.t, 'q/outside', b'x')
        self.kv.put(self.t, 'p/bin', b'\x00\x01', ttl_ms=3600000)
        want = ['p/%05d' % i for i in range(n)] + ['p/bin']

        out, _ = self.ctl('kv', 'list', self.t, 'p/', '--keys-only')
        self.assertEqual(out.decode().splitlines(), want)
        out, _ = self.ctl('-o', 'json', 'kv', 'list', self.t, 'p/')
        es = json.loads(out)
        self.assertEqual([e['key'] for e in es], want)
        self.assertEqual(es[7]['value'], 'v7')
        self.assertEqual(es[-1]['value_base64'], 'AAE=')
        # --limit stops inside the second page.
        out, _ = self.ctl('-o', 'json', 'kv', 'list', self.t, 'p/',
                          '--limit', '1200', '--keys-only')
        es = json.loads(out)
        self.assertEqual([e['key'] for e in es], want[:1200])
        self.assertNotIn('value', es[0])
        # The table: a header, then KEY VERSION EXPIRES VALUE rows.
        out, _ = self.ctl('kv', 'list', self.t, 'p/0000')
        rows = [ln.split() for ln in out.decode().splitlines()]
        self.assertEqual(rows[0], ['KEY', 'VERSION', 'EXPIRES', 'VALUE'])
        self.assertEqual([r[0] for r in rows[1:]],
                         ['p/%05d' % i for i in range(10)])
        self.assertEqual((rows[1][2], rows[1][3]), ('-', 'v0'))
        out, _ = self.ctl('kv', 'list', self.t, 'p/b')
        row = out.decode().splitlines()[1].split()
        self.assertTrue(row[2].endswith('s'), row)
        self.assertEqual(row[3], 'b64:AAE=')
        out, _ = self.ctl('kv', 'list', self.t, 'none/', '--keys-only')
        self.assertEqual(out, b'')

    # ---- watch

    def test_watch(self):
        self.kv.put(self.t, 'w/before', b'1')
        w = Watch(['kv', 'watch', self.t, 'w/', '--kv', self.srv.address])
        self.addCleanup(w.kill)
        w.until(lambda ln: ln.startswith('PUT w/before '), 'current state')
        w.until(lambda ln: ln == '-- synced --', 'synced')
        # Changes made after the watch started, by platformctl itself.
        self.ctl('kv', 'put', self.t, 'x/outside', 'no')
        self.ctl('kv', 'put', self.t, 'w/after', 'two', '--ttl', '1h')
        ln = w.until(lambda ln: ln.startswith('PUT w/after '), 'the put')
        self.assertRegex(ln, r'^PUT w/after version=\d+ expires=\d+s '
                         r'value=two$')
        self.ctl('kv', 'delete', self.t, 'w/before')
        w.until(lambda ln: ln.startswith('DELETE w/before '), 'the delete')
        self.assertFalse([ln for ln in w.seen if 'outside' in ln], w.seen)
        code, err = w.interrupt()
        self.assertEqual(harness.sanitizer_findings(err), [], err)
        self.assertEqual(code, 0, err)

    def test_watch_json(self):
        w = Watch(['-o', 'json', 'kv', 'watch', self.t, '--kv',
                   self.srv.address])
        self.addCleanup(w.kill)
        w.until(lambda ln: json.loads(ln)['type'] == 'SYNCED', 'synced')
        self.kv.put(self.t, 'j', b'\xff')
        ev = json.loads(w.until(lambda ln: '"PUT"' in ln, 'the put'))
        self.assertEqual((ev['key'], ev['value_base64']), ('j', '/w=='))
        code, err = w.interrupt()
        self.assertEqual(code, 0, err)

    # ---- bad input

    def test_usage_errors_exit_2(self):
        for args, says in (
                (['kv'], 'missing command'),
                (['kv', 'frob'], "unknown command 'frob'"),
                (['kv', 'get', 't'], 'missing TABLE KEY'),
                (['kv', 'put', 't', 'k'], 'missing'),
                (['kv', 'get', 't', 'k', 'extra'], 'unexpected argument'),
                (['kv', 'put', 't', 'k', 'v', '--ttl', '5x'], '--ttl'),
                (['kv', 'put', 't', 'k', 'v', '--ttl', '0'], '--ttl'),
                (['kv', 'put', 't', 'k', 'v', '--ttl', '31d'], '--ttl'),
                (['kv', 'put', 't', 'k', 'v', '--expect-version', '0'],
                 '--expect-version'),
                (['kv', 'put', 't', 'k', 'v', '--expect-version', '3',
                  '--if-absent'], 'do not go together'),
                (['kv', 'incr', 't', 'k', '1.5'], 'DELTA'),
                (['kv', 'list', 't', '--limit', '0'], '--limit'),
                (['kv', 'get', 't', 'k', '--keys-only'],
                 '--keys-only applies to list only'),
                (['kv', 'delete', 't', 'k', '--if-absent'], '--if-absent'),
                (['kv', 'get', 't', 'k', '--kv', 'nocolon'], '--kv'),
                (['kv', 'get', 't', 'k', '--nope'], "unknown flag '--nope'")):
            rc, out, err = run_ctl(args)
            self.assertEqual(rc, 2, (args, out, err))
            self.assertIn(says, err, args)
            self.assertIn("Try 'platformctl kv help'", err, args)

    def test_bad_input_from_the_server_exit_1(self):
        _, err = self.ctl('kv', 'get', 'bad table!', 'k', code=1)
        self.assertIn('INVALID_ARGUMENT', err)
        self.assertIn('table', err)
        _, err = self.ctl('kv', 'put', self.t, 'x' * 1025, 'v', code=1)
        self.assertIn('INVALID_ARGUMENT', err)
        self.assertIn('key', err)
        rc, _, err = run_ctl(['kv', 'get', 't', 'k', '--kv',
                              '127.0.0.1:%d' % harness.free_port(),
                              '--timeout', '2000'])
        self.assertEqual(rc, 1, err)
        self.assertIn('UNAVAILABLE', err)

    def test_help(self):
        for args in (['kv', 'help'], ['kv', '--help'], ['kv', 'get', '-h']):
            rc, out, err = run_ctl(args)
            self.assertEqual(rc, 0, err)
            text = out.decode()
            for word in ('get TABLE KEY', 'put TABLE KEY VALUE|-',
                         'delete TABLE KEY', 'list TABLE [PREFIX]',
                         'watch TABLE [PREFIX]', 'incr TABLE KEY [DELTA]',
                         '--ttl', '--expect-version', '--if-absent',
                         '--keys-only', '--limit', '--kv'):
                self.assertIn(word, text, args)
        rc, out, _ = run_ctl(['--help'])
        self.assertIn(b'kv COMMAND', out)

    def test_address_from_environment(self):
        self.kv.put(self.t, 'env', b'e')
        rc, out, err = run_ctl(['kv', 'get', self.t, 'env'],
                               env={'PLATFORM_KV': self.srv.address})
        self.assertEqual((rc, out), (0, b'e'), err)


class CtlKVDiscoveryTest(unittest.TestCase):
    """Without --kv: the service "kv" found through discovery-srv, for
    unary calls and for the stream."""

    @classmethod
    def setUpClass(cls):
        cls.disco = harness.Server(discovery='self', name='ctl-kv-disco')
        cls.addClassCleanup(cls.disco.stop_clean)
        cls.srv = kh.kv_server(name='ctl-kv-reg',
                               discovery=cls.disco.address)
        cls.addClassCleanup(cls.srv.stop_clean)
        d = cls.disco.discovery_client()
        harness.wait_for(lambda: d.get('kv').services, what='kv registered')

    def test_by_discovery(self):
        t = kh.uniq('ctld').replace('-', '_')
        g = ['--discovery', self.disco.address]
        rc, out, err = run_ctl(g + ['kv', 'put', t, 'k', 'v'])
        self.assertEqual(rc, 0, err)
        w = Watch(g + ['kv', 'watch', t])
        self.addCleanup(w.kill)
        w.until(lambda ln: ln.startswith('PUT k '), 'current state')
        w.until(lambda ln: ln == '-- synced --', 'synced')
        rc, out, err = run_ctl(g + ['kv', 'incr', t, 'n', '5'])
        self.assertEqual((rc, out), (0, b'5\n'), err)
        w.until(lambda ln: ln.startswith('PUT n ') and ln.endswith(
            'value=5'), 'the incr')
        code, err = w.interrupt()
        self.assertEqual(code, 0, err)
        rc, out, err = run_ctl(g + ['kv', 'get', t, 'k'])
        self.assertEqual((rc, out), (0, b'v'), err)


if __name__ == '__main__':
    harness.run_tests()
