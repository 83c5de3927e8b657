"""Integration tests of the guard: every server checks its callers.

A real auth-srv (bootstrapped admin, service accounts made through its
admin API), real discovery-srv and config-srv with the guard on, each
with its own service identity (a credentials file, mode 0600), on the
test PostgreSQL:

- no token, not Bearer, garbage, expired, not yet valid, forged
  signature, alg none, HS256 keyed with the public key, wrong audience
  and tampered claims are UNAUTHENTICATED, and the message never quotes
  the token;
- a valid token without a rule is PERMISSION_DENIED, with an allow rule
  OK, and a deny rule at the same priority wins, naming itself;
- health and reflection answer without a token;
- config-srv with its identity registers with discovery (metadata
  auth=on), one without an identity is refused (and says so), and the
  verified caller becomes a version's author;
- a key that auth-srv starts signing with (unknown kid) is picked up;
- the development switch logs its warning and registers auth=off; a
  guarded server without --auth does not start; a credentials file
  others may read is refused;
- no secret or token appears in any server's logs.

Run by Debian's /usr/bin/python3 from meson. Needs PLATFORM_TEST_DATABASE
(scripts/test sets it); without it the tests are skipped.
"""

import json
import os
import shutil
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

import auth_harness as ah  # noqa: E402
import config_harness as ch  # noqa: E402
import harness  # noqa: E402
import kv_harness as kh  # noqa: E402
from auth_harness import AuthServer, b64u_decode, sign, split, uniq  # noqa
from harness import (GUARD_ON, RPC_TIMEOUT, Server, rpc_error,  # noqa: E402
                     wait_for)

C = grpc.StatusCode
P = ah.pb()
SERVICE = P.ACCOUNT_TYPE_SERVICE
ALLOW = P.EFFECT_ALLOW
DENY = P.EFFECT_DENY
CONFIG = 'platform.config.v1.Config'
DISCOVERY_PREFIX = '/platform.discovery.v1.Discovery/'
REFLECTION = '/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo'


def logged(srv, text):
    return [r for r in harness.log_lines(srv) if text in r.get('msg', '')]


class Fleet:
    """auth-srv, and helpers to make accounts, tokens and guarded
    servers around it."""

    def __init__(self, name, auth_args=()):
        self.secrets = []
        self.servers = []
        self.dir = tempfile.mkdtemp(prefix='platform-it-guard-')
        self.auth = AuthServer(name=name + '-auth', extra_args=auth_args)
        creds = self.auth.admin_credentials()
        self.secrets.append(creds['client_secret'])
        self.admin_creds = creds
        self.c = self.auth.client()

    def token(self, client_id, secret):
        t = self.c.client_credentials(client_id, secret).access_token
        self.secrets.append(t)
        return t

    def admin(self):
        return self.token(self.admin_creds['client_id'],
                          self.admin_creds['client_secret'])

    def service_account(self, prefix='svc', scopes=()):
        sid = uniq(prefix)
        r = self.c.create_account(sid, SERVICE, scopes=scopes,
                                  token=self.admin())
        self.secrets.append(r.secret)
        return sid, r.secret

    def credentials_file(self, sid, secret, mode=0o600):
        path = os.path.join(self.dir, sid + '.json')
        with open(path, 'w') as f:
            json.dump({'client_id': sid, 'client_secret': secret}, f)
        os.chmod(path, mode)
        return path

    def guarded_env(self, credentials=None):
        env = dict(GUARD_ON)
        env['PLATFORM_AUTH'] = self.auth.srv.address
        if credentials:
            env['PLATFORM_CREDENTIALS'] = credentials
        return env

    def add(self, srv):
        self.servers.append(srv)
        return srv

    def rule(self, **kw):
        return self.c.create_rule(token=self.admin(), **kw)

    def delete_rule(self, rule_id):
        self.c.call('DeleteRule', token=self.admin(), id=rule_id)

    def stop(self):
        """SIGTERM everything (exit 0, sanitizer-clean), then check that
        no log holds a secret or token."""
        for srv in reversed(self.servers):
            srv.stop_clean()
        self.auth.stop_clean()
        for srv in self.servers + [self.auth.srv]:
            ah_assert_no_secrets(srv, self.secrets)

    def cleanup(self):
        for srv in self.servers:
            srv.kill()
        self.auth.cleanup()
        shutil.rmtree(self.dir, True)


ah_assert_no_secrets = harness.assert_no_secrets


def md(token):
    return [('authorization', 'Bearer ' + token)] if token else None


def config_read(channel, token=None, metadata=None):
    """Config/Read of a path nobody wrote: NOT_FOUND once past the
    guard."""
    CP = ch.pb()
    m = channel.unary_unary(ch.CONFIG_PREFIX + 'Read',
                            request_serializer=CP.ReadRequest.
                            SerializeToString,
                            response_deserializer=CP.ReadResponse.FromString)
    return m(CP.ReadRequest(namespace='guard', path='nothing'),
             timeout=RPC_TIMEOUT,
             metadata=metadata if metadata is not None else md(token))


def passes_guard(fn):
    """The status of fn() when it got past the guard, else the error."""
    try:
        fn()
        return C.OK
    except grpc.RpcError as e:
        return e.code()


def get_service(channel, name, token):
    DP = harness.protos().discovery
    m = channel.unary_unary(DISCOVERY_PREFIX + 'GetService',
                            request_serializer=DP.GetServiceRequest.
                            SerializeToString,
                            response_deserializer=DP.GetServiceResponse.
                            FromString)
    return m(DP.GetServiceRequest(name=name), timeout=RPC_TIMEOUT,
             metadata=md(token))


@unittest.skipUnless(ah.DATABASE, 'needs PLATFORM_TEST_DATABASE')
class GuardTest(unittest.TestCase):
    """One fleet: auth-srv, discovery-srv and config-srv with the guard
    on, each server with its own service identity."""

    @classmethod
    def setUpClass(cls):
        # Short-lived tokens: the servers renew theirs all the time, and
        # a real one expires within the test.
        f = cls.fleet = Fleet('guard', auth_args=('--token-ttl', '8'))
        cls.addClassCleanup(f.cleanup)
        sid, secret = f.service_account('discovery')
        cls.discovery = f.add(Server(
            discovery='self', name='discovery-srv',
            env=f.guarded_env(f.credentials_file(sid, secret))))
        sid, secret = f.service_account('config')
        cls.config_id = sid
        cls.config = f.add(ch.config_server(
            discovery=cls.discovery.address,
            env=f.guarded_env(f.credentials_file(sid, secret))))
        cls.caller, cls.caller_secret = f.service_account('caller')

    @classmethod
    def tearDownClass(cls):
        cls.fleet.stop()

    def caller_token(self):
        return self.fleet.token(self.caller, self.caller_secret)

    def assertRefused(self, fn, code, *tokens):
        e = rpc_error(fn)
        self.assertEqual(e.code(), code, e.details())
        for t in tokens:
            for part in [t or ''] + (t or '').split('.'):
                if len(part) >= 8:
                    self.assertNotIn(part, e.details() or '')
        return e

    # -- authentication

    def crafted(self, **changes):
        """A token like a real one of the caller, with claims changed,
        signed with auth-srv's own signing key."""
        real = self.caller_token()
        h, claims, _ = split(real)
        claims.update(changes)
        kid, alg, key = self.fleet.auth.signing_key()
        self.assertEqual(kid, h['kid'])
        t = sign(alg, key, h, claims)
        self.fleet.secrets.append(t)
        return t

    def test_crafted_token_is_valid_when_unchanged(self):
        """The crafting itself is right: an unchanged claims set signed
        with the real key gets past authentication."""
        ch_ = self.config.get_channel()
        self.assertEqual(passes_guard(lambda: config_read(
            ch_, self.crafted())), C.PERMISSION_DENIED)

    def test_tokens_refused(self):
        ch_ = self.config.get_channel()
        now = int(time.time())
        real = self.caller_token()
        h, claims, sig = split(real)
        jwks = self.fleet.c.call('PublicKeys', token='').keys
        from cryptography.hazmat.primitives.asymmetric import rsa
        other = rsa.generate_private_key(public_exponent=65537,
                                         key_size=2048)
        tampered_claims = dict(claims, sub='admin',
                               scope='platform:admin')
        tampered = '.'.join([real.split('.')[0],
                             ah.b64u_json(tampered_claims), sig])
        cases = {
            'expired': self.crafted(iat=now - 600, nbf=now - 600,
                                    exp=now - 300),
            'not yet valid': self.crafted(nbf=now + 300, exp=now + 900),
            'forged signature': sign('RS256', other, h, claims),
            'alg none': sign('none', None, h, claims),
            'HS256 keyed with the public key': sign(
                'HS256', b64u_decode(jwks[0].n), h, claims),
            'HS256 keyed with the JWK': sign(
                'HS256', json.dumps({'kty': 'RSA', 'n': jwks[0].n,
                                     'e': jwks[0].e}).encode(), h, claims),
            'wrong audience': self.crafted(aud='someone-else'),
            'wrong issuer': self.crafted(iss='someone-else'),
            'tampered claims': tampered,
            'garbage': 'not.a.token',
            'one part': 'abc',
        }
        self.fleet.secrets.extend(cases.values())
        for what, tok in cases.items():
            with self.subTest(what):
                self.assertRefused(lambda: config_read(ch_, tok),
                                   C.UNAUTHENTICATED, tok)
        for what, value in (('no token', None),
                            ('empty', [('authorization', '')]),
                            ('not Bearer', [('authorization',
                                             'Basic ' + real)]),
                            ('Bearer alone', [('authorization',
                                               'Bearer ')])):
            with self.subTest(what):
                self.assertRefused(lambda: config_read(
                    ch_, metadata=value or []), C.UNAUTHENTICATED, real)

    def test_expired_for_real(self):
        """A token auth-srv issued, once its exp (plus the leeway) is
        past."""
        fleet = self.fleet
        t = self.caller_token()
        exp = split(t)[1]['exp']
        ch_ = self.config.get_channel()
        self.assertEqual(passes_guard(lambda: config_read(ch_, t)),
                         C.PERMISSION_DENIED)
        wait_for(lambda: passes_guard(lambda: config_read(ch_, t)) ==
                 C.UNAUTHENTICATED, timeout=60,
                 what='the token to expire')
        self.assertGreater(time.time(), exp)
        self.assertTrue(fleet)

    # -- authorization

    def test_rules(self):
        ch_ = self.config.get_channel()
        e = self.assertRefused(lambda: config_read(ch_, self.caller_token()),
                               C.PERMISSION_DENIED)
        self.assertIn('no rule allows', e.details())
        allow = self.fleet.rule(service=CONFIG, method='Read',
                                account=self.caller, effect=ALLOW,
                                priority=10)
        wait_for(lambda: passes_guard(lambda: config_read(
            ch_, self.caller_token())) == C.NOT_FOUND,
            what='the allow rule to reach the guard')
        deny = self.fleet.rule(service=CONFIG, method='Re*',
                               account=self.caller, effect=DENY,
                               priority=10)
        wait_for(lambda: passes_guard(lambda: config_read(
            ch_, self.caller_token())) == C.PERMISSION_DENIED,
            what='the deny rule to reach the guard')
        e = rpc_error(lambda: config_read(ch_, self.caller_token()))
        self.assertIn(deny.id, e.details())
        self.fleet.delete_rule(deny.id)
        wait_for(lambda: passes_guard(lambda: config_read(
            ch_, self.caller_token())) == C.NOT_FOUND,
            what='the deny rule to go')
        self.fleet.delete_rule(allow.id)
        wait_for(lambda: passes_guard(lambda: config_read(
            ch_, self.caller_token())) == C.PERMISSION_DENIED,
            what='the allow rule to go')

    def test_author_is_the_caller(self):
        sid, secret = self.fleet.service_account('writer')
        rule = self.fleet.rule(service=CONFIG, method='Update',
                               account=sid, effect=ALLOW, priority=10)
        self.addCleanup(self.fleet.delete_rule, rule.id)
        CP = ch.pb()
        m = self.config.get_channel().unary_unary(
            ch.CONFIG_PREFIX + 'Update',
            request_serializer=CP.UpdateRequest.SerializeToString,
            response_deserializer=CP.UpdateResponse.FromString)
        path = ch.uniq_path()

        def update(author):
            return m(CP.UpdateRequest(namespace='guard', path=path,
                                      json='{"a":1}', author=author),
                     timeout=RPC_TIMEOUT,
                     metadata=md(self.fleet.token(sid, secret)))
        r = wait_for(lambda: (lambda c: c if c == C.OK else None)(
            passes_guard(lambda: update(''))),
            what='the Update rule to reach the guard')
        self.assertEqual(r, C.OK)
        v = update('').value
        self.assertEqual(v.author, sid)
        self.assertEqual(update('someone').value.author, 'someone')

    # -- open methods

    def test_health_and_reflection_are_open(self):
        for srv in (self.discovery, self.config):
            with self.subTest(srv.name):
                self.assertEqual(srv.health_check().status, 1)
                call = srv.get_channel().stream_stream(
                    REFLECTION, request_serializer=harness.identity,
                    response_deserializer=harness.identity)
                # ServerReflectionRequest{list_services: ""}
                resp = next(call(iter([b'\x3a\x00']), timeout=RPC_TIMEOUT))
                self.assertIn(CONFIG.encode() if srv is self.config else
                              b'platform.discovery.v1.Discovery', resp)

    # -- service identities

    def test_registration_needs_an_identity(self):
        dch = self.discovery.get_channel()

        def nodes():
            r = get_service(dch, 'config', self.fleet.admin())
            return [n for s in r.services for n in s.nodes]
        ns = wait_for(nodes, what='config-srv registered')
        self.assertEqual([dict(n.metadata).get('auth') for n in ns], ['on'])
        self.assertRefused(lambda: get_service(dch, 'config', None),
                           C.UNAUTHENTICATED)
        # Without an identity: refused, and it says so.
        anon = self.fleet.add(ch.config_server(
            name='config-srv-anon', discovery=self.discovery.address,
            env=self.fleet.guarded_env()))
        wait_for(lambda: logged(anon, 'registration failed'),
                 what='the refused registration in the log')
        rec = logged(anon, 'registration failed')[0]
        self.assertEqual(rec.get('status'), 'UNAUTHENTICATED', rec)
        self.assertTrue(logged(anon, 'no service identity'))
        self.assertEqual(len(nodes()), 1)
        # Its own guard cannot read the rules either: UNAVAILABLE, not
        # a wrong answer.
        self.assertRefused(lambda: config_read(anon.get_channel(),
                                               self.caller_token()),
                           C.UNAVAILABLE)
        anon.stop_clean()
        self.fleet.servers.remove(anon)
        ah_assert_no_secrets(anon, self.fleet.secrets)


@unittest.skipUnless(ah.DATABASE, 'needs PLATFORM_TEST_DATABASE')
class KVRingGuardTest(unittest.TestCase):
    """Two kv-srv nodes with the guard on: a call forwarded to a key's
    owner is judged as the caller's (its token passed on), and the nodes
    copy entries to each other as themselves (scope kv.peer, the
    bootstrap rule bootstrap-kv-replicate)."""

    def test_forwarded_as_the_caller(self):
        f = Fleet('kvguard')
        self.addCleanup(f.cleanup)
        sid, secret = f.service_account('discovery')
        disc = f.add(Server(discovery='self', name='discovery-srv',
                            env=f.guarded_env(
                                f.credentials_file(sid, secret))))
        nodes = []
        for i in range(2):
            sid, secret = f.service_account('kv', scopes=['kv.peer'])
            mport = harness.free_port()
            srv = f.add(kh.kv_server(
                name='kv-guard-%d' % i, discovery=disc.address,
                extra_args=['--metrics-listen', '127.0.0.1:%d' % mport,
                            '--replicas', '2'],
                env=f.guarded_env(f.credentials_file(sid, secret))))
            srv.mport = mport
            nodes.append(srv)
        for srv in nodes:
            wait_for(lambda: harness.metric(srv.mport,
                                            'kv_ring_members') == 2,
                     what='a ring of two')
        caller, caller_secret = f.service_account('kvuser')
        stranger, stranger_secret = f.service_account('stranger')
        for method in ('Get', 'Put'):
            f.rule(service='platform.kv.v1.KV', method=method,
                   account=caller, effect=ALLOW, priority=10)
        KP = kh.pb()

        def call(srv, method, token, **kw):
            m = srv.get_channel().unary_unary(
                kh.KV_PREFIX + method,
                request_serializer=getattr(
                    KP, method + 'Request').SerializeToString,
                response_deserializer=getattr(
                    KP, method + 'Response').FromString)
            return m(getattr(KP, method + 'Request')(**kw),
                     timeout=RPC_TIMEOUT, metadata=md(token))
        tok = f.token(caller, caller_secret)
        wait_for(lambda: passes_guard(lambda: call(
            nodes[0], 'Get', tok, table='g', key='x')) == C.NOT_FOUND,
            what='the allow rule to reach the guard')
        for i in range(20):
            call(nodes[i % 2], 'Put', tok, table='g', key='k%d' % i,
                 value=b'%d' % i)
        for i in range(20):
            self.assertEqual(call(nodes[(i + 1) % 2], 'Get', tok,
                                  table='g', key='k%d' % i).entry.value,
                             b'%d' % i)
        self.assertGreater(sum(harness.metric(s.mport, 'kv_forwarded_total')
                               for s in nodes), 0)
        # Every write reached both owners, as the nodes themselves.
        for srv in nodes:
            self.assertEqual(harness.metric(
                srv.mport, 'kv_replicate_failures_total'), 0)
            self.assertEqual(harness.metric(srv.mport, 'kv_keys'), 20)
        # A caller without a rule is refused, on either node, forwarded
        # or not; so is a Replicate without the peer scope.
        st = f.token(stranger, stranger_secret)
        for srv in nodes:
            for i in range(4):
                e = rpc_error(call, srv, 'Get', st, table='g',
                              key='k%d' % i)
                self.assertEqual(e.code(), C.PERMISSION_DENIED)
        e = rpc_error(call, nodes[0], 'Replicate', tok)
        self.assertEqual(e.code(), C.PERMISSION_DENIED)
        f.stop()


@unittest.skipUnless(ah.DATABASE, 'needs PLATFORM_TEST_DATABASE')
class RotationTest(unittest.TestCase):
    """auth-srv rotating its signing key every few seconds: the guard
    picks up the new key when a token names it."""

    def test_new_key_is_picked_up(self):
        f = Fleet('rotation', auth_args=('--key-rotation', '3',
                                         '--token-ttl', '30'))
        self.addCleanup(f.cleanup)
        sid, secret = f.service_account('discovery')
        disc = f.add(Server(discovery='self', name='discovery-srv',
                            env=f.guarded_env(
                                f.credentials_file(sid, secret))))
        dch = disc.get_channel()
        first = f.admin()
        wait_for(lambda: passes_guard(lambda: get_service(
            dch, 'discovery', first)) == C.OK, what='the guard ready')
        kid = split(first)[0]['kid']
        new = wait_for(lambda: (lambda t: t if split(t)[0]['kid'] != kid
                                else None)(f.admin()), timeout=30,
                       what='a token signed with a new key')
        wait_for(lambda: passes_guard(lambda: get_service(
            dch, 'discovery', new)) == C.OK,
            what='the guard to learn the new key')
        f.stop()


@unittest.skipUnless(ah.DATABASE, 'needs PLATFORM_TEST_DATABASE')
class SettingsTest(unittest.TestCase):

    def test_dev_switch_is_loud(self):
        srv = Server(discovery='self', name='discovery-srv-insecure')
        self.addCleanup(srv.kill)
        self.assertTrue(logged(srv, 'guard OFF'))

        def meta():
            r = get_service(srv.get_channel(), 'discovery', None)
            return [dict(n.metadata) for s in r.services for n in s.nodes]
        ms = wait_for(meta, what='self-registration')
        self.assertEqual(ms[0].get('auth'), 'off')
        srv.stop_clean()

    def test_guard_needs_auth(self):
        r = harness.run_binary(['--listen', '127.0.0.1:%d'
                                % harness.free_port()], env=GUARD_ON)
        self.assertEqual(r.code, 2, r.stderr)
        self.assertIn('--auth', r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)

    def test_credentials_readable_by_others_refused(self):
        d = tempfile.mkdtemp(prefix='platform-it-guard-')
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, 'creds.json')
        with open(path, 'w') as f:
            json.dump({'client_id': 'x', 'client_secret': 'hush-hush-42'}, f)
        os.chmod(path, 0o644)
        env = dict(GUARD_ON, PLATFORM_AUTH='127.0.0.1:1',
                   PLATFORM_CREDENTIALS=path)
        r = harness.run_binary(['--listen', '127.0.0.1:%d'
                                % harness.free_port()], env=env)
        self.assertEqual(r.code, 2, r.stderr)
        self.assertIn('--credentials', r.stderr)
        self.assertNotIn('hush-hush-42', r.stderr)


def main():
    if not ah.DATABASE:
        print('PLATFORM_TEST_DATABASE is not set: skipping guard tests')
        sys.exit(0)
    harness.run_tests()


if __name__ == '__main__':
    main()
