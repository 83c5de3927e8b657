"""Deploy checks: the container setup keeps up with the built servers.

Run by Debian's /usr/bin/python3 from meson with PLATFORM_BUILD_DIR and
PLATFORM_SOURCE_DIR. Checks that
  - docker-compose (Debian's 1.29) accepts deploy/docker-compose.yml,
  - every server binary built (services/*/*-srv) has a compose service
    that runs it,
  - deploy/Dockerfile copies every one of them into the image,
  - scripts/run starts every one of them (its SERVERS list names it).
No Docker engine is needed: nothing is built or started.
"""

import fnmatch
import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get('PLATFORM_SOURCE_DIR') or \
    os.path.dirname(os.path.dirname(HERE))
BUILD_DIR = os.environ.get('PLATFORM_BUILD_DIR') or \
    os.path.join(SOURCE_DIR, 'build')

COMPOSE_FILE = os.path.join(SOURCE_DIR, 'deploy', 'docker-compose.yml')
DOCKERFILE = os.path.join(SOURCE_DIR, 'deploy', 'Dockerfile')
RUN_SCRIPT = os.path.join(SOURCE_DIR, 'scripts', 'run')


def server_binaries():
    """Names of the executables BUILD_DIR/services/*/*-srv."""
    paths = glob.glob(os.path.join(BUILD_DIR, 'services', '*', '*-srv'))
    return sorted(os.path.basename(p) for p in paths
                  if os.path.isfile(p) and os.access(p, os.X_OK))


def as_argv(value):
    """A compose command/entrypoint (string or list) as a list."""
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def compose_services():
    """{service name: its settings}, anchors and merge keys resolved."""
    try:
        import yaml
    except ImportError:
        raise unittest.SkipTest('python3-yaml is not installed')
    with open(COMPOSE_FILE) as f:
        doc = yaml.safe_load(f)
    return doc.get('services') or {}


def runs_binary(service, binary):
    """True if the service's entrypoint (or else its command) runs
    binary, by bare name or by path."""
    argv = as_argv(service.get('entrypoint')) or \
        as_argv(service.get('command'))
    return bool(argv) and os.path.basename(argv[0]) == binary


def dockerfile_words():
    """Every word of the Dockerfile outside comments, quotes and JSON
    brackets stripped, so that both names and globs can be matched."""
    words = []
    with open(DOCKERFILE) as f:
        for line in f:
            if line.lstrip().startswith('#'):
                continue
            for w in re.split(r'[\s,\[\]]+', line):
                w = w.strip('\'"\\;')
                if w:
                    words.append(w)
    return words


class DeployTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.binaries = server_binaries()

    def test_build_has_servers(self):
        self.assertIn('discovery-srv', self.binaries,
                      'no server binary under %s/services; '
                      'is PLATFORM_BUILD_DIR a built tree?' % BUILD_DIR)

    @unittest.skipUnless(shutil.which('docker-compose'),
                         'docker-compose is not installed')
    def test_compose_config_validates(self):
        p = subprocess.run(
            ['docker-compose', '-f', COMPOSE_FILE, 'config', '-q'],
            cwd=SOURCE_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            universal_newlines=True, timeout=120)
        self.assertEqual(p.returncode, 0,
                         'docker-compose config failed:\n' + p.stdout)

    def test_compose_runs_every_server(self):
        services = compose_services()
        for binary in self.binaries:
            with self.subTest(binary=binary):
                users = [name for name, svc in services.items()
                         if runs_binary(svc or {}, binary)]
                self.assertTrue(users, '%s: no service in %s runs it'
                                % (binary, COMPOSE_FILE))

    def test_compose_server_settings(self):
        """Each server service listens, advertises, health-checks and
        finds discovery consistently."""
        services = compose_services()
        for name, svc in services.items():
            argv = as_argv((svc or {}).get('entrypoint')) or \
                as_argv((svc or {}).get('command'))
            if not argv or not os.path.basename(argv[0]).endswith('-srv'):
                continue
            with self.subTest(service=name):
                env = svc.get('environment') or {}
                if isinstance(env, list):
                    env = dict(e.split('=', 1) for e in env)
                listen = str(env.get('PLATFORM_LISTEN', ''))
                self.assertRegex(listen, r'^0\.0\.0\.0:\d+$')
                port = listen.rsplit(':', 1)[1]
                self.assertEqual(env.get('PLATFORM_ADVERTISE'),
                                 '%s:%s' % (name, port))
                self.assertEqual(env.get('PLATFORM_DISCOVERY'),
                                 'discovery:7070')
                test = as_argv((svc.get('healthcheck') or {}).get('test'))
                self.assertIn('127.0.0.1:' + port, test)

    def test_dockerfile_copies_every_server(self):
        words = dockerfile_words()
        # File name globs such as '*-srv'; a bare '*' (as in /out/*)
        # covers anything and so proves nothing.
        globs = [os.path.basename(w.rstrip('/')) for w in words
                 if '*' in w]
        globs = [g for g in globs if g.strip('*?')]
        for binary in self.binaries:
            with self.subTest(binary=binary):
                covered = binary in words or any(
                    fnmatch.fnmatchcase(binary, g) for g in globs)
                self.assertTrue(covered, '%s: %s neither names it nor has '
                                'a glob that matches it'
                                % (binary, DOCKERFILE))

    def test_dockerfile_copies_platformctl(self):
        self.assertIn('platformctl', ' '.join(dockerfile_words()))

    def test_run_script_starts_every_server(self):
        with open(RUN_SCRIPT) as f:
            text = f.read()
        m = re.search(r'^SERVERS=\((.*?)^\)', text, re.M | re.S)
        self.assertIsNotNone(m, 'no SERVERS=( ... ) list in scripts/run')
        names = set(re.findall(r'"\s*([a-z0-9_-]+)\s+\d+\s*"', m.group(1)))
        for binary in self.binaries:
            with self.subTest(binary=binary):
                self.assertIn(binary[:-len('-srv')], names,
                              '%s: not in the SERVERS list of scripts/run'
                              % binary)


if __name__ == '__main__':
    result = unittest.main(verbosity=2, exit=False).result
    sys.exit(0 if result.wasSuccessful() else 1)
