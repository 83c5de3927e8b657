"""The runtime's stream primitive under pressure: a consumer that stops
reading is ended with RESOURCE_EXHAUSTED instead of growing the server's
memory, and the server goes on serving everyone else."""

import os
import sys
import unittest

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


class SlowConsumerTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = harness.Server(discovery=None)
        cls.addClassCleanup(cls.srv.stop_clean)
        cls.client = cls.srv.discovery_client()

    def test_stalled_watch_is_ended_with_resource_exhausted(self):
        d = harness.protos().discovery
        # A watcher that opens the stream and then reads nothing.
        stalled = self.client._m['Watch'](d.WatchRequest(service='slow-svc'))
        first = next(stalled)       # the SYNCED marker: the stream is live
        self.assertEqual(first.type, d.EVENT_TYPE_SYNCED)

        # Each update changes ~64 KiB of service metadata, so each event is
        # that big; a few hundred overflow the flow-control windows and the
        # server's bounded per-stream queue.
        big = 'x' * 1000
        for i in range(2000):
            md = {'k%02d' % j: big + str(i) for j in range(64)}
            self.client.register(d.Service(
                name='slow-svc', metadata=md,
                nodes=[d.Node(id='slow-1', address='127.0.0.1:9')]),
                ttl_seconds=600)
            if i % 50 == 49 and stalled.done():
                break

        # Drain what was in flight: the stream must end with
        # RESOURCE_EXHAUSTED, not hang and not succeed.
        with self.assertRaises(grpc.RpcError) as cm:
            for _ in stalled:
                pass
        self.assertEqual(cm.exception.code(),
                         grpc.StatusCode.RESOURCE_EXHAUSTED,
                         cm.exception.details())

        # Everyone else is still served.
        self.assertEqual(self.srv.health_check('').status, 1)
        got = self.client.get('slow-svc')
        self.assertEqual(got.services[0].nodes[0].id, 'slow-1')

    def test_many_concurrent_watchers_each_see_every_event(self):
        d = harness.protos().discovery
        readers = [self.client.watch('fan-svc') for _ in range(20)]
        for r in readers:
            self.assertEqual(r.next().type, d.EVENT_TYPE_SYNCED)
        for i in range(10):
            self.client.register(d.Service(
                name='fan-svc',
                nodes=[d.Node(id='fan-%d' % i, address='127.0.0.1:9')]),
                ttl_seconds=600)
        for r in readers:
            ids = [r.next().service.nodes[0].id for _ in range(10)]
            self.assertEqual(ids, ['fan-%d' % i for i in range(10)])
            r.cancel()


if __name__ == '__main__':
    harness.run_tests()
