"""The worker registry, dead workers, storage faults and pause, in one
process (a FileStorage; the multi-process cases are in test_faults.py).
"""
import datetime
import time
import unittest

import transaction
from ZEO.Exceptions import ClientDisconnected
from ZODB.POSException import ConflictError
from ZODB.POSException import ReadConflictError

from lovely.remotetask import processor
from lovely.remotetask import storagefaults
from lovely.remotetask import workers
from lovely.remotetask.tests.fixtures import ServiceInFileStorage
from lovely.remotetask.tests.fixtures import provide


def waitFor(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError('timed out')
        time.sleep(0.02)


class FlakyStorage:
    """A task that meets ``errors`` (one per run) before it succeeds."""

    def __init__(self, *errors):
        self.errors = list(errors)
        self.runs = 0

    def __call__(self, service, jobid, input):
        self.runs += 1
        if self.errors:
            raise self.errors.pop(0)
        return 'done'


class Base(ServiceInFileStorage):
    """A service in a FileStorage (see fixtures.py)."""


class StorageFaultTests(Base):

    def runWith(self, task, leaseTime=60.0):
        provide('flaky', task)
        service, tm = self.service()
        service.leaseTime = leaseTime
        jobid = service.add('flaky')
        tm.commit()
        proc = processor.SimpleProcessor(self.db, self.oid, name='test')
        self.addCleanup(proc.stop)
        self.assertTrue(proc.step())
        tm.begin()
        return service.jobs[jobid], proc

    def test_faults_are_retried_without_spending_attempts(self):
        task = FlakyStorage(
            ClientDisconnected('server away'),
            ValueError(storagefaults.DUPLICATE_OID),
            ReadConflictError('locked'))
        job, proc = self.runWith(task)
        self.assertEqual((job.status, job.attempts, job.error, job.output),
                         ('completed', 1, None, 'done'))
        self.assertEqual(task.runs, 4)
        self.assertEqual((proc.done, proc.failed), (1, 0))

    def test_relstorage_lock_errors_are_storage_faults(self):
        try:
            from relstorage.adapters.interfaces import \
                UnableToLockRowsToReadCurrentError
        except ImportError:  # pragma: no cover
            self.skipTest('RelStorage is not installed')
        self.assertTrue(storagefaults.isStorageFault(
            UnableToLockRowsToReadCurrentError('rows')))
        self.assertFalse(storagefaults.isStorageFault(ConflictError()))
        self.assertFalse(storagefaults.isStorageFault(ValueError('other')))

    def test_a_fault_in_the_runs_begin_is_retried(self):
        # With ``server-sync`` a begin is a round trip to the ZEO server:
        # a disconnect there once left the job to its lease.
        manager = transaction.manager.manager
        original = manager.begin
        calls = []

        def begin():
            calls.append(1)
            if len(calls) == 1:
                raise ClientDisconnected('begin')
            return original()
        manager.begin = begin
        self.addCleanup(vars(manager).pop, 'begin', None)
        job, proc = self.runWith(FlakyStorage())
        self.assertGreater(len(calls), 1)
        self.assertEqual((job.status, job.attempts, job.error),
                         ('completed', 1, None))

    def test_a_fault_in_a_group_runs_the_jobs_alone(self):
        task = FlakyStorage(ValueError(storagefaults.DUPLICATE_OID))
        provide('flaky', task)
        service, tm = self.service()
        for i in range(6):
            service.add('flaky')
        tm.commit()
        proc = processor.SimpleProcessor(self.db, self.oid, name='test')
        self.addCleanup(proc.stop)
        ids = proc.claimGroup(limit=proc.maxGroup)
        self.assertEqual(len(ids), 3)   # half the queue
        proc.runGroup(ids)
        tm.begin()
        self.assertEqual([(service.jobs[jobid].status,
                           service.jobs[jobid].attempts) for jobid in ids],
                         [('completed', 1)] * 3)
        self.assertEqual((proc.done, proc.failed), (3, 0))
        # The group's three runs, then the one that met the fault alone.
        self.assertEqual(task.runs, 3 + 1)

    def test_faults_until_the_job_is_taken_back_leave_it(self):
        # The storage keeps failing the run; meanwhile another worker took
        # the job back (its lease revoked): the run leaves it, failing
        # nothing.
        test = self

        class Revoking(FlakyStorage):
            def __call__(self, service, jobid, input):
                if self.runs == 2:
                    conn, tm = test.open()
                    lease = conn.get(test.oid).jobs[jobid].lease
                    lease.revoked = True
                    tm.commit()
                    conn.close()
                return super().__call__(service, jobid, input)
        task = Revoking(*[ClientDisconnected('away')] * 100)
        job, proc = self.runWith(task)
        self.assertEqual(task.runs, 3)
        self.assertEqual((job.status, job.attempts, job.error),
                         ('processing', 1, None))
        self.assertEqual((proc.done, proc.failed), (0, 0))

    def test_backoff_ends_when_the_lease_would_expire(self):
        clock = [0.0]
        backoff = storagefaults.Backoff(self.db, 0.2, lambda: clock[0])
        backoff.first = 0.001
        self.assertTrue(backoff.wait(ClientDisconnected()))
        clock[0] = 0.3
        self.assertFalse(backoff.wait(ClientDisconnected()))
        backoff.held()   # the lease was seen held: a new deadline
        self.assertTrue(backoff.wait(ClientDisconnected()))

    def test_the_tasks_own_errors_still_fail(self):
        job, proc = self.runWith(FlakyStorage(KeyError('mine')))
        self.assertEqual((job.status, job.attempts), ('queued', 1))
        self.assertEqual(job.error, "KeyError: 'mine'")
        self.assertEqual((proc.done, proc.failed), (0, 1))

    def test_prefetched_oids_are_dropped(self):
        class Storage:
            _oids = [b'1', b'2']

        class DB:
            storage = Storage()
        storagefaults.dropPrefetchedOids(DB())
        self.assertEqual(Storage._oids, [])
        storagefaults.dropPrefetchedOids(self.db)  # no ZEO: nothing

    def test_prefetched_oids_are_dropped_at_every_reconnection(self):
        # A restarted ZEO server hands out the oids a client prefetched
        # from the server before: the client drops them when its
        # connection ends and when it is made again.
        calls = []

        class ClientStorage:
            _oids = []

            def notify_connected(self, conn, info):
                calls.append(('connected', list(self._oids)))

            def notify_disconnected(self):
                calls.append(('disconnected', list(self._oids)))

        class DB:
            storage = ClientStorage()
        db = DB()
        self.assertTrue(storagefaults.guardPrefetchedOids(db))
        self.assertTrue(storagefaults.guardPrefetchedOids(db))  # once
        db.storage._oids[:] = [b'3', b'2']
        db.storage.notify_disconnected()
        db.storage._oids[:] = [b'5', b'4']
        db.storage.notify_connected('conn', {})
        self.assertEqual(calls, [('disconnected', []), ('connected', [])])
        self.assertFalse(storagefaults.guardPrefetchedOids(self.db))

    def test_a_duplicate_oid_costs_no_write(self):
        # A new object gets the oid of an object the connection holds
        # (after a ZEO server restart, see storagefaults.py): the commit
        # fails, and its abort takes the other object out of the cache,
        # though its parent still refers to it.  ``repair`` (which a
        # processor calls after the fault) empties the caches: the next
        # transaction's writes to it are stored again.
        from persistent.mapping import PersistentMapping
        conn, tm = self.open()
        self.addCleanup(conn.close)
        self.addCleanup(tm.abort)
        root = conn.root()
        root['held'] = PersistentMapping(n=0)
        root['other'] = PersistentMapping()
        tm.commit()
        held = root['held']
        self.assertEqual(held['n'], 0)
        # A stale prefetched oid (the connection's storage copied the
        # method of the database's).
        storage = conn._storage
        storage.new_oid = lambda: held._p_oid
        self.addCleanup(vars(storage).pop, 'new_oid', None)
        root['other']['new'] = PersistentMapping()
        # In a savepoint (as a group's tasks run; a ZEO client's commit
        # too stores before the server can answer): the new object is
        # stored, then put into the cache.
        with self.assertRaises(ValueError) as raised:
            tm.savepoint()
        self.assertTrue(storagefaults.isStorageFault(raised.exception))
        tm.abort()
        del storage.new_oid
        self.assertIsNone(held._p_jar)   # (ZODB's abort) out of the cache
        storagefaults.repair(self.db, raised.exception)
        tm.begin()
        root['held']['n'] = 1
        tm.commit()
        other, otm = self.open()
        self.addCleanup(other.close)
        self.assertEqual(other.root()['held']['n'], 1)


class ObservationTests(unittest.TestCase):

    def test_a_gap_in_looking_starts_anew(self):
        clock = [0.0]
        seen = workers.Observations(lambda: clock[0], gap=5.0)
        seen.look()
        self.assertEqual(seen.silent('w', 1), 0.0)
        clock[0] = 4.0
        seen.look()
        self.assertEqual(seen.silent('w', 1), 4.0)
        clock[0] = 20.0   # the observer could not look for 16 s
        seen.look()
        self.assertEqual(seen.silent('w', 1), 0.0)
        clock[0] = 22.0
        seen.look()
        self.assertEqual(seen.silent('w', 1), 2.0)
        self.assertEqual(seen.silent('w', 2), 0.0)


class RegistryTests(Base):

    def test_processor_thread_registers_beats_and_deregisters(self):
        provide('echo', lambda service, jobid, input: input)
        service, tm = self.service()
        service.workerTimeout = 0.6
        tm.commit()
        service.startProcessing()

        def registered():
            tm.begin()
            return [w for w in service.listWorkers()
                    if w['heartbeat'] >= 2]
        waitFor(registered)
        worker, = registered()
        self.assertEqual(worker['status'], 'alive')
        self.assertEqual(worker['services'], ['remotetasks'])
        self.assertEqual(worker['threads'], 1)
        jobid = service.add('echo', 'x')
        tm.commit()
        waitFor(lambda: tm.begin() and service.listWorkers()[0]['done'])
        tm.begin()
        self.assertEqual(service.getStatus(jobid), 'completed')
        self.assertEqual(service.activeWorkers(), [worker['id']])
        service.stopProcessing()
        waitFor(lambda: tm.begin() and not service.listWorkers())

    def test_dead_workers_jobs_are_taken_back_before_the_lease(self):
        provide('echo', lambda service, jobid, input: input)
        service, tm = self.service()
        service.workerTimeout = 0.6
        jobid = service.add('echo', 'x')
        service.register('gone:1:x', ['remotetasks.tasks'])
        service.claim('gone:1:x')
        tm.commit()
        service.startProcessing()   # the lease would hold for 60 s
        waitFor(lambda: tm.begin() and
                service.getStatus(jobid) == 'completed')
        job = service.jobs[jobid]
        self.assertEqual(job.attempts, 2)
        status = {w['id']: w['status'] for w in service.listWorkers()}
        self.assertEqual(status['gone:1:x'], 'dead')

    def test_clock_skew_kills_no_one(self):
        # A worker whose heartbeats carry a time an hour ago, beating: alive.
        service, tm = self.service()
        service.workerTimeout = 0.6
        service.register('skewed:1:x')
        tm.commit()
        service.startProcessing()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            tm.begin()
            service.heartbeat('skewed:1:x', now=datetime.datetime(
                2020, 1, 1, tzinfo=datetime.timezone.utc))
            tm.commit()
            time.sleep(0.05)
        tm.begin()
        status = {w['id']: w['status'] for w in service.listWorkers()}
        # 'late' by this clock (shown), but no verdict: not dead.
        self.assertEqual(status['skewed:1:x'], 'late')

    def test_old_service_gets_its_registry_on_first_registration(self):
        service, tm = self.service()
        del service._workers
        tm.commit()
        self.assertEqual(service.listWorkers(), [])
        self.assertFalse(service.isPaused())
        service.register('w')
        tm.commit()
        self.assertEqual([w['id'] for w in service.listWorkers()], ['w'])

    def test_a_ghost_service_keeps_its_registry(self):
        service, tm = self.service()
        service.register('w')
        service.pause()
        tm.commit()
        service._p_deactivate()
        service.register('v')
        tm.commit()
        self.assertEqual(sorted(w['id'] for w in service.listWorkers()),
                         ['v', 'w'])
        self.assertTrue(service.isPaused())

    def test_pause_is_obeyed_by_the_running_processor(self):
        provide('echo', lambda service, jobid, input: input)
        service, tm = self.service()
        service.pause()
        tm.commit()
        service.startProcessing()
        jobid = service.add('echo', 'x')
        tm.commit()
        time.sleep(0.5)
        tm.begin()
        self.assertEqual(service.getStatus(jobid), 'queued')
        service.resume()
        tm.commit()
        waitFor(lambda: tm.begin() and
                service.getStatus(jobid) == 'completed')


def test_suite():
    return unittest.defaultTestLoader.loadTestsFromName(__name__)
