#!/usr/bin/python3
"""router-srv's xDS (ADS) for proxyless gRPC clients, against a real
fleet over real gRPC and a real PostgreSQL.

A client that is not ours, grpc-js with @grpc/grpc-js-xds
(tests/node/xds_client.js, a bootstrap file naming router-srv), calls
xds:///probe against probe-srv nodes: the calls land as router-srv's
rules say (a node of weight 0 gets none; a 10% split by version gets
about 10% of 2,000 calls) and a Listener that does not exist fails the
calls. A raw ADS stream (Python grpcio, the Envoy messages from
the build's stripped protos) checks the resources themselves, ACK and
NACK, pushes on change, and the statuses of bad input (an unknown
type_url, garbage bytes). Envoy's RateLimitService/ShouldRateLimit
answers by router-srv's limits: OK then OVER_LIMIT per descriptor, with
the current limit.

Needs PLATFORM_TEST_DATABASE (scripts/test sets it from scripts/pg), else
it says so and exits 0; node and tests/node/node_modules (scripts/setup),
else the grpc-js test skips. No test asserts a time: each waits for a
condition.
"""

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402
from google.protobuf import descriptor_pb2, message_factory  # noqa: E402

import harness  # noqa: E402
import router_harness as rh  # noqa: E402
from harness import wait_for  # noqa: E402

C = grpc.StatusCode
P = rh.pb()
WAIT = 60
ADS = ('/envoy.service.discovery.v3.AggregatedDiscoveryService/'
       'StreamAggregatedResources')
T = 'type.googleapis.com/envoy.config.'
LDS = T + 'listener.v3.Listener'
RDS = T + 'route.v3.RouteConfiguration'
CDS = T + 'cluster.v3.Cluster'
EDS = T + 'endpoint.v3.ClusterLoadAssignment'
HCM = ('envoy.extensions.filters.network.http_connection_manager.v3.'
       'HttpConnectionManager')
RLS = '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit'
PING = '/platform.probe.v1.Probe/Ping'
NODE = shutil.which('node')
NODE_DIR = os.path.join(harness.SOURCE_DIR, 'tests', 'node')
ENVOY_SRC = os.path.join(harness.BUILD_DIR, 'proto', 'envoy', 'envoy_src')

_envoy = {}


def envoy(name):
    """The message class of an Envoy API message by full name, from the
    stripped protos the build generated (proto/envoy_protos.py)."""
    if not _envoy:
        out = tempfile.mkdtemp(prefix='platform-it-envoy-')
        desc = os.path.join(out, 'envoy.desc')
        roots = ['envoy/service/discovery/v3/discovery.proto',
                 'envoy/config/listener/v3/listener.proto',
                 'envoy/config/route/v3/route.proto',
                 'envoy/config/cluster/v3/cluster.proto',
                 'envoy/config/endpoint/v3/endpoint.proto',
                 'envoy/extensions/filters/network/http_connection_manager/'
                 'v3/http_connection_manager.proto',
                 'envoy/service/ratelimit/v3/rls.proto']
        subprocess.run(['protoc', '--include_imports',
                        '--descriptor_set_out=' + desc, '-I', ENVOY_SRC]
                       + roots, check=True)
        fds = descriptor_pb2.FileDescriptorSet()
        with open(desc, 'rb') as f:
            fds.ParseFromString(f.read())
        shutil.rmtree(out, True)
        _envoy.update(message_factory.GetMessages(fds.file))
    return _envoy[name]


def request(type_url, names=(), version='', nonce='', node='py-1',
            error=None, metadata=None):
    Req = envoy('envoy.service.discovery.v3.DiscoveryRequest')
    r = Req(type_url=type_url, resource_names=list(names),
            version_info=version, response_nonce=nonce)
    r.node.id = node
    r.node.cluster = 'tester'
    for k, v in (metadata or {}).items():
        r.node.metadata.fields[k].string_value = v
    if error:
        r.error_detail.code = 3
        r.error_detail.message = error
    return r


def unpack(any_msg, name):
    m = envoy(name)()
    m.ParseFromString(any_msg.value)
    return m


class Ads:
    """One raw ADS stream: send() requests, next() responses."""

    def __init__(self, channel):
        Resp = envoy('envoy.service.discovery.v3.DiscoveryResponse')
        self.q = queue.Queue()
        self.call = channel.stream_stream(
            ADS, request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=Resp.FromString)(iter(self.q.get, None))
        self.r = harness.WatchReader(self.call)

    def send(self, req):
        self.q.put(req)

    def next(self, type_url=None):
        """The next response (of type_url, skipping pushes of others)."""
        while True:
            m = self.r.next(timeout=WAIT)
            if type_url is None or m.type_url == type_url:
                return m

    def ack(self, resp, names):
        self.send(request(resp.type_url, names, resp.version_info,
                          resp.nonce))

    def close(self):
        self.q.put(None)
        self.call.cancel()


class XdsClient(rh.LineClient):
    """tests/node/xds_client.js: grpc-js calling TARGET over xDS, with a
    bootstrap file naming router-srv."""

    def __init__(self, router, target, metadata=None):
        fd, self.bootstrap = tempfile.mkstemp(
            prefix='xds-bootstrap-', suffix='.json', dir=harness.log_dir())
        with os.fdopen(fd, 'w') as f:
            json.dump({'xds_servers': [{
                'server_uri': router,
                'channel_creds': [{'type': 'insecure'}],
                'server_features': []}],
                'node': {'id': harness.uniq('js'), 'cluster': 'js-test',
                         'metadata': metadata or {},
                         'locality': {}}}, f)
        env = {'GRPC_XDS_BOOTSTRAP': self.bootstrap}
        # XDS_TRACE=xds_client,xds_resolver,...: grpc-js's own traces in
        # the client's log, for a failure.
        if os.environ.get('XDS_TRACE'):
            env.update(GRPC_TRACE=os.environ['XDS_TRACE'],
                       GRPC_VERBOSITY='DEBUG')
        super().__init__([NODE, os.path.join(NODE_DIR, 'xds_client.js'),
                          target, os.path.join(harness.SOURCE_DIR, 'proto')],
                         'xds-client', env=env, cwd=NODE_DIR)

    def calls(self, n, deadline_ms=20000):
        return self.ask('calls %d %d' % (n, deadline_ms))


class XdsFleet(harness.ServiceCase):
    """discovery-srv, router-srv and probe-srv nodes p0, p1 (version 1)
    and p2 (version 2)."""

    VERSIONS = ('1', '1', '2')

    @classmethod
    def setUpClass(cls):
        cls.mport = harness.free_port()
        rh.start_fleet(cls, cls.VERSIONS, router_args=[
            '--metrics-listen', '127.0.0.1:%d' % cls.mport])

    @classmethod
    def tearDownClass(cls):
        rh.stop_fleet(cls)

    def tearDown(self):
        try:
            self.rc.call('DeleteRules', service='probe')
        except grpc.RpcError:
            pass

    def ads(self):
        a = Ads(self.r.get_channel())
        self.addCleanup(a.close)
        return a


class GrpcJsTest(XdsFleet):
    """grpc-js with @grpc/grpc-js-xds, routed by router-srv."""

    def setUp(self):
        if NODE is None or not os.path.isdir(os.path.join(
                NODE_DIR, 'node_modules', '@grpc', 'grpc-js-xds')):
            self.skipTest('node or tests/node/node_modules missing '
                          '(scripts/setup installs them)')

    def client(self, target='xds:///probe', **kw):
        c = XdsClient(self.r.address, target, **kw)
        self.addCleanup(c.close)
        return c

    def test_calls_follow_weights_and_splits(self):
        c = self.client()
        # No rules: every node gets calls.
        wait_for(lambda: set(c.calls(60)['nodes']) == {'p0', 'p1', 'p2'},
                 timeout=WAIT, what='calls on every node')
        # p1 drained, 10% of the calls to version 2 (p2).
        self.rc.set_rules('probe', weights=[P.WeightOverride(
            node_id='p1', weight=0)], splits=[P.Split(version='2',
                                                     percent=10)])

        def applied():
            r = c.calls(200)
            return not r['errors'] and 'p1' not in r['nodes'] and r
        wait_for(applied, timeout=WAIT, what='the client following the rules')
        r = c.calls(2000)
        self.assertEqual(r['errors'], {}, r)
        self.assertNotIn('p1', r['nodes'], r)
        share = r['nodes'].get('p2', 0) / 2000
        self.assertGreater(share, 0.06, r)
        self.assertLess(share, 0.14, r)
        self.assertEqual(r['nodes'].get('p0', 0) + r['nodes'].get('p2', 0),
                         2000, r)

    def test_a_listener_that_does_not_exist(self):
        # router-srv answers at once without it (AdsTest checks that);
        # grpc-js then waits for its resource timer (15 s) and, with no
        # configuration ever, keeps calls waiting until their deadline.
        # No call goes anywhere either way.
        c = self.client('xds:///' + rh.uniq('nosuch'))
        r = c.calls(2, deadline_ms=2000)
        self.assertEqual(r['nodes'], {}, r)
        self.assertEqual(sum(r['errors'].values()), 2, r)
        self.assertLessEqual(set(r['errors']), {'4', '14'}, r)


class AdsTest(XdsFleet):
    """The protocol and the resources, over a raw ADS stream."""

    def test_resources_for_a_service(self):
        a = self.ads()
        a.send(request(LDS, ['probe']))
        lds = a.next(LDS)
        self.assertTrue(lds.nonce and lds.version_info, lds)
        self.assertEqual(len(lds.resources), 1)
        lis = unpack(lds.resources[0], 'envoy.config.listener.v3.Listener')
        self.assertEqual(lis.name, 'probe')
        self.assertEqual(lis.api_listener.api_listener.type_url,
                         'type.googleapis.com/' + HCM)
        hcm = unpack(lis.api_listener.api_listener, HCM)
        self.assertEqual(hcm.http_filters[-1].typed_config.type_url,
                         'type.googleapis.com/envoy.extensions.filters.http.'
                         'router.v3.Router')
        route = hcm.route_config.virtual_hosts[0].routes[0].route
        got = {w.name: w.weight.value
               for w in route.weighted_clusters.clusters}
        self.assertEqual(set(got), {'probe/1', 'probe/2'}, got)
        # Three nodes of weight 100: two thirds to version 1.
        self.assertAlmostEqual(got['probe/1'] / sum(got.values()), 2 / 3,
                               delta=0.01)
        a.ack(lds, ['probe'])

        a.send(request(CDS, ['probe/1']))
        cds = a.next(CDS)
        cl = unpack(cds.resources[0], 'envoy.config.cluster.v3.Cluster')
        self.assertEqual(cl.name, 'probe/1')
        self.assertEqual(cl.type, 3)                      # EDS
        self.assertTrue(cl.eds_cluster_config.eds_config.HasField('ads'))
        self.assertEqual(cl.outlier_detection.failure_percentage_threshold
                         .value, 50)
        self.assertEqual(cl.outlier_detection.enforcing_success_rate.value,
                         0)
        a.ack(cds, ['probe/1'])

        a.send(request(EDS, ['probe/1']))
        eds = a.next(EDS)
        cla = unpack(eds.resources[0],
                     'envoy.config.endpoint.v3.ClusterLoadAssignment')
        self.assertEqual(cla.cluster_name, 'probe/1')
        ports = {le.lb_endpoints[0].endpoint.address.socket_address
                 .port_value: le.load_balancing_weight.value
                 for le in cla.endpoints}
        want = {int(p.address.rsplit(':', 1)[1])
                for p in self.probes[:2]}
        self.assertEqual(set(ports), want, cla)
        self.assertEqual(len(set(ports.values())), 1, cla)
        a.ack(eds, ['probe/1'])

        # A change is pushed: p0 drained leaves the assignment.
        self.rc.set_rules('probe', weights=[P.WeightOverride(
            node_id='p0', weight=0)], outlier=P.OutlierDetection(
                error_percent=30))
        p0 = int(self.probes[0].address.rsplit(':', 1)[1])
        while True:
            eds = a.next(EDS)
            cla = unpack(eds.resources[0],
                         'envoy.config.endpoint.v3.ClusterLoadAssignment')
            a.ack(eds, ['probe/1'])
            got = [le.lb_endpoints[0].endpoint.address.socket_address
                   .port_value for le in cla.endpoints]
            if p0 not in got:
                break
        self.assertEqual(len(got), 1, cla)
        # The outlier rule reaches the cluster too.
        a.send(request(CDS, ['probe/1', 'probe/2']))
        while True:
            cds = a.next(CDS)
            a.ack(cds, ['probe/1', 'probe/2'])
            cls = [unpack(x, 'envoy.config.cluster.v3.Cluster')
                   for x in cds.resources]
            if cls[0].outlier_detection.failure_percentage_threshold \
                    .value == 30:
                break
        self.assertEqual({c.name for c in cls}, {'probe/1', 'probe/2'})

    def test_split_by_the_clients_labels(self):
        """A split for callers labelled track=canary: the node's
        metadata is the client's labels, its cluster its service."""
        self.rc.set_rules('probe', splits=[P.Split(
            version='2', percent=100, label_key='track',
            label_value='canary')])

        def clusters(**kw):
            a = self.ads()
            a.send(request(LDS, ['probe'], **kw))
            lis = unpack(a.next(LDS).resources[0],
                         'envoy.config.listener.v3.Listener')
            hcm = unpack(lis.api_listener.api_listener, HCM)
            route = hcm.route_config.virtual_hosts[0].routes[0].route
            a.close()
            return {w.name for w in route.weighted_clusters.clusters}
        self.assertEqual(clusters(metadata={'track': 'canary'}),
                         {'probe/2'})
        self.assertEqual(clusters(metadata={'track': 'stable'}),
                         {'probe/1', 'probe/2'})

    def test_unknown_names_and_nack(self):
        a = self.ads()
        # A Listener that does not exist: answered at once, without it.
        a.send(request(LDS, ['nosuch']))
        lds = a.next(LDS)
        self.assertEqual(len(lds.resources), 0)
        # A name that is not one of ours at all, and a bad cluster.
        a.send(request(CDS, ['no-slash', 'nosuch/1'], nonce=''))
        cds = a.next(CDS)
        self.assertEqual(len(cds.resources), 0)
        # A NACK keeps the stream: the next subscription is answered.
        a.send(request(LDS, ['probe'], version=lds.version_info,
                       nonce=lds.nonce))
        lds2 = a.next(LDS)
        self.assertEqual(len(lds2.resources), 1)
        a.send(request(LDS, ['probe'], version=lds.version_info,
                       nonce=lds2.nonce, error='listener rejected'))
        a.send(request(EDS, ['probe/2']))
        eds = a.next(EDS)
        self.assertEqual(len(eds.resources), 1)
        self.assertFalse(a.call.done())
        wait_for(lambda: harness.metric(self.mport, 'xds_nacks_total') >= 1,
                 timeout=WAIT, what='the NACK counted')

    def test_bad_input(self):
        a = self.ads()
        a.send(request('type.googleapis.com/envoy.nosuch.v3.Thing', ['x']))
        end = a.r.end(WAIT)
        self.assertCode(end, C.INVALID_ARGUMENT, 'type_url')
        a = self.ads()
        a.send(request('', ['x']))
        self.assertCode(a.r.end(WAIT),
                        C.INVALID_ARGUMENT, 'type_url')
        a = self.ads()
        a.send(request(LDS, ['x' * 300]))
        self.assertCode(a.r.end(WAIT),
                        C.INVALID_ARGUMENT, 'resource_names[0]')
        # Garbage that is no DiscoveryRequest.
        q = queue.Queue()
        call = self.r.get_channel().stream_stream(
            ADS, request_serializer=lambda b: b,
            response_deserializer=lambda b: b)(iter(q.get, None))
        q.put(b'\xff\xff\xff\xff')
        r = harness.WatchReader(call)
        self.assertCode(r.end(WAIT),
                        C.INVALID_ARGUMENT)
        q.put(None)


class RateLimitServiceTest(XdsFleet):
    """envoy.service.ratelimit.v3.RateLimitService over router-srv's
    limits. A rate of one call in 1,000 s: the bucket's burst is all a
    test gets, however slow the machine."""

    VERSIONS = ('1',)

    def rls(self, domain='probe', descriptors=(), hits=0):
        Req = envoy('envoy.service.ratelimit.v3.RateLimitRequest')
        Resp = envoy('envoy.service.ratelimit.v3.RateLimitResponse')
        req = Req(domain=domain, hits_addend=hits)
        for entries in descriptors:
            d = req.descriptors.add()
            for k, v in entries:
                d.entries.add(key=k, value=v)
        return self.r.get_channel().unary_unary(
            RLS, request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=Resp.FromString)(
                req, timeout=harness.RPC_TIMEOUT)

    def test_over_limit_per_descriptor(self):
        Resp = envoy('envoy.service.ratelimit.v3.RateLimitResponse')
        OK, OVER = Resp.OK, Resp.OVER_LIMIT
        v = self.rc.set_rules('probe', limits=[P.RateLimit(
            method=PING, rate=0.001, burst=3)]).version
        a = [('method', PING), ('remote_address', '10.0.0.1')]
        got = [self.rls(descriptors=[a]) for _ in range(4)]
        self.assertEqual([g.overall_code for g in got], [OK, OK, OK, OVER])
        self.assertEqual([g.statuses[0].limit_remaining for g in got],
                         [2, 1, 0, 0])
        lim = got[0].statuses[0].current_limit
        self.assertEqual((lim.requests_per_unit, lim.unit),
                         (4, lim.HOUR), lim)             # 3.6 an hour
        # Another caller has a bucket of its own; a method with no
        # limit (and no whole-service limit) is OK with none reported.
        b = [('method', PING), ('remote_address', '10.0.0.2')]
        free = [('method', '/platform.probe.v1.Probe/SetBehaviour')]
        r = self.rls(descriptors=[b, free, a])
        self.assertEqual(r.overall_code, OVER)
        self.assertEqual([s.code for s in r.statuses], [OK, OK, OVER])
        self.assertFalse(r.statuses[1].HasField('current_limit'))
        # The service named by an entry instead of the domain.
        r = self.rls(domain='', descriptors=[[('service', 'probe')] + a])
        self.assertEqual(r.statuses[0].code, OK)     # its own descriptor
        # A whole-service limit covers every method; hits_addend counts.
        self.rc.set_rules('probe', expected_version=v, limits=[
            P.RateLimit(rate=0.001, burst=2)])
        r = self.rls(descriptors=[free], hits=3)
        self.assertEqual(r.overall_code, OVER)
        # No rules at all: OK.
        self.rc.call('DeleteRules', service='probe')
        self.assertEqual(self.rls(descriptors=[a]).overall_code, OK)

    def test_bad_input(self):
        A = C.INVALID_ARGUMENT
        cases = [
            (dict(descriptors=[]), 'descriptors'),
            (dict(domain='', descriptors=[[('method', PING)]]), 'domain'),
            (dict(domain='bad name', descriptors=[[('method', PING)]]),
             'domain'),
            (dict(descriptors=[[('', 'x')]]), 'descriptors[0].entries[0].key'),
            (dict(descriptors=[[('method', PING)], [('k', '')]]),
             'descriptors[1].entries[0].value'),
            (dict(descriptors=[[('service', 'a/b')]]),
             'descriptors[0].entries[0].value'),
            (dict(descriptors=[[('method', PING)]], hits=10001),
             'hits_addend'),
        ]
        for kw, field in cases:
            with self.assertRaises(grpc.RpcError) as cm:
                self.rls(**kw)
            self.assertCode(cm.exception, A, field)
        with self.assertRaises(grpc.RpcError) as cm:
            self.r.get_channel().unary_unary(RLS)(b'\xff\xff\xff',
                                                  timeout=harness.RPC_TIMEOUT)
        self.assertCode(cm.exception, A)


if __name__ == '__main__':
    if not rh.DATABASE:
        print('test_xds: PLATFORM_TEST_DATABASE is unset; skipping '
              '(scripts/test sets it from scripts/pg)')
        sys.exit(0)
    for b in (rh.ROUTER_BIN, rh.PROBE_BIN):
        if not os.path.exists(b):
            sys.stderr.write('missing %s\n' % b)
            sys.exit(1)
    harness.run_tests()
