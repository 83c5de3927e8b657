#!/usr/bin/env python3
"""The fleet's own events (common/events.c) reaching event-srv.

Real discovery-srv, event-srv and config-srv on the test PostgreSQL:
- discovery-srv publishes platform.discovery.registered / .deregistered /
  .expired when nodes come and go;
- config-srv publishes platform.config.changed for every committed change;
- with event-srv away the events wait in the publisher's buffer and arrive
  once it is back; the metrics count what was published.
"""

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import config_harness as ch  # noqa: E402
import event_harness as eh  # noqa: E402
from harness import Server, wait_for  # noqa: E402

TIMEOUT = 30.0


def events_of(client, subject, **kw):
    return client.query_all(subject=subject, order=1, **kw)


def published(mport):
    return harness.metric(mport, 'platform_events_published_total')


def data_of(ev):
    return json.loads(ev.data.decode())


@unittest.skipUnless(ch.DATABASE, 'needs PLATFORM_TEST_DATABASE')
class PlatformEventsTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.disc = Server(name='discovery-srv')
        cls.addClassCleanup(cls.disc.stop_clean)
        cls.event = eh.event_server(discovery=cls.disc.address)
        cls.addClassCleanup(cls.event.stop_clean)
        cls.config = ch.config_server(discovery=cls.disc.address)
        cls.addClassCleanup(cls.config.stop_clean)
        cls.ev = eh.client_of(cls.event)
        cls.cfg = ch.client_of(cls.config)
        cls.dc = cls.disc.discovery_client()

    def wait_events(self, subject, pred, what, **kw):
        return wait_for(lambda: (lambda evs: evs if pred(evs) else None)(
            events_of(self.ev, subject, **kw)), timeout=TIMEOUT, what=what)

    def test_config_change_is_an_event(self):
        ns = ch.uniq_ns('pev')
        v1 = self.cfg.put(ns, 'svc/limits', {'max': 1}, author='alice',
                          comment='first')
        self.cfg.delete(ns, 'svc/limits')
        evs = self.wait_events(
            'platform.config.changed', lambda e: len(e) >= 2,
            'two config change events', metadata={'namespace': ns})
        self.assertEqual(len(evs), 2)
        first, second = data_of(evs[0]), data_of(evs[1])
        self.assertEqual(evs[0].type, 'platform.config.changed.v1')
        self.assertEqual(evs[0].source, 'config-srv')
        self.assertEqual((first['op'], first['namespace'], first['path'],
                          first['version'], first['revision'],
                          first['author'], first['comment']),
                         ('update', ns, 'svc/limits', 1, v1.revision,
                          'alice', 'first'))
        self.assertEqual((second['op'], second['version'], second['deleted']),
                         ('delete', 2, True))

    def test_registration_and_deregistration_are_events(self):
        name = 'pev-' + eh.uniq('svc')
        P = harness.protos()
        svc = P.discovery.Service(name=name, version='1.0.0', nodes=[
            P.discovery.Node(id=name + '-1', address='127.0.0.1:9')])
        self.dc.register(svc)
        self.dc.deregister(name, version='1.0.0')
        reg = self.wait_events('platform.discovery.registered',
                               lambda e: len(e) >= 1, 'a registered event',
                               metadata={'service': name})
        gone = self.wait_events('platform.discovery.deregistered',
                                lambda e: len(e) >= 1,
                                'a deregistered event',
                                metadata={'service': name})
        d = data_of(reg[0])
        self.assertEqual((d['service'], d['version'], d['node'],
                          d['address']),
                         (name, '1.0.0', name + '-1', '127.0.0.1:9'))
        self.assertEqual(reg[0].source, 'discovery-srv')
        self.assertEqual(data_of(gone[0])['node'], name + '-1')

    def test_expiry_is_an_event(self):
        name = 'pev-' + eh.uniq('ttl')
        P = harness.protos()
        svc = P.discovery.Service(name=name, version='1', nodes=[
            P.discovery.Node(id=name + '-1', address='127.0.0.1:9')])
        self.dc.register(svc, ttl_seconds=1)
        evs = self.wait_events('platform.discovery.expired',
                               lambda e: len(e) >= 1, 'an expired event',
                               metadata={'service': name})
        self.assertEqual(data_of(evs[0])['node'], name + '-1')


@unittest.skipUnless(ch.DATABASE, 'needs PLATFORM_TEST_DATABASE')
class EventSrvAwayTest(unittest.TestCase):
    """Events emitted while event-srv is down wait in the buffer, and are
    stored once, when it comes (idempotency keys make resends safe)."""

    def test_buffered_until_event_srv_comes(self):
        disc = Server(name='discovery-srv')
        self.addCleanup(disc.stop_clean)
        mport = harness.free_port()
        config = ch.config_server(discovery=disc.address, extra_args=[
            '--metrics-listen', '127.0.0.1:%d' % mport])
        self.addCleanup(config.stop_clean)
        cfg = ch.client_of(config)
        ns = ch.uniq_ns('away')
        for i in range(5):
            cfg.put(ns, 'p', {'i': i})
        # event-srv comes only after the publisher found it away: what the
        # test means, whatever the publisher's timing.
        wait_for(lambda: harness.metric(
            mport, 'platform_events_send_failures_total') >= 1,
            timeout=TIMEOUT, what='a failed send while event-srv is away')
        event = eh.event_server(discovery=disc.address)
        self.addCleanup(event.stop_clean)
        ev = eh.client_of(event)
        evs = wait_for(lambda: (lambda e: e if len(e) >= 5 else None)(
            events_of(ev, 'platform.config.changed',
                      metadata={'namespace': ns})),
            timeout=TIMEOUT, what='the five buffered events')
        self.assertEqual([data_of(e)['version'] for e in evs],
                         [1, 2, 3, 4, 5])
        # Nothing stored twice, even if a batch was resent.
        self.assertEqual(len({e.idempotency_key for e in evs}), 5)
        self.assertIn('platform events: cannot send to event-srv',
                      config.stderr())
        wait_for(lambda: published(mport) >= 5, timeout=TIMEOUT,
                 what='platform_events_published_total >= 5')


if __name__ == '__main__':
    harness.run_tests()
