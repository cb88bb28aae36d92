"""Hand-off: an add claims its job for this process's idle processor.

The job is then ``processing`` under the processor's lease when the add
commits, and the processor runs it without a claim of its own; nothing
is handed when the add's transaction aborts or conflicts, when other
jobs wait, when limits or a pause apply, or to a processor that does not
take hand-offs.
"""
import logging
import time
import unittest.mock

import transaction
from ZODB.POSException import ConflictError

from lovely.remotetask import processor
from lovely.remotetask.interfaces import COMPLETED
from lovely.remotetask.interfaces import PROCESSING
from lovely.remotetask.interfaces import QUEUED
from lovely.remotetask.tests.test_concurrency import ServiceTestCase


class HandOffCase(ServiceTestCase):

    def start(self, factory=processor.SimpleProcessor, **arguments):
        """Start the service's processor thread; wait until it is idle."""
        processor.start(self.db, self.oid, 'remotetasks.tasks', factory,
                        dict(waitTime=60.0, **arguments))
        proc = processor._registry[(self.db, self.oid)][0]
        self.waitUntil(lambda: proc._waiting)
        return proc

    def waitUntil(self, condition, timeout=30.0):
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError('timed out')
            time.sleep(0.005)

    def statusOf(self, jobid):
        return self.transact(lambda s: s.getStatus(jobid))


class HandOffTests(HandOffCase):

    def test_an_add_claims_for_the_idle_processor(self):
        proc = self.start()
        conn = self.open()
        service = self.service(conn)
        jobid = service.add('record', 'x')
        job = service.jobs[jobid]
        # Claimed in the add's transaction, for the processor.
        self.assertEqual(job.status, PROCESSING)
        self.assertEqual(job.worker, proc.workerId)
        self.assertEqual(job.lease.worker, proc.workerId)
        self.assertEqual(service.countJobs(PROCESSING), 1)
        self.assertEqual(service.countJobs(QUEUED), 0)
        self.assertEqual(service.listJobs(task='record'), [job])
        self.commit(conn)
        self.waitUntil(lambda: self.statusOf(jobid) == COMPLETED)
        self.assertEqual(self.runs, [jobid])
        self.assertEqual(self.transact(lambda s: (
            s.jobs[jobid].attempts, s.jobs[jobid].claims)), (1, 1))
        self.assertEqual(self.transact(lambda s: s.countJobs(PROCESSING)),
                         0)

    def test_one_hand_off_per_transaction(self):
        proc = self.start()
        conn = self.open()
        service = self.service(conn)
        first, second = service.add('record', 1), service.add('record', 2)
        self.assertEqual(service.getStatus(first), PROCESSING)
        self.assertEqual(service.getStatus(second), QUEUED)
        self.commit(conn)
        # (Which runs first is open: the commit's invalidations may wake
        # the processor before the hand-over.)
        self.waitUntil(lambda: len(self.runs) == 2)
        self.assertEqual(sorted(self.runs), sorted([first, second]))
        self.assertEqual(proc._handed, [])

    def test_an_aborted_add_hands_nothing(self):
        proc = self.start()
        conn = self.open()
        jobid = self.service(conn).add('record', 'x')
        conn.transaction_manager.abort()
        time.sleep(0.05)
        self.assertEqual((proc._handed, proc._running, self.runs),
                         ([], set(), []))
        self.assertNotIn(jobid, self.transact(lambda s: list(s.jobs)))
        self.assertTrue(proc.takesHandOff())

    def test_a_conflicting_add_hands_nothing(self):
        proc = self.start()
        conn = self.open()
        jobid = self.service(conn).add('record', 'x')
        conn.root()['data']['counter'] = 1
        other = self.open()
        other.root()['data']['counter'] = 2
        self.commit(other)
        with self.assertRaises(ConflictError):
            conn.transaction_manager.commit()
        conn.transaction_manager.abort()
        time.sleep(0.05)
        self.assertEqual((proc._handed, proc._running, self.runs),
                         ([], set(), []))
        self.assertNotIn(jobid, self.transact(lambda s: list(s.jobs)))

    def test_not_past_a_queued_job(self):
        # A job waits, queued, for its retry: the add only wakes the
        # processor, which claims in claim order.
        self.provideTask('fails', self.fails)
        first = self.transact(lambda s: s.add('fails', 'x', maxRetries=1,
                                              retryDelay=60))
        proc = self.start()
        self.waitUntil(lambda: self.runs == [first] and proc._waiting)
        self.assertEqual(self.statusOf(first), QUEUED)
        conn = self.open()
        service = self.service(conn)
        jobid = service.add('record', 'new')
        self.assertEqual(service.getStatus(jobid), QUEUED)
        self.commit(conn)
        self.waitUntil(lambda: self.statusOf(jobid) == COMPLETED)

    def fails(self, service, jobid, input):
        self.runs.append(jobid)
        raise RuntimeError('not now')

    def test_not_while_paused(self):
        self.start()
        conn = self.open()
        service = self.service(conn)
        service.pause()
        self.commit(conn)
        conn = self.open()
        service = self.service(conn)
        jobid = service.add('record', 'x')
        self.assertEqual(service.getStatus(jobid), QUEUED)
        self.commit(conn)

    def test_not_when_tasks_have_limits(self):
        self.start()
        conn = self.open()
        service = self.service(conn)
        service.setTaskLimits('record', maxConcurrent=1)
        jobid = service.add('record', 'x')
        self.assertEqual(service.getStatus(jobid), QUEUED)
        self.commit(conn)
        self.waitUntil(lambda: self.statusOf(jobid) == COMPLETED)

    def test_not_to_a_processor_without_hand_offs(self):
        self.start(handOff=False)
        conn = self.open()
        jobid = self.service(conn).add('record', 'x')
        self.assertEqual(self.service(conn).getStatus(jobid), QUEUED)
        self.commit(conn)
        self.waitUntil(lambda: self.statusOf(jobid) == COMPLETED)

    def test_a_multiprocessor_takes_hand_offs(self):
        proc = self.start(processor.MultiProcessor, maxThreads=2)
        conn = self.open()
        jobid = self.service(conn).add('record', 'x')
        self.assertEqual(self.service(conn).jobs[jobid].worker,
                         proc.workerId)
        self.commit(conn)
        self.waitUntil(lambda: self.statusOf(jobid) == COMPLETED)


class EndOfLoopTests(HandOffCase):
    """A processor whose loop ends runs the jobs it was handed; one
    handed a job later leaves it to its lease."""

    def claimFor(self, proc):
        def add(service):
            jobid = service.add('record', 'x')
            service.claimGroup(proc.workerId, 1)
            return jobid
        return self.transact(add)

    def test_handed_jobs_run_at_the_end(self):
        proc = processor.SimpleProcessor(self.db, self.oid)
        self.processors.append(proc)
        jobid = self.claimFor(proc)
        proc.handOver([jobid])
        self.assertIn(jobid, proc._running)   # its lease is kept
        proc.stop()
        proc._endHandOffs()
        self.assertEqual(self.statusOf(jobid), COMPLETED)
        self.assertEqual(proc._running, set())

    def test_after_an_unexpected_end_they_are_left_to_their_leases(self):
        proc = processor.SimpleProcessor(self.db, self.oid)
        self.processors.append(proc)
        jobid = self.claimFor(proc)
        proc.handOver([jobid])
        with unittest.mock.patch.object(
                proc, '_loop', side_effect=RuntimeError('bug')):
            proc()
        self.assertEqual((proc._handed, proc._running, self.runs),
                         ([], set(), []))
        self.assertEqual(self.statusOf(jobid), PROCESSING)
        self.assertIn('%s: the processor ended unexpectedly' % proc.workerId,
                      self.log.messages())

    def test_a_late_hand_over_is_left_to_the_lease(self):
        proc = processor.SimpleProcessor(self.db, self.oid)
        self.processors.append(proc)
        proc.stop()
        proc._endHandOffs()
        jobid = self.claimFor(proc)
        with self.assertLogs('lovely.remotetask', logging.WARNING) as log:
            proc.handOver([jobid])
        self.assertIn('their leases will expire', log.output[0])
        self.assertEqual((proc._handed, proc._running), ([], set()))
        self.assertEqual(self.statusOf(jobid), PROCESSING)


def test_suite():
    return unittest.defaultTestLoader.loadTestsFromName(__name__)
