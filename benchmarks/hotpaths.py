"""Where the time of an enqueue and of a drain goes (cProfile).

    .venv/bin/python benchmarks/hotpaths.py [JOBS]

Enqueues JOBS no-op jobs (one per transaction) into a FileStorage, then
runs them with a processor in this thread (``IProcessor.step``), each
under cProfile; prints the functions that take the most time, and how
many objects each transaction stored.  Not part of ``make bench``.
"""
import cProfile
import os
import pstats
import shutil
import sys
import tempfile
import time

import transaction
import ZODB
import ZODB.FileStorage
from zope.site.folder import rootFolder

import benchtasks

from lovely.remotetask import processor
from lovely.remotetask.service import TaskService


def show(title, profile, count, stores, elapsed):
    stored = '' if stores is None else \
        f', {stores / count:.1f} objects stored per job'
    print(f'\n== {title}: {count / elapsed:,.0f}/s{stored}\n')
    pstats.Stats(profile, stream=sys.stdout).sort_stats(
        'cumulative').print_stats(18)


def main(argv):
    count = int(argv[0]) if argv else 1000
    tmp = tempfile.mkdtemp(prefix='bench-profile-')
    os.environ['BENCH_STARTS'] = tmp
    benchtasks.register()
    try:
        db = ZODB.DB(ZODB.FileStorage.FileStorage(
            os.path.join(tmp, 'Data.fs')), cache_size=10000)
        conn = db.open()
        conn.root()['Application'] = app = rootFolder()
        app['tasks'] = service = TaskService()
        transaction.commit()
        conn.getTransferCounts(clear=True)
        profile = cProfile.Profile()
        t0 = time.perf_counter()
        profile.enable()
        for i in range(count):
            transaction.begin()
            service.add('bench.noop', f'P{i}')
            transaction.commit()
        profile.disable()
        elapsed = time.perf_counter() - t0
        show('enqueue, one job per transaction', profile, count,
             conn.getTransferCounts(clear=True)[1], elapsed)

        before = db.storage.getSize()
        proc = processor.SimpleProcessor(db, service._p_oid)
        profile = cProfile.Profile()
        t0 = time.perf_counter()
        profile.enable()
        steps = 0
        while proc.step():
            steps += 1   # a step runs a group of jobs
        profile.disable()
        elapsed = time.perf_counter() - t0
        proc.stop()
        print(f'\n(drain: {count} jobs in {steps} groups; it wrote '
              f'{(db.storage.getSize() - before) / count:,.0f} bytes of '
              f'Data.fs per job)')
        show("drain, SimpleProcessor.step", profile, count, None, elapsed)
        conn.close()
        db.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main(sys.argv[1:])
