"""This package: FileStorage in process, XML-RPC over HTTP, ZEO workers.

    python benchmarks/ours.py fs|xmlrpc|zeo

Only the public API is used (``service.add``, ``clean``,
``startProcessing``, ``stopProcessing``, the ``remotetask`` command), so
the harness keeps working while the internals change.  The protocol is
the peers' (see peers.py); the task is ``bench.noop`` (benchtasks.py).

``fs``      raw one-key and 100-key commits of a FileStorage; enqueue one
            job per transaction and 1,000 per transaction; drain and
            latency with the service's processor thread in this process.
``xmlrpc``  enqueue through XML-RPC over HTTP into ``remotetask serve``.
``zeo``     raw commits over ZEO; enqueue; drain and latency with 1, 2 and
            4 ``remotetask worker`` processes, for no-op jobs and for
            jobs that sleep 10 ms outside the database.

BENCH_PROCESSOR_ARGS (JSON) is merged into the service's
``processorArguments`` for the in-process runs (e.g. a group size, once
the processor has one); BENCH_POLL sets the workers' ``--poll-interval``
(default: the command's own default).
"""
import json
import os
import shutil
import sys
import tempfile
import time
import xmlrpc.client

import transaction
from BTrees.IOBTree import IOBTree

import common
from common import emit

SYSTEM_FS = 'remotetask-fs'
SYSTEM_ZEO = 'remotetask-zeo'

SITE_ZCML = """\
<configure xmlns="http://namespaces.zope.org/zope">
  <include package="lovely.remotetask.app" file="site.zcml" />
  <include file="{tasks}" />
</configure>
"""

ZOPE_CONF = """\
%import ZEO
site-definition {dir}/site.zcml
<zodb>
  cache-size 10000
{storage}
</zodb>
<eventlog>
  level WARNING
  <logfile>
    path {dir}/log
  </logfile>
</eventlog>
<product-config lovely.remotetask.app>
  admin-credentials {dir}/admin-credentials
</product-config>
devmode off
"""

FILESTORAGE = """\
  <filestorage>
    path {path}
  </filestorage>"""

CLIENTSTORAGE = """\
  <clientstorage>
    server 127.0.0.1:{port}
    server-sync on
    cache-size 100MB
  </clientstorage>"""

ADMIN = 'bench:bench-password'


def write_instance(directory, storage):
    """zope.conf and site.zcml (with the bench tasks) in ``directory``."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, 'site.zcml'), 'w') as f:
        f.write(SITE_ZCML.format(
            tasks=os.path.join(common.HERE, 'benchtasks.zcml')))
    conf = os.path.join(directory, 'zope.conf')
    with open(conf, 'w') as f:
        f.write(ZOPE_CONF.format(dir=directory, storage=storage))
    return conf


def open_instance(conf):
    """Open the database of ``conf`` as the server does; make sure the
    root folder has a task service ``tasks``; return (db, conn, service).
    """
    from lovely.remotetask.app.database import open_database
    from lovely.remotetask.service import TaskService
    db = open_database(conf, autostart=False)
    conn = db.open()
    app = conn.root()['Application']
    if 'tasks' not in app:
        app['tasks'] = TaskService()
        transaction.commit()
    return db, conn, app['tasks']


def fsync_rate(system, directory, count=500):
    """The disk: fsyncs of a small append per second (a FileStorage
    commit makes one).  Other load on the machine shows here first."""
    path = os.path.join(directory, 'fsync-probe')
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        t0 = time.perf_counter()
        for i in range(count):
            os.write(fd, b'x' * 512)
            os.fsync(fd)
        elapsed = time.perf_counter() - t0
    finally:
        os.close(fd)
        os.remove(path)
    emit(system, 'fsync', count / elapsed, 'fsyncs/s', writes=count)


def raw_commits(system, conn):
    """The physical limit: commits of one key, and of 100 keys, into a
    BTree of the same database."""
    root = conn.root()
    root['bench-raw'] = tree = IOBTree()
    transaction.commit()
    count = common.N
    t0 = time.perf_counter()
    for i in range(count):
        tree[i] = i
        transaction.commit()
    elapsed = time.perf_counter() - t0
    emit(system, 'raw_commit_1key', count / elapsed, 'commits/s',
         commits=count)
    commits = max(20, count // 50)
    t0 = time.perf_counter()
    for c in range(commits):
        for i in range(100):
            tree[count + c * 100 + i] = i
        transaction.commit()
    elapsed = time.perf_counter() - t0
    emit(system, 'raw_commit_100key', commits * 100 / elapsed, 'keys/s',
         commits=commits)
    del root['bench-raw']
    transaction.commit()


def enqueue_one_per_transaction(system, service, keys, task='bench.noop',
                                **extra):
    t0 = time.perf_counter()
    for key in keys:
        # Each add is a transaction of its own, as a web request is: it
        # begins (and sees the other processes' commits), adds, commits.
        transaction.begin()
        service.add(task, key)
        transaction.commit()
    elapsed = time.perf_counter() - t0
    emit(system, 'enqueue', len(keys) / elapsed, 'jobs/s', jobs=len(keys),
         **extra)


def enqueue_batched(system, service, count, batch=1000):
    transaction.begin()
    t0 = time.perf_counter()
    for start in range(0, count, batch):
        for i in range(start, min(start + batch, count)):
            service.add('bench.noop', f'B{i}')
        transaction.commit()
    elapsed = time.perf_counter() - t0
    emit(system, 'enqueue_batch1000', count / elapsed, 'jobs/s',
         jobs=count)


def processor_knobs(service):
    """The processor's group settings, whatever they are called (a
    class attribute with "group" in its name), overridden by the
    service's processorArguments: reported with the drain."""
    factory = getattr(service, 'processorFactory', None)
    knobs = {}
    for cls in reversed(getattr(factory, '__mro__', ())):
        for name, value in vars(cls).items():
            if 'group' in name.lower() and isinstance(value, (int, float)):
                knobs[name] = value
    knobs.update({k: v for k, v in dict(
        getattr(service, 'processorArguments', {})).items()
        if 'group' in k.lower()})
    return knobs


def processor_arguments(service):
    extra = os.environ.get('BENCH_PROCESSOR_ARGS')
    if extra:
        arguments = dict(service.processorArguments)
        arguments.update(json.loads(extra))
        service.processorArguments = arguments
        transaction.commit()
    return dict(service.processorArguments)


# -- fs -----------------------------------------------------------------------

def fs(directory):
    import ZODB
    import ZODB.FileStorage
    from zope.site.folder import rootFolder

    from lovely.remotetask.service import TaskService
    import benchtasks
    benchtasks.register()
    starts = os.path.join(directory, 'starts')
    os.makedirs(starts)
    os.environ['BENCH_STARTS'] = starts
    db = ZODB.DB(ZODB.FileStorage.FileStorage(
        os.path.join(directory, 'Data.fs')), cache_size=10000)
    conn = db.open()
    fsync_rate(SYSTEM_FS, directory)
    raw_commits(SYSTEM_FS, conn)
    conn.root()['Application'] = app = rootFolder()
    app['tasks'] = service = TaskService()
    transaction.commit()
    arguments = processor_arguments(service)

    keys = [f'D{i}' for i in range(common.N)]
    enqueue_one_per_transaction(SYSTEM_FS, service, keys)
    service.startProcessing()
    try:
        found = common.wait_starts(starts, keys)
        emit(SYSTEM_FS, 'drain', common.drain_rate(
            [found[k] for k in keys]), 'jobs/s', jobs=common.N,
            processor=type(service).processorFactory.__name__,
            arguments=repr(arguments), knobs=processor_knobs(service))
        time.sleep(1.0)

        def enqueue(key):
            transaction.begin()
            service.add('bench.noop', key)
            transaction.commit()
        sent = common.paced(common.LATENCY_N, common.RATE, enqueue)
        found = common.wait_starts(starts, sent)
        common.latency_figures(SYSTEM_FS, sent, found, rate=common.RATE)
    finally:
        service.stopProcessing()
    transaction.begin()
    service.clean()
    transaction.commit()
    enqueue_batched(SYSTEM_FS, service, max(common.N, 10000))
    conn.close()
    db.close()


# -- xmlrpc -------------------------------------------------------------------

def xmlrpc_(directory):
    conf = write_instance(directory, FILESTORAGE.format(
        path=os.path.join(directory, 'Data.fs')))
    db, conn, service = open_instance(conf)
    conn.close()
    db.close()
    port = common.free_port()
    with common.Processes() as procs:
        server = procs.start(
            [common.venv_bin('remotetask'), 'serve', '--config', conf,
             '--port', str(port)], os.path.join(directory, 'serve.out'),
            env=common.environment(REMOTETASK_ADMIN=ADMIN,
                                   BENCH_STARTS=directory))
        common.wait_port(port, 60, server)
        url = f'http://{ADMIN}@127.0.0.1:{port}/tasks/'
        with xmlrpc.client.ServerProxy(url) as proxy:
            proxy.add('bench.noop', 'warm-up')
            count = common.N
            t0 = time.perf_counter()
            for i in range(count):
                proxy.add('bench.noop', f'X{i}')
            elapsed = time.perf_counter() - t0
        emit(SYSTEM_FS, 'enqueue_xmlrpc', count / elapsed, 'jobs/s',
             jobs=count, server='remotetask serve (waitress, 4 threads)',
             client='xmlrpc.client, one connection')


# -- zeo ----------------------------------------------------------------------

def start_workers(procs, directory, conf, count, starts):
    args = [common.venv_bin('remotetask'), 'worker', '--config', conf]
    poll = os.environ.get('BENCH_POLL')
    if poll:
        args += ['--poll-interval', poll]
    env = common.environment(BENCH_STARTS=starts)
    return [procs.start(args, os.path.join(directory, f'worker-{i}.out'),
                        env=env) for i in range(count)]


def steady_drain(starts_dir, keys):
    """Drain between the first and last start; with several workers, only
    the part where all of them run (from the moment the last one started
    its first job), since they do not start at the same moment."""
    per_file = {}
    wanted = set(keys)
    for name in os.listdir(starts_dir):
        if name.startswith('starts-'):
            with open(os.path.join(starts_dir, name), 'rb') as f:
                times = [float(line.split()[1]) for line in f
                         if line.split()[0].decode() in wanted]
            if times:
                per_file[name] = sorted(times)
    if not per_file:
        return float('nan'), 0
    allup = max(times[0] for times in per_file.values())
    window = sorted(t for times in per_file.values() for t in times
                    if t >= allup)
    return common.drain_rate(window), len(per_file)


def zeo_run(procs, directory, conf, service, workers, task, count, label):
    starts = os.path.join(directory, f'starts-{label}-{workers}')
    os.makedirs(starts)
    keys = [f'{label[0].upper()}{i}' for i in range(count)]
    if workers == 1 and label == 'noop':
        enqueue_one_per_transaction(SYSTEM_ZEO, service, keys, task=task,
                                    workers=0, task_kind=label)
    else:
        # Measured once (above); here only filled, 100 per transaction,
        # to keep the run short.
        for start in range(0, count, 100):
            transaction.begin()
            for key in keys[start:start + 100]:
                service.add(task, key)
            transaction.commit()
    running = start_workers(procs, directory, conf, workers, starts)
    try:
        common.wait_starts(starts, keys)
        rate, active = steady_drain(starts, keys)
        emit(SYSTEM_ZEO, f'drain_{label}', rate, 'jobs/s', jobs=count,
             workers=workers, workers_that_ran=active)
        time.sleep(1.0)

        def enqueue(key):
            transaction.begin()
            service.add(task, key)
            transaction.commit()
        sent = common.paced(common.LATENCY_N, common.RATE, enqueue)
        found = common.wait_starts(starts, sent)
        common.latency_figures(f'{SYSTEM_ZEO}', sent, found,
                               rate=common.RATE, workers=workers,
                               task_kind=label)
    finally:
        for process in running:
            procs.stop(process)
    transaction.begin()
    service.clean()
    transaction.commit()


def zeo(directory):
    datafs = os.path.join(directory, 'Data.fs')
    port = common.free_port()
    with common.Processes() as procs:
        server = procs.start(
            [common.venv_bin('runzeo'), '-a', f'127.0.0.1:{port}', '-f',
             datafs], os.path.join(directory, 'zeo.out'),
            env=common.environment())
        common.wait_port(port, 60, server)
        conf = write_instance(directory, CLIENTSTORAGE.format(port=port))
        db, conn, service = open_instance(conf)
        raw_commits(SYSTEM_ZEO, conn)
        for workers in (1, 2, 4):
            zeo_run(procs, directory, conf, service, workers, 'bench.noop',
                    common.N, 'noop')
        for workers in (1, 2, 4):
            zeo_run(procs, directory, conf, service, workers, 'bench.sleep',
                    common.SLEEP_N * workers, 'sleep10ms')
        conn.close()
        db.close()


def main(argv):
    common.stop_on_sigterm()
    section = argv[0]
    tmp = tempfile.mkdtemp(prefix=f'bench-{section}-')
    try:
        {'fs': fs, 'xmlrpc': xmlrpc_, 'zeo': zeo}[section](tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main(sys.argv[1:])
