"""Priorities, task limits and retention under concurrent transactions.

A FileStorage (which resolves conflicts, as ZEO and RelStorage do), and
either connections whose commits are interleaved by hand, or processor
threads; waits poll with a bounded deadline.
"""
import datetime
import math
import threading
import time
import types

from ZODB.POSException import ConflictError

from lovely.remotetask import inbox
from lovely.remotetask import processor
from lovely.remotetask import task
from lovely.remotetask import tasklimits
from lovely.remotetask.generations import evolve5
from lovely.remotetask.interfaces import COMPLETED
from lovely.remotetask.interfaces import PROCESSING
from lovely.remotetask.interfaces import QUEUED
from lovely.remotetask.tests.test_concurrency import ServiceTestCase
from lovely.remotetask.tests.test_concurrency import seconds
from lovely.remotetask.timeset import keyId


class Slow(task.TaskBase):
    """Records when each run starts and ends (monotonic clock)."""

    maxConcurrent = 1

    def __init__(self):
        self.intervals = []
        self.lock = threading.Lock()

    def __call__(self, service, jobid, input):
        start = time.monotonic()
        time.sleep(0.002)
        with self.lock:
            self.intervals.append((start, time.monotonic(), jobid))
        return input


def overlapping(intervals):
    """Pairs of intervals that overlap."""
    ordered = sorted(intervals)
    return [(a, b) for a, b in zip(ordered, ordered[1:]) if b[0] < a[1]]


class JobControlCase(ServiceTestCase):

    def queuedIds(self, service):
        return {keyId(key) for key in service._statusKeys(QUEUED)}

    def assertQueuedConsistent(self, service):
        """Every queued job is in exactly one set of the queued index."""
        queued = {jobid for jobid, job in service.jobs.items()
                  if job.status == QUEUED}
        keys = list(service._statusKeys(QUEUED))
        self.assertEqual(len(keys), len(set(keys)))
        self.assertEqual({keyId(key) for key in keys}, queued)
        self.assertEqual(service.countJobs(QUEUED), len(queued))
        for jobid in queued:
            job = service.jobs[jobid]
            self.assertIn(job._statusKey, service._inbox
                          if inbox.isPending(service, job)
                          else service._statusSet(QUEUED, job))


class PriorityTests(JobControlCase):

    def test_two_claimers_take_the_high_priority_jobs_first(self):
        low = self.addJobs(10, 100, priority=1)
        high = self.addJobs(10, 200, priority=9)
        for first, second in ((high[:5], high[5:]), (low[:5], low[5:])):
            a, b = self.open(), self.open()
            claimedA = [job.id for job in self.service(a).claimGroup(
                'a', 5, self.now, partition=0)]
            claimedB = [job.id for job in self.service(b).claimGroup(
                'b', 5, self.now, partition=1)]
            # Different keys of the merged order: both commit.
            self.commit(a)
            self.commit(b)
            self.assertEqual(claimedA, first)
            self.assertEqual(claimedB, second)
        self.assertQueuedConsistent(self.fresh())
        self.assertEqual(self.fresh().countJobs(PROCESSING), 20)

    def test_an_add_of_another_priority_merges_with_a_claim(self):
        self.addJobs(3, 100)
        a, b = self.open(), self.open()
        self.service(a).claim('a', self.now)
        self.service(b).add('record', 'urgent', priority=8)
        self.commit(a)
        self.commit(b)
        service = self.fresh()
        self.assertQueuedConsistent(service)
        self.assertEqual(service.claim('c', self.now).input, 'urgent')

    def test_processors_drain_a_mixed_queue_high_first(self):
        self.addJobs(20, 100, priority=0)
        self.addJobs(20, 200, priority=9)
        proc = self.processor(maxGroup=5)
        while proc.step():
            pass
        service = self.fresh()
        self.assertEqual(service.countJobs(COMPLETED), 40)
        # A group's jobs share their start: every urgent job started no
        # later than every other.
        started = {priority: [job.started for job in service.jobs.values()
                              if job.priority == priority]
                   for priority in (0, 9)}
        self.assertLessEqual(max(started[9]), min(started[0]))

    def test_listing_and_cursors_span_the_priorities(self):
        ids = self.addJobs(4, 100, priority=2) + self.addJobs(4, 200) \
            + self.addJobs(4, 300, priority=7)
        service = self.fresh()
        listed = [job.id for job in service.listJobs(QUEUED)]
        self.assertEqual(sorted(listed), ids)
        page = service.listJobs(QUEUED, size=5)
        rest = service.listJobs(
            QUEUED, after=service.cursor(page[-1], QUEUED))
        self.assertEqual([j.id for j in page + rest], listed)
        back = service.listJobs(QUEUED, reverse=True)
        self.assertEqual([j.id for j in back], listed[::-1])
        self.assertEqual(service.countJobs(QUEUED, 'record'), 12)
        self.assertEqual(service.cancelAll(limit=5), 5)
        self.assertQueuedConsistent(service)


class PriorityEdgeTests(JobControlCase):

    def test_a_repeat_keeps_its_priority_and_its_backoff(self):
        self.provideTask('fail', lambda service, jobid, input: 1 / 0)
        [jobid] = self.addJobs(1, 100, task='fail', priority=8,
                               retryDelay=30)
        self.addJobs(1, 200)
        self.transact(lambda s: s.processNext(self.now, jobid))
        service = self.fresh()
        job = service.jobs[jobid]
        self.assertEqual((job.status, job.priority), (QUEUED, 8))
        self.assertIn(job._statusKey, service._priorityQueues[8])
        # Not due before its backoff ends, then first again.
        self.assertEqual([j.id for j in self.transact(lambda s: [
            j for j in s.claimGroup('w', 5, self.now)])], [200])
        # The backoff is 30 s plus or minus its jitter (10 %): not due at
        # 26 s, due at 34 s.
        early = self.now + seconds(26)
        self.assertIsNone(self.transact(lambda s: s.claim('w', early)))
        later = self.now + seconds(34)
        self.assertEqual(self.transact(
            lambda s: s.claim('w', later).id), jobid)

    def test_next_scheduled_sees_every_priority(self):
        self.addJobs(1, 100, priority=0)
        service = self.fresh()
        self.assertIsNotNone(service.nextScheduled())
        self.assertTrue(service.hasJobsWaiting(self.now + seconds(1)))


class CapTests(JobControlCase):

    def setUp(self):
        super().setUp()
        self.slow = Slow()
        self.provideTask('slow', self.slow)
        # The gate exists (as after the task's first claim): concurrent
        # claims meet on its counter, not on making it.
        self.transact(lambda s: tasklimits.gateFor(s, 'slow'))

    def test_two_claims_under_a_cap_of_one_conflict(self):
        self.addJobs(2, 100, task='slow')
        a, b = self.open(), self.open()
        self.assertEqual(len(self.service(a).claimGroup('a', 1, self.now,
                                                        partition=0)), 1)
        self.assertEqual(len(self.service(b).claimGroup('b', 1, self.now,
                                                        partition=1)), 1)
        self.commit(a)
        # Both saw 0 of 1 running and claimed: the gate says no.
        with self.assertRaises(ConflictError):
            self.commit(b)
        b.transaction_manager.abort()
        service = self.begin(b)
        self.assertEqual(service.claimGroup('b', 1, self.now), [])
        self.commit(b)
        service = self.fresh()
        self.assertEqual(service.countJobs(PROCESSING), 1)
        self.assertQueuedConsistent(service)

    def test_a_claim_holds_back_at_most_a_batch(self):
        # A claim of a large group that meets many jobs of a capped task
        # moves at most HOLD_BATCH of them into its gate (each a write).
        self.addJobs(tasklimits.HOLD_BATCH + 50, 100, task='slow')
        self.addJobs(5, 10 ** 6)
        service = self.fresh()
        service._p_jar.transaction_manager.abort()
        conn = self.open()
        claimed = self.service(conn).claimGroup('w', 300, self.now)
        held = len(self.service(conn)._gates['slow'].held) - 2
        self.assertEqual(held, tasklimits.HOLD_BATCH)
        self.assertEqual(len(claimed), 1)   # the one slow job the cap allows
        conn.transaction_manager.abort()

    def test_a_completion_and_a_claim_do_not_conflict(self):
        self.addJobs(1, 100, task='slow')
        self.addJobs(1, 200)
        job = self.transact(lambda s: s.claim('w', self.now).id)
        a, b = self.open(), self.open()
        sa = self.service(a)
        sa.runJob(sa.jobs[job], self.now)
        # The other claim still sees the slow job running: it takes echo.
        self.assertEqual([j.id for j in self.service(b).claimGroup(
            'b', 5, self.now)], [200])
        self.commit(a)
        self.commit(b)
        self.assertEqual(self.fresh()._gates['slow'].running(), 0)

    def test_three_processors_never_run_two_at_once(self):
        self.addJobs(40, 100, task='slow')
        self.addJobs(12, 200)
        procs = [processor.SimpleProcessor(
            self.db, self.oid, name=f'p{n}', waitTime=0.01, partition=n,
            maxGroup=3) for n in range(3)]
        self.processors.extend(procs)
        threads = [threading.Thread(target=proc, daemon=True)
                   for proc in procs]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while self.fresh().countJobs(COMPLETED) < 52:
            self.assertLess(time.monotonic(), deadline, 'not drained')
            time.sleep(0.05)
        for proc in procs:
            proc.stop()
        for thread in threads:
            thread.join(10)
        for proc in procs:
            # Its heartbeat thread deregisters it: let it end before the
            # database closes (as processor.stop does).
            if proc._heart is not None:
                proc._heart.wake.set()
                proc._heart.thread.join(10)
        service = self.fresh()
        jobs = [service.jobs[jobid] for jobid in range(100, 140)]
        self.assertEqual({job.attempts for job in jobs}, {1})
        # From the jobs' own start and end times...
        self.assertEqual(overlapping(
            [(job.started, job.completed) for job in jobs]), [])
        # ...and from the task's runs.
        self.assertEqual(len(self.slow.intervals), 40)
        self.assertEqual(overlapping(self.slow.intervals), [])
        self.assertEqual(service._gates['slow'].running(), 0)
        self.assertQueuedConsistent(service)

    def test_a_held_job_can_be_cancelled_and_is_listed(self):
        ids = self.addJobs(3, 100, task='slow')
        self.transact(lambda s: s.claimGroup('w', 3, self.now))
        service = self.fresh()
        self.assertEqual(service.jobs[101]._heldBy, 'slow')
        self.assertEqual(self.queuedIds(service), set(ids[1:]))
        self.assertIn('1 of at most 1', service.heldBack(101))
        self.assertTrue(self.transact(lambda s: s.cancel(101)))
        service = self.fresh()
        self.assertQueuedConsistent(service)
        self.assertEqual(self.queuedIds(service), {102})

    def test_a_rate_limit_holds_across_two_claimers(self):
        self.transact(lambda s: (
            s.setTaskLimits('record', rateLimit=(1, 60)),
            tasklimits.gateFor(s, 'record')) and None)
        self.addJobs(3, 100)
        a, b = self.open(), self.open()
        self.service(a).claimGroup('a', 1, self.now, partition=0)
        self.service(b).claimGroup('b', 1, self.now, partition=1)
        self.commit(a)
        with self.assertRaises(ConflictError):
            self.commit(b)
        later = self.now + seconds(61)
        self.assertEqual(len(self.transact(
            lambda s: s.claimGroup('b', 5, later))), 1)

    def test_held_jobs_are_moved_aside_once_in_bounded_batches(self):
        self.addJobs(150, 1000, task='slow')
        echo = self.addJobs(1, 5000)
        claims = [self.transact(lambda s: [
            job.id for job in s.claimGroup('w', 1, self.now)])
            for i in range(3)]
        self.assertEqual(claims, [[1000], [], echo])
        service = self.fresh()
        gate = service._gates['slow']
        self.assertEqual(len(list(tasklimits.timeKeys(gate.held))), 149)
        self.assertEqual(list(service._readyKeys(self.now, 10)), [])
        self.assertEqual(service.countJobs(QUEUED), 149)
        self.assertQueuedConsistent(service)

    def test_lifting_a_cap_releases_the_held_jobs(self):
        self.addJobs(3, 100, task='slow')
        self.transact(lambda s: s.claimGroup('w', 3, self.now))
        self.transact(lambda s: s.setTaskLimits('slow', maxConcurrent=None))
        claimed = self.transact(lambda s: [
            job.id for job in s.claimGroup('w', 3, self.now)])
        self.assertEqual(sorted(claimed), [101, 102])
        self.assertQueuedConsistent(self.fresh())


class RetentionTests(JobControlCase):

    def test_a_pass_and_completions_lose_nothing(self):
        ids = self.addJobs(10, 100)
        self.transact(lambda s: [s.processNext(self.now) for i in range(8)])
        self.transact(lambda s: s.setRetention(keepCompleted=3))
        later = self.now + seconds(1)
        a, b = self.open(), self.open()
        sa = self.service(a)
        sa.applyRetention(later)
        sb = self.service(b)
        sb.processNext(later)
        self.commit(a)
        try:
            self.commit(b)
        except ConflictError:
            # The completion landed in the bucket the pass emptied: it is
            # retried, as a processor retries its run.
            self.begin(b)
            self.service(b).processNext(later)
            self.commit(b)
        service = self.fresh()
        done = [jobid for jobid in ids if jobid in service.jobs
                and service.jobs[jobid].status == COMPLETED]
        self.assertEqual(len(done), 4)
        self.assertEqual(service.countJobs(COMPLETED), 4)
        self.assertEqual(service.countJobs(QUEUED), 1)

    def test_a_task_count_keeps_its_newest_and_leaves_the_others(self):
        self.provideTask('report', task.echo)
        self.addJobs(6, 100, task='report')
        self.addJobs(4, 200)
        self.transact(lambda s: [s.processNext(self.now)
                                 for i in range(10)])
        self.transact(lambda s: s.setTaskLimits('report', keepCompleted=2))
        removed = self.transact(lambda s: s.applyRetention(self.now))
        self.assertEqual(removed, 4)
        service = self.fresh()
        self.assertEqual(sorted(service.jobs), [104, 105, 200, 201, 202,
                                                203])
        self.assertEqual(service.countJobs(COMPLETED), 6)

    def test_processors_apply_it_in_batches(self):
        self.addJobs(30, 100)
        self.transact(lambda s: s.setRetention(keepCompleted=0))
        proc = self.processor(maxGroup=100)
        while proc.step(self.now):
            pass
        self.assertEqual(self.fresh().countJobs(COMPLETED), 30)
        proc._lastDone['retain'] = -math.inf
        proc.claimGroup(self.now)
        self.assertEqual(self.fresh().countJobs(COMPLETED), 0)
        self.assertEqual(len(self.fresh().jobs), 0)


class GenerationTests(JobControlCase):

    def test_evolve5_adds_the_structures_and_keeps_the_queue(self):
        ids = self.addJobs(3, 100)
        conn = self.open()
        service = self.service(conn)
        del service._priorityQueues
        del service._taskSettings
        del service._gates
        self.commit(conn)
        conn = self.open()
        evolve5.evolveService(self.service(conn))
        evolve5.evolveService(self.service(conn))   # once is enough
        self.commit(conn)
        service = self.fresh()
        self.assertEqual(sorted(service._priorityQueues), [0, 1, 2, 3, 4, 6,
                                                           7, 8, 9])
        self.assertEqual(len(service._gates), 0)
        self.assertEqual(sorted(self.queuedIds(service)), ids)
        self.assertEqual(self.transact(
            lambda s: s.claim('w', self.now).id), ids[0])


class SettingsTests(JobControlCase):

    def test_task_attributes_are_read_and_checked(self):
        self.provideTask('bad', types.SimpleNamespace(maxConcurrent='two'))
        self.provideTask('good', types.SimpleNamespace(
            maxConcurrent=2, keepFailed='1d'))
        service = self.fresh()
        # The bad one is logged and left unlimited: claims go on.
        self.assertEqual(tasklimits.limitedTasks(service), {'good': (2, None)})
        self.assertIn("Task 'bad': its limits are ignored: maxConcurrent "
                      "must be an int >= 1 or None, not 'two'",
                      self.log.messages())
        self.assertEqual(service.taskLimits('good')['keepFailed'],
                         datetime.timedelta(days=1))


def test_suite():
    import unittest
    return unittest.defaultTestLoader.loadTestsFromName(__name__)
