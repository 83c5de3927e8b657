"""Helpers for the event-srv integration tests (test_event.py).

Builds on harness.py and config_harness.py: the message classes of
platform.event.v1 (generated with protoc and loaded by file path), a
client for every Event method, event-srv started with the harness Server
class on the test database, and names no other test or run uses.
"""

import os

import grpc

import harness
from harness import RPC_TIMEOUT, Server, WatchReader
from config_harness import DATABASE, PG_CTL  # noqa: F401 - re-exported

EVENT_BIN = os.path.join(harness.BUILD_DIR, 'services', 'event', 'event-srv')
EVENT_SERVICE = 'platform.event.v1.Event'
EVENT_PREFIX = '/' + EVENT_SERVICE + '/'

pb = harness.proto_module('platform/event/v1/event.proto', 'it_event_pb2')

# A topic segment (and group name) no other test or run uses.
uniq = harness.uniq


class EventClient(harness.ServiceClient):
    """platform.event.v1.Event over a channel. Unary methods take the
    request's fields as keyword arguments."""

    PREFIX = EVENT_PREFIX
    METHODS = ('Publish', 'PublishBatch', 'Ack', 'Query', 'ListGroups',
               'DeleteGroup', 'SetRetention', 'ListRetention')
    STREAMS = ('Subscribe',)

    def __init__(self, channel):
        super().__init__(channel, pb())

    def call(self, method, timeout=RPC_TIMEOUT, **kw):
        req = getattr(self.pb, method + 'Request')(**kw)
        return self._m[method](req, timeout=timeout)

    def future(self, method, timeout=RPC_TIMEOUT, **kw):
        req = getattr(self.pb, method + 'Request')(**kw)
        return self._m[method].future(req, timeout=timeout)

    def publish(self, topic, data=b'', type='test.v1', timeout=RPC_TIMEOUT,
                **kw):
        return self.call('Publish', timeout, topic=topic, type=type,
                         data=data, **kw)

    def publish_batch(self, events, timeout=RPC_TIMEOUT):
        """events: dicts of PublishRequest fields."""
        reqs = [self.pb.PublishRequest(**dict({'type': 'test.v1'}, **e))
                for e in events]
        return self.call('PublishBatch', timeout, events=reqs).results

    def ack(self, group, sequences, timeout=RPC_TIMEOUT):
        return self.call('Ack', timeout, group=group,
                         sequences=list(sequences)).acked

    def query(self, timeout=RPC_TIMEOUT, **kw):
        return self.call('Query', timeout, **kw)

    def query_all(self, page_size=0, **kw):
        out, token = [], ''
        for _ in range(100000):
            r = self.query(page_size=page_size, page_token=token, **kw)
            out.extend(r.events)
            token = r.next_page_token
            if not token:
                return out
        raise AssertionError('Query never ended')

    def subscribe(self, subjects, **kw):
        """A harness.WatchReader on Subscribe."""
        req = self.pb.SubscribeRequest(subjects=list(subjects), **kw)
        return WatchReader(self._m['Subscribe'](req))


def new_client(address):
    """A client on a channel of its own (close it with client.channel)."""
    return EventClient(grpc.insecure_channel(address,
                                             options=harness.CHANNEL_OPTIONS))


def client_of(srv):
    return EventClient(srv.get_channel())


def event_server(name=None, database=None, discovery=None, extra_args=(),
                 env=None, wait=True, port=None, timeout=30.0):
    """event-srv on a free port with the test database (in the
    environment, so the password is not in the process list)."""
    e = {'PLATFORM_DATABASE': database or DATABASE,
         'PLATFORM_RETENTION_INTERVAL_MS': '200'}
    e.update(env or {})
    return Server(binary=EVENT_BIN, port=port, discovery=discovery,
                  extra_args=extra_args, env=e, name=name or 'event-srv',
                  wait=wait, timeout=timeout)
