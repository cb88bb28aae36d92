"""What the benchmark scripts share: settings, figures, processes, timing.

Every figure is one JSON line on stdout (``emit``); ``run.py`` collects
them and prints the table.  The settings come from the environment, so
``make bench BENCH_N=1000`` and the scripts run alone agree:

BENCH_N           jobs of the enqueue and drain runs (default 5000)
BENCH_QUICK       1: small sizes everywhere, for trying the harness
BENCH_LATENCY_N   jobs of a latency run (default 200, sent at BENCH_RATE/s)
BENCH_RATE        jobs per second of a latency run (default 20)
BENCH_SLEEP_N     jobs per worker of the 10 ms drain runs over ZEO (500)
BENCH_SIZES       job table sizes for the Jobs page (default
                  10000,100000,1000000)
"""
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time


HERE = os.path.dirname(os.path.abspath(__file__))
QUICK = os.environ.get('BENCH_QUICK', '') not in ('', '0')


def setting(name, default, quick=None):
    value = os.environ.get(name)
    if value:
        return type(default)(value) if not isinstance(default, str) else value
    return quick if QUICK and quick is not None else default


N = setting('BENCH_N', 5000, quick=1000)
LATENCY_N = setting('BENCH_LATENCY_N', 200, quick=60)
RATE = setting('BENCH_RATE', 20.0)
SLEEP_N = setting('BENCH_SLEEP_N', 500, quick=200)
SIZES = [int(s) for s in setting(
    'BENCH_SIZES', '10000,100000,1000000', quick='1000,10000,100000'
).split(',')]


# -- figures ------------------------------------------------------------------

def emit(system, metric, value, unit, **extra):
    """Print one figure as a JSON line (and return it)."""
    figure = dict(system=system, metric=metric,
                  value=round(value, 3) if isinstance(value, float)
                  else value, unit=unit, **extra)
    print(json.dumps(figure), flush=True)
    return figure


def skip(system, reason):
    """Say (as a figure line) that a system was not measured."""
    print(json.dumps(dict(system=system, metric='skipped', value=None,
                          unit=None, reason=reason)), flush=True)


def percentile(values, p):
    """The p-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return float('nan')
    rank = max(1, min(len(ordered), round(p / 100.0 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def rss_bytes():
    """The resident set size of this process now (Linux), in bytes."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# -- start times, recorded by the tasks --------------------------------------

class StartLog:
    """Where tasks note when they started: ``DIR/starts-PID.log``.

    The same for every system: the task appends ``KEY TIME\\n`` (its key
    and ``time.time()``) with one ``os.write`` to a file of its own
    process, opened once.  That costs a system call of a few
    microseconds per job, for peers and this package alike.
    """

    _fd = None
    _pid = None

    @classmethod
    def note(cls, key):
        now = time.time()
        if cls._pid != os.getpid():
            directory = os.environ['BENCH_STARTS']
            cls._fd = os.open(
                os.path.join(directory, f'starts-{os.getpid()}.log'),
                os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            cls._pid = os.getpid()
        os.write(cls._fd, b'%s %.6f\n' % (str(key).encode(), now))


def read_starts(directory):
    """{key: first start time} over all start logs in ``directory``."""
    starts = {}
    for name in os.listdir(directory):
        if name.startswith('starts-'):
            with open(os.path.join(directory, name), 'rb') as f:
                for line in f:
                    fields = line.split()
                    # (A line not ended yet, or not one of ours.)
                    if line.endswith(b'\n') and len(fields) == 2:
                        key, when = fields
                        key = key.decode()
                        when = float(when)
                        if key not in starts or when < starts[key]:
                            starts[key] = when
    return starts


def clear_starts(directory):
    for name in os.listdir(directory):
        if name.startswith('starts-'):
            os.remove(os.path.join(directory, name))


def wait_starts(directory, keys, stall=60.0):
    """Wait until every key in ``keys`` started; return the starts.

    A busy machine is slow, not stuck: this gives up only when no job
    started for ``stall`` seconds (run.py bounds the whole section).
    """
    keys = set(keys)
    seen = -1
    deadline = time.monotonic() + stall
    while True:
        starts = read_starts(directory)
        if keys <= set(starts):
            return starts
        if len(starts) != seen:
            seen = len(starts)
            deadline = time.monotonic() + stall
        elif time.monotonic() > deadline:
            raise TimeoutError(
                f'{len(keys - set(starts))} of {len(keys)} jobs did not '
                f'start; none started for {stall:.0f} s')
        time.sleep(0.05)


def drain_rate(starts):
    """Jobs per second between the first and the last job's start."""
    times = sorted(starts)
    if len(times) < 2 or times[-1] == times[0]:
        return float('nan')
    return (len(times) - 1) / (times[-1] - times[0])


def paced(count, rate, enqueue):
    """Call ``enqueue(i)`` ``count`` times at ``rate``/s; return
    {str(i): time just before the call}."""
    sent = {}
    interval = 1.0 / rate
    begin = time.monotonic()
    for i in range(count):
        pause = begin + i * interval - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        key = f'L{i}'
        sent[key] = time.time()
        enqueue(key)
    return sent


def latency_figures(system, sent, starts, **extra):
    ms = [(starts[k] - sent[k]) * 1000.0 for k in sent]
    emit(system, 'latency_p50', percentile(ms, 50), 'ms', jobs=len(ms),
         **extra)
    emit(system, 'latency_p99', percentile(ms, 99), 'ms', jobs=len(ms),
         **extra)


# -- processes ----------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30.0, process=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f'process {process.pid} ended '
                               f'({process.returncode}) before listening')
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f'nothing listens on 127.0.0.1:{port}')


def venv_bin(name):
    """A script of the interpreter's environment (.venv/bin/NAME)."""
    return os.path.join(os.path.dirname(sys.executable), name)


class Processes:
    """Processes this harness started; stopped by PID, always reaped."""

    def __init__(self):
        self.started = []

    def start(self, args, log, env=None, cwd=None):
        out = open(log, 'ab')
        process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=env, cwd=cwd)
        out.close()
        self.started.append(process)
        return process

    def stop(self, process, timeout=30.0):
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
        if process in self.started:
            self.started.remove(process)

    def stop_all(self):
        for process in reversed(list(self.started)):
            self.stop(process)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop_all()


def stop_on_sigterm():
    """SIGTERM ends a section like an exception, so that ``finally``
    blocks stop the processes it started (run.py's time limit)."""
    def handler(signum, frame):
        raise SystemExit(f'stopped by signal {signum}')
    signal.signal(signal.SIGTERM, handler)


def environment(**changes):
    env = dict(os.environ)
    env['PYTHONUNBUFFERED'] = '1'
    env['PYTHONPATH'] = os.pathsep.join(
        [HERE] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep)
                  if p])
    env.update(changes)
    return env
