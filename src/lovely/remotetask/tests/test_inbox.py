"""The inbox of new jobs (inbox.py): the cases an independent review
found, each of which failed on the inbox's first version."""
import datetime
import unittest

import transaction
import zope.component
import zope.component.testing
from ZODB.POSException import ConflictError

from lovely.remotetask import inbox
from lovely.remotetask import interfaces
from lovely.remotetask import task
from lovely.remotetask.generations import evolve3
from lovely.remotetask.interfaces import CANCELLED
from lovely.remotetask.interfaces import QUEUED
from lovely.remotetask.service import TaskService
from lovely.remotetask.tests.test_concurrency import ServiceTestCase
from lovely.remotetask.tests.test_generations import Context
from lovely.remotetask.tests.test_generations import Evolve3Tests


UTC = datetime.timezone.utc
T = datetime.timedelta


class Evolve3WithoutInbox(Evolve3Tests):
    """A generation-1 service has no ``_inbox`` (generation 9 adds it),
    and evolve3 runs before evolve9."""

    def test_evolve3_on_a_service_without_inbox(self):
        self.root['tasks'] = service = TaskService()
        queued, waiting = self.generation1(service)
        del service._inbox
        transaction.commit()
        evolve3.evolve(Context(self.conn))
        self.assertEqual(list(service._index[QUEUED].keys())[1:-1],
                         [service.jobs[queued]._statusKey,
                          service.jobs[waiting]._statusKey])


class ServiceCase(unittest.TestCase):

    def setUp(self):
        zope.component.testing.setUp()
        zope.component.provideUtility(task.echo, interfaces.ITask, 'echo')
        zope.component.provideUtility(task.echo, interfaces.ITask, 'other')

    def tearDown(self):
        zope.component.testing.tearDown()


class NotReadyBacklogTests(ServiceCase):
    """Queued jobs that may not run yet do not keep a new job back."""

    def test_behind_repeats_waiting_for_their_backoff(self):
        s = TaskService()
        now = datetime.datetime.now(UTC)
        for n in range(8):
            s.add('echo', n)
        for job in s.claimGroup('w', 8, now):
            s.fail(job, 'boom', now=now)       # repeated in ~10 s
        new = s.add('echo', 'new')
        claimAt = s.jobs[new].created          # the add's second
        size = s.groupSize(100, claimers=4)    # a MultiProcessor of 4
        self.assertEqual([j.id for j in s.claimGroup('w', size, claimAt)],
                         [new])

    def test_behind_jobs_held_back_by_a_limit(self):
        s = TaskService()
        s.setTaskLimits('echo', maxConcurrent=1)
        now = datetime.datetime.now(UTC)
        ids = [s.add('echo', n) for n in range(12)]
        first, = s.claimGroup('w', 1, now)
        self.assertEqual(first.id, ids[0])
        s.claimGroup('w', 20, now)             # the others are held back
        new = s.add('other', 'new')
        claimAt = s.jobs[new].created
        self.assertEqual([j.id for j in s.claimGroup('w', 4, claimAt)],
                         [new])


class CreatedRangeFilterTests(ServiceCase):
    """A creation time range sorted by creation keeps the other filters
    (it dropped them before the review of the inbox)."""

    def test_status_and_task_filters_apply(self):
        s = TaskService()
        a = s.add('echo', 1)
        b = s.add('other', 2)
        s.cancel(a)
        now = datetime.datetime.now(UTC)
        window = dict(createdAfter=now - T(seconds=60),
                      createdBefore=now + T(seconds=60))
        for filters, want in (({'status': CANCELLED}, [a]),
                              ({'task': 'other'}, [b]),
                              ({'status': QUEUED, 'task': 'echo'}, [])):
            self.assertEqual([j.id for j in s.listJobs(**filters, **window)],
                             want, filters)
            self.assertEqual(s.countJobs(**filters, **window), len(want))


class BurstOfClaimsTests(ServiceTestCase):
    """Processors with partitions claim different parts of a burst of
    new jobs, without conflicts."""

    def test_partitioned_claimers_of_a_burst(self):
        # The task's id set exists (the first indexing of a task's job
        # makes it: two of those at once conflict, once per task).
        self.transact(lambda s: inbox.taskSet(s, 'record'))
        ids = self.addJobs(20, 1000, pending=True)   # none indexed
        now = self.now + T(seconds=2)
        conns = [self.open() for p in range(4)]
        claimed = []
        for p, conn in enumerate(conns):
            s = self.service(conn)
            claimed += [job.id for job in s.claimGroup(
                f'w{p}', s.groupSize(10, 4), now, partition=p)]
        self.assertEqual(len(claimed), len(set(claimed)))
        for conn in conns:
            self.commit(conn)      # no ConflictError
        service = self.fresh()
        self.assertEqual(service.countJobs(interfaces.PROCESSING),
                         len(claimed))
        self.assertEqual(sorted(claimed + [
            job.id for job in service.listJobs(QUEUED)]), ids)
        self.assertConsistent(service)

    def test_a_lone_claimer_takes_the_oldest_and_indexes_the_rest(self):
        ids = self.addJobs(20, 1000, pending=True)
        s = self.service(self.open())
        self.assertEqual([job.id for job in s.claimGroup('w', 5, self.now)],
                         ids[:5])
        self.assertEqual(len(s._inbox), 2)     # the sentinels
        self.assertEqual(s.countJobs(QUEUED), 15)


class FixedPartitionTests(ServiceTestCase):
    """A worker process's partition is fixed (random); its claims turn
    it, so that the oldest new job is not left behind by a stream of
    newer ones (a second review found it never claimed)."""

    def test_the_oldest_job_is_claimed_within_a_few_claims(self):
        for partition in (1, 2, 3, 517):
            first = self.transact(lambda s: s.add('record', 'first'))
            proc = self.processor(partition=partition)
            for round in range(8):
                self.transact(lambda s: [s.add('record', round)
                                         for n in range(2)])
                proc.step(self.now + T(seconds=2))
                if self.fresh().getStatus(first) != QUEUED:
                    break
            self.assertNotEqual(self.fresh().getStatus(first), QUEUED,
                                partition)
            while proc.step(self.now + T(seconds=2)):
                pass

    def test_a_higher_priority_is_not_passed_over(self):
        proc = self.processor(partition=3)
        urgent = self.transact(lambda s: s.add('record', 'urgent',
                                               priority=9))
        for round in range(8):
            self.transact(lambda s: [s.add('record', round, priority=0)
                                     for n in range(2)])
            proc.step(self.now + T(seconds=2))
            if self.fresh().getStatus(urgent) != QUEUED:
                break
        self.assertNotEqual(self.fresh().getStatus(urgent), QUEUED)


class AddersCacheTests(ServiceTestCase):
    """An add that indexes the inbox leaves the jobs it indexed as
    ghosts in its connection once committed (their invalidations by the
    processors cost its next transactions less); not before, and not
    if it aborts."""

    def test_indexed_jobs_become_ghosts_after_the_commit(self):
        conn = self.open()
        s = self.begin(conn)
        ids = [s.add('record', n) for n in range(inbox.SIZE)]
        self.commit(conn)
        jobs = [s.jobs[jobid] for jobid in ids]
        self.assertEqual({job._p_status for job in jobs}, {'saved'})
        s = self.begin(conn)
        last = s.add('record', 'indexes the others')
        self.assertEqual(inbox.count(s), 1)
        self.assertEqual({job._p_status for job in jobs}, {'saved'})
        self.commit(conn)
        self.assertEqual({job._p_status for job in jobs}, {'ghost'})
        self.assertEqual(s.jobs[last]._p_status, 'saved')
        # A ghost reads as before.
        self.assertEqual([job.input for job in jobs],
                         list(range(inbox.SIZE)))

    def test_not_when_the_add_aborts(self):
        conn = self.open()
        s = self.begin(conn)
        ids = [s.add('record', n) for n in range(inbox.SIZE)]
        self.commit(conn)
        s = self.begin(conn)
        s.add('record', 'indexes the others')
        conn.transaction_manager.abort()
        self.assertEqual(inbox.count(self.begin(conn)), inbox.SIZE)
        self.assertNotIn('ghost', {s.jobs[jobid]._p_status for jobid in ids})
