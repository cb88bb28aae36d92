"""``make bench``: this package and its peers in one run (issue 7).

    python benchmarks/run.py [SECTION ...]      # default: all sections
    python benchmarks/run.py --report FILE ...  # the table of results files

Sections (each a process of its own): ``peers`` (Huey, Celery, RQ),
``fs`` (FileStorage, processor thread in process), ``xmlrpc``, ``zeo``
(worker processes), ``tables`` (the Jobs page at 10,000 to 1,000,000
jobs).  Every figure is one JSON line, on stdout and in
``var/bench/results-TIME.jsonl``; then the table with the ratios to the
peers and to the raw commit rate, and whether each target of issue 7
holds.  Settings: see ``common.py`` (BENCH_N, BENCH_QUICK, ...) and
``docs/benchmarks.rst``.
"""
import json
import os
import platform
import subprocess
import sys
import threading
import time

import common

SECTIONS = {
    'peers': ['peers.py'],
    'fs': ['ours.py', 'fs'],
    'xmlrpc': ['ours.py', 'xmlrpc'],
    'zeo': ['ours.py', 'zeo'],
    'tables': ['tables.py'],
}
#: A section that runs longer than this (seconds) is stopped, its figures
#: so far kept: a run stays bounded on a busy machine.  BENCH_TIMEOUT
#: scales them all (e.g. BENCH_TIMEOUT=2 doubles them).
LIMITS = {'peers': 600, 'fs': 600, 'xmlrpc': 600, 'zeo': 1200,
          'tables': 1800}
SCALE = float(os.environ.get('BENCH_TIMEOUT', 1))


def run_section(name, out, log):
    args = [sys.executable, os.path.join(common.HERE, SECTIONS[name][0]),
            *SECTIONS[name][1:]]
    started = time.monotonic()
    with open(log, 'ab') as err:
        process = subprocess.Popen(args, stdout=subprocess.PIPE,
                                   stderr=err, env=common.environment(),
                                   cwd=common.HERE)
        timedOut = []

        def stop():
            # Our own child, by its PID: SIGTERM first, so that it stops
            # the servers and workers it started (common.Processes).
            timedOut.append(True)
            process.terminate()
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
        watchdog = threading.Timer(LIMITS[name] * SCALE, stop)
        watchdog.start()
        try:
            for line in process.stdout:
                line = line.decode(errors='replace').strip()
                if line.startswith('{'):
                    print(line, flush=True)
                    out.write(line + '\n')
                    out.flush()
                else:
                    err.write((line + '\n').encode())
            process.wait()
        finally:
            watchdog.cancel()
        if timedOut:
            figure = dict(system=name, metric='timeout',
                          value=LIMITS[name] * SCALE, unit='s')
            print(json.dumps(figure), flush=True)
            out.write(json.dumps(figure) + '\n')
    elapsed = time.monotonic() - started
    figure = dict(system='run', metric=f'section_{name}', value=round(
        elapsed, 1), unit='s', returncode=process.returncode)
    print(json.dumps(figure), flush=True)
    out.write(json.dumps(figure) + '\n')
    if process.returncode:
        print(f'# section {name} failed ({process.returncode}); see {log}',
              file=sys.stderr)


def main(argv):
    if argv[:1] == ['--report']:
        import report
        print(report.render(report.load(*argv[1:])))
        return 0
    sections = argv or list(SECTIONS)
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        print(f'unknown sections: {", ".join(sorted(unknown))}; choose '
              f'from {", ".join(SECTIONS)}', file=sys.stderr)
        return 2
    directory = os.path.join(os.getcwd(), 'var', 'bench')
    os.makedirs(directory, exist_ok=True)
    stamp = time.strftime('%Y%m%d-%H%M%S')
    results = os.environ.get('BENCH_OUT') or os.path.join(
        directory, f'results-{stamp}.jsonl')
    log = os.path.join(directory, f'log-{stamp}.txt')
    started = time.monotonic()
    with open(results, 'w') as out:
        machine = dict(system='run', metric='machine', value=os.cpu_count(),
                       unit='cpus', python=platform.python_version(),
                       quick=common.QUICK, n=common.N,
                       load=os.getloadavg()[0], sizes=common.SIZES,
                       started=time.strftime('%Y-%m-%d %H:%M:%S %Z'))
        print(json.dumps(machine), flush=True)
        out.write(json.dumps(machine) + '\n')
        for name in sections:
            run_section(name, out, log)
        total = dict(system='run', metric='total', value=round(
            time.monotonic() - started, 1), unit='s',
            load=os.getloadavg()[0])
        print(json.dumps(total), flush=True)
        out.write(json.dumps(total) + '\n')
    import report
    table = report.render(report.load(results))
    with open(results[:-len('.jsonl')] + '.txt', 'w') as f:
        f.write(table + '\n')
    print()
    print(table)
    print(f'\n# figures: {results}\n# log: {log}')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
