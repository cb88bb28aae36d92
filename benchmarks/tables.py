"""The job table at 10,000, 100,000 and 1,000,000 jobs.

    python benchmarks/tables.py

The table grows in steps to each size of BENCH_SIZES (1,000 jobs per
transaction, every third one cancelled at once, the rest queued: built
with ``service.add`` and ``service.cancel``).  At each size:

* ``datafs_bytes`` and ``rss_bytes`` (of this process, database cache of
  10,000 objects), also per 100,000 jobs;
* ``page_*``: one page (50 jobs, the ZMI's default) of ``listJobs`` --
  unfiltered and filtered by status or task, first and late (90% in),
  ascending and descending -- with the ``countJobs`` the page shows; the
  late pages also as the Jobs tab's Previous/Next links reach them, by a
  cursor (``*_late_cursor``: ``listJobs(after=)``);
  each after emptying the connection's cache (``cold``), with the number
  of objects it loaded (``getTransferCounts``), the figure that must not
  grow with the table;
* ``http_*``: the same pages as the ZMI renders them, ``GET
  .../tasks/@@jobs.html?...`` from ``remotetask serve`` on that Data.fs
  (first request, then the median of three); the late pages by their
  offset (``jobs-batchStart``, a link made by hand) and as the tab's
  links reach them (``*_late_link``: with the cursor of the row before);
* ``cancel_one``, ``cancel_all``, ``clean``: seconds, commit included, on
  a ``DemoStorage`` over the table, so that the table is left as it was
  for the next size.
"""
import base64
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request

import transaction

import common
from common import emit
import ours

SYSTEM = 'remotetask-fs'
PAGE = 50


def grow(service, have, size):
    """Add jobs up to ``size``: 1,000 per transaction, a third cancelled."""
    for start in range(have, size, 1000):
        for i in range(start, min(start + 1000, size)):
            jobid = service.add('bench.noop', f'T{i}')
            if i % 3 == 0:
                service.cancel(jobid)
        transaction.commit()


def variants(count):
    """(name, listJobs arguments) of the pages of the Jobs tab."""
    late = int(count * 0.9) // PAGE * PAGE
    queued = count - (count + 2) // 3
    qlate = int(queued * 0.9) // PAGE * PAGE
    return [
        ('unfiltered_first', dict()),
        ('unfiltered_late', dict(start=late)),
        ('unfiltered_first_desc', dict(reverse=True)),
        ('unfiltered_late_desc', dict(start=late, reverse=True)),
        ('status_first', dict(status='queued')),
        ('status_late', dict(status='queued', start=qlate)),
        ('status_first_desc', dict(status='queued', reverse=True)),
        ('status_late_desc', dict(status='queued', start=qlate,
                                  reverse=True)),
        ('task_first', dict(task='bench.noop')),
        ('task_late', dict(task='bench.noop', start=late)),
    ]


def cursor_variants(service, count):
    """The late pages as the Jobs tab reaches them: by the cursor of the
    row before them (``listJobs(after=)``), where the service has it."""
    if not hasattr(service, 'cursor'):
        return []
    found = []
    for name, kw in variants(count):
        if 'start' not in kw:
            continue
        kw = dict(kw)
        start = kw.pop('start')
        before = service.listJobs(start=start - 1, size=1, **kw)[0]
        found.append((name + '_cursor', dict(
            kw, after=service.cursor(before, kw.get('status'),
                                     kw.get('task')))))
    return found


def page_api(conn, service, count):
    from lovely.remotetask.interfaces import STATUSES
    for name, kw in variants(count) + cursor_variants(service, count):
        times = []
        for attempt in range(3):
            conn.cacheMinimize()
            conn.getTransferCounts(clear=True)
            t0 = time.perf_counter()
            counts = [service.countJobs(s) for s in STATUSES]
            counts.append(service.countJobs(task=kw.get('task'),
                                            status=kw.get('status')))
            jobs = service.listJobs(size=PAGE, **kw)
            rows = [(job.id, job.task, job.status, job.created)
                    for job in jobs]
            times.append(time.perf_counter() - t0)
            loads, stores = conn.getTransferCounts(clear=True)
            assert len(rows) == PAGE, (name, len(rows))
        emit(SYSTEM, f'page_{name}', statistics.median(times) * 1000, 'ms',
             jobs=count, cold=True, objects_loaded=loads)


def http_late(count):
    """The offsets of the late pages of ``page_http``."""
    return int(count * 0.9) // PAGE * PAGE, int(count * 0.6) // PAGE * PAGE


def link_queries(service, count):
    """The late pages of ``page_http`` as the Jobs tab's links reach
    them: by the cursor of the row before, in the tab's default orders
    (created, and for a status the time the jobs entered it, newest
    first); none where the service has no sorts."""
    if not hasattr(service, 'cursor'):
        return {}
    late, qlate = http_late(count)
    before = service.listJobs(sort='created', reverse=True,
                              start=late - 1, size=1)[0]
    queued = service.listJobs(status='queued', reverse=True,
                              start=qlate - 1, size=1)[0]
    return {
        'unfiltered_late_link':
            f'jobs-after={service.cursor(before, sort="created")}'
            f'&jobs-batchStart={late}',
        'status_late_link':
            f'status=queued&jobs-after={service.cursor(queued, "queued")}'
            f'&jobs-batchStart={qlate}',
    }


def page_http(directory, conf, count, links=None):
    port = common.free_port()
    late, qlate = http_late(count)
    queries = {
        'unfiltered_first': '',
        'unfiltered_late': f'jobs-batchStart={late}',
        'unfiltered_first_desc': 'jobs-sortOrder=descending',
        'status_first': 'status=queued',
        'status_late': f'status=queued&jobs-batchStart={qlate}',
        'status_first_desc': 'status=queued&jobs-sortOrder=descending',
        'task_first': 'task=bench.noop',
        **(links or {}),
    }
    token = base64.b64encode(ours.ADMIN.encode()).decode()
    with common.Processes() as procs:
        server = procs.start(
            [common.venv_bin('remotetask'), 'serve', '--config', conf,
             '--port', str(port)], os.path.join(directory, 'serve.out'),
            env=common.environment(REMOTETASK_ADMIN=ours.ADMIN))
        common.wait_port(port, 120, server)
        warm = True
        for name, query in queries.items():
            url = f'http://127.0.0.1:{port}/tasks/@@jobs.html?{query}'
            times = []
            for attempt in range(5 if warm else 4):
                request = urllib.request.Request(url)
                request.add_header('Authorization', f'Basic {token}')
                # As a browser following a link of the Jobs tab: the
                # server refuses queries without evidence of their origin.
                request.add_header('Sec-Fetch-Site', 'same-origin')
                t0 = time.perf_counter()
                with urllib.request.urlopen(request, timeout=600) as r:
                    r.read()
                    assert r.status == 200, (url, r.status)
                times.append(time.perf_counter() - t0)
            if warm:
                # The server's first page (templates, caches) is not the
                # page's cost.
                times.pop(0)
                warm = False
            emit(SYSTEM, f'http_{name}', statistics.median(times[1:]) * 1000,
                 'ms', jobs=count, first_ms=round(times[0] * 1000, 3))
        procs.stop(server)


#: cancel all and clean are skipped at a size where they would take
#: longer than this (projected linearly from the size before).
DESTRUCTIVE_LIMIT = float(os.environ.get('BENCH_DESTRUCTIVE_LIMIT', 300))


def destructive(datafs, directory, count, projected=None):
    """cancel one, cancel all, clean: on a DemoStorage over the table.

    Returns the seconds cancel all and clean took per job.
    """
    import ZODB
    import ZODB.FileStorage
    from ZODB.DemoStorage import DemoStorage
    changes = os.path.join(directory, 'changes.fs')
    storage = DemoStorage(
        base=ZODB.FileStorage.FileStorage(datafs, read_only=True),
        changes=ZODB.FileStorage.FileStorage(changes))
    db = ZODB.DB(storage, cache_size=10000)
    conn = db.open()
    service = conn.root()['Application']['tasks']
    times = []
    for i in range(5):
        # A queued job from the middle of the table, in a transaction of
        # its own (as the Cancel button does), five times: the median.
        [job] = service.listJobs(status='queued', size=1,
                                 start=service.countJobs('queued') // 2)
        conn.cacheMinimize()
        t0 = time.perf_counter()
        assert service.cancel(job.id)
        transaction.commit()
        times.append(time.perf_counter() - t0)
    emit(SYSTEM, 'cancel_one', statistics.median(times) * 1000, 'ms',
         jobs=count)
    if projected is not None and projected * count > DESTRUCTIVE_LIMIT:
        common.skip(SYSTEM, f'cancel_all and clean at {count:,} jobs: '
                            f'projected {projected * count:.0f} s from the '
                            f'size before, over BENCH_DESTRUCTIVE_LIMIT '
                            f'({DESTRUCTIVE_LIMIT:.0f} s)')
        perjob = projected
    else:
        perjob = cancel_all_and_clean(service, count)
    conn.close()
    db.close()
    for suffix in ('', '.index', '.lock', '.tmp'):
        if os.path.exists(changes + suffix):
            os.remove(changes + suffix)
    return perjob


def cancel_all_and_clean(service, count):
    start = t0 = time.perf_counter()
    try:
        from lovely.remotetask import bulk   # in batches, if there
    except ImportError:
        bulk = None
    cancelled = (bulk.cancelAll(service) if bulk
                 else service.cancelAll())
    transaction.commit()
    emit(SYSTEM, 'cancel_all', time.perf_counter() - t0, 's', jobs=count,
         cancelled=cancelled)
    t0 = time.perf_counter()
    removed = (bulk.clean(service, ('cancelled', 'error', 'completed'))
               if bulk else service.clean())
    transaction.commit()
    emit(SYSTEM, 'clean', time.perf_counter() - t0, 's', jobs=count,
         removed=removed)
    return (time.perf_counter() - start) / count


def reopen(datafs):
    import ZODB
    import ZODB.FileStorage
    db = ZODB.DB(ZODB.FileStorage.FileStorage(datafs), cache_size=10000)
    conn = db.open()
    return db, conn, conn.root()['Application']['tasks']


def main(argv):
    common.stop_on_sigterm()
    directory = tempfile.mkdtemp(prefix='bench-tables-')
    try:
        datafs = os.path.join(directory, 'Data.fs')
        conf = ours.write_instance(directory, ours.FILESTORAGE.format(
            path=datafs))
        have = previous = 0
        perjob = rss_before = None
        for size in common.SIZES:
            if have == 0:
                # The first time as the server opens it (ZCML, root
                # folder, the service); then plainly.
                db, conn, service = ours.open_instance(conf)
                rss_before = common.rss_bytes()
            else:
                db, conn, service = reopen(datafs)
            t0 = time.perf_counter()
            grow(service, have, size)
            emit(SYSTEM, 'build', (size - have) / (
                time.perf_counter() - t0), 'jobs/s', jobs=size,
                batch=1000)
            have = size
            rss = common.rss_bytes()
            bytes_ = os.path.getsize(datafs)
            emit(SYSTEM, 'datafs_bytes', bytes_, 'bytes', jobs=size)
            emit(SYSTEM, 'datafs_bytes_per_100k', bytes_ * 1e5 / size,
                 'bytes', jobs=size)
            emit(SYSTEM, 'rss_bytes', rss, 'bytes', jobs=size,
                 cache_size=10000)
            # What the table added since the size before (the process
            # itself, its imports and ZCML, are not the table's).
            emit(SYSTEM, 'rss_bytes_per_100k',
                 (rss - rss_before) * 1e5 / (size - previous), 'bytes',
                 jobs=size, cache_size=10000)
            rss_before, previous = rss, size
            page_api(conn, service, size)
            links = link_queries(service, size)
            conn.close()
            db.close()
            page_http(directory, conf, size, links)
            perjob = destructive(datafs, directory, size, perjob)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == '__main__':
    main(sys.argv[1:])
