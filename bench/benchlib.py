"""benchlib: what the Python benches share: the servers they start
(each stopped by its pid at the end) and percentiles."""

import signal
import subprocess

PROCS = []


def stop_all():
    """SIGTERM to every server started, SIGKILL after 10 s."""
    for p in PROCS:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def start(args, env=None):
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, env=env)
    PROCS.append(p)
    return p


def pct(v, q):
    """The q-quantile (0..1) of v, nan for none."""
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))] if v else float('nan')
