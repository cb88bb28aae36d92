"""The table of a results file: figures, ratios, the targets of issue 7.

    python benchmarks/report.py var/bench/results-TIME.jsonl [MORE ...]
"""
import json
import sys

FS = 'remotetask-fs'
ZEO = 'remotetask-zeo'
PEERS = ('huey-sqlite', 'celery-redis', 'rq-redis')


def load(*paths):
    """The figures of one or more results files (a section run again
    later: its figures come after, and the later ones count)."""
    figures = []
    for path in paths:
        with open(path) as f:
            figures += [json.loads(line) for line in f
                        if line.startswith('{')]
    return figures


class Figures:

    def __init__(self, figures):
        self.figures = figures

    def all(self, system, metric, **match):
        return [f['value'] for f in self.figures
                if f['system'] == system and f['metric'] == metric
                and f['value'] is not None
                and all(f.get(k) == v for k, v in match.items())]

    def get(self, system, metric, **match):
        """The figure; measured more than once (a section run again), the
        last one."""
        values = self.all(system, metric, **match)
        return values[-1] if values else None

    def zeo_enqueue(self):
        return self.get(ZEO, 'enqueue', task_kind='noop')


def fmt(value, digits=0):
    if value is None:
        return '-'
    if isinstance(value, float) and digits == 0 and abs(value) < 100:
        digits = 1 if abs(value) >= 10 else 2
    return f'{value:,.{digits}f}'


def ratio(a, b):
    if a is None or b in (None, 0):
        return None
    return a / b


def table(header, rows):
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = '| ' + ' | '.join(str(h).ljust(w) for h, w in
                             zip(header, widths)) + ' |'
    out = [line, '|' + '|'.join('-' * (w + 2) for w in widths) + '|']
    for row in rows:
        out.append('| ' + ' | '.join(str(c).ljust(w) for c, w in
                                     zip(row, widths)) + ' |')
    return '\n'.join(out)


def main_table(F):
    rows = []
    names = {'huey-sqlite': 'Huey SqliteHuey, 1 worker thread',
             'celery-redis': 'Celery + Redis, --pool=solo',
             'rq-redis': 'RQ + Redis, SimpleWorker'}
    for peer in PEERS:
        version = next((f.get('version') for f in F.figures
                        if f['system'] == peer and f.get('version')), '')
        rows.append([f'{names[peer]} {version}'.strip(),
                     fmt(F.get(peer, 'enqueue')), fmt(F.get(peer, 'drain')),
                     f"{fmt(F.get(peer, 'latency_p50'))} / "
                     f"{fmt(F.get(peer, 'latency_p99'))}"])
    rows.append(['this package, FileStorage, processor thread',
                 fmt(F.get(FS, 'enqueue')), fmt(F.get(FS, 'drain')),
                 f"{fmt(F.get(FS, 'latency_p50'))} / "
                 f"{fmt(F.get(FS, 'latency_p99'))}"])
    zeo1 = dict(workers=1, task_kind='noop')
    rows.append(['this package, ZEO, 1 worker process',
                 fmt(F.zeo_enqueue()),
                 fmt(F.get(ZEO, 'drain_noop', workers=1)),
                 f"{fmt(F.get(ZEO, 'latency_p50', **zeo1))} / "
                 f"{fmt(F.get(ZEO, 'latency_p99', **zeo1))}"])
    rows.append(['this package, enqueue 1,000 jobs per transaction (FS)',
                 fmt(F.get(FS, 'enqueue_batch1000')), '', ''])
    rows.append(['this package, enqueue via XML-RPC over HTTP (FS)',
                 fmt(F.get(FS, 'enqueue_xmlrpc')), '', ''])
    rows.append(['raw ZODB one-key commits/s, FileStorage / ZEO',
                 f"{fmt(F.get(FS, 'raw_commit_1key'))} / "
                 f"{fmt(F.get(ZEO, 'raw_commit_1key'))}", '', ''])
    rows.append(['raw ZODB 100-key commits, keys/s, FileStorage / ZEO',
                 f"{fmt(F.get(FS, 'raw_commit_100key'))} / "
                 f"{fmt(F.get(ZEO, 'raw_commit_100key'))}", '', ''])
    rows.append(['the disk: fsync/s of a 512-byte append',
                 fmt(F.get(FS, 'fsync')), '', ''])
    return table(['system', 'enqueue/s', 'drain/s', 'latency p50 / p99 ms'],
                 rows)


def ratio_table(F):
    rows = []
    for what, ours in (('enqueue', F.get(FS, 'enqueue')),
                       ('drain', F.get(FS, 'drain'))):
        for peer in PEERS:
            rows.append([f'FS {what} / {peer} {what}',
                         fmt(ratio(ours, F.get(peer, what)), 2)])
    rows.append(['FS latency p50 / celery-redis p50', fmt(ratio(
        F.get(FS, 'latency_p50'), F.get('celery-redis', 'latency_p50')), 2)])
    rows.append(['FS enqueue / raw FS one-key commits', fmt(ratio(
        F.get(FS, 'enqueue'), F.get(FS, 'raw_commit_1key')), 2)])
    rows.append(['FS drain / raw FS one-key commits', fmt(ratio(
        F.get(FS, 'drain'), F.get(FS, 'raw_commit_1key')), 2)])
    rows.append(['FS enqueue x1000 / raw FS 100-key keys/s', fmt(ratio(
        F.get(FS, 'enqueue_batch1000'), F.get(FS, 'raw_commit_100key')), 2)])
    rows.append(['XML-RPC enqueue / FS enqueue', fmt(ratio(
        F.get(FS, 'enqueue_xmlrpc'), F.get(FS, 'enqueue')), 2)])
    rows.append(['ZEO enqueue / raw ZEO one-key commits', fmt(ratio(
        F.zeo_enqueue(),
        F.get(ZEO, 'raw_commit_1key')), 2)])
    rows.append(['ZEO drain, 1 worker / raw ZEO one-key commits', fmt(ratio(
        F.get(ZEO, 'drain_noop', workers=1),
        F.get(ZEO, 'raw_commit_1key')), 2)])
    return table(['ratio', 'value'], rows)


def zeo_table(F):
    rows = []
    for kind in ('noop', 'sleep10ms'):
        one = F.get(ZEO, f'drain_{kind}', workers=1)
        for workers in (1, 2, 4):
            drain = F.get(ZEO, f'drain_{kind}', workers=workers)
            rows.append([kind, workers, fmt(drain),
                         fmt(ratio(drain, one), 2),
                         fmt(F.get(ZEO, 'latency_p50', workers=workers,
                                   task_kind=kind)),
                         fmt(F.get(ZEO, 'latency_p99', workers=workers,
                                   task_kind=kind))])
    return table(['jobs', 'workers', 'drain/s', 'x 1 worker',
                  'latency p50 ms', 'p99 ms'], rows)


def sizes(F):
    return sorted({f['jobs'] for f in F.figures
                   if f['system'] == FS and f['metric'].startswith('page_')})


def page_metrics(F):
    seen = []
    for f in F.figures:
        if f['system'] == FS and f['metric'].startswith(
                ('page_', 'http_')) and f['metric'] not in seen:
            seen.append(f['metric'])
    return seen + ['cancel_one', 'cancel_all', 'clean']


def scale_table(F):
    all_sizes = sizes(F)
    if not all_sizes:
        return '(no job table figures)'
    small, large = all_sizes[0], all_sizes[-1]
    rows = []
    for metric in page_metrics(F):
        unit = next((f['unit'] for f in F.figures
                     if f['system'] == FS and f['metric'] == metric), '')
        values = [F.get(FS, metric, jobs=size) for size in all_sizes]
        loads = [([f.get('objects_loaded') for f in F.figures
                   if f['system'] == FS and f['metric'] == metric
                   and f['jobs'] == size] or [None])[-1]
                 for size in all_sizes]
        digits = 1 if unit == 'ms' else 2
        row = [f'{metric} ({unit})'] + [fmt(v, digits) for v in values]
        row.append(fmt(ratio(values[-1], values[0]), 1))
        row.append(' / '.join('-' if n is None else str(n) for n in loads)
                   if any(n is not None for n in loads) else '')
        rows.append(row)
    for metric in ('datafs_bytes_per_100k', 'rss_bytes_per_100k',
                   'build'):
        values = [F.get(FS, metric, jobs=size) for size in all_sizes]
        rows.append([metric] + [
            fmt(v / 1e6, 1) + ' MB' if v is not None and 'bytes' in metric
            else fmt(v) for v in values] + ['', ''])
    header = ['at jobs'] + [f'{s:,}' for s in all_sizes] + [
        f'{large:,} / {small:,}', 'objects loaded']
    return table(header, rows)


def targets(F):
    out = []

    def check(name, value, limit, holds):
        if value is None:
            out.append([name, '-', limit, 'not measured'])
        else:
            out.append([name, fmt(value, 2), limit,
                        'HOLDS' if holds(value) else 'missed'])
    check('FS drain / Huey-SQLite drain',
          ratio(F.get(FS, 'drain'), F.get('huey-sqlite', 'drain')),
          '>= 2', lambda v: v >= 2)
    check('FS enqueue / raw one-key commits',
          ratio(F.get(FS, 'enqueue'), F.get(FS, 'raw_commit_1key')),
          '>= 0.8', lambda v: v >= 0.8)
    check('FS enqueue x1000 / raw 100-key keys/s',
          ratio(F.get(FS, 'enqueue_batch1000'),
                F.get(FS, 'raw_commit_100key')), '>= 0.5',
          lambda v: v >= 0.5)
    celery = F.get('celery-redis', 'latency_p50')
    check('FS latency p50 ms (below Celery\'s)', F.get(FS, 'latency_p50'),
          f'< {fmt(celery)}' if celery else '< Celery',
          lambda v: celery is not None and v < celery)
    check('FS latency p99 ms', F.get(FS, 'latency_p99'), '< 5',
          lambda v: v < 5)
    check('ZEO drain, 1 worker / raw ZEO one-key commits',
          ratio(F.get(ZEO, 'drain_noop', workers=1),
                F.get(ZEO, 'raw_commit_1key')), '>= 3', lambda v: v >= 3)
    check('ZEO latency p50 ms, 1 worker',
          F.get(ZEO, 'latency_p50', workers=1, task_kind='noop'), '< 5',
          lambda v: v < 5)
    check('ZEO 10 ms jobs: drain 4 workers / 1 worker',
          ratio(F.get(ZEO, 'drain_sleep10ms', workers=4),
                F.get(ZEO, 'drain_sleep10ms', workers=1)), '>= 3',
          lambda v: v >= 3)
    all_sizes = sizes(F)
    if all_sizes:
        small, large = all_sizes[0], all_sizes[-1]
        note = f': {large:,} / {small:,} jobs'
        for metric in page_metrics(F):
            if metric.startswith(('page_', 'http_')):
                check(f'{metric}{note}',
                      ratio(F.get(FS, metric, jobs=large),
                            F.get(FS, metric, jobs=small)),
                      '<= 2', lambda v: v <= 2)
        check(f'cancel_one{note}',
              ratio(F.get(FS, 'cancel_one', jobs=large),
                    F.get(FS, 'cancel_one', jobs=small)),
              '<= 2 (does not grow)', lambda v: v <= 2)
        for metric in ('cancel_all', 'clean'):
            # Linear growth: time per job at the largest size at most
            # twice the time per job at the smallest.
            check(f'{metric} per job{note}',
                  ratio(ratio(F.get(FS, metric, jobs=large), large),
                        ratio(F.get(FS, metric, jobs=small), small)),
                  '<= 2 (linear)', lambda v: v <= 2)
    return table(['target of issue 7', 'measured', 'target', ''], out)


def render(figures):
    F = Figures(figures)
    parts = []
    run = [f for f in figures if f['system'] == 'run']
    machine = next((f for f in run if f['metric'] == 'machine'), None)
    total = next((f for f in run if f['metric'] == 'total'), None)
    if machine:
        parts.append(
            f"# {machine.get('started', '')}: {machine['value']} CPUs, "
            f"Python {machine.get('python')}, N={machine.get('n')}, "
            f"quick={machine.get('quick')}, load at start "
            f"{machine.get('load', 0):.1f}"
            + (f", took {total['value']:.0f} s, load at end "
               f"{total.get('load', 0):.1f}" if total else ''))
    for f in figures:
        if f['metric'] in ('skipped', 'timeout'):
            parts.append(f"# {f['system']} {f['metric']}: "
                         f"{f.get('reason', f['value'])}")
    parts += ['', main_table(F), '', ratio_table(F), '',
              'ZEO, remotetask worker processes:', zeo_table(F), '',
              'The job table (a third cancelled, the rest queued):',
              scale_table(F), '', targets(F)]
    return '\n'.join(parts)


if __name__ == '__main__':
    print(render(load(*sys.argv[1:])))
