"""Throughput of one process on a FileStorage (not run by ``make test``).

    .venv/bin/python benchmarks/throughput.py [--jobs N] [--threads N]

Measures how fast jobs are added (one transaction per job, as web
requests do, and in batches) and how fast a processor completes them,
with a task that writes to the database like real tasks do.
"""
import argparse
import logging
import shutil
import tempfile
import time

import BTrees.OOBTree
import transaction
import ZODB
import ZODB.FileStorage
import zope.component
import zope.interface
from zope.site.folder import rootFolder

from lovely.remotetask import interfaces
from lovely.remotetask import processor
from lovely.remotetask.service import TaskService


@zope.interface.provider(interfaces.ITask)
def record(service, jobid, input):
    service.__parent__['results'][jobid] = input
    return input


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--jobs', type=int, default=2000)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--batch', type=int, default=100)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    zope.component.provideUtility(record, interfaces.ITask, 'record')

    tmp = tempfile.mkdtemp()
    try:
        db = ZODB.DB(ZODB.FileStorage.FileStorage(f'{tmp}/Data.fs'))
        conn = db.open()
        conn.root()['Application'] = app = rootFolder()
        app['results'] = BTrees.OOBTree.OOBTree()
        app['tasks'] = service = TaskService()
        transaction.commit()

        t0 = time.perf_counter()
        single = args.jobs // 2
        for i in range(single):
            service.add('record', i)
            transaction.commit()
        t1 = time.perf_counter()
        for start in range(single, args.jobs, args.batch):
            for i in range(start, min(start + args.batch, args.jobs)):
                service.add('record', i)
            transaction.commit()
        t2 = time.perf_counter()
        print(f'add, one job per transaction: {single / (t1 - t0):8.0f} '
              f'jobs/s')
        print(f'add, {args.batch} jobs per transaction: '
              f'{(args.jobs - single) / (t2 - t1):8.0f} jobs/s')

        if args.threads > 1:
            proc = processor.MultiProcessor(
                db, service._p_oid, maxThreads=args.threads, waitTime=0.1)
        else:
            proc = processor.SimpleProcessor(db, service._p_oid)
        t0 = time.perf_counter()
        while True:
            transaction.begin()
            if service.countJobs('completed') == args.jobs:
                break
            proc.step()
        t1 = time.perf_counter()
        proc.stop()
        if hasattr(proc, 'join'):
            proc.join(10)
        print(f'process with {args.threads} thread(s): '
              f'{args.jobs / (t1 - t0):8.0f} jobs/s')
        assert len(app['results']) == args.jobs
        conn.close()
        db.close()
    finally:
        shutil.rmtree(tmp)


if __name__ == '__main__':
    main()
