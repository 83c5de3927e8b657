"""Metrics: every call is counted per method and status, and served in
the Prometheus text format on --metrics-listen, and pushed to a statsd
agent (a UDP socket of the test) with --statsd."""

import os
import socket
import sys
import unittest
import urllib.request

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


class MetricsTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.mport = harness.free_port()
        cls.srv = harness.Server(
            discovery='self',
            extra_args=['--metrics-listen', '127.0.0.1:%d' % cls.mport])
        cls.addClassCleanup(cls.srv.stop_clean)
        cls.client = cls.srv.discovery_client()

    def scrape(self, path='/metrics'):
        url = 'http://127.0.0.1:%d%s' % (self.mport, path)
        with urllib.request.urlopen(url, timeout=harness.RPC_TIMEOUT) as r:
            self.assertEqual(r.status, 200)
            self.assertIn('text/plain', r.headers['Content-Type'])
            return r.read().decode()

    def test_calls_are_counted_by_method_and_status(self):
        d = harness.protos().discovery
        self.client.register(d.Service(
            name='metrics-svc',
            nodes=[d.Node(id='metrics-1', address='127.0.0.1:9')]),
            ttl_seconds=600)
        for _ in range(3):
            self.client.get('metrics-svc')
        with self.assertRaises(grpc.RpcError):
            self.client.get('metrics-missing')
        text = self.scrape()
        get = '/platform.discovery.v1.Discovery/GetService'
        ok = [ln for ln in text.splitlines()
              if ln.startswith('platform_rpc_requests_total{') and
              get in ln and 'code="OK"' in ln]
        self.assertEqual(len(ok), 1, text)
        self.assertGreaterEqual(int(ok[0].split()[-1]), 3)
        self.assertIn('code="NOT_FOUND"', text)
        self.assertIn('platform_rpc_duration_seconds_bucket{', text)
        self.assertIn('le="+Inf"', text)
        nodes = [ln for ln in text.splitlines()
                 if ln.startswith('discovery_nodes{')]
        self.assertEqual(len(nodes), 1, text)
        self.assertGreaterEqual(float(nodes[0].split()[-1]), 1)
        self.assertIn('process_resident_memory_bytes', text)

    def test_open_streams_gauge(self):
        reader = self.client.watch('metrics-watch')
        reader.next()
        watch = '/platform.discovery.v1.Discovery/Watch'
        harness.wait_for(
            lambda: any(ln.startswith('platform_rpc_streams_open{') and
                        watch in ln and not ln.endswith(' 0')
                        for ln in self.scrape().splitlines()),
            what='an open Watch counted')
        reader.cancel()

    def test_labelled_series_of_the_server(self):
        """A server's own series with labels (metrics_family): discovery
        counts the node it registered for itself."""
        text = self.scrape()
        self.assertIn('# TYPE discovery_node_changes_total counter', text)
        self.assertRegex(text, r'discovery_node_changes_total\{service='
                         r'"discovery",change="registered"\} [1-9]')

    def test_unknown_path_is_404(self):
        with self.assertRaises(urllib.error.HTTPError) as cm:
            self.scrape('/nope')
        self.assertEqual(cm.exception.code, 404)

    def test_metrics_port_in_use_is_a_start_error(self):
        r = harness.run_binary(['--listen', '127.0.0.1:%d' %
                                harness.free_port(), '--metrics-listen',
                                '127.0.0.1:%d' % self.mport])
        self.assertNotEqual(r.code, 0)
        self.assertIn('metrics', r.stderr)


class StatsdTest(unittest.TestCase):
    """--statsd: DogStatsD lines on a UDP socket the test reads."""

    def test_pushed_with_tags(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(('127.0.0.1', 0))
        sock.settimeout(harness.RPC_TIMEOUT)
        srv = harness.Server(discovery='self', name='discovery-statsd',
                             extra_args=['--statsd', '127.0.0.1:%d' %
                                         sock.getsockname()[1],
                                         '--statsd-interval', '1'])
        self.addCleanup(srv.kill)
        client = srv.discovery_client()
        for _ in range(5):
            client.list()
        lines = []

        def counted():
            """The ListServices calls this test made, over every push
            (counts are deltas)."""
            n = 0
            for ln in lines:
                name, rest = ln.split(':', 1)
                value, kind, tags = rest.split('|', 2)
                if (name == 'platform.rpc.requests' and kind == 'c' and
                        'method:/platform.discovery.v1.Discovery/'
                        'ListServices' in tags and 'code:OK' in tags):
                    n += int(float(value))
            return n
        def nodes():
            return [ln for ln in lines if ln.startswith('discovery_nodes:')]
        def changes():
            """A labelled series of the server's own: its own node,
            registered."""
            return [ln for ln in lines
                    if ln.startswith('discovery_node_changes_total:')]
        while counted() < 5 or not nodes() or not changes():
            data, _ = sock.recvfrom(65536)
            self.assertLessEqual(len(data), 1432)   # one frame each
            lines.extend(data.decode().splitlines())
        tags = [ln.split('|#', 1)[1] for ln in lines if '|#' in ln]
        self.assertTrue(all('service:discovery,node:' in t for t in tags),
                        tags[:3])
        kinds = {ln.split(':', 1)[0] for ln in lines}
        self.assertIn('platform.rpc.duration_ms.avg', kinds)
        # A server's own gauges go too: discovery's count of nodes (it
        # registered itself).
        self.assertEqual(nodes()[-1].split('|')[1], 'g')
        # Labels are tags after the common ones; counts are deltas.
        self.assertRegex(changes()[0], r'^discovery_node_changes_total:1\|c'
                         r'\|#service:discovery,node:[^,|]+,'
                         r'change:registered$')
        srv.stop_clean()

    def test_bad_settings(self):
        for args in (['--statsd', 'nowhere'],
                     ['--statsd-interval', '0']):
            with self.subTest(args=args):
                r = harness.run_binary(args)
                self.assertEqual(r.code, 2, r.stderr)
                self.assertIn(args[0], r.stderr)


if __name__ == '__main__':
    harness.run_tests()
