"""Deploy checks: the container setup keeps up with the built servers.

Run by Debian's /usr/bin/python3 from meson with PLATFORM_BUILD_DIR and
PLATFORM_SOURCE_DIR. Checks that
  - docker-compose (Debian's 1.29) accepts deploy/docker-compose.yml,
    alone and with the development override docker-compose.dev.yml,
  - every server binary built (services/*/*-srv) has a compose service
    that runs it, with the guard and TLS on, its own volume of files
    from the `init` service, waiting for init and for what it needs to
    be healthy, and only flags and PLATFORM_* variables its --help lists,
  - the override turns the guard and TLS off for every server, and says
    loudly that it is insecure,
  - deploy/Dockerfile copies every one of them into the image, with
    platformctl and the init script,
  - scripts/run starts every one of them (its SERVERS list names it),
  - deploy/k8s/ (every YAML there and in templates/) is well-formed:
    every document names its apiVersion, kind and metadata.name; every
    server has a Deployment or StatefulSet (kv-srv a StatefulSet with a
    headless Service) whose readiness and liveness probes ask
    grpc.health.v1 on the container's port; selectors match pod labels;
    Services target ports that exist; every flag and variable is in the
    binary's --help; the guard and TLS are on; no Secret holds a
    real-looking key; a default-deny NetworkPolicy,
  - deploy/init.sh, run for real against the test PostgreSQL with the
    built binaries, makes certificates and credentials a real auth-srv
    takes over mutual TLS, and a second run changes nothing.
No Docker engine is needed: no image is built, no container started.
"""

import fnmatch
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import unittest

import harness

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get('PLATFORM_SOURCE_DIR') or \
    os.path.dirname(os.path.dirname(HERE))
BUILD_DIR = os.environ.get('PLATFORM_BUILD_DIR') or \
    os.path.join(SOURCE_DIR, 'build')

COMPOSE_FILE = os.path.join(SOURCE_DIR, 'deploy', 'docker-compose.yml')
COMPOSE_DEV_FILE = os.path.join(SOURCE_DIR, 'deploy',
                                'docker-compose.dev.yml')
INIT_SCRIPT = os.path.join(SOURCE_DIR, 'deploy', 'init.sh')
K8S_DIR = os.path.join(SOURCE_DIR, 'deploy', 'k8s')
K8S_NAMESPACE = 'platform'
# Where each server's own files are, in the compose file and in k8s.
SECRETS_DIR = '/etc/platform'
TLS_ENV = ('PLATFORM_TLS_CA', 'PLATFORM_TLS_CERT', 'PLATFORM_TLS_KEY')
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


def yaml_module():
    try:
        import yaml
    except ImportError:
        raise unittest.SkipTest('python3-yaml is not installed')
    return yaml


def compose_services(text=None):
    """{service name: its settings}, anchors and merge keys resolved:
    of COMPOSE_FILE, or of the YAML text given."""
    yaml = yaml_module()
    if text is None:
        with open(COMPOSE_FILE) as f:
            text = f.read()
    doc = yaml.safe_load(text)
    return doc.get('services') or {}


def compose_config(*files):
    """`docker-compose -f F... config`: the merged file's text."""
    if not shutil.which('docker-compose'):
        raise unittest.SkipTest('docker-compose is not installed')
    args = ['docker-compose']
    for f in files:
        args += ['-f', f]
    p = subprocess.run(args + ['config'], cwd=SOURCE_DIR,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=120)
    if p.returncode != 0:
        raise AssertionError('docker-compose config failed:\n' + p.stderr)
    return p.stdout


def service_argv(svc):
    return as_argv((svc or {}).get('entrypoint')) or \
        as_argv((svc or {}).get('command'))


def service_env(svc):
    env = (svc or {}).get('environment') or {}
    if isinstance(env, list):
        env = dict(e.split('=', 1) for e in env)
    return {k: '' if v is None else str(v) for k, v in env.items()}


def server_services(services):
    """{name: settings} of the services that run a *-srv binary."""
    return {name: svc for name, svc in services.items()
            if service_argv(svc) and
            os.path.basename(service_argv(svc)[0]).endswith('-srv')}


def binary_path(binary):
    """BUILD_DIR's path of a server binary or platformctl."""
    if binary == 'platformctl':
        return os.path.join(BUILD_DIR, 'cli', 'platformctl')
    return os.path.join(BUILD_DIR, 'services', binary[:-len('-srv')],
                        binary)


_help_cache = {}


def help_words(binary):
    """(flags, PLATFORM_* variables) the binary's --help lists."""
    if binary not in _help_cache:
        p = subprocess.run([binary_path(binary), '--help'],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=30,
                           env=harness.child_env())
        if p.returncode != 0:
            raise AssertionError('%s --help exited %d:\n%s'
                                 % (binary, p.returncode, p.stdout))
        _help_cache[binary] = (
            set(re.findall(r'(?<![\w-])--[a-z][a-z0-9-]*', p.stdout)),
            set(re.findall(r'\bPLATFORM_[A-Z0-9_]+', p.stdout)))
    return _help_cache[binary]


def mounts(svc):
    """{container path: volume} of the service's volumes."""
    out = {}
    for v in (svc or {}).get('volumes') or []:
        if isinstance(v, dict):
            out[v.get('target')] = v.get('source')
            continue
        parts = str(v).split(':')
        if len(parts) >= 2:
            out[parts[1]] = parts[0]
    return out


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

    def test_compose_guard_and_tls_on(self):
        """The base file is the secure one: every server speaks TLS with
        its own certificate, asks callers for one (a CA), has its own
        identity, and every server but auth-srv asks auth-srv for the
        guard's keys and rules. Nothing turns the guard off."""
        for name, svc in server_services(compose_services()).items():
            with self.subTest(service=name):
                env = service_env(svc)
                argv = service_argv(svc)
                self.assertNotIn('--insecure-no-auth', argv)
                self.assertIn(env.get('PLATFORM_INSECURE_NO_AUTH', ''),
                              ('', '0'))
                for k in TLS_ENV + ('PLATFORM_CREDENTIALS',):
                    self.assertTrue(env.get(k, '').startswith(
                        SECRETS_DIR + '/'), '%s: %s not under %s'
                        % (name, k, SECRETS_DIR))
                if argv[0] != 'auth-srv':
                    self.assertEqual(env.get('PLATFORM_AUTH'), 'auth:7072')

    def test_compose_flags_exist(self):
        """Every flag on a command line and every PLATFORM_* variable of
        a service running a binary of ours is one its --help lists."""
        for name, svc in compose_services().items():
            argv = service_argv(svc)
            if not argv or not (argv[0].endswith('-srv') or
                                argv[0] == 'platformctl'):
                continue
            with self.subTest(service=name):
                if not os.path.exists(binary_path(argv[0])):
                    self.skipTest('%s is not built' % argv[0])
                flags, envs = help_words(argv[0])
                for a in argv[1:]:
                    if a.startswith('--'):
                        self.assertIn(a.split('=', 1)[0], flags,
                                      '%s: %s --help has no %s'
                                      % (name, argv[0], a))
                for k in service_env(svc):
                    if k.startswith('PLATFORM_'):
                        self.assertIn(k, envs, '%s: %s --help has no %s'
                                      % (name, argv[0], k))

    def test_compose_init(self):
        """init runs deploy/init.sh (platform-init in the image) and
        writes each server's volume; every server waits for it to
        complete and mounts only its own volume, read-only."""
        services = compose_services()
        self.assertIn('init', services)
        init = services['init']
        self.assertEqual(service_argv(init)[0], 'platform-init')
        root = service_argv(init)[1]
        init_env = service_env(init)
        listed = init_env.get('PLATFORM_INIT_SERVERS', '').split()
        self.assertTrue(init_env.get('PLATFORM_DATABASE'))
        init_mounts = mounts(init)
        for name, svc in server_services(services).items():
            with self.subTest(service=name):
                deps = svc.get('depends_on') or {}
                self.assertIsInstance(deps, dict)
                self.assertEqual((deps.get('init') or {}).get('condition'),
                                 'service_completed_successfully')
                volume = mounts(svc).get(SECRETS_DIR)
                self.assertTrue(volume, '%s: nothing at %s'
                                % (name, SECRETS_DIR))
                self.assertIn(name, listed)
                self.assertEqual(init_mounts.get(root + '/' + name), volume)
                self.assertTrue(any(str(v).startswith(volume + ':') and
                                    str(v).endswith(':ro')
                                    for v in svc.get('volumes')))
                others = [n for n, s in server_services(services).items()
                          if n != name and
                          mounts(s).get(SECRETS_DIR) == volume]
                self.assertEqual(others, [], 'shares its volume')

    def test_compose_depends_on_healthy(self):
        """What a service waits to be healthy has a healthcheck; config
        and event wait for PostgreSQL, every server but auth-srv for
        auth-srv and all but auth and discovery for discovery."""
        services = compose_services()
        for name, svc in services.items():
            for dep, cond in (svc.get('depends_on') or {}).items():
                with self.subTest(service=name, depends_on=dep):
                    self.assertIn(dep, services)
                    if cond.get('condition') == 'service_healthy':
                        self.assertTrue(services[dep].get('healthcheck'))
        for name, svc in server_services(services).items():
            with self.subTest(service=name):
                deps = svc.get('depends_on') or {}
                env = service_env(svc)
                healthy = {d for d, c in deps.items()
                           if c.get('condition') == 'service_healthy'}
                if env.get('PLATFORM_DATABASE'):
                    self.assertIn('postgres', healthy)
                if name != 'auth':
                    self.assertIn('auth', healthy)
                if name not in ('auth', 'discovery'):
                    self.assertIn('discovery', healthy)

    @unittest.skipUnless(shutil.which('docker-compose'),
                         'docker-compose is not installed')
    def test_compose_dev_override(self):
        """The override validates, turns the guard and TLS off for every
        server of the base file, and says that it is insecure."""
        with open(COMPOSE_DEV_FILE) as f:
            head = f.read(400)
        self.assertIn('INSECURE', head)
        self.assertIn('DEVELOPMENT ONLY', head)
        merged = compose_services(compose_config(COMPOSE_FILE,
                                                 COMPOSE_DEV_FILE))
        base = server_services(compose_services())
        for name in base:
            with self.subTest(service=name):
                env = service_env(merged[name])
                self.assertEqual(env.get('PLATFORM_INSECURE_NO_AUTH'), '1')
                for k in TLS_ENV + ('PLATFORM_CREDENTIALS',
                                    'PLATFORM_AUTH'):
                    self.assertEqual(env.get(k, ''), '', k)

    def test_dockerfile_copies_init(self):
        words = dockerfile_words()
        self.assertIn('deploy/init.sh', words)
        self.assertIn('scripts/certs', words)

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


def k8s_documents():
    """[(file, document)] of every YAML in K8S_DIR and K8S_DIR/templates."""
    yaml = yaml_module()
    out = []
    files = sorted(glob.glob(os.path.join(K8S_DIR, '*.yaml')) +
                   glob.glob(os.path.join(K8S_DIR, 'templates', '*.yaml')))
    for path in files:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc is not None:
                    out.append((os.path.relpath(path, K8S_DIR), doc))
    return out


def k8s_workloads(docs):
    """[(file, document)] of the Deployments and StatefulSets."""
    return [(f, d) for f, d in docs
            if d.get('kind') in ('Deployment', 'StatefulSet')]


def pod_spec(workload):
    return workload['spec']['template']['spec']


def k8s_env(container):
    """{name: value} of a container's env (valueFrom as '<from>')."""
    return {e['name']: str(e.get('value', '<from>'))
            for e in container.get('env') or []}


def k8s_servers(docs):
    """{binary: (workload, container)} of the containers running a
    *-srv binary."""
    out = {}
    for _, w in k8s_workloads(docs):
        for c in pod_spec(w)['containers']:
            argv = c.get('command') or c.get('args') or []
            if argv and argv[0].endswith('-srv'):
                out[argv[0]] = (w, c)
    return out


def labels_match(selector, labels):
    return bool(selector) and all((labels or {}).get(k) == v
                                  for k, v in selector.items())


class KubernetesTest(unittest.TestCase):
    """deploy/k8s/, statically: there is no cluster here."""

    @classmethod
    def setUpClass(cls):
        cls.docs = k8s_documents()
        cls.binaries = server_binaries()

    def test_documents_are_named(self):
        self.assertTrue(self.docs, 'no YAML in ' + K8S_DIR)
        for f, d in self.docs:
            with self.subTest(file=f, kind=d.get('kind')):
                self.assertTrue(d.get('apiVersion'))
                self.assertTrue(d.get('kind'))
                self.assertTrue((d.get('metadata') or {}).get('name'))
                if d['kind'] != 'Namespace':
                    self.assertEqual(d['metadata'].get('namespace'),
                                     K8S_NAMESPACE)
        kinds = {d['kind'] for _, d in self.docs}
        for kind in ('Namespace', 'Service', 'Secret', 'NetworkPolicy',
                     'Job', 'StatefulSet', 'Deployment'):
            self.assertIn(kind, kinds)

    def test_every_server_runs(self):
        servers = k8s_servers(self.docs)
        for binary in self.binaries:
            with self.subTest(binary=binary):
                self.assertIn(binary, servers, '%s: no Deployment or '
                              'StatefulSet in %s runs it' % (binary, K8S_DIR))

    def test_kv_is_a_statefulset_with_a_headless_service(self):
        servers = k8s_servers(self.docs)
        if 'kv-srv' not in self.binaries:
            self.skipTest('kv-srv is not built')
        w, _ = servers['kv-srv']
        self.assertEqual(w['kind'], 'StatefulSet')
        name = w['spec'].get('serviceName')
        svcs = [d for _, d in self.docs if d['kind'] == 'Service' and
                d['metadata']['name'] == name]
        self.assertEqual(len(svcs), 1, 'no Service %r' % name)
        self.assertEqual(svcs[0]['spec'].get('clusterIP'), 'None')

    def test_monitor_replicas_advertise_their_own_names(self):
        """monitor-srv replicas hand reports to each other and ask each
        other for their part: each registers its own pod's name (a
        StatefulSet behind a headless Service), not a shared one."""
        servers = k8s_servers(self.docs)
        if 'monitor-srv' not in self.binaries:
            self.skipTest('monitor-srv is not built')
        w, c = servers['monitor-srv']
        self.assertEqual(w['kind'], 'StatefulSet')
        self.assertGreaterEqual(w['spec']['replicas'], 2)
        svc = w['spec']['serviceName']
        svcs = [d for _, d in self.docs if d['kind'] == 'Service' and
                d['metadata']['name'] == svc]
        self.assertEqual(svcs[0]['spec'].get('clusterIP'), 'None')
        self.assertEqual(k8s_env(c)['PLATFORM_ADVERTISE'],
                         '$(POD_NAME).%s.$(POD_NAMESPACE).svc:7076' % svc)

    def test_discovery_replicas_peer_and_are_all_used(self):
        servers = k8s_servers(self.docs)
        w, c = servers['discovery-srv']
        self.assertEqual(w['kind'], 'StatefulSet')
        n, name = w['spec']['replicas'], w['metadata']['name']
        self.assertGreaterEqual(n, 2, 'one discovery-srv is a single '
                                'point of failure')
        svc = w['spec']['serviceName']
        replicas = ['%s-%d.%s.$(POD_NAMESPACE).svc:7070' % (name, i, svc)
                    for i in range(n)]
        self.assertEqual(k8s_env(c)['PLATFORM_PEERS'].split(','), replicas)
        self.assertEqual(k8s_env(c)['PLATFORM_ADVERTISE'],
                         '$(POD_NAME).%s.$(POD_NAMESPACE).svc:7070' % svc)
        for binary, (_, other) in servers.items():
            with self.subTest(binary=binary):
                self.assertEqual(
                    k8s_env(other)['PLATFORM_DISCOVERY'].split(','),
                    replicas, '%s must be given every replica' % binary)

    def test_probes_ask_grpc_health_on_the_port(self):
        """Both probes check grpc.health.v1 on the container's port: the
        kubelet's grpc probe where the server is plaintext, else (mTLS:
        the kubelet's probe has no client certificate) platformctl health
        on it, with the server's own TLS settings."""
        for binary, (w, c) in k8s_servers(self.docs).items():
            ports = [p['containerPort'] for p in c.get('ports') or []]
            tls = all(k8s_env(c).get(k) for k in TLS_ENV)
            for probe in ('readinessProbe', 'livenessProbe'):
                with self.subTest(binary=binary, probe=probe):
                    self.assertEqual(len(ports), 1)
                    p = c.get(probe) or {}
                    if 'grpc' in p:
                        self.assertFalse(tls, 'the grpc probe cannot do TLS')
                        self.assertEqual(p['grpc'].get('port'), ports[0])
                    else:
                        self.assertEqual(
                            (p.get('exec') or {}).get('command'),
                            ['platformctl', 'health',
                             '127.0.0.1:%d' % ports[0]])

    def test_selectors_match_pods(self):
        workloads = k8s_workloads(self.docs)
        for f, w in workloads:
            with self.subTest(file=f, workload=w['metadata']['name']):
                self.assertTrue(labels_match(
                    w['spec']['selector'].get('matchLabels'),
                    w['spec']['template']['metadata'].get('labels')))
        for f, svc in ((f, d) for f, d in self.docs
                       if d['kind'] == 'Service'):
            with self.subTest(file=f, service=svc['metadata']['name']):
                sel = svc['spec'].get('selector')
                pods = [w for _, w in workloads if labels_match(
                    sel, w['spec']['template']['metadata'].get('labels'))]
                self.assertTrue(pods, 'selects no pod')
                for port in svc['spec']['ports']:
                    target = port.get('targetPort', port['port'])
                    have = [(p.get('name'), p['containerPort'])
                            for w in pods for c in pod_spec(w)['containers']
                            for p in c.get('ports') or []]
                    self.assertTrue(any(target in p for p in have),
                                    'targetPort %r is no container port'
                                    % target)
        for f, np in ((f, d) for f, d in self.docs
                      if d['kind'] == 'NetworkPolicy'):
            sel = np['spec']['podSelector'].get('matchLabels')
            if sel:
                with self.subTest(file=f, policy=np['metadata']['name']):
                    self.assertTrue(any(labels_match(
                        sel, w['spec']['template']['metadata'].get('labels'))
                        for _, w in workloads + [
                            (f2, d) for f2, d in self.docs
                            if d['kind'] == 'Job']), 'selects no pod')

    def test_server_settings(self):
        """Flags and variables the binary knows; TLS, the identity and
        (but auth-srv) the guard's auth-srv; files from the Secret
        platform-NAME that the init Job writes."""
        job = [d for _, d in self.docs if d['kind'] == 'Job']
        self.assertEqual(len(job), 1)
        init = pod_spec(job[0])['initContainers'][0]
        listed = k8s_env(init).get('PLATFORM_INIT_SERVERS', '').split()
        role = [d for _, d in self.docs if d['kind'] == 'Role' and
                d['metadata']['name'] == 'platform-init']
        self.assertEqual(len(role), 1)
        writable = {n for r in role[0]['rules']
                    for n in r.get('resourceNames') or []}
        for binary, (w, c) in k8s_servers(self.docs).items():
            name = binary[:-len('-srv')]
            with self.subTest(binary=binary):
                if not os.path.exists(binary_path(binary)):
                    self.skipTest('%s is not built' % binary)
                flags, envs = help_words(binary)
                for a in c['command'][1:]:
                    if a.startswith('--'):
                        self.assertIn(a.split('=', 1)[0], flags)
                env = k8s_env(c)
                for k in env:
                    if k.startswith('PLATFORM_'):
                        self.assertIn(k, envs, '%s --help has no %s'
                                      % (binary, k))
                self.assertNotIn('--insecure-no-auth', c['command'])
                self.assertIn(env.get('PLATFORM_INSECURE_NO_AUTH', ''),
                              ('', '0'))
                for k in TLS_ENV + ('PLATFORM_CREDENTIALS',):
                    self.assertTrue(env.get(k, '').startswith(
                        SECRETS_DIR + '/'), k)
                if name != 'auth':
                    self.assertTrue(env.get('PLATFORM_AUTH', '')
                                    .startswith('auth.'))
                secrets = [v['secret']['secretName']
                           for v in pod_spec(w).get('volumes') or []
                           if 'secret' in v]
                self.assertEqual(secrets, ['platform-' + name])
                self.assertIn('platform-' + name, writable)
                self.assertIn(name, listed)

    def test_no_real_secret(self):
        """Secrets here are templates: stringData placeholders only, no
        data, nothing that looks like a key, a certificate or a random
        secret."""
        secrets = [(f, d) for f, d in self.docs if d['kind'] == 'Secret']
        self.assertTrue(secrets)
        for f, d in secrets:
            with self.subTest(file=f, secret=d['metadata']['name']):
                self.assertNotIn('data', d)
                for k, v in (d.get('stringData') or {}).items():
                    self.assertIn('REPLACE_', str(v), k)
                    # No run of 20+ base64/hex characters: a real key.
                    self.assertIsNone(re.search(
                        r'[A-Za-z0-9+/=_-]{20,}',
                        str(v).replace('REPLACE_WITH_', '')), k)
        for path in glob.glob(os.path.join(K8S_DIR, '**', '*.yaml'),
                              recursive=True):
            with open(path) as f:
                text = f.read()
            with self.subTest(file=path):
                self.assertNotIn('PRIVATE KEY', text)
                self.assertNotIn('BEGIN CERTIFICATE', text)

    def test_network_policy(self):
        """Deny by default; PostgreSQL only from the fleet."""
        pols = [d for _, d in self.docs if d['kind'] == 'NetworkPolicy']
        self.assertTrue(any(p['spec']['podSelector'] == {} and
                            sorted(p['spec']['policyTypes']) ==
                            ['Egress', 'Ingress'] and
                            not p['spec'].get('ingress') and
                            not p['spec'].get('egress') for p in pols),
                        'no default-deny NetworkPolicy')
        pg = [p for p in pols if (p['spec']['podSelector'].get(
            'matchLabels') or {}).get('app.kubernetes.io/name') ==
            'postgres']
        self.assertEqual(len(pg), 1)
        for rule in pg[0]['spec']['ingress']:
            for peer in rule['from']:
                self.assertEqual(list(peer), ['podSelector'])


class InitScriptTest(unittest.TestCase):
    """deploy/init.sh for real: the built binaries, a fresh schema of the
    test PostgreSQL, a scratch folder."""

    SERVERS = ('discovery', 'config', 'auth', 'event', 'kv')

    @classmethod
    def setUpClass(cls):
        if not os.environ.get('PLATFORM_TEST_DATABASE'):
            raise unittest.SkipTest('PLATFORM_TEST_DATABASE is not set')
        import auth_harness
        cls.ah = auth_harness
        cls.schema, cls.database = auth_harness.new_schema()
        cls.dir = tempfile.mkdtemp(prefix='platform-init-')
        cls.ctl_dir = tempfile.mkdtemp(prefix='platform-init-ctl-')

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, True)
        shutil.rmtree(cls.ctl_dir, True)
        cls.ah.drop_schema(cls.schema)

    def init(self):
        env = harness.child_env({
            'PLATFORM_DATABASE': self.database,
            'PLATFORM_INIT_BUILD': BUILD_DIR,
            'PLATFORM_INIT_AUTH_PORT': str(harness.free_port())})
        p = subprocess.run([INIT_SCRIPT, self.dir], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=120)
        self.assertEqual(p.returncode, 0, 'init.sh failed:\n' + p.stdout)
        self.assertEqual(harness.sanitizer_findings(p.stdout), [])
        return p.stdout

    def files(self):
        out = {}
        for root, _, names in os.walk(self.dir):
            for n in names:
                path = os.path.join(root, n)
                with open(path, 'rb') as f:
                    out[os.path.relpath(path, self.dir)] = \
                        (os.stat(path).st_mode & 0o777, f.read())
        return out

    def login(self, auth, name):
        """platformctl login over mTLS with name's credentials.json, as
        platformctl (its certificate from init); the Run."""
        d = os.path.join(self.dir, 'platformctl')
        env = {'XDG_CONFIG_HOME': tempfile.mkdtemp(dir=self.ctl_dir),
               'PLATFORM_TLS_CA': os.path.join(d, 'ca.crt'),
               'PLATFORM_TLS_CERT': os.path.join(d, 'tls.crt'),
               'PLATFORM_TLS_KEY': os.path.join(d, 'tls.key')}
        return harness.run_binary(
            ['--auth', auth.address, 'login', '--credentials',
             os.path.join(self.dir, name, 'credentials.json')],
            binary=binary_path('platformctl'), env=env)

    def test_init(self):
        out = self.init()
        first = self.files()
        for name in self.SERVERS + ('platformctl',):
            for f, mode in (('ca.crt', 0o644), ('tls.crt', 0o644),
                            ('tls.key', 0o600)):
                self.assertEqual(first[name + '/' + f][0], mode,
                                 name + '/' + f)
        for name in self.SERVERS:
            self.assertEqual(first[name + '/credentials.json'][0], 0o600)
        self.assertEqual(first['auth/kek'][0], 0o600)
        self.assertEqual(first['platformctl/admin.json'],
                         first['auth/credentials.json'])
        self.assertEqual(first['ca/ca-key.pem'][0], 0o600)
        for name, (_, data) in first.items():
            if name.endswith('credentials.json'):
                self.assertNotIn(json.loads(data)['client_secret'], out,
                                 name + ': the secret is in the output')

        # Again: nothing changes.
        self.init()
        self.assertEqual(self.files(), first)

        # auth-srv as compose runs it: TLS, mTLS, the admin's identity,
        # the kek the first start sealed the signing keys with.
        a = os.path.join(self.dir, 'auth')
        auth = harness.Server(
            binary=binary_path('auth-srv'), wait=False,
            env=dict(harness.GUARD_ON, PLATFORM_DATABASE=self.database),
            extra_args=['--kek-file', os.path.join(a, 'kek'),
                        '--tls-ca', os.path.join(a, 'ca.crt'),
                        '--tls-cert', os.path.join(a, 'tls.crt'),
                        '--tls-key', os.path.join(a, 'tls.key'),
                        '--credentials', os.path.join(a, 'credentials.json')])
        self.addCleanup(auth.kill)
        harness.wait_for(lambda: self.login(auth, 'auth').code == 0,
                         timeout=60, what='the admin logged in over mTLS')
        for name in self.SERVERS:
            r = self.login(auth, name)
            self.assertEqual(r.code, 0, '%s: %s' % (name, r.stderr))
            self.assertIn('logged in as %s ' % (
                'admin' if name == 'auth' else name + '-srv'),
                r.stdout + r.stderr)
        self.assertIn('kv.peer', (lambda r: r.stdout + r.stderr)(
            self.login(auth, 'kv')))

        # A lost credentials file: the account gets a new secret.
        os.unlink(os.path.join(self.dir, 'config', 'credentials.json'))
        self.init()
        again = self.files()
        self.assertNotEqual(again['config/credentials.json'],
                            first['config/credentials.json'])
        self.assertEqual(self.login(auth, 'config').code, 0)
        del again['config/credentials.json'], first['config/credentials.json']
        self.assertEqual(again, first)
        auth.stop_clean()


class InitAsRootTest(unittest.TestCase):
    """deploy/init.sh as compose's init runs it: as root with
    PLATFORM_INIT_USER, it hands the folders to that user (here nobody)
    and makes everything as that user."""

    @unittest.skipUnless(os.geteuid() == 0, 'not root')
    def test_hands_over(self):
        import pwd
        import auth_harness
        if not os.environ.get('PLATFORM_TEST_DATABASE'):
            self.skipTest('PLATFORM_TEST_DATABASE is not set')
        try:
            nobody = pwd.getpwnam('nobody')
        except KeyError:
            self.skipTest('no user nobody')
        schema, database = auth_harness.new_schema()
        self.addCleanup(auth_harness.drop_schema, schema)
        work = tempfile.mkdtemp(prefix='platform-init-root-')
        self.addCleanup(shutil.rmtree, work, True)
        os.chmod(work, 0o755)       # nobody goes through to its folder
        out = os.path.join(work, 'out')
        p = subprocess.run(
            [INIT_SCRIPT, out], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, universal_newlines=True, timeout=120,
            env=harness.child_env({
                'PLATFORM_DATABASE': database,
                'PLATFORM_INIT_BUILD': BUILD_DIR,
                'PLATFORM_INIT_USER': 'nobody',
                'PLATFORM_INIT_AUTH_PORT': str(harness.free_port())}))
        self.assertEqual(p.returncode, 0, 'init.sh failed:\n' + p.stdout)
        for root, dirs, files in os.walk(out):
            for n in dirs + files + ['.']:
                st = os.stat(os.path.join(root, n))
                self.assertEqual((st.st_uid, st.st_gid),
                                 (nobody.pw_uid, nobody.pw_gid),
                                 os.path.join(root, n))
        self.assertTrue(os.path.exists(
            os.path.join(out, 'kv', 'credentials.json')))


if __name__ == '__main__':
    harness.run_tests()
