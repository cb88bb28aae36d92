"""Edge cases of the task service under concurrency, failure and bad input.

Every test runs against a real FileStorage in a temporary directory
(MappingStorage does not resolve conflicts) and provokes its interleaving
deterministically: it opens several connections, each with its own
transaction manager, changes the service in each, then commits them in a
chosen order.  Processors are driven step by step (``step``, ``claim``,
``run``) with explicit times, never by sleeping.
"""
import collections
import datetime
import logging
import os
import random
import shutil
import tempfile
import time
import unittest

import transaction
import ZODB
import zope.component
import zope.component.testing
from persistent.mapping import PersistentMapping
from ZODB.FileStorage import FileStorage
from ZODB.POSException import ConflictError

from lovely.remotetask import inbox
from lovely.remotetask import interfaces
from lovely.remotetask import processor
from lovely.remotetask import running
from lovely.remotetask import task
from lovely.remotetask.interfaces import CANCELLED
from lovely.remotetask.interfaces import COMPLETED
from lovely.remotetask.interfaces import CRONJOB
from lovely.remotetask.interfaces import DELAYED
from lovely.remotetask.interfaces import ENDED
from lovely.remotetask.interfaces import ERROR
from lovely.remotetask.interfaces import PROCESSING
from lovely.remotetask.interfaces import QUEUED
from lovely.remotetask.interfaces import STATUSES
from lovely.remotetask.timeset import MAXID
from lovely.remotetask.timeset import spread as _spread
from lovely.remotetask.timeset import timeIds as _timeIds
from lovely.remotetask.service import TaskService
from lovely.remotetask.timeset import TimeSet


UTC = datetime.timezone.utc


def seconds(n):
    return datetime.timedelta(seconds=n)


class RecordingHandler(logging.Handler):

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)

    def messages(self, level=logging.DEBUG):
        return [r.getMessage() for r in self.records if r.levelno >= level]


class ServiceTestCase(unittest.TestCase):
    """A task service in a FileStorage, and connections to it."""

    def setUp(self):
        zope.component.testing.setUp(self)
        self.tmpdir = tempfile.mkdtemp(prefix='remotetask-test-')
        self.db = ZODB.DB(FileStorage(os.path.join(self.tmpdir, 'Data.fs')))
        self.connections = []
        self.viewer = None
        self.processors = []
        self.now = datetime.datetime.now(UTC).replace(microsecond=0)
        # The log of the service and processors, kept off the console.
        self.log = RecordingHandler()
        logger = logging.getLogger('lovely.remotetask')
        self._logger = (logger.level, logger.propagate)
        logger.addHandler(self.log)
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        # Every run of the 'record' task, committed or not.
        self.runs = []
        self.provideTask('record', self.record)
        self.provideTask('echo', task.echo)
        conn = self.open()
        root = conn.root()
        root['tasks'] = service = TaskService()
        # These tests are about transactions, not time: a failed attempt
        # is repeated at once (the default backoff, 10 s, is in
        # backoff.py and its tests).
        service.retryDelay = 0
        root['data'] = PersistentMapping(counter=0)
        self.commit(conn)
        self.oid = service._p_oid

    def tearDown(self):
        for proc in self.processors:
            proc.stop()
        processor.stopAll(db=self.db)
        for conn in self.connections:
            conn.transaction_manager.abort()
            conn.close()
        self.db.close()
        shutil.rmtree(self.tmpdir)
        logger = logging.getLogger('lovely.remotetask')
        logger.removeHandler(self.log)
        logger.setLevel(self._logger[0])
        logger.propagate = self._logger[1]
        zope.component.testing.tearDown(self)

    # -- helpers ---------------------------------------------------------------

    def record(self, service, jobid, input):
        self.runs.append(jobid)
        return input

    def provideTask(self, name, func):
        zope.component.provideUtility(func, interfaces.ITask, name)

    def open(self):
        """A connection with its own transaction manager, in a transaction.

        It sees the database as of now; other connections' commits become
        visible when its next transaction begins.
        """
        tm = transaction.TransactionManager()
        conn = self.db.open(transaction_manager=tm)
        tm.begin()
        self.connections.append(conn)
        return conn

    def service(self, conn):
        return conn.get(self.oid)

    def fresh(self):
        """The service as committed now (read only; one connection is
        reused, so a later call moves earlier results to the new state)."""
        if self.viewer is None:
            self.viewer = self.open()
        return self.begin(self.viewer)

    def commit(self, conn):
        conn.transaction_manager.commit()

    def begin(self, conn):
        conn.transaction_manager.abort()
        conn.transaction_manager.begin()
        return self.service(conn)

    def transact(self, func):
        """``func(service)`` in a connection of its own, committed; its
        result (which must not be a persistent object: the connection is
        closed)."""
        tm = transaction.TransactionManager()
        conn = self.db.open(transaction_manager=tm)
        try:
            tm.begin()
            result = func(self.service(conn))
            tm.commit()
            return result
        finally:
            tm.abort()
            conn.close()

    def addJobs(self, count, start, task='record', pending=False, **kw):
        """Add ``count`` jobs with ids ``start``, ``start + 1``, ... .

        Indexed, as a processor's next claim leaves them; with
        ``pending``, left in the inbox of new jobs (see inbox.py).
        """
        def add(service):
            service._v_nextid = start
            ids = [service.add(task, n, **kw) for n in range(count)]
            if not pending:
                inbox.index(service)
            return ids
        ids = self.transact(add)
        self.assertEqual(ids, list(range(start, start + count)))
        return ids

    def processor(self, **kw):
        proc = processor.SimpleProcessor(self.db, self.oid, name='test', **kw)
        self.processors.append(proc)
        return proc

    def assertConsistent(self, service):
        """The status index, counts and queues agree with the jobs."""
        byStatus = collections.defaultdict(set)
        byTask = collections.defaultdict(set)
        for jobid, job in service.jobs.items():
            self.assertEqual(job.id, jobid)
            byStatus[job.status].add(jobid)
            byTask[job.task].add(jobid)
        self.assertLessEqual(set(byStatus), set(STATUSES))
        for status in STATUSES:
            self.assertEqual(service.countJobs(status), len(byStatus[status]),
                             f'count of {status!r}')
            # The queued jobs: in the ready queues or the inbox (of new
            # jobs, see inbox.py), in one of them only.
            sets = service._statusSets(status)
            indexed = [list(_timeIds(keys)) for keys in sets]
            self.assertEqual(sum(map(len, indexed)),
                             len(set().union(*indexed)))
            self.assertEqual(set().union(*indexed), byStatus[status],
                             f'index of {status!r}')
            for jobid in byStatus[status]:
                key = service.jobs[jobid]._statusKey
                self.assertTrue(any(key in keys for keys in sets))
        self.assertEqual(sum(service.countJobs(s) for s in STATUSES),
                         len(service.jobs))
        self.assertEqual(service.countJobs(), len(service.jobs))
        self.assertEqual(
            {name: set().union(*(ids.keys(min=1) for ids
                                 in service._taskSets(name)))
             for name in service.taskNames()},
            dict(byTask))
        for name in service.taskNames():
            self.assertEqual(service.countJobs(task=name),
                             len(byTask[name]))
        # Every queued job can be claimed: its key in the index of
        # 'queued' (checked above) is the ready queue.  The schedule holds
        # exactly the delayed and cron jobs.
        self.assertEqual(set(_timeIds(service._schedule)),
                         byStatus[DELAYED] | byStatus[CRONJOB])
        # Chains: a waiting job waits only for jobs that have not ended,
        # and is linked to each (dependencies.py).
        from lovely.remotetask import dependencies
        for jobid in byStatus['waiting']:
            job = service.jobs[jobid]
            self.assertTrue(job.waitingFor, f'job {jobid} waits for none')
            for parentid in job.waitingFor:
                self.assertNotIn(service.jobs[parentid].status, ENDED)
                self.assertIn(jobid, dependencies.linked(service, parentid))

    def commitRetrying(self, conn, redo, retries=5):
        """Commit; on a conflict abort and ``redo(service)``, as the
        publisher retries a request.  Returns (result, conflicts)."""
        result = None
        for conflicts in range(retries + 1):
            try:
                self.commit(conn)
                return result, conflicts
            except ConflictError:
                result = redo(self.begin(conn))
        self.fail(f'still conflicting after {retries} retries')


class ConcurrentAddTests(ServiceTestCase):
    """Two connections adding jobs at once (two web requests)."""

    def setUp(self):
        super().setUp()
        self._random = random.getstate()
        random.seed(4711)   # the random id starts: a deterministic test

    def tearDown(self):
        random.setstate(self._random)
        super().tearDown()

    def test_concurrent_adds_lose_and_duplicate_nothing(self):
        # The task's per-task index exists (its first add ever is the one
        # that creates it, which concurrent first adds would race for).
        self.addJobs(1, 1)
        rounds = 80
        a, b = self.open(), self.open()
        committed = {}          # job id -> input
        conflicts = 0

        def adder(label, r):
            return lambda service: service.add('record', (label, r))

        for r in range(rounds):
            pending = {}
            for label, conn in (('a', a), ('b', b)):
                add = adder(label, r)
                pending[label] = conn, add, add(self.begin(conn))
            for label in ('ab' if r % 2 else 'ba'):
                conn, add, jobid = pending[label]
                retried, n = self.commitRetrying(conn, add)
                conflicts += n
                committed[retried or jobid] = (label, r)
        # No id was handed out twice (the dict would have lost a job).
        self.assertEqual(len(committed), 2 * rounds)
        self.assertEqual(collections.Counter(committed.values()),
                         collections.Counter({(label, r): 1 for label in 'ab'
                                              for r in range(rounds)}))
        # Every committed job exists exactly once; an aborted attempt left
        # nothing behind.
        service = self.fresh()
        stored = {jobid: job.input for jobid, job in service.jobs.items()
                  if jobid != 1}
        self.assertEqual(stored, committed)
        self.assertTrue(all(0 < jobid < MAXID for jobid in stored))
        self.assertConsistent(service)
        # Disjoint adds merge.  The rare conflicts are bucket splits of the
        # BTrees (a split rewrites the parent node), which the publisher
        # retries; two connections that shared one run of ids would
        # conflict on every other commit instead.
        self.assertLessEqual(conflicts, rounds * 2 // 20)
        # Afterwards, two processors run every job exactly once.
        p1, p2 = self.processor(partition=0), self.processor(partition=2)
        while p1.step() | p2.step():
            pass
        self.assertEqual(sorted(self.runs), sorted(list(stored) + [1]))
        service = self.fresh()
        self.assertEqual(service.countJobs(COMPLETED), len(service.jobs))
        for jobid, job in service.jobs.items():
            self.assertEqual((job.attempts, job.output),
                             (1, 0 if jobid == 1 else committed[jobid]))
        self.assertConsistent(service)

    def test_same_id_in_two_connections_conflicts_once(self):
        # Two connections whose id runs collide: the second commit
        # conflicts; retried, it gets an id of its own.
        a, b = self.open(), self.open()
        sa, sb = self.service(a), self.service(b)
        sa._v_nextid = sb._v_nextid = 4711
        self.assertEqual(sa.add('record', 'a'), 4711)
        self.assertEqual(sb.add('record', 'b'), 4711)
        self.commit(a)
        self.assertRaises(ConflictError, self.commit, b)
        jobid = self.begin(b).add('record', 'b')
        self.commit(b)
        self.assertNotEqual(jobid, 4711)
        service = self.fresh()
        self.assertEqual({i: j.input for i, j in service.jobs.items()},
                         {4711: 'a', jobid: 'b'})
        self.assertConsistent(service)

    def test_an_id_taken_by_a_committed_add_is_skipped(self):
        # B's id run reaches an id A has meanwhile committed: B skips it
        # (and starts a new run at random, like zope.intid).
        a = self.open()
        self.service(a)._v_nextid = 500
        self.assertEqual(self.service(a).add('record', 'a'), 500)
        self.commit(a)
        b = self.open()
        self.service(b)._v_nextid = 500
        jobid = self.service(b).add('record', 'b')
        self.assertNotEqual(jobid, 500)
        self.commit(b)
        service = self.fresh()
        self.assertEqual({i: j.input for i, j in service.jobs.items()},
                         {500: 'a', jobid: 'b'})
        self.assertConsistent(service)


class AddAndClaimTests(ServiceTestCase):
    """An add and a claim of the last queued job, at once."""

    def addAndClaim(self, addFirst):
        last, = self.addJobs(1, 1000, pending=True)
        a, b = self.open(), self.open()
        sa, sb = self.service(a), self.service(b)
        sa._v_nextid = 2000
        new = sa.add('record', 'new')
        job = sb.claim('worker-b', self.now)
        self.assertEqual(job.id, last)
        # Both write the one bucket of the inbox of new jobs (inbox.py):
        # the add appends to it, the claim takes its only job out of it
        # (into the ready queue, and out of that at once).
        self.assertFalse(_spread(sa._inbox))
        self.assertEqual(sa._inbox._p_oid, sb._inbox._p_oid)
        self.assertEqual(list(_timeIds(sa._inbox)), [last, new])
        self.assertEqual(list(_timeIds(sb._inbox)), [])
        self.assertEqual(list(_timeIds(sb._index[QUEUED])), [])
        first, second = (a, b) if addFirst else (b, a)
        self.commit(first)
        self.commit(second)   # merges: no ConflictError
        service = self.fresh()
        self.assertEqual(service.getStatus(last), PROCESSING)
        self.assertEqual(service.jobs[last].worker, 'worker-b')
        self.assertEqual(service.getStatus(new), QUEUED)
        self.assertEqual(list(_timeIds(service._inbox)), [new])
        self.assertConsistent(service)
        # The added job is claimable.
        claimed = self.transact(lambda s: s.claim('worker-c', self.now).id)
        self.assertEqual(claimed, new)
        self.assertIsNone(self.transact(lambda s: s.claim('c', self.now)))
        self.assertConsistent(self.fresh())

    def test_add_first_then_claim_merge(self):
        self.addAndClaim(addFirst=True)

    def test_claim_first_then_add_merge(self):
        self.addAndClaim(addFirst=False)

    # After a burst.  A burst of jobs splits the 'queued' set of the
    # status index into several buckets, and BTrees never join them
    # again.  While they are spread, the claim of the oldest job deletes
    # the first key of a bucket, which BTrees refuse to merge with an add
    # into the same bucket: the loser retries (as the publisher or the
    # processor does) and nothing is lost or duplicated.  Once an idle
    # processor has compacted the index, they merge again.

    # More than two buckets' worth of jobs.
    BURST = 2 * TimeSet.max_leaf_size + 100

    def burstThenAddAndClaim(self, addFirst, compact=False):
        ids = self.addJobs(self.BURST, 1000)

        def drain(service):
            for jobid in ids[:-1]:
                service.runJob(service.claim('w', self.now), self.now)
            return _spread(service._index[QUEUED]), list(
                _timeIds(service._index[QUEUED]))
        # The precondition: the burst left several buckets, and the last
        # queued job is the only one.
        spread, queued = self.transact(drain)
        self.assertTrue(spread)
        self.assertEqual(queued, [ids[-1]])
        if compact:
            self.assertIn(QUEUED, self.transact(
                lambda service: service.compact()))
            self.assertFalse(_spread(self.fresh()._index[QUEUED]))
        a, b = self.open(), self.open()

        def add(service):
            service._v_nextid = ids[-1] + 1
            return service.add('record', 'new')

        def claim(service):
            return service.claim('worker-b', self.now).id
        new = add(self.service(a))
        self.assertEqual(claim(self.service(b)), ids[-1])
        first, second = (a, b) if addFirst else (b, a)
        self.commit(first)
        retried, conflicts = self.commitRetrying(
            second, claim if addFirst else add)
        if conflicts and not addFirst:
            new = retried
        service = self.fresh()
        self.assertEqual(service.getStatus(ids[-1]), PROCESSING)
        self.assertEqual(service.jobs[ids[-1]].worker, 'worker-b')
        self.assertEqual(service.getStatus(new), QUEUED)
        self.assertEqual(service.countJobs(), self.BURST + 1)
        self.assertConsistent(service)
        return conflicts

    # What holds today: the loser retries (as the publisher or the
    # processor does) and nothing is lost or duplicated.

    def test_after_a_burst_add_first_then_claim_lose_nothing(self):
        self.burstThenAddAndClaim(addFirst=True)

    def test_after_a_burst_claim_first_then_add_lose_nothing(self):
        self.burstThenAddAndClaim(addFirst=False)

    def test_after_a_burst_and_compaction_add_first_then_claim_merge(self):
        self.assertEqual(
            self.burstThenAddAndClaim(addFirst=True, compact=True), 0)

    def test_after_a_burst_and_compaction_claim_first_then_add_merge(self):
        self.assertEqual(
            self.burstThenAddAndClaim(addFirst=False, compact=True), 0)

    def test_an_idle_processor_compacts(self):
        ids = self.addJobs(self.BURST, 1000)
        proc = self.processor(maxGroup=1)   # a step per job
        for jobid in ids:
            self.assertTrue(proc.step(self.now))
        self.assertTrue(_spread(self.fresh()._index[COMPLETED]))
        self.assertTrue(_spread(self.fresh()._index[QUEUED]))
        self.assertFalse(proc.step(self.now))   # idle: compacts
        service = self.fresh()
        self.assertFalse(_spread(service._index[QUEUED]))
        self.assertTrue(_spread(service._index[COMPLETED]))  # not small
        self.assertConsistent(service)


class ConcurrentClaimTests(ServiceTestCase):
    """Two processors claiming at once never get the same job."""

    def setUp(self):
        super().setUp()
        # 16 jobs.  Claimers with partition p start at the (p % 4)-th run
        # of jobs in the head of the ready queue (a run is a claim's
        # group: one job for ``claim``).
        self.ids = self.addJobs(16, 1000)

    def claimBoth(self, pa, pb):
        a, b = self.open(), self.open()
        ja = self.service(a).claim('worker-a', self.now, partition=pa)
        jb = self.service(b).claim('worker-b', self.now, partition=pb)
        return a, b, ja.id, jb.id

    def test_claims_from_different_partitions_both_commit(self):
        a, b, ja, jb = self.claimBoth(0, 1)
        self.commit(a)
        self.commit(b)
        self.assertNotEqual(ja, jb)
        self.assertEqual((ja % 4, jb % 4), (0, 1))
        service = self.fresh()
        self.assertEqual(service.jobs[ja].worker, 'worker-a')
        self.assertEqual(service.jobs[jb].worker, 'worker-b')
        self.assertEqual(service.countJobs(PROCESSING), 2)
        self.assertConsistent(service)

    def test_claims_from_the_same_partition_conflict(self):
        for pa, pb in ((2, 2), (None, None)):
            a, b, ja, jb = self.claimBoth(pa, pb)
            self.assertEqual(ja, jb)
            self.commit(a)
            self.assertRaises(ConflictError, self.commit, b)
            jb = self.begin(b).claim('worker-b', self.now, partition=pb).id
            self.commit(b)
            self.assertNotEqual(ja, jb)
            service = self.fresh()
            self.assertEqual(service.jobs[ja].worker, 'worker-a')
            self.assertEqual(service.jobs[jb].worker, 'worker-b')
            self.assertEqual(service.jobs[ja].attempts, 1)
            self.assertConsistent(service)

    def test_draining_the_queue_concurrently_claims_each_job_once(self):
        claimed = []
        conflicts = 0
        a, b = self.open(), self.open()
        for r in range(40):
            # Sometimes the same partition, mostly different ones.
            pa, pb = r % 4, (r * 3 + 1) % 4 if r % 3 else r % 4
            ja = self.begin(a).claim('worker-a', self.now, partition=pa)
            jb = self.begin(b).claim('worker-b', self.now, partition=pb)
            ja, jb = ja and ja.id, jb and jb.id
            self.commit(a)
            try:
                self.commit(b)
            except ConflictError:
                conflicts += 1
                self.assertEqual(ja, jb)
                jb = self.begin(b).claim('worker-b', self.now, partition=pb)
                jb = jb and jb.id
                self.commit(b)
            else:
                if ja is not None:
                    self.assertNotEqual(ja, jb)
            claimed += [jobid for jobid in (ja, jb) if jobid is not None]
            if ja is None and jb is None:
                break
        self.assertGreater(conflicts, 0)   # the race was provoked
        self.assertEqual(sorted(claimed), self.ids)
        service = self.fresh()
        self.assertEqual(service.countJobs(PROCESSING), 16)
        self.assertTrue(all(j.attempts == 1 for j in service.jobs.values()))
        self.assertConsistent(service)

    def test_group_claims_from_different_partitions_both_commit(self):
        a, b = self.open(), self.open()
        ga = self.service(a).claimGroup('worker-a', 4, self.now, partition=0)
        gb = self.service(b).claimGroup('worker-b', 4, self.now, partition=1)
        self.assertEqual([j.id for j in ga], self.ids[:4])
        self.assertEqual([j.id for j in gb], self.ids[4:8])
        self.commit(a)
        self.commit(b)     # different keys of the one bucket: merged
        service = self.fresh()
        self.assertEqual(service.countJobs(PROCESSING), 8)
        self.assertEqual(
            {service.jobs[i].worker for i in self.ids[:4]}, {'worker-a'})
        self.assertEqual(
            {service.jobs[i].worker for i in self.ids[4:8]}, {'worker-b'})
        self.assertConsistent(service)

    def test_group_claim_takes_scheduled_jobs_first(self):
        cron = self.transact(lambda s: s.addCronJob('record', delay=1))
        group = self.transact(lambda s: [
            j.id for j in s.claimGroup('w', 3, self.now + seconds(3))])
        self.assertEqual(group, [cron] + self.ids[:2])
        self.assertConsistent(self.fresh())


class StatusIndexTests(ServiceTestCase):
    """The counts per status stay true under concurrent transitions."""

    def test_concurrent_transitions(self):
        self.addJobs(8, 1000)                          # 1000..1007 queued
        later, = self.addJobs(1, 1008, startLater=True)
        cron = self.transact(lambda s: s.addCronJob('record', minute=(0,)))
        conns = a, b, c, d = [self.open() for i in range(4)]
        sa, sb, sc, sd = map(self.service, conns)
        # Claimers with a partition start at different places in the
        # head of the ready queue: partition p takes its p-th job.
        # A: claims and completes the first job, adds a job.
        job = sa.claim('a', self.now, partition=0)
        self.assertEqual(job.id, 1000)
        sa.runJob(job, self.now)
        sa._v_nextid = 3000
        added = sa.add('record', 'added')
        # B: the second job fails and is queued again; starts `later`.
        job = sb.claim('b', self.now, partition=1)
        self.assertEqual(job.id, 1001)
        self.assertEqual(sb.fail(job, RuntimeError('x'), 'tb', self.now),
                         'retry')
        self.assertTrue(sb.startJob(later))
        # C: cancels a queued job; the third of those left fails for good.
        self.assertTrue(sc.cancel(1002))
        job = sc.claim('c', self.now, partition=2)
        self.assertEqual(job.id, 1003)
        sc.fail(job, interfaces.TaskError('no'), None, self.now, retry=False)
        # D: cancels another queued job and the cron job.
        self.assertTrue(sd.cancel(1004))
        self.assertTrue(sd.cancel(cron))
        for conn in (a, c, b, d):
            self.commit(conn)    # all merge
        service = self.fresh()
        self.assertEqual(
            {jobid: service.getStatus(jobid) for jobid in service.jobs},
            {1000: COMPLETED, 1001: QUEUED, 1002: CANCELLED, 1003: ERROR,
             1004: CANCELLED, 1005: QUEUED, 1006: QUEUED, 1007: QUEUED,
             later: QUEUED, cron: CANCELLED, added: QUEUED})
        self.assertEqual(
            {s: service.countJobs(s) for s in STATUSES if service.countJobs(s)},
            {COMPLETED: 1, QUEUED: 6, CANCELLED: 3, ERROR: 1})
        self.assertConsistent(service)
        self.assertEqual(service.jobs[1001].attempts, 1)

    def test_cancel_racing_a_claim(self):
        self.addJobs(4, 1001)
        for cancelFirst in (True, False):
            first = next(_timeIds(self.fresh()._index[QUEUED]))
            a, b = self.open(), self.open()
            self.assertTrue(self.service(a).cancel(first))
            job = self.service(b).claim('b', self.now)
            self.assertEqual(job.id, first)
            winner, loser = (a, b) if cancelFirst else (b, a)
            self.commit(winner)
            self.assertRaises(ConflictError, self.commit, loser)
            service = self.begin(loser)
            if cancelFirst:
                # The retried claim skips the cancelled job.
                job = service.claim('b', self.now)
                self.assertNotEqual(job.id, first)
            else:
                # A running job is not cancelled at once: its cancel is
                # requested (cancelling.py), for its run to honour.
                self.assertTrue(service.cancel(first))
            self.commit(loser)
            service = self.fresh()
            self.assertEqual(service.getStatus(first),
                             CANCELLED if cancelFirst else PROCESSING)
            self.assertEqual(service.isCancelled(first), True)
            self.assertConsistent(service)


class FailingTaskTests(ServiceTestCase):
    """A task that writes to the ZODB and fails leaves no trace."""

    def setUp(self):
        super().setUp()
        self.provideTask('writeThenFail', self.writeThenFail)
        self.provideTask('writeThenRefuse', self.writeThenRefuse)

    def write(self, service, jobid):
        root = service._p_jar.root()
        root['data']['counter'] += 1
        root['written'] = PersistentMapping(by='task')
        service.jobs[jobid].output = 'half done'
        service.add('record', 'spawned by the task')

    def writeThenFail(self, service, jobid, input):
        self.runs.append(jobid)
        self.write(service, jobid)
        raise RuntimeError('boom')

    def writeThenRefuse(self, service, jobid, input):
        self.runs.append(jobid)
        self.write(service, jobid)
        raise interfaces.TaskError('refused')

    def assertNoTrace(self, jobid):
        service = self.fresh()
        root = service._p_jar.root()
        self.assertEqual(root['data']['counter'], 0)
        self.assertNotIn('written', root)
        self.assertEqual(list(service.jobs), [jobid])
        self.assertIsNone(service.jobs[jobid].output)
        self.assertConsistent(service)
        return service.jobs[jobid]

    def assertFailure(self, job, status, attempts, error, traceback=True):
        self.assertEqual(job.status, status)
        self.assertEqual(job.attempts, attempts)
        self.assertEqual(job.error, error)
        if traceback:
            self.assertIsInstance(job.traceback, str)
            self.assertTrue(job.traceback.startswith(
                'Traceback (most recent call last):'))
            self.assertIn(", in writeThenFail\n", job.traceback)
            self.assertTrue(job.traceback.rstrip().endswith(error))
        if status == ERROR:
            self.assertIsNotNone(job.completed)
        self.assertIsNone(job.lease)

    def test_processNext_undoes_the_writes(self):
        jobid, = self.addJobs(1, 1000, task='writeThenFail', maxRetries=1)
        conn = self.open()
        service = self.service(conn)
        self.assertTrue(service.processNext())
        self.commit(conn)
        job = self.assertNoTrace(jobid)
        self.assertFailure(job, QUEUED, 1, 'RuntimeError: boom')
        # The last attempt: the job goes to 'error'.
        service = self.begin(conn)
        self.assertTrue(service.processNext())
        self.assertFalse(service.processNext())
        self.commit(conn)
        job = self.assertNoTrace(jobid)
        self.assertFailure(job, ERROR, 2, 'RuntimeError: boom')
        self.assertEqual(self.runs, [jobid, jobid])

    def test_processor_undoes_the_writes(self):
        jobid, = self.addJobs(1, 1000, task='writeThenFail', maxRetries=1)
        proc = self.processor()
        self.assertTrue(proc.step(self.now))
        job = self.assertNoTrace(jobid)
        self.assertFailure(job, QUEUED, 1, 'RuntimeError: boom')
        # The repeated attempt is one WARNING line, without traceback.
        self.assertEqual(self.log.messages(logging.WARNING), [
            f"Job {jobid} ('writeThenFail'): attempt 1 of 2 failed, "
            f"repeating it: RuntimeError: boom"])
        self.assertTrue(proc.step(self.now))
        self.assertFalse(proc.step(self.now))
        job = self.assertNoTrace(jobid)
        self.assertFailure(job, ERROR, 2, 'RuntimeError: boom')
        # The final failure is an ERROR with the traceback.
        [final] = self.log.messages(logging.ERROR)
        self.assertTrue(final.startswith(
            f"Job {jobid} ('writeThenFail') failed (attempt 2 of 2): "
            f"RuntimeError: boom\nTraceback (most recent call last):"),
            final)
        self.assertIn('raise RuntimeError', final)
        self.assertEqual(self.runs, [jobid, jobid])

    def test_task_error_undoes_the_writes_without_retry(self):
        for run in ('processNext', 'processor'):
            self.runs = []
            jobid, = self.addJobs(1, 1000 + len(run), task='writeThenRefuse')
            if run == 'processNext':
                self.transact(lambda service: service.processNext())
            else:
                self.assertTrue(self.processor().step(self.now))
            job = self.assertNoTrace(jobid)
            self.assertFailure(job, ERROR, 1, 'refused', traceback=False)
            self.assertEqual(self.runs, [jobid])
            self.transact(lambda service: service.clean())


class ConflictingRunTests(ServiceTestCase):
    """A ConflictError at the run's commit re-runs the task."""

    def setUp(self):
        super().setUp()
        self.provideTask('increment', self.increment)
        self.conflictingRuns = 0

    def increment(self, service, jobid, input):
        """Increment the counter; conflict on the first ``conflictingRuns``
        runs (another connection changes the counter meanwhile)."""
        self.runs.append(jobid)
        data = service._p_jar.root()['data']
        data['counter'] += 1
        if len(self.runs) <= self.conflictingRuns:
            def interfere(service):
                service._p_jar.root()['data']['counter'] += 10
            self.transact(interfere)
        return data['counter']

    def test_conflict_reruns_the_task_and_completes_it_once(self):
        self.conflictingRuns = 1
        jobid, = self.addJobs(1, 1000, task='increment')
        self.assertTrue(self.processor().step(self.now))
        self.assertEqual(self.runs, [jobid, jobid])
        service = self.fresh()
        job = service.jobs[jobid]
        # The job's own increment counted once, on top of the other's 10.
        self.assertEqual(service._p_jar.root()['data']['counter'], 11)
        self.assertEqual((job.status, job.output, job.attempts, job.error),
                         (COMPLETED, 11, 1, None))
        self.assertIn(f'Job {jobid}: conflict (ConflictError), running it '
                      f'again', self.log.messages())
        self.assertConsistent(service)

    def test_conflict_reruns_pause_longer_each_time(self):
        self.conflictingRuns = 3
        jobid, = self.addJobs(1, 1000, task='increment')
        pauses = []

        def pause(conflicts):
            pauses.append(conflicts)
            return 0.0
        original = running.conflictPause
        running.conflictPause = pause
        self.addCleanup(setattr, running, 'conflictPause', original)
        self.assertTrue(self.processor().step(self.now))
        self.assertEqual(self.runs, [jobid] * 4)
        self.assertEqual(pauses, [1, 2, 3])
        self.assertEqual(self.fresh().jobs[jobid].status, COMPLETED)
        # At random, up to 10 ms, 20 ms, ..., at most 0.5 s.
        for conflicts, bound in ((1, 0.01), (2, 0.02), (3, 0.04),
                                 (7, 0.5), (60, 0.5)):
            for n in range(20):
                self.assertTrue(
                    0 <= original(conflicts) <= bound, conflicts)

    def test_conflicting_every_time_gives_up_after_max_conflict_retries(self):
        self.conflictingRuns = 1000
        self.transact(lambda s: setattr(s, 'maxConflictRetries', 2))
        jobid, = self.addJobs(1, 1000, task='increment', maxRetries=1)
        proc = self.processor()
        message = 'ConflictError: gave up after 3 conflicting runs'
        # First attempt: 1 run + 2 re-runs, then the attempt fails and the
        # job is queued again (it has a retry left).
        self.assertTrue(proc.step(self.now))
        self.assertEqual(self.runs, [jobid] * 3)
        service = self.fresh()
        job = service.jobs[jobid]
        self.assertEqual((job.status, job.attempts, job.error),
                         (QUEUED, 1, message))
        self.assertEqual(service._p_jar.root()['data']['counter'], 30)
        self.assertConsistent(service)
        # Second and last attempt: the job goes to 'error'.
        self.assertTrue(proc.step(self.now))
        self.assertFalse(proc.step(self.now))
        self.assertEqual(self.runs, [jobid] * 6)
        service = self.fresh()
        job = service.jobs[jobid]
        self.assertEqual((job.status, job.attempts, job.error, job.output),
                         (ERROR, 2, message, None))
        # None of the job's own increments was committed.
        self.assertEqual(service._p_jar.root()['data']['counter'], 60)
        self.assertConsistent(service)


class LeaseTests(ServiceTestCase):
    """Leases: renewal, expiry, recovery, and exactly-once completion."""

    def claim(self, worker, now, **kw):
        jobid, = self.addJobs(1, 1000, **kw)
        self.assertEqual(self.transact(lambda s: s.claim(worker, now).id),
                         jobid)
        return jobid

    def test_renewal_during_the_run_does_not_conflict(self):
        proc = self.processor()
        seen = []

        def renewing(service, jobid, input):
            self.runs.append(jobid)
            service._p_jar.root()['data']['counter'] += 1
            # The lease keeper's transaction, committed while the run's
            # transaction is open.
            gone = self.transact(lambda s: s.renewLeases(
                [jobid], proc.workerId, self.now + seconds(30)))
            seen.append((gone, self.fresh().jobs[jobid].leaseExpires))
            return 'done'
        self.provideTask('renewing', renewing)
        jobid, = self.addJobs(1, 1000, task='renewing')
        self.assertTrue(proc.step(self.now))
        # One run: the run's commit did not conflict with the renewal.
        self.assertEqual(self.runs, [jobid])
        self.assertEqual(seen, [([], self.now + seconds(30 + 60))])
        service = self.fresh()
        self.assertEqual((service.getStatus(jobid), service.getResult(jobid),
                          service.jobs[jobid].attempts),
                         (COMPLETED, 'done', 1))
        self.assertEqual(service._p_jar.root()['data']['counter'], 1)
        self.assertIsNone(service.jobs[jobid].lease)

    def test_the_lease_keeper_thread_renews_without_conflict(self):
        self.transact(lambda s: setattr(s, 'leaseTime', 0.3))
        renewed = []

        def slow(service, jobid, input):
            self.runs.append(jobid)
            service._p_jar.root()['data']['counter'] += 1
            first = service.jobs[jobid].leaseExpires
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                expires = self.fresh().jobs[jobid].leaseExpires
                if expires > first:
                    renewed.append(expires)
                    break
                time.sleep(0.01)
            return 'done'
        self.provideTask('slow', slow)
        jobid, = self.addJobs(1, 1000, task='slow')
        self.assertTrue(self.processor().step())
        self.assertEqual(len(renewed), 1)
        self.assertEqual(self.runs, [jobid])
        service = self.fresh()
        self.assertEqual(service.getStatus(jobid), COMPLETED)
        self.assertEqual(service._p_jar.root()['data']['counter'], 1)

    def test_recover_requeues_then_errors_when_attempts_are_spent(self):
        jobid = self.claim('w1', self.now, maxRetries=1)
        expiry = self.now + seconds(60)      # the service's leaseTime
        self.assertEqual(
            self.transact(lambda s: s.recover(expiry - seconds(1))), [])
        self.assertEqual(
            self.transact(lambda s: s.recover(expiry)), [jobid])
        service = self.fresh()
        job = service.jobs[jobid]
        self.assertEqual((job.status, job.attempts), (QUEUED, 1))
        self.assertIn('WorkerLost: worker w1 lost', job.error)
        self.assertIsNone(job.lease)
        self.assertConsistent(service)
        # Taken up by another worker, which is lost too: no attempts left.
        later = expiry + seconds(2)
        claimed = self.transact(lambda s: s.claim('w2', later).id)
        self.assertEqual(claimed, jobid)
        self.assertEqual(self.fresh().jobs[jobid].attempts, 2)
        self.assertEqual(
            self.transact(lambda s: s.recover(later + seconds(61))), [jobid])
        service = self.fresh()
        job = service.jobs[jobid]
        self.assertEqual((job.status, job.attempts), (ERROR, 2))
        self.assertIn('WorkerLost: worker w2 lost', job.error)
        self.assertConsistent(service)
        self.assertIsNone(self.transact(lambda s: s.claim('w3', later)))

    def test_late_renewal_conflicts_with_recovery(self):
        jobid = self.claim('w1', self.now)
        renewal, recovery = self.open(), self.open()
        # The renewal's snapshot: the lease is alive.
        self.assertEqual(self.service(renewal).renewLeases(
            [jobid], 'w1', self.now + seconds(50)), [])
        self.assertEqual(self.service(recovery).recover(
            self.now + seconds(61)), [jobid])
        self.commit(recovery)
        self.assertRaises(ConflictError, self.commit, renewal)
        # Retried, the renewal learns that the lease is gone.
        self.assertEqual(self.begin(renewal).renewLeases(
            [jobid], 'w1', self.now + seconds(50)), [jobid])
        self.commit(renewal)
        self.assertEqual(self.fresh().getStatus(jobid), QUEUED)

    def test_recovery_conflicts_with_an_earlier_renewal(self):
        jobid = self.claim('w1', self.now)
        renewal, recovery = self.open(), self.open()
        self.assertEqual(self.service(renewal).renewLeases(
            [jobid], 'w1', self.now + seconds(50)), [])
        # The recovery's snapshot: the lease has expired at now + 61.
        self.assertEqual(self.service(recovery).recover(
            self.now + seconds(61)), [jobid])
        self.commit(renewal)
        self.assertRaises(ConflictError, self.commit, recovery)
        # Retried, the recovery sees the renewed lease.
        self.assertEqual(
            self.begin(recovery).recover(self.now + seconds(61)), [])
        self.commit(recovery)
        service = self.fresh()
        self.assertEqual(service.getStatus(jobid), PROCESSING)
        self.assertEqual(service.jobs[jobid].leaseExpires,
                         self.now + seconds(110))

    def test_a_worker_whose_lease_was_revoked_during_the_run_cannot_complete(
            self):
        lost = self.processor()

        def increment(service, jobid, input):
            self.runs.append(jobid)
            service._p_jar.root()['data']['counter'] += 1
            if len(self.runs) == 1:
                # Meanwhile the lease expires and another processor takes
                # the job back.
                self.assertEqual(self.transact(
                    lambda s: s.recover(self.now + seconds(120))), [jobid])
            return service._p_jar.root()['data']['counter']
        self.provideTask('increment', increment)
        jobid, = self.addJobs(1, 1000, task='increment')
        self.assertTrue(lost.step(self.now))
        # Its run's commit conflicted; it saw that it no longer holds the
        # job and left it, its writes undone.
        service = self.fresh()
        job = service.jobs[jobid]
        self.assertEqual((job.status, job.attempts), (QUEUED, 1))
        self.assertIn(f'worker {lost.workerId} lost', job.error)
        self.assertEqual(service._p_jar.root()['data']['counter'], 0)
        self.assertIn(f'{lost.workerId}: job {jobid} is no longer ours '
                      f'(queued); leaving it', self.log.messages())
        # Another worker completes it, once.
        other = self.processor()
        self.assertTrue(other.step(self.now + seconds(121)))
        self.assertFalse(other.step(self.now + seconds(121)))
        self.assertEqual(self.runs, [jobid, jobid])
        service = self.fresh()
        job = service.jobs[jobid]
        self.assertEqual((job.status, job.attempts, job.output, job.worker),
                         (COMPLETED, 2, 1, other.workerId))
        self.assertEqual(service._p_jar.root()['data']['counter'], 1)
        self.assertConsistent(service)

    def test_a_worker_whose_job_was_taken_over_does_not_run_it(self):
        lost, other = self.processor(), self.processor()
        jobid, = self.addJobs(1, 1000)
        self.assertEqual(lost.claim(self.now), jobid)
        later = self.now + seconds(61)
        self.assertEqual(self.transact(lambda s: s.recover(later)), [jobid])
        self.assertEqual(other.claim(later), jobid)
        lost.run(jobid, self.now)
        self.assertEqual(self.runs, [])
        self.assertEqual(self.fresh().jobs[jobid].worker, other.workerId)
        other.run(jobid, later)
        self.assertEqual(self.runs, [jobid])
        service = self.fresh()
        self.assertEqual((service.getStatus(jobid),
                          service.jobs[jobid].attempts), (COMPLETED, 2))
        self.assertConsistent(service)

    def test_a_completion_before_the_recovery_commits_wins(self):
        proc = self.processor()
        jobid, = self.addJobs(1, 1000)
        self.assertEqual(proc.claim(self.now), jobid)
        recovery = self.open()
        self.assertEqual(self.service(recovery).recover(
            self.now + seconds(61)), [jobid])
        proc.run(jobid, self.now + seconds(61))   # late, but it commits
        self.assertRaises(ConflictError, self.commit, recovery)
        self.assertEqual(
            self.begin(recovery).recover(self.now + seconds(61)), [])
        self.commit(recovery)
        service = self.fresh()
        self.assertEqual((service.getStatus(jobid), service.getError(jobid),
                          service.jobs[jobid].attempts), (COMPLETED, None, 1))
        self.assertEqual(self.runs, [jobid])
        self.assertConsistent(service)


class BadInputTests(ServiceTestCase):
    """Bad input gets a clear error and changes nothing."""

    def setUp(self):
        super().setUp()
        self.ids = self.addJobs(2, 1000)
        self.transact(lambda s: s.processNext(jobid=1001))
        self.conn = self.open()
        self.svc = self.service(self.conn)

    def state(self, service):
        return dict(
            jobs={i: (j.status, j.attempts) for i, j in service.jobs.items()},
            counts={s: service.countJobs(s) for s in STATUSES},
            ready=list(service._index[QUEUED]),
            schedule=list(service._schedule),
            byTask={t: list(ids) for t, ids in service._byTask.items()},
            retired=list(service._retired))

    def assertUnchanged(self, call, *args, **kw):
        before = self.state(self.svc)
        with self.assertRaises(Exception) as caught:
            call(*args, **kw)
        self.assertFalse(self.conn._registered_objects,
                         f'{call.__name__}{args} changed objects')
        self.commit(self.conn)
        self.assertEqual(self.state(self.fresh()), before)
        self.begin(self.conn)
        return caught.exception

    def test_unknown_job_id(self):
        for name in ('getStatus', 'getResult', 'getError', 'cancel',
                     'startJob', 'reschedule'):
            error = self.assertUnchanged(getattr(self.svc, name), 4711)
            self.assertIsInstance(error, interfaces.NoSuchJob)
            self.assertIsInstance(error, KeyError)
            self.assertEqual(str(error), 'No such job: 4711')

    def test_invalid_job_id(self):
        for name in ('getStatus', 'getResult', 'getError', 'cancel',
                     'startJob', 'reschedule'):
            for bad in ('12', '1000', 1.5, 1000.0, True, 0, -1, 2 ** 31,
                        None):
                error = self.assertUnchanged(getattr(self.svc, name), bad)
                self.assertIsInstance(error, interfaces.InvalidJobId,
                                      f'{name}({bad!r})')
                self.assertIsInstance(error, ValueError)
                self.assertIn(repr(bad), str(error))

    def test_cleaned_job_is_no_such_job(self):
        self.transact(lambda s: s.clean())
        self.svc = self.begin(self.conn)
        self.assertIsInstance(self.assertUnchanged(self.svc.getStatus, 1001),
                              interfaces.NoSuchJob)

    def test_unknown_task(self):
        for call in (self.svc.add, self.svc.addCronJob):
            error = self.assertUnchanged(call, 'no-such-task', 'input')
            self.assertIsInstance(error, interfaces.UnknownTask)
            self.assertEqual(str(error), "Unknown task: 'no-such-task'")
        self.assertIsInstance(
            self.assertUnchanged(self.svc.add, 'no-such-task', startLater=True),
            interfaces.UnknownTask)

    def test_clean_of_a_status_that_cannot_be_removed(self):
        for status in (['queued'], 'queued', ['completed', 'queued'],
                       ['processing'], ['start later'], ['nonsense']):
            error = self.assertUnchanged(self.svc.clean, status)
            self.assertIsInstance(error, ValueError)
            self.assertIn('Only jobs in status', str(error))
        self.assertEqual(self.svc.countJobs(COMPLETED), 1)

    def test_invalid_schedule(self):
        for schedule in (dict(minute=(60,)), dict(hour=(24,)),
                         dict(dayOfMonth=(31,), month=(2,)),
                         dict(dayOfMonth=(31,), month=(4, 6, 9, 11)),
                         dict(month=(0,)), dict(dayOfWeek=(7,)),
                         dict(minute=('5',)), dict(delay=-1)):
            error = self.assertUnchanged(
                self.svc.addCronJob, 'record', **schedule)
            self.assertIsInstance(error, interfaces.InvalidSchedule,
                                  repr(schedule))
            self.assertIsInstance(error, ValueError)
        self.assertIn('60 is not in 0..59', str(self.assertUnchanged(
            self.svc.addCronJob, 'record', minute=(60,))))
        self.assertIn('never matches', str(self.assertUnchanged(
            self.svc.addCronJob, 'record', dayOfMonth=(31,), month=(2,))))

    def test_bad_retry_settings(self):
        for kw in (dict(maxRetries=-1), dict(maxRetries=1.5),
                   dict(maxRetries=True), dict(retryDelay=-1),
                   dict(retryDelay='1')):
            self.assertIsInstance(
                self.assertUnchanged(self.svc.add, 'record', **kw),
                ValueError)

    def test_a_possible_schedule_is_accepted(self):
        # (The other side of the schedule checks: 29 February exists.)
        jobid = self.svc.addCronJob('record', minute=(0,), hour=(0,),
                                    dayOfMonth=(29,), month=(2,))
        self.assertEqual(self.svc.getStatus(jobid), CRONJOB)
        self.assertEqual(self.svc.jobs[jobid].scheduledFor.month, 2)
        self.assertEqual(self.svc.jobs[jobid].scheduledFor.day, 29)
        self.commit(self.conn)
        self.assertConsistent(self.fresh())


def test_suite():
    return unittest.defaultTestLoader.loadTestsFromName(__name__)
