"""TLS on the listener, optional mutual TLS, and a server's own client
(self-registration) over TLS, with certificates made by openssl for the
test."""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def openssl(*args, cwd):
    subprocess.run(['openssl'] + list(args), cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_pki(d):
    """A CA, a server certificate for 127.0.0.1/localhost (also usable as
    a client certificate, as a server's own client presents it) and a
    client certificate; plus a second CA nobody trusts."""
    ext = os.path.join(d, 'leaf.ext')
    with open(ext, 'w') as f:
        f.write('subjectAltName=IP:127.0.0.1,DNS:localhost\n'
                'extendedKeyUsage=serverAuth,clientAuth\n')
    for ca in ('ca', 'rogue'):
        openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days',
                '2', '-subj', '/CN=%s' % ca, '-keyout', ca + '.key',
                '-out', ca + '.pem', cwd=d)
    for leaf, ca in (('server', 'ca'), ('client', 'ca'),
                     ('rogue-client', 'rogue')):
        openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj',
                '/CN=%s' % leaf, '-keyout', leaf + '.key', '-out',
                leaf + '.csr', cwd=d)
        openssl('x509', '-req', '-in', leaf + '.csr', '-CA', ca + '.pem',
                '-CAkey', ca + '.key', '-CAcreateserial', '-days', '2',
                '-extfile', ext, '-out', leaf + '.pem', cwd=d)
    for key in os.listdir(d):
        if key.endswith('.key'):
            os.chmod(os.path.join(d, key), 0o600)


def read(d, name):
    with open(os.path.join(d, name), 'rb') as f:
        return f.read()


class TlsTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.pki = tempfile.mkdtemp(prefix='platform-tls-')
        cls.addClassCleanup(shutil.rmtree, cls.pki, True)
        make_pki(cls.pki)

    def path(self, name):
        return os.path.join(self.pki, name)

    def check(self, address, creds):
        ch = grpc.secure_channel(address, creds, options=[
            ('grpc.ssl_target_name_override', 'localhost')])
        try:
            P = harness.protos()
            m = ch.unary_unary(
                harness.HEALTH_PREFIX + 'Check',
                request_serializer=P.health.HealthCheckRequest
                .SerializeToString,
                response_deserializer=P.health.HealthCheckResponse.FromString)
            return m(P.health.HealthCheckRequest(), timeout=5).status
        finally:
            ch.close()

    def start(self, mtls):
        args = ['--tls-cert', self.path('server.pem'),
                '--tls-key', self.path('server.key')]
        if mtls:
            args += ['--tls-ca', self.path('ca.pem')]
        srv = harness.Server(discovery='self', extra_args=args, wait=False)
        self.addCleanup(srv.kill)
        ca = read(self.pki, 'ca.pem')
        creds = grpc.ssl_channel_credentials(
            ca, read(self.pki, 'client.key'), read(self.pki, 'client.pem'))
        harness.wait_for(lambda: self._serving(srv.address, creds),
                         what='TLS health check')
        return srv

    def _serving(self, address, creds):
        try:
            return self.check(address, creds) == 1
        except grpc.RpcError:
            return False

    def test_tls_listener(self):
        srv = self.start(mtls=False)
        ca = read(self.pki, 'ca.pem')
        self.assertEqual(
            self.check(srv.address, grpc.ssl_channel_credentials(ca)), 1)
        # A plaintext client cannot talk to a TLS listener...
        ch = grpc.insecure_channel(srv.address)
        with self.assertRaises(grpc.RpcError):
            ch.unary_unary(harness.HEALTH_PREFIX + 'Check')(b'', timeout=3)
        ch.close()
        # ...nor one that does not trust the server's CA.
        with self.assertRaises(grpc.RpcError):
            self.check(srv.address, grpc.ssl_channel_credentials(
                read(self.pki, 'rogue.pem')))
        srv.stop_clean()

    def test_mutual_tls(self):
        srv = self.start(mtls=True)
        ca = read(self.pki, 'ca.pem')
        # No client certificate: refused.
        with self.assertRaises(grpc.RpcError):
            self.check(srv.address, grpc.ssl_channel_credentials(ca))
        # A certificate from a CA the server does not trust: refused.
        with self.assertRaises(grpc.RpcError):
            self.check(srv.address, grpc.ssl_channel_credentials(
                ca, read(self.pki, 'rogue-client.key'),
                read(self.pki, 'rogue-client.pem')))
        # The server registered itself over mutual TLS with its own
        # certificate.
        creds = grpc.ssl_channel_credentials(
            ca, read(self.pki, 'client.key'), read(self.pki, 'client.pem'))
        ch = grpc.secure_channel(srv.address, creds, options=[
            ('grpc.ssl_target_name_override', 'localhost')])
        client = harness.DiscoveryClient(ch)

        def registered():
            try:
                return any(n.address == srv.address
                           for s in client.get('discovery').services
                           for n in s.nodes)
            except grpc.RpcError:
                return False
        harness.wait_for(registered, what='self-registration over mTLS')
        ch.close()
        srv.stop_clean()

    def test_key_never_logged(self):
        srv = self.start(mtls=False)
        srv.stop_clean()
        key = read(self.pki, 'server.key').decode()
        body = ''.join(key.strip().splitlines()[1:-1])[:64]
        self.assertNotIn(body, srv.stderr())
        self.assertNotIn('PRIVATE KEY', srv.stderr())



class DevCertsTest(unittest.TestCase):
    """scripts/certs: the development CA and per-server certificates the
    README's run command uses, made here in a scratch copy of scripts/."""

    def test_fleet_certificates(self):
        work = tempfile.mkdtemp(prefix='platform-certs-')
        self.addCleanup(shutil.rmtree, work, True)
        os.mkdir(os.path.join(work, 'scripts'))
        script = os.path.join(work, 'scripts', 'certs')
        shutil.copy(os.path.join(harness.SOURCE_DIR, 'scripts', 'certs'),
                    script)
        for _ in range(2):      # the second run keeps what exists
            subprocess.run([script, 'discovery', 'platformctl'], check=True,
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        d = subprocess.run([script, 'dir'], check=True, text=True,
                           stdout=subprocess.PIPE).stdout.strip()
        for key in ('ca-key.pem', 'discovery-key.pem',
                    'platformctl-key.pem'):
            self.assertEqual(os.stat(os.path.join(d, key)).st_mode & 0o077,
                             0, key + ' is readable by others')
        srv = harness.Server(discovery='self', wait=False, extra_args=[
            '--tls-cert', os.path.join(d, 'discovery.pem'),
            '--tls-key', os.path.join(d, 'discovery-key.pem'),
            '--tls-ca', os.path.join(d, 'ca.pem')])
        self.addCleanup(srv.kill)
        ca = read(d, 'ca.pem')
        ok = grpc.ssl_channel_credentials(
            ca, read(d, 'platformctl-key.pem'), read(d, 'platformctl.pem'))

        def status(creds):
            ch = grpc.secure_channel(srv.address, creds)
            try:
                P = harness.protos()
                return ch.unary_unary(
                    harness.HEALTH_PREFIX + 'Check',
                    request_serializer=P.health.HealthCheckRequest
                    .SerializeToString,
                    response_deserializer=P.health.HealthCheckResponse
                    .FromString)(P.health.HealthCheckRequest(),
                                 timeout=3).status
            except grpc.RpcError:
                return None
            finally:
                ch.close()
        # 127.0.0.1 is in the certificate: no name override needed.
        harness.wait_for(lambda: status(ok) == 1,
                         what='health over mTLS with the dev certificates')
        self.assertIsNone(status(grpc.ssl_channel_credentials(ca)),
                          'a client without a certificate got in')
        srv.stop_clean()

if __name__ == '__main__':
    harness.run_tests()
