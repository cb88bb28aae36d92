"""Fault injection: real worker processes, killed, over ZEO and RelStorage.

Every test here starts real processes on 127.0.0.1 -- a ZEO server (or a
fresh PostgreSQL database for RelStorage), worker processes running
``lovely.remotetask.processor.runWorker`` (what ``remotetask worker``
runs), an enqueuer -- and ends every one of them by its process id in
the clean-up, whatever happens.  Every wait polls with a deadline.

The task the workers run (``faultsupport.Record``) records its job id in
a set and counts it per id in the job's own transaction, and notes every
execution in a file outside the database.  So the database shows how
often a job *completed* (must be once), the files how often its code
*ran* (at least once).

Set ``REMOTETASK_FAULT_FIGURES=1`` to print the measured figures
(throughput, kills, recoveries, pick-up latency) to stderr;
``REMOTETASK_FAULT_SEED`` repeats a run's random kill schedule;
``REMOTETASK_FAULT_KEEP=1`` keeps the processes' logs and databases in
the temporary directory; ``REMOTETASK_TEST_PG`` is the libpq DSN of the
PostgreSQL server for the RelStorage tests (default: ``host=127.0.0.1
user=postgres``).
"""
import collections
import datetime
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import unittest

import transaction
import zope.component.testing
from ZODB.POSException import ConflictError
from transaction.interfaces import TransientError

from lovely.remotetask import processor
from lovely.remotetask.tests import faultsupport
from lovely.remotetask.tests.faultsupport import waitFor


WORKER = 'lovely.remotetask.tests.faultworker'
ENQUEUER = 'lovely.remotetask.tests.faultenqueue'
ZEOSERVER = 'lovely.remotetask.tests.zeoserver'

#: Seconds a process may take to start and say READY (imports, connect).
START_TIMEOUT = 60.0


def figures(test, **values):
    """Report measured figures (no assertion on timings)."""
    if os.environ.get('REMOTETASK_FAULT_FIGURES'):
        text = ', '.join(f'{k}={v:.3g}' if isinstance(v, float)
                         else f'{k}={v}' for k, v in values.items())
        print(f'\n  [figures] {test.id().split(".", 3)[-1]}: {text}',
              file=sys.stderr, flush=True)


def fresh(tm, condition):
    """``condition`` in a new transaction of ``tm`` (seeing new commits)."""
    def check():
        tm.begin()
        return condition()
    return check


class MultiProcessLayer:
    """Tests that start processes on 127.0.0.1 (ZEO, PostgreSQL, workers).

    The layer holds nothing: each test starts its own server and
    processes and ends them in its clean-up.  It exists to keep these
    slower tests together and apart from the in-process ones.
    """

    @classmethod
    def setUp(cls):
        pass

    @classmethod
    def tearDown(cls):
        pass


class ProcessTestCase(unittest.TestCase):
    """Temporary directory, processes, databases: all cleaned up."""

    layer = MultiProcessLayer

    #: The service's lease time in these tests (seconds).
    leaseTime = 2.0

    def setUp(self):
        zope.component.testing.setUp()
        self.started = time.monotonic()
        self.dir = tempfile.mkdtemp(prefix='remotetask-faults-')
        self.addCleanup(self._removeDirectory)
        self.procs = faultsupport.Processes(self.dir)
        self.servers = faultsupport.Processes(self.dir)
        self.dbs = []
        self.addCleanup(zope.component.testing.tearDown)
        # Clean-ups run last in, first out: the workers end first, then
        # the test's own databases close, then the storage goes.
        self.addCleanup(self.servers.cleanUp)
        self.startStorage()
        self.addCleanup(self._closeDatabases)
        self.addCleanup(self.procs.cleanUp)
        self.config = os.path.join(self.dir, 'db.conf')
        with open(self.config, 'w') as f:
            f.write(self.configText())
        faultsupport.registerTasks(self.dir, 'test')

    def _closeDatabases(self):
        transaction.abort()
        for db in self.dbs:
            processor.stopAll(db=db)
            db.close()

    def _removeDirectory(self):
        if os.environ.get('REMOTETASK_FAULT_KEEP'):
            print(f'\n  kept {self.dir}', file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def elapsed(self):
        return time.monotonic() - self.started

    def addJobs(self, tm, service, count, input, perTransaction=50):
        """Add ``count`` record jobs from this process; their ids."""
        ids = []
        while len(ids) < count:
            tm.begin()
            batch = [service.add(faultsupport.RECORD, input)
                     for i in range(min(perTransaction, count - len(ids)))]
            tm.commit()
            ids.extend(batch)
        return ids

    # -- databases ------------------------------------------------------------

    def openDatabase(self):
        db = faultsupport.openDatabase(self.config)
        self.dbs.append(db)
        return db

    def setUpService(self, **kw):
        """A database with the service; returns (db, oid, tm, conn)."""
        db = self.openDatabase()
        kw.setdefault('leaseTime', self.leaseTime)
        oid = faultsupport.setUpDatabase(db, **kw)
        tm = transaction.TransactionManager()
        conn = db.open(transaction_manager=tm)
        self.addCleanup(conn.close)
        self.addCleanup(tm.abort)
        return db, oid, tm, conn

    # -- processes -----------------------------------------------------------

    def startWorker(self, label='worker', threads=1, wait=0.1, ready=True,
                    *extra):
        proc = self.procs.start(
            label, WORKER, self.config, '--dir', self.dir, '--label', label,
            '--threads', threads, '--wait', wait, *extra)
        if ready:
            self.waitReady(proc)
        return proc

    def waitReady(self, proc):
        """Wait (bounded) until a worker process says it is processing."""
        try:
            faultsupport.waitForLine(
                os.path.join(self.dir, proc.label + '.out'), 'READY',
                START_TIMEOUT, proc)
        except AssertionError:
            self.fail(f'{proc.label} did not start:\n'
                      + self.procs.output(proc)[-3000:])

    def workerLog(self, label=None):
        """The stderr of all (or one) worker processes."""
        return ''.join(self.procs.read(name) for name in self.procs.labels()
                       if label is None or name == label)

    def diagnostics(self, conn):
        """What to print when a test fails: the queue and the logs."""
        service = faultsupport.service(conn)
        counts = {s: service.countJobs(s) for s in (
            'queued', 'processing', 'completed', 'error')}
        lines = [f'directory: {self.dir}', f'counts: {counts}']
        for job in service.listJobs('processing', size=10):
            lines.append(f'  processing {job.id} by {job.worker} until '
                         f'{job.leaseExpires} attempts {job.attempts}')
        for job in service.listJobs('error', size=10):
            lines.append(f'  error {job.id}: {job.error}\n{job.traceback}')
        for name in self.servers.labels() + self.procs.labels():
            text = self.procs.read(name)
            tracebacks = text.count('Traceback')
            lines.append(f'--- {name}: {tracebacks} tracebacks, last lines:')
            lines.extend(text.splitlines()[-8:])
        return '\n'.join(lines)


# -- the storages ---------------------------------------------------------

class ZEOStorage:
    """A ZEO server (FileStorage) in a process of its own."""

    storageName = 'ZEO'

    def startStorage(self):
        self.startZEO()

    def startZEO(self, port=0):
        server = self.servers.start('zeo', ZEOSERVER,
                                    os.path.join(self.dir, 'Data.fs'), port)
        address = faultsupport.waitForLine(
            os.path.join(self.dir, server.label + '.out'), 'ADDRESS ',
            START_TIMEOUT, server)
        self.zeo = server
        self.host, self.port = address.rsplit(':', 1)

    def configText(self):
        return faultsupport.ZEO_CONFIG.format(host=self.host, port=self.port)


class RelStorageStorage:
    """RelStorage on a fresh PostgreSQL database, dropped at the end."""

    storageName = 'RelStorage'
    serial = 0
    skipped = False

    def skipTest(self, reason):
        # zope.testrunner shows skip reasons only at -vvv: say it once.
        if not RelStorageStorage.skipped:
            RelStorageStorage.skipped = True
            print(f'\n  RelStorage fault tests skipped: {reason}',
                  file=sys.stderr, flush=True)
        super().skipTest(reason)

    def startStorage(self):
        try:
            import psycopg2
            import relstorage  # noqa: F401
        except ImportError as e:
            self.skipTest(f'RelStorage tests need RelStorage and psycopg2 '
                          f"(pip install 'lovely.remotetask[relstorage]'): "
                          f'{e}')
        server = os.environ.get('REMOTETASK_TEST_PG',
                                'host=127.0.0.1 user=postgres')
        try:
            admin = psycopg2.connect(server + ' dbname=postgres',
                                     connect_timeout=5)
        except psycopg2.Error as e:
            self.skipTest(f'PostgreSQL is not reachable at {server!r} '
                          f'(set REMOTETASK_TEST_PG to a libpq DSN): '
                          f'{str(e).strip()}')
        admin.autocommit = True
        RelStorageStorage.serial += 1
        name = f'remotetask_test_{os.getpid()}_{RelStorageStorage.serial}'
        try:
            with admin.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS {name}')
                cursor.execute(f'CREATE DATABASE {name}')
        except psycopg2.Error as e:
            admin.close()
            self.skipTest(f'Cannot create a PostgreSQL database as '
                          f'{server!r}: {str(e).strip()}')

        def drop():
            # Connections of killed workers may linger a moment.
            deadline = time.monotonic() + 30
            try:
                while True:
                    try:
                        with admin.cursor() as cursor:
                            cursor.execute(
                                'SELECT pg_terminate_backend(pid) FROM '
                                'pg_stat_activity WHERE datname = %s',
                                (name,))
                            cursor.execute(f'DROP DATABASE IF EXISTS {name}')
                        return
                    except psycopg2.Error:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.2)
            finally:
                admin.close()
        self.addCleanup(drop)
        self.dsn = f"{server} dbname='{name}'"

    def configText(self):
        return faultsupport.RELSTORAGE_CONFIG.format(dsn=self.dsn)


# -- the tests ------------------------------------------------------------

class KillWorkers:
    """SIGKILL workers at random moments while thousands of jobs run."""

    #: Jobs the enqueuer adds.
    jobs = 2000
    #: Threads of the workers (2 and 2: MultiProcessor; 1: SimpleProcessor).
    workerThreads = (2, 2, 1)
    #: Kill at most this many workers, one every 0.5-2.5 s.
    maxKills = 8
    #: The whole test ends within this many seconds.
    budget = 170.0

    def test_kill_workers_at_random_nothing_lost_nothing_twice(self):
        seed = int(os.environ.get('REMOTETASK_FAULT_SEED')
                   or random.randrange(2 ** 32))
        rnd = random.Random(seed)
        jobs = int(os.environ.get('REMOTETASK_FAULT_JOBS', self.jobs))
        db, oid, tm, conn = self.setUpService()
        slots = {f'worker{i}': threads
                 for i, threads in enumerate(self.workerThreads)}
        workers = {slot: self.startWorker(slot, threads, 0.1, False)
                   for slot, threads in slots.items()}
        for proc in workers.values():
            self.waitReady(proc)

        begin = time.monotonic()
        enqueuer = self.procs.start('enqueuer', ENQUEUER, self.config,
                                    '--jobs', jobs, '--threads', 2)
        deadline = begin + self.budget
        kills = 0
        killed = set()   # process ids
        nextKill = begin + rnd.uniform(0.5, 2.5)
        total = None
        service = faultsupport.service(conn)
        while True:
            tm.begin()
            done = service.countJobs('completed')
            failed = service.countJobs('error')
            if total is None and enqueuer.poll() is not None:
                if enqueuer.returncode:
                    self.fail('the enqueuer failed:\n'
                              + self.procs.output(enqueuer))
                result = json.loads(self.procs.output(enqueuer, 'out'))
                total = len(result['committed'])
            if failed:
                self.fail(f'{failed} jobs failed (seed {seed}):\n'
                          + self.diagnostics(conn))
            if total is not None and done >= total:
                break
            now = time.monotonic()
            if now > deadline:
                self.fail(f'not done after {self.budget} s, {done} of '
                          f'{total or jobs} jobs completed (seed {seed}):\n'
                          + self.diagnostics(conn))
            if kills < self.maxKills and now >= nextKill:
                slot = rnd.choice(sorted(workers))
                killed.add(workers[slot].pid)
                self.procs.kill(workers[slot])
                kills += 1
                workers[slot] = self.startWorker(slot, slots[slot], 0.1,
                                                 False)
                nextKill = now + rnd.uniform(0.5, 2.5)
            time.sleep(0.1)
        elapsed = time.monotonic() - begin
        tm.begin()
        self.checkExactlyOnce(conn, result, seed)
        self.assertGreater(kills, 0)
        log = self.workerLog()
        # Jobs taken back from lost workers, and those workers' process
        # ids: a live worker whose lease ran out would be spurious (not
        # wrong -- its commit then conflicts -- but a sign that the lease
        # is too short for the load).
        lost = set(re.findall(
            r"Job (\d+) \('record'\): worker [^:\s]+:(\d+):\S+ lost, "
            r'lease expired', log))
        side = faultsupport.readSideEffects(self.dir)
        attempts = collections.Counter(
            job.attempts for job in service.jobs.values())
        figures(self, storage=self.storageName, jobs=total, seconds=elapsed,
                jobs_per_s=total / elapsed, kills=kills,
                recovered=len({jobid for jobid, pid in lost}),
                spurious=len({jobid for jobid, pid in lost
                              if int(pid) not in killed}),
                attempts=dict(sorted(attempts.items())),
                executions=sum(side.values()),
                enqueue_txns=result['transactions'],
                enqueue_conflicted=result['conflicted'],
                enqueue_conflicts=result['conflicts'],
                enqueue_max_retries=result['maxRetries'],
                enqueue_over_3_retries=result['over3'],
                enqueue_conflict_classes=result['classes'],
                run_conflicts=log.count(': conflict ('),
                claim_gave_up=log.count('claims keep conflicting'),
                tracebacks=log.count('Traceback'),
                seed=seed, test_seconds=self.elapsed())

    def checkExactlyOnce(self, conn, result, seed):
        service = faultsupport.service(conn)
        root = conn.root()
        committed = set(result['committed'])
        message = f'(seed {seed}, see {self.dir})'
        # None lost, none invented: the job table is what was committed.
        self.assertEqual(len(committed), len(result['committed']))
        self.assertEqual(set(service.jobs.keys()), committed, message)
        statuses = collections.Counter(
            job.status for job in service.jobs.values())
        self.assertEqual(statuses, {'completed': len(committed)}, message)
        # The task's writes committed once per job, with the job.
        self.assertEqual(set(root['done']), committed, message)
        self.assertEqual(set(root['counts'].keys()), committed, message)
        twice = {jobid: n for jobid, n in root['counts'].items() if n != 1}
        self.assertEqual(twice, {}, f'completed more than once {message}')
        # Every job ran at least once (outside the database: maybe more).
        side = faultsupport.readSideEffects(self.dir)
        self.assertEqual(committed - set(side), set(), message)
        # Jobs of aborted transactions never existed and never ran.
        aborted = set(result['aborted'])
        self.assertTrue(aborted)
        self.assertEqual(aborted & set(service.jobs.keys()), set())
        self.assertEqual(aborted & set(side), set(), message)
        # The status index and its counters agree with the jobs; the ready
        # queue (the index of 'queued') holds just the queued jobs.
        for status in ('queued', 'processing', 'error', 'completed'):
            expected = statuses.get(status, 0)
            self.assertEqual(service.countJobs(status), expected, status)
            self.assertEqual(service.countJobs(status, task='record'),
                             expected, status)
        self.assertFalse(service.hasJobsWaiting())
        self.assertEqual(len(service.listJobs('queued')),
                         statuses.get('queued', 0))


class LostWorker:
    """A worker killed mid-run: another one takes the job over."""

    def test_job_of_killed_worker_is_taken_up_after_its_lease(self):
        db, oid, tm, conn = self.setUpService()
        service = faultsupport.service(conn)
        first = self.startWorker('first')
        jobid = service.add(faultsupport.BLOCK, {'name': 'lost'})
        tm.commit()
        seen1 = self.waitStarted('lost', 1)
        self.assertEqual(seen1['pid'], first.pid)
        self.assertEqual(seen1['attempts'], 1)
        lostWorker = seen1['worker']
        self.assertIn(f':{first.pid}:', lostWorker)

        second = self.startWorker('second')
        tm.begin()
        self.assertEqual(service.getStatus(jobid), 'processing')
        killed = time.monotonic()
        self.procs.kill(first)
        seen2 = self.waitStarted('lost', 2, self.leaseTime + 30)
        pickup = time.monotonic() - killed
        self.assertEqual(seen2['pid'], second.pid)
        self.assertEqual(seen2['attempts'], 2)
        self.assertTrue(
            seen2['error'].startswith(f'WorkerLost: worker {lostWorker} '
                                      f'lost (its lease expired at '),
            seen2['error'])
        # While the second worker runs it, the job says all that.
        tm.begin()
        job = service.jobs[jobid]
        self.assertEqual((job.status, job.attempts), ('processing', 2))
        self.assertEqual(job.worker, seen2['worker'])
        self.assertNotEqual(job.worker, lostWorker)
        self.assertEqual(job.error, seen2['error'])

        self.release('lost')
        waitFor(fresh(tm, lambda: service.getStatus(jobid) == 'completed'),
                30,
                message='completion')
        tm.begin()
        self.assertEqual(job.attempts, 2)
        self.assertEqual(job.output, seen2)
        self.assertIsNone(job.error)
        self.assertEqual(conn.root()['counts'][jobid], 1)
        # It ran twice (once in each worker); it completed once.
        self.assertEqual(faultsupport.readSideEffects(self.dir)[jobid], 2)
        self.assertIn(f'Job {jobid} (\'block\'): worker {lostWorker} lost',
                      self.workerLog())
        figures(self, storage=self.storageName, lease=self.leaseTime,
                pickup_after_kill_s=pickup, test_seconds=self.elapsed())

    def test_long_job_keeps_its_lease(self):
        # A job that runs for several lease times in a live worker keeps
        # its lease (the worker renews it while the job runs), while
        # another worker looks for lost jobs all the time.
        db, oid, tm, conn = self.setUpService()
        service = faultsupport.service(conn)
        self.startWorker('runner')
        jobid = service.add(faultsupport.BLOCK, {'name': 'long'})
        tm.commit()
        seen = self.waitStarted('long', 1)
        self.startWorker('watcher')
        job = service.jobs[jobid]
        expiries = set()
        watch = time.monotonic() + 3 * self.leaseTime
        while time.monotonic() < watch:
            tm.begin()
            self.assertEqual((job.status, job.attempts, job.worker),
                             ('processing', 1, seen['worker']))
            self.assertGreater(job.leaseExpires, faultsupport.utcnow())
            expiries.add(job.leaseExpires)
            time.sleep(0.05)
        self.release('long')
        waitFor(fresh(tm, lambda: service.getStatus(jobid) == 'completed'),
                30, message='completion')
        self.assertEqual((job.attempts, job.worker), (1, seen['worker']))
        self.assertIsNone(job.leaseExpires)
        self.assertEqual(faultsupport.readSideEffects(self.dir)[jobid], 1)
        self.assertNotIn('lease expired', self.workerLog())
        # Renewed about every third of the lease time.
        self.assertGreaterEqual(len(expiries), 5)
        figures(self, storage=self.storageName, renewals=len(expiries),
                test_seconds=self.elapsed())

    def waitStarted(self, name, attempt, timeout=START_TIMEOUT):
        path = os.path.join(self.dir, f'started-{name}-{attempt}')
        waitFor(lambda: os.path.exists(path), timeout,
                message=f'attempt {attempt} of {name}')
        with open(path) as f:
            return json.load(f)

    def release(self, name):
        with open(os.path.join(self.dir, f'release-{name}'), 'w'):
            pass


class Stopping(LostWorker):
    """SIGTERM stops a worker without losing or doubling anything."""

    def test_sigterm_busy_worker_finishes_its_jobs(self):
        db, oid, tm, conn = self.setUpService()
        service = faultsupport.service(conn)
        busy = self.startWorker('busy', 2)
        other = self.startWorker('other', 1)
        ids = self.addJobs(tm, service, 60, {'sleep': 0.1})

        def running():
            tm.begin()
            return [job.id for job in service.listJobs('processing')
                    if f':{busy.pid}:' in job.worker]
        wasRunning = waitFor(running, 30, 0.01, 'a job of the busy worker')
        stopping = time.monotonic()
        self.procs.signal(busy, signal.SIGTERM)
        self.assertEqual(self.procs.wait(busy, 60), 0,
                         self.procs.output(busy))
        stopped = time.monotonic() - stopping
        self.assertIn('STOPPED', self.procs.output(busy, 'out'))
        tm.begin()
        # Its running jobs finished in the busy worker before it ended
        # (on their first attempt), and it left no job behind.
        for jobid in wasRunning:
            job = service.jobs[jobid]
            self.assertEqual((job.status, job.attempts),
                             ('completed', 1), job)
            self.assertIn(f':{busy.pid}:', job.worker)
        self.assertEqual([job for job in service.listJobs('processing')
                          if f':{busy.pid}:' in job.worker], [])
        # The other worker does the rest: every job completed once.
        waitFor(fresh(tm, lambda: service.countJobs('completed')
                      == len(ids)), 60,
                message='all jobs completed')
        counts = conn.root()['counts']
        self.assertEqual({jobid: counts.get(jobid) for jobid in ids},
                         dict.fromkeys(ids, 1))
        self.assertEqual({service.jobs[jobid].attempts for jobid in ids},
                         {1})
        self.assertNotIn('lease expired', self.workerLog())
        figures(self, storage=self.storageName, running=len(wasRunning),
                stop_seconds=stopped, test_seconds=self.elapsed())
        other  # still running: ended by the clean-up

    def test_stopping_worker_keeps_the_lease_of_its_running_job(self):
        # SIGTERM: the worker waits (here up to 20 s) for its running job.
        # Meanwhile it still holds the job: it renews the lease, and no
        # other worker takes the job over (which would run it twice).
        db, oid, tm, conn = self.setUpService()
        service = faultsupport.service(conn)
        busy = self.startWorker('busy', 1, 0.1, True,
                                '--shutdown-timeout', 20)
        jobid = service.add(faultsupport.BLOCK, {'name': 'finishing'})
        tm.commit()
        seen = self.waitStarted('finishing', 1)
        self.startWorker('watcher')
        self.procs.signal(busy, signal.SIGTERM)
        job = service.jobs[jobid]
        watch = time.monotonic() + 3 * self.leaseTime
        while time.monotonic() < watch:
            tm.begin()
            self.assertIsNone(busy.poll())   # still waiting for its job
            self.assertEqual((job.status, job.attempts, job.worker),
                             ('processing', 1, seen['worker']),
                             self.workerLog())
            time.sleep(0.05)
        self.release('finishing')
        self.assertEqual(self.procs.wait(busy, 60), 0,
                         self.procs.output(busy))
        tm.begin()
        self.assertEqual((job.status, job.attempts, job.worker),
                         ('completed', 1, seen['worker']))
        self.assertEqual(faultsupport.readSideEffects(self.dir)[jobid], 1)
        self.assertNotIn('lease expired', self.workerLog())
        figures(self, storage=self.storageName, test_seconds=self.elapsed())

    def test_sigterm_long_job_goes_back_within_its_lease(self):
        db, oid, tm, conn = self.setUpService()
        service = faultsupport.service(conn)
        busy = self.startWorker('busy', 1, 0.1, True,
                                '--shutdown-timeout', 0.5)
        jobid = service.add(faultsupport.BLOCK, {'name': 'long'})
        tm.commit()
        seen1 = self.waitStarted('long', 1)
        self.procs.signal(busy, signal.SIGTERM)
        # It waits half a second for the job, then leaves it to its lease.
        self.assertEqual(self.procs.wait(busy, 60), 0,
                         self.procs.output(busy))
        tm.begin()
        self.assertEqual(service.getStatus(jobid), 'processing')
        self.release('long')
        self.startWorker('other')
        seen2 = self.waitStarted('long', 2, self.leaseTime + 30)
        self.assertEqual(seen2['attempts'], 2)
        self.assertTrue(seen2['error'].startswith(
            f'WorkerLost: worker {seen1["worker"]} lost'), seen2['error'])
        waitFor(fresh(tm, lambda: service.getStatus(jobid) == 'completed'),
                30,
                message='completion')
        tm.begin()
        self.assertEqual(conn.root()['counts'][jobid], 1)
        self.assertEqual(faultsupport.readSideEffects(self.dir)[jobid], 2)
        figures(self, storage=self.storageName, test_seconds=self.elapsed())


def timedJob(tm, service, timeout, message):
    """Add a job, wait (bounded) for its completion; return the job and
    the seconds from its commit to its start."""
    tm.begin()
    jobid = service.add(faultsupport.RECORD)
    tm.commit()
    committed = faultsupport.utcnow()
    waitFor(fresh(tm, lambda: service.getStatus(jobid) == 'completed'),
            timeout, 0.01, message)
    job = service.jobs[jobid]
    return job, (job.started - committed).total_seconds()


class Waking:
    """How soon a worker in another process sees a new job."""

    def test_remote_worker_picks_up_within_its_poll_interval(self):
        db, oid, tm, conn = self.setUpService()
        service = faultsupport.service(conn)
        measured = {}
        rnd = random.Random(4711)
        for wait in (0.1, 1.0):
            worker = self.startWorker(f'wait{wait}', 1, wait)
            latencies = []
            for i in range(6):
                # Add the job at a random moment of the worker's idle
                # wait (right after a completion it has just begun one).
                threading.Event().wait(rnd.uniform(0, wait))
                job, latency = timedJob(tm, service, wait + 30,
                                        'completion')
                self.assertIn(f':{worker.pid}:', job.worker)
                latencies.append(latency)
            self.procs.signal(worker, signal.SIGTERM)
            self.assertEqual(self.procs.wait(worker, 60), 0)
            latencies.sort()
            measured[f'wait_{wait}'] = (
                f'median {latencies[len(latencies) // 2]:.3f} s, '
                f'max {latencies[-1]:.3f} s')
        figures(self, storage=self.storageName, **measured,
                test_seconds=self.elapsed())


class PushWaking:
    """A worker in another process is woken by the commit, not polling."""

    def test_remote_worker_is_woken_by_the_commit(self):
        # A poll interval far longer than the deadline: only the database
        # (ZEO's invalidations, PostgreSQL's NOTIFY) can wake the worker.
        db, oid, tm, conn = self.setUpService()
        service = faultsupport.service(conn)
        worker = self.startWorker('pushed', 1, 300.0)
        latencies = []
        for i in range(5):
            # Let the worker fall idle (a completion is followed by one
            # empty claim, then the long wait).
            threading.Event().wait(0.3)
            job, latency = timedJob(tm, service, 30,
                                    'completion without polling')
            latencies.append(latency)
        self.procs.signal(worker, signal.SIGTERM)
        self.assertEqual(self.procs.wait(worker, 60), 0)
        latencies.sort()
        figures(self, storage=self.storageName,
                pushed=f'median {latencies[len(latencies) // 2]:.3f} s, '
                       f'max {latencies[-1]:.3f} s',
                test_seconds=self.elapsed())


class Cron:
    """A cron job runs once per due time, however many processes claim."""

    def test_cron_job_fires_once_per_due_time(self):
        db, oid, tm, conn = self.setUpService(leaseTime=60.0)
        service = faultsupport.service(conn)
        cronid = service.addCronJob(faultsupport.TICK)  # every minute
        delayedid = service.addCronJob(faultsupport.RECORD, delay=30)
        tm.commit()
        first = service.jobs[cronid].scheduledFor
        delayedDue = service.jobs[delayedid].scheduledFor
        # Three "processes": databases of their own (each its own ZEO
        # client or RelStorage instance), one processor each.
        procs = [processor.SimpleProcessor(self.openDatabase(), oid,
                                           name=f'cron{i}')
                 for i in range(3)]
        rounds = 12
        rnd = random.Random(4711)
        runs = collections.Counter()
        errors = []

        def claimAt(proc, now, barrier):
            try:
                barrier.wait(30)
                runs[proc.name] += proc.step(now)
            except Exception as e:  # reported below
                errors.append(e)
        for minute in range(rounds):
            due = first + datetime.timedelta(minutes=minute)
            barrier = threading.Barrier(len(procs))
            threads = [threading.Thread(target=claimAt, args=(
                proc, due + datetime.timedelta(seconds=rnd.uniform(0, 50)),
                barrier)) for proc in procs]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            self.assertEqual(errors, [])
        # Four minutes nobody looked: the missed runs are one run.
        late = first + datetime.timedelta(minutes=rounds + 4, seconds=5)
        self.assertTrue(procs[0].step(late))
        self.assertFalse(procs[1].step(late))
        for proc in procs:
            proc.stop()

        tm.begin()
        ticks = dict(conn.root()['ticks'])
        minutes = [int((first + datetime.timedelta(minutes=m)).timestamp()
                       // 60) for m in range(rounds)]
        expected = dict.fromkeys(minutes, 1)
        expected[minutes[-1] + 5] = 1
        self.assertEqual(ticks, expected)
        job = service.jobs[cronid]
        self.assertEqual((job.status, job.attempts), ('cronjob', rounds + 1))
        self.assertEqual(job.scheduledFor,
                         late.replace(second=0) + datetime.timedelta(
                             minutes=1))
        # The delayed job ran once too (in the first round after its due
        # time), and is done.
        delayed = service.jobs[delayedid]
        self.assertEqual((delayed.status, delayed.attempts), ('completed', 1))
        self.assertGreaterEqual(delayed.started, delayedDue)
        self.assertEqual(conn.root()['counts'][delayedid], 1)
        # (The rounds' runs: each cron run and the delayed job's.)
        self.assertEqual(sum(runs.values()), rounds + 1)
        figures(self, storage=self.storageName, runs=dict(runs),
                test_seconds=self.elapsed())


class ServerRestart:
    """The ZEO server dies (SIGKILL) and comes back: nothing is lost."""

    def test_zeo_server_killed_and_restarted(self):
        db, oid, tm, conn = self.setUpService()
        service = faultsupport.service(conn)
        ids = self.addJobs(tm, service, 600, None, 100)
        self.startWorker('worker0', 2)
        self.startWorker('worker1', 1)

        def completed():
            try:
                tm.begin()
                return service.countJobs('completed')
            except TransientError:  # the server is away
                tm.abort()
                return 0
        waitFor(lambda: completed() >= len(ids) // 3, 60,
                message='a third of the jobs')
        self.servers.kill(self.zeo)
        killed = time.monotonic()
        self.startZEO(self.port)
        restarted = time.monotonic() - killed
        waitFor(lambda: completed() == len(ids), 120, 0.1,
                'all jobs completed after the restart')
        after = time.monotonic() - killed
        tm.begin()
        counts = conn.root()['counts']
        self.assertEqual({jobid: counts.get(jobid) for jobid in ids},
                         dict.fromkeys(ids, 1))
        self.assertEqual(set(conn.root()['done']), set(ids))
        self.assertEqual(service.countJobs('processing'), 0)
        log = self.workerLog()
        # No attempt was spent on the outage itself: a job ran more than
        # once only if its lease expired (or its worker was found dead)
        # meanwhile.
        lost = {int(jobid) for jobid in re.findall(r'Job (\d+) .*: worker '
                                                   r'\S+ lost', log)}
        repeated = {jobid for jobid in ids
                    if service.jobs[jobid].attempts > 1}
        self.assertLessEqual(repeated, lost)
        # No worker paused longer than a few seconds after a fault.
        pauses = [float(p)
                  for p in re.findall(r'pausing ([\d.e+-]+) s', log)]
        self.assertLessEqual(max(pauses, default=0), 2.0, pauses)
        figures(self, storage=self.storageName, restart_s=restarted,
                repeated=len(repeated), longest_pause_s=max(pauses, default=0),
                done_after_kill_s=after,
                recovered=len(set(re.findall(r'Job (\d+) .*lease expired',
                                             log))),
                test_seconds=self.elapsed())


class ServerResolvesConflicts:
    """The server (or client) side conflict resolution is importable.

    A job added while another transaction claims from the same ready
    queue: both commit (the BTree bucket of the index of 'queued'
    resolves; over ZEO that happens in the server process).
    """

    def test_add_and_claim_merge(self):
        db, oid, tm, conn = self.setUpService()
        service = faultsupport.service(conn)
        first = service.add(faultsupport.RECORD)
        tm.commit()
        tm2 = transaction.TransactionManager()
        conn2 = db.open(transaction_manager=tm2)
        self.addCleanup(conn2.close)
        self.addCleanup(tm2.abort)
        tm2.begin()
        claimed = faultsupport.service(conn2).claim('claimer')
        self.assertEqual(claimed.id, first)
        tm.begin()
        second = service.add(faultsupport.RECORD)
        tm.commit()
        try:
            tm2.commit()
        except ConflictError as e:  # pragma: no cover (the failure)
            self.fail(f'add and claim did not merge: {e!r}')
        tm.begin()
        self.assertEqual(service.getStatus(first), 'processing')
        self.assertEqual([job.id for job in service.listJobs('queued')],
                         [second])


class Workers:
    """The worker registry with real worker processes: a SIGKILLed
    worker's job runs again within seconds, pause and resume reach every
    worker."""

    def workers(self, tm, service):
        tm.begin()
        return {w['id']: w for w in service.listWorkers()}

    def test_killed_worker_found_dead_by_its_heartbeats(self):
        # The default settings: a lease of 60 s, a worker timeout of 15 s.
        db, oid, tm, conn = self.setUpService(leaseTime=60.0)
        service = faultsupport.service(conn)
        self.assertEqual(service.workerTimeout, 15.0)
        first = self.startWorker('first')
        second = self.startWorker('second')
        jobid = service.add(faultsupport.BLOCK, {'name': 'dead'})
        tm.commit()
        seen1 = self.waitStarted('dead', 1)
        lost = seen1['worker']
        other = [p for p in (first, second) if p.pid != seen1['pid']][0]
        # Both are registered and beating; the first one runs the job.
        waitFor(lambda: len([w for w in self.workers(tm, service).values()
                             if w['heartbeat'] >= 1]) == 2, 30,
                message='two workers beating')
        self.assertEqual(self.workers(tm, service)[lost]['running'], [jobid])
        killed = time.monotonic()
        self.procs.kill(first if seen1['pid'] == first.pid else second)
        seen2 = self.waitStarted('dead', 2, 25)
        self.release('dead')
        waitFor(fresh(tm, lambda: service.getStatus(jobid) == 'completed'),
                max(25 - (time.monotonic() - killed), 1),
                message='completion within 25 s of the kill')
        done = time.monotonic() - killed
        self.assertEqual(seen2['pid'], other.pid)
        self.assertTrue(seen2['error'].startswith(
            f'WorkerLost: worker {lost} lost (no heartbeat for 15 s'),
            seen2['error'])
        workers = self.workers(tm, service)
        self.assertEqual(workers[lost]['status'], 'dead')
        self.assertEqual(workers[seen2['worker']]['status'], 'alive')
        self.assertEqual(conn.root()['counts'][jobid], 1)
        figures(self, storage=self.storageName, done_after_kill_s=done,
                test_seconds=self.elapsed())

    def test_pause_and_resume_reach_every_worker(self):
        db, oid, tm, conn = self.setUpService()
        service = faultsupport.service(conn)
        self.startWorker('worker0', 2)
        worker1 = self.startWorker('worker1', 1)
        waitFor(lambda: len(self.workers(tm, service)) == 2, 30,
                message='two workers registered')
        running = service.add(faultsupport.BLOCK, {'name': 'running'})
        tm.commit()
        self.waitStarted('running', 1)
        service.pause()
        tm.commit()
        paused = time.monotonic()
        ids = self.addJobs(tm, service, 20, None)
        # The running job finishes; nothing more is claimed.
        self.release('running')
        waitFor(fresh(tm, lambda: service.getStatus(running) == 'completed'),
                30, message='the running job to finish')
        beats = {key: w['heartbeat']
                 for key, w in self.workers(tm, service).items()}
        # One heartbeat interval later, every worker has beaten (it lives)
        # and none has claimed a job.
        waitFor(lambda: all(
            w['heartbeat'] > beats[key]
            for key, w in self.workers(tm, service).items()), 30,
            message='a heartbeat of every worker')
        tm.begin()
        self.assertEqual(service.countJobs('queued'), len(ids))
        self.assertEqual(service.countJobs('processing'), 0)
        service.resume()
        tm.commit()
        resumed = time.monotonic()
        waitFor(fresh(tm, lambda: service.countJobs('completed')
                      == len(ids) + 1), 30, message='all jobs after resume')
        # A worker that stops cleanly deregisters.
        self.procs.signal(worker1, signal.SIGTERM)
        self.assertEqual(self.procs.wait(worker1, 60), 0)
        remaining = [proc.pid for name, proc in self.procs.running.values()]
        self.assertEqual(
            [w['pid'] for w in self.workers(tm, service).values()],
            remaining)
        figures(self, storage=self.storageName,
                paused_s=resumed - paused,
                drained_after_resume_s=time.monotonic() - resumed,
                test_seconds=self.elapsed())


class WorkersView:
    """The Workers tab of a ``remotetask serve`` shows the worker
    processes that run the service's jobs, over the same ZEO server."""

    def test_the_workers_tab_shows_the_worker_processes(self):
        import re
        import subprocess
        import sys
        from lovely.remotetask.app.tests.test_server import environment
        from lovely.remotetask.app.tests.test_server import request
        db, oid, tm, conn = self.setUpService(leaseTime=60.0)
        service = faultsupport.service(conn)
        workers = [self.startWorker(f'shown{i}') for i in range(2)]
        waitFor(fresh(tm, lambda: len(service.listWorkers()) == 2), 30,
                message='two workers registered')
        jobid = service.add(faultsupport.BLOCK, {'name': 'shown'})
        tm.commit()
        seen = self.waitStarted('shown', 1)
        # The next heartbeat of the worker tells what it runs.
        waitFor(fresh(tm, lambda: [
            w['running'] for w in service.listWorkers()
            if w['id'] == seen['worker']] == [[jobid]]), 30,
            message='the heartbeat with the running job')
        # The root folder becomes a site, as the server's bootstrap needs.
        from zope.site.site import LocalSiteManager
        tm.begin()
        root = conn.root()['Application']
        root.setSiteManager(LocalSiteManager(root))
        tm.commit()
        # A server of its own, on the same ZEO server.
        home = os.path.join(self.dir, 'serve')
        os.mkdir(home)
        subprocess.run([sys.executable, '-c',
                        'from lovely.remotetask.app import instance; '
                        'instance.make()'], cwd=home, check=True,
                       env=environment(), timeout=START_TIMEOUT)
        conf = os.path.join(home, 'var', 'zope.conf')
        with open(conf) as f:
            text = f.read()
        text = re.sub(
            r'<zodb>\s*cache-size \d+\s*<filestorage>.*?</filestorage>\s*'
            r'</zodb>',
            f'<zodb>\n  <zeoclient>\n    server {self.host}:{self.port}\n'
            f'  </zeoclient>\n</zodb>', text, count=1, flags=re.S)
        with open(conf, 'w') as f:
            f.write(text)
        out = os.path.join(home, 'serve.out')
        with open(out, 'wb') as log:
            proc = subprocess.Popen(
                [sys.executable, '-m', 'lovely.remotetask.app', 'serve',
                 '--config', conf, '--port', '0'], cwd=home, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=environment(REMOTETASK_ADMIN='boss:Very-Secret'))
        self.addCleanup(lambda: (proc.poll() is None and proc.kill(),
                                 proc.wait(30)))
        try:
            url = faultsupport.waitForLine(
                out, 'Serving on ', START_TIMEOUT, proc)
        except AssertionError as error:
            with open(out) as f:
                self.fail(f'{error}\n{f.read()[-3000:]}')
        url = re.search(r'(http://[^/\s]+)', url)[1]
        status, body, headers = request(
            f'{url}/tasks/@@workers.html', 'boss:Very-Secret')
        self.assertEqual(status, 200, body[:500])
        page = body.decode()
        for worker in workers:
            self.assertIn(f'{worker.pid}', page)
        # The worker that runs the job links to it.
        self.assertIn(f'/tasks/{jobid}', page)
        self.assertIn(seen['worker'], page)
        self.release('shown')
        proc.terminate()
        self.assertEqual(proc.wait(60), 0)


class CancelUnderLoad:
    """"Cancel all" while workers drain the queue: it succeeds, and every
    job ends cancelled or completed once."""

    def test_cancel_all_during_a_full_drain(self):
        from lovely.remotetask import bulk
        db, oid, tm, conn = self.setUpService(leaseTime=60.0)
        service = faultsupport.service(conn)
        ids = self.addJobs(tm, service, 3000, None, perTransaction=500)
        for label in ('worker0', 'worker1'):
            self.startWorker(label, 2)
        waitFor(fresh(tm, lambda: service.countJobs('completed') > 100), 60,
                message='the drain to be under way')
        started = time.monotonic()
        tm.begin()
        cancelled = bulk.cancelAll(service, size=200)
        took = time.monotonic() - started
        waitFor(fresh(tm, lambda: not service.countJobs('processing')), 60,
                message='the running jobs to end')
        statuses = collections.Counter(service.getStatus(i) for i in ids)

        def jobs(ids):
            """What a failure needs to know of the jobs ``ids``."""
            return [(i, service.getStatus(i), service.jobs[i].error,
                     service.jobs[i].history) for i in sorted(ids)[:5]]
        self.assertEqual(set(statuses), {'cancelled', 'completed'},
                         jobs(i for i in ids if service.getStatus(i)
                              not in ('cancelled', 'completed')))
        self.assertEqual(statuses['cancelled'], cancelled)
        self.assertGreater(cancelled, 0)
        counts = conn.root()['counts']
        completed = {i for i in ids if service.getStatus(i) == 'completed'}
        self.assertEqual(set(counts.keys()) & set(ids), completed,
                         jobs((set(counts.keys()) & set(ids)) ^ completed))
        self.assertEqual({counts[i] for i in completed}, {1})
        figures(self, storage=self.storageName, cancelled=cancelled,
                completed=len(completed), cancel_all_s=took,
                test_seconds=self.elapsed())


class Contention:
    """Workers contending for the same objects: conflicts and lock errors
    cost no job an attempt."""

    def test_contention_spends_no_attempts(self):
        db, oid, tm, conn = self.setUpService(leaseTime=60.0)
        service = faultsupport.service(conn)
        for label, threads in (('worker0', 3), ('worker1', 3)):
            self.startWorker(label, threads)
        # Every job writes the same two BTrees (``_record``).
        ids = self.addJobs(tm, service, 400, None, 100)
        waitFor(fresh(tm, lambda: service.countJobs('completed')
                      == len(ids)), 120, 0.2, 'all jobs completed')
        tm.begin()
        attempts = collections.Counter(
            service.jobs[jobid].attempts for jobid in ids)
        self.assertEqual(attempts, {1: len(ids)})
        counts = conn.root()['counts']
        self.assertEqual({jobid: counts.get(jobid) for jobid in ids},
                         dict.fromkeys(ids, 1))
        log = self.workerLog()
        figures(self, storage=self.storageName,
                conflicts=log.count(': conflict ('),
                faults=log.count(': storage fault ('),
                test_seconds=self.elapsed())


class Chains:
    """SIGKILL the worker running a link of a chain: the chain goes on,
    no link is lost, none completes twice, each runs after its parent."""

    #: Links of the chain, and those whose worker is killed mid-run.
    links = 60
    killed = (10, 25, 40)

    def assertChainRanOnce(self, tm, conn, service, ids):
        """Wait for the chain ``ids`` to end; each link completed once,
        after its parent.  Returns the jobs."""
        try:
            waitFor(fresh(tm, lambda: service.getStatus(ids[-1])
                          in ('completed', 'error', 'cancelled')),
                    60 + 10 * self.leaseTime, message='the chain to end')
        except AssertionError:
            self.fail(self.diagnostics(conn))
        tm.begin()
        jobs = [service.jobs[jobid] for jobid in ids]
        self.assertEqual({job.status for job in jobs}, {'completed'},
                         self.diagnostics(conn))
        counts = conn.root()['counts']
        self.assertEqual({jobid: counts.get(jobid) for jobid in ids},
                         {jobid: 1 for jobid in ids})
        for parent, child in zip(jobs, jobs[1:]):
            self.assertGreaterEqual(child.started, parent.completed)
        return jobs

    def test_sigkill_in_the_middle_of_a_chain(self):
        db, oid, tm, conn = self.setUpService()
        service = faultsupport.service(conn)
        workers = {label: self.startWorker(label)
                   for label in ('worker0', 'worker1')}
        ids = []
        for n in range(self.links):
            # The links to be killed take a while: the kill lands mid-run.
            input = {'sleep': 0.5 if n in self.killed else 0.01}
            ids.append(service.add(faultsupport.RECORD, input,
                                   after=ids[-1:]))
        tm.commit()
        for n in self.killed:
            waitFor(fresh(tm, lambda: service.getStatus(ids[n])
                          == 'processing'), 60,
                    message=f'link {n} to run')
            pid = int(service.jobs[ids[n]].worker.split(':')[1])
            label, = [label for label, proc in workers.items()
                      if proc.pid == pid]
            self.procs.kill(workers[label])
            workers[label] = self.startWorker(label, ready=False)
        jobs = self.assertChainRanOnce(tm, conn, service, ids)
        # The killed links ran again (attempt 2, after their lease).
        self.assertEqual([jobs[n].attempts for n in self.killed],
                         [2] * len(self.killed))
        side = faultsupport.readSideEffects(self.dir)
        self.assertEqual({jobid for jobid in ids if side.get(jobid, 0) < 1},
                         set())
        self.assertEqual(service.countJobs('waiting'), 0)
        figures(self, storage=self.storageName, links=self.links,
                executions=sum(side.get(jobid, 0) for jobid in ids),
                test_seconds=self.elapsed())

    def test_sigkill_while_a_chain_grows(self):
        # Each link is added while the workers run the links before it:
        # many adds race the end of their parent (late links, settled by
        # the follow-up or the sweep, see dependencies.py), and a worker
        # is killed halfway.
        db, oid, tm, conn = self.setUpService()
        service = faultsupport.service(conn)
        workers = {label: self.startWorker(label)
                   for label in ('worker0', 'worker1')}
        ids = []
        for n in range(40):
            if n == 20:
                self.procs.kill(workers['worker0'])
                workers['worker0'] = self.startWorker('worker0',
                                                      ready=False)
            for attempt in range(10):
                try:
                    tm.begin()
                    jobid = service.add(faultsupport.RECORD,
                                        {'sleep': 0.05}, after=ids[-1:])
                    tm.commit()
                    break
                except ConflictError:
                    tm.abort()   # the parent ended meanwhile: again
            ids.append(jobid)
            time.sleep(0.03)
        self.assertChainRanOnce(tm, conn, service, ids)
        self.assertEqual(service.countJobs('waiting'), 0)
        figures(self, storage=self.storageName, links=len(ids),
                test_seconds=self.elapsed())


class ZEOFaults(ZEOStorage, ProcessTestCase, KillWorkers, Stopping, Waking,
                PushWaking, Cron, ServerRestart, ServerResolvesConflicts,
                Workers, WorkersView, CancelUnderLoad, Chains):
    """Over a ZEO server."""


class RelStorageFaults(RelStorageStorage, ProcessTestCase, KillWorkers,
                       LostWorker, PushWaking, Contention):
    """Over RelStorage on PostgreSQL (skipped when unreachable)."""

    jobs = 1000


def test_suite():
    loader = unittest.defaultTestLoader
    suite = unittest.TestSuite([
        loader.loadTestsFromTestCase(ZEOFaults),
        loader.loadTestsFromTestCase(RelStorageFaults),
    ])
    return suite
