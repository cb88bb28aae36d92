"""Hand-off: an adding transaction claims its job for this process's idle
processor as it commits.

The job is then ``processing`` under the processor's lease when the add
commits, and the processor runs it without a claim of its own; nothing
is handed over when the transaction aborts or its commit fails, when
other jobs wait, when limits or a pause apply, or to a processor that
does not take hand-offs or has one under way.

Most tests drive a registered processor by hand (its loop does not run):
``_waiting`` says it waits idle, ``step`` runs what it was handed.
"""
import datetime
import logging
import threading
import time
import types
import unittest.mock

import transaction
import zope.component
from ZODB.POSException import ConflictError

from lovely.remotetask import events
from lovely.remotetask import handoff
from lovely.remotetask import inbox
from lovely.remotetask import processor
from lovely.remotetask.interfaces import CANCELLED
from lovely.remotetask.interfaces import COMPLETED
from lovely.remotetask.interfaces import PROCESSING
from lovely.remotetask.interfaces import QUEUED
from lovely.remotetask.jobtable import now_
from lovely.remotetask.tests.test_concurrency import ServiceTestCase


class HandOffCase(ServiceTestCase):

    def setUp(self):
        super().setUp()
        # A task's first job creates its id set: not handed over.
        self.transact(lambda s: inbox.taskSet(s, 'record'))

    def tearDown(self):
        for proc in self.processors:
            proc._untrack(list(proc._running))   # (so the keeper ends)
        entry = processor._registry.get((self.db, self.oid))
        if entry is not None and isinstance(entry[1],
                                            types.SimpleNamespace):
            del processor._registry[(self.db, self.oid)]
        super().tearDown()

    def byHand(self, **arguments):
        """A processor registered for the service, idle, whose loop does
        not run."""
        proc = processor.SimpleProcessor(self.db, self.oid, **arguments)
        self.processors.append(proc)
        proc._leaseTime = 60.0
        proc._waiting = True
        processor._registry[(self.db, self.oid)] = (
            proc, types.SimpleNamespace(is_alive=lambda: True))
        return proc

    def start(self, factory=processor.SimpleProcessor, **arguments):
        """Start the service's processor thread; wait until it is idle.
        (It looks for work by itself only every minute.)"""
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

    def add(self, *args, **kw):
        """Add a job in a transaction of its own; return its id."""
        return self.transact(lambda s: s.add(*args, **kw))

    def addOpen(self):
        """Add a job in a transaction left open; its connection and the
        job's id."""
        conn = self.open()
        return conn, self.service(conn).add('record', 'x')

    def hooksBeforeCommit(self, conn):
        """Run the open transaction's before-commit hooks now (the
        processor is reserved and the job claimed), not at the commit."""
        txn = conn.transaction_manager.get()
        txn._callBeforeCommitHooks()
        txn._before_commit.clear()

    def assertNothingHanded(self, proc):
        self.assertEqual((proc._handed, proc._unsure, proc._reserved,
                          proc._running, proc.handOffs),
                         ([], [], {}, set(), 0))

    def assertUnsureAndNotOurs(self, proc, jobid):
        """A failed commit's job, which the processor checks (quietly)
        and finds not claimed."""
        self.assertEqual((proc._handed, proc._unsure, proc._reserved),
                         ([], [jobid], {}))
        self.assertEqual(proc._takeHanded(), [])
        self.assertEqual(proc._running, set())
        self.assertEqual(self.log.messages(logging.WARNING), [])


class HandOffTests(HandOffCase):

    def test_the_commit_claims_for_the_idle_processor(self):
        proc = self.byHand()
        conn = self.open()
        service = self.service(conn)
        jobid = service.add('record', 'x')
        # In the transaction the job is queued, as any new job.
        self.assertEqual(service.getStatus(jobid), QUEUED)
        before = datetime.datetime.now(datetime.timezone.utc)
        self.commit(conn)
        self.assertEqual((proc._handed, proc.handOffs), ([jobid], 1))
        self.assertIn(jobid, proc._running)   # its lease is kept

        def look(service):
            job = service.jobs[jobid]
            return (job.status, job.worker, job.lease.worker,
                    job.lease.expires >= before
                    + datetime.timedelta(seconds=service.leaseTime),
                    service.countJobs(PROCESSING), service.countJobs(QUEUED),
                    [each.id for each in service.listJobs(task='record')])
        self.assertEqual(self.transact(look), (
            PROCESSING, proc.workerId, proc.workerId, True, 1, 0, [jobid]))
        self.assertTrue(proc.step())
        self.assertEqual(self.runs, [jobid])
        self.assertEqual(self.transact(lambda s: (
            s.getStatus(jobid), s.jobs[jobid].attempts,
            s.jobs[jobid].claims, s.countJobs(PROCESSING))),
            (COMPLETED, 1, 1, 0))
        self.assertEqual((proc._handed, proc._running), ([], set()))

    def test_the_run_loads_the_handed_job_by_its_oid(self):
        # Not through the bucket of ``jobs`` that the add wrote.
        proc = self.byHand()
        conn, jobid = self.addOpen()
        self.commit(conn)
        oid = self.service(conn).jobs[jobid]._p_oid
        self.assertEqual(proc._handedOids, {jobid: oid})
        run = self.open()
        jobs = self.service(run).jobs     # (one bucket: held in the tree)
        jobs._p_deactivate()
        job = proc._handedJob(run, jobid)
        self.assertEqual((job.id, job._p_oid), (jobid, oid))
        self.assertEqual(jobs._p_status, 'ghost')
        self.assertEqual(proc._handedOids, {})
        # Once: a run again (after a conflict, say) looks it up by id.
        self.assertIsNone(proc._handedJob(run, jobid))

    def test_a_step_runs_it_by_its_oid(self):
        proc = self.byHand()
        conn, jobid = self.addOpen()
        self.commit(conn)
        looked = []
        original = proc._handedJob
        proc._handedJob = lambda conn, jobid: looked.append(
            original(conn, jobid)) or looked[-1]
        self.assertTrue(proc.step())
        self.assertEqual(self.runs, [jobid])
        self.assertEqual([job.id for job in looked], [jobid])
        self.assertEqual(proc._handedOids, {})

    def test_a_group_runs_them_by_their_oids(self):
        # Two jobs handed over before a step (one is set aside while the
        # second add commits: one hand-off at a time), run as one group.
        proc = self.byHand()
        conn, first = self.addOpen()
        self.commit(conn)
        proc._handed = []
        conn, second = self.addOpen()
        self.commit(conn)
        self.assertEqual(proc._handed, [second])
        proc._handed.insert(0, first)
        oids = dict(proc._handedOids)
        self.assertEqual(set(oids), {first, second})
        looked = []
        original = proc._handedJob
        proc._handedJob = lambda conn, jobid: looked.append(
            original(conn, jobid)) or looked[-1]
        self.assertTrue(proc.step())
        self.assertEqual(sorted(self.runs), sorted([first, second]))
        self.assertEqual(sorted(job.id for job in looked if job),
                         sorted([first, second]))
        self.assertEqual(proc._handedOids, {})

    def test_an_oid_of_another_object_falls_back_to_the_id(self):
        proc = self.byHand()
        conn, jobid = self.addOpen()
        self.commit(conn)
        proc._handedOids[jobid] = self.service(conn)._p_oid
        self.assertIsNone(proc._handedJob(self.open(), jobid))
        self.assertTrue(proc.step())
        self.assertEqual(self.runs, [jobid])
        self.assertEqual(self.statusOf(jobid), COMPLETED)

    def test_given_back_jobs_leave_no_oid(self):
        proc = self.byHand()
        conn, jobid = self.addOpen()
        self.commit(conn)
        proc._endHandOffs(run=False)
        self.assertEqual(proc._handedOids, {})
        self.assertEqual(self.statusOf(jobid), QUEUED)

    def test_the_start_event_knows_the_wait(self):
        proc = self.byHand()
        waited = []
        zope.component.provideHandler(
            lambda event: waited.append(event.waited), [events.IJobStarted])
        self.add('record', 'x')
        self.assertEqual(proc.handOffs, 1)
        self.assertEqual(len(waited), 1)
        self.assertIsNotNone(waited[0])

    def test_not_two_jobs_of_one_transaction(self):
        proc = self.byHand()
        conn = self.open()
        service = self.service(conn)
        first, second = service.add('record', 1), service.add('record', 2)
        self.commit(conn)
        self.assertNothingHanded(proc)
        self.assertEqual([self.statusOf(first), self.statusOf(second)],
                         [QUEUED, QUEUED])

    def test_not_a_job_cancelled_before_the_commit(self):
        proc = self.byHand()
        conn = self.open()
        service = self.service(conn)
        jobid = service.add('record', 'x')
        service.cancel(jobid)
        self.commit(conn)
        self.assertNothingHanded(proc)

    def test_not_a_job_rolled_back_to_a_savepoint(self):
        proc = self.byHand()
        conn = self.open()
        savepoint = conn.transaction_manager.get().savepoint()
        jobid = self.service(conn).add('record', 'x')
        savepoint.rollback()
        self.commit(conn)
        self.assertNothingHanded(proc)
        self.assertNotIn(jobid, self.transact(lambda s: list(s.jobs)))

    def test_an_aborted_add_hands_nothing(self):
        proc = self.byHand()
        conn = self.open()
        self.service(conn).add('record', 'x')
        conn.transaction_manager.abort()
        self.assertNothingHanded(proc)
        self.assertTrue(proc.takesHandOff())

    def test_a_conflicting_commit_hands_nothing(self):
        proc = self.byHand()
        conn, jobid = self.addOpen()
        conn.root()['data']['counter'] = 1
        other = self.open()
        other.root()['data']['counter'] = 2
        self.commit(other)
        with self.assertRaises(ConflictError):
            conn.transaction_manager.commit()
        conn.transaction_manager.abort()
        self.assertNotIn(jobid, self.transact(lambda s: list(s.jobs)))
        self.assertUnsureAndNotOurs(proc, jobid)
        self.assertIsNotNone(proc.reserve())

    def test_a_failing_later_hook_and_the_abort_end_the_reservation(self):
        proc = self.byHand()
        conn, jobid = self.addOpen()
        txn = conn.transaction_manager.get()

        def fail():
            raise RuntimeError('a later hook fails')
        txn.addBeforeCommitHook(fail)
        with self.assertRaises(RuntimeError):
            txn.commit()
        self.assertEqual(len(proc._reserved), 1)   # until the abort
        proc.wake()
        self.assertFalse(proc._wakeup.is_set())    # left to the end
        conn.transaction_manager.abort()
        self.assertTrue(proc._wakeup.is_set())
        self.assertUnsureAndNotOurs(proc, jobid)

    def test_a_commit_that_fails_after_its_data_committed(self):
        # (A synchronizer's afterCompletion that raises: no after-commit
        # hook runs, the caller aborts.)
        proc = self.byHand()
        conn, jobid = self.addOpen()

        class Failing:
            def beforeCompletion(self, txn):
                pass

            def afterCompletion(self, txn):
                raise RuntimeError('after the commit')

            def newTransaction(self, txn):
                pass
        failing = Failing()
        conn.transaction_manager.registerSynch(failing)
        with self.assertRaises(RuntimeError):
            conn.transaction_manager.get().commit()
        conn.transaction_manager.unregisterSynch(failing)
        conn.transaction_manager.abort()
        self.assertEqual((proc._handed, proc.handOffs), ([jobid], 1))
        self.assertTrue(proc.step())
        self.assertEqual((self.runs, self.statusOf(jobid)),
                         ([jobid], COMPLETED))

    def test_after_commit_hooks_added_later_find_it_handed_over(self):
        proc = self.byHand()
        conn, jobid = self.addOpen()
        seen = []
        conn.transaction_manager.get().addAfterCommitHook(
            lambda ok: seen.append(list(proc._handed)))
        self.commit(conn)
        self.assertEqual(seen, [[jobid]])

    def test_a_reservation_nothing_ended_lapses(self):
        proc = self.byHand()
        with unittest.mock.patch.object(handoff, 'RESERVATION', 0.05):
            self.assertIsNotNone(proc.reserve())
            self.assertIsNone(proc.reserve())
            proc.wake()
            self.assertFalse(proc._wakeup.is_set())
            self.assertFalse(proc.takesHandOff())
            time.sleep(0.06)
            proc.wake()
            self.assertTrue(proc._wakeup.is_set())
            self.assertTrue(proc.takesHandOff())
            self.assertIsNotNone(proc.reserve())

    def test_a_wake_after_WAIT_is_not_left_to_the_hand_off(self):
        proc = self.byHand()
        with unittest.mock.patch.object(handoff, 'WAIT', 0.05):
            proc.reserve()
            proc.wake()
            self.assertFalse(proc._wakeup.is_set())
            time.sleep(0.06)
            proc.wake()
            self.assertTrue(proc._wakeup.is_set())
            self.assertFalse(proc.takesHandOff())   # (until it lapses)

    def test_a_limit_of_a_big_settings_tree_makes_the_commit_conflict(self):
        proc = self.byHand()

        def many(service):
            for i in range(40):   # (the tree has buckets of its own)
                service.setTaskLimits(f'task{i}', keepCompleted=5)
        self.transact(many)
        self.assertEqual(len(list(handoff._buckets(self.transact(
            lambda s: s._taskSettings)))), 2)
        conn, jobid = self.addOpen()
        self.transact(lambda s: s.setTaskLimits('task39', maxConcurrent=1))
        with self.assertRaises(ConflictError):
            conn.transaction_manager.commit()
        conn.transaction_manager.abort()
        self.assertUnsureAndNotOurs(proc, jobid)

    def test_a_pause_committed_meanwhile_makes_the_commit_conflict(self):
        proc = self.byHand()
        self.transact(lambda s: (s.pause(), s.resume()))   # (its object)
        conn, jobid = self.addOpen()
        self.transact(lambda s: s.pause())
        with self.assertRaises(ConflictError):
            conn.transaction_manager.commit()
        conn.transaction_manager.abort()
        self.assertUnsureAndNotOurs(proc, jobid)
        jobid = self.add('record', 'x')   # tried again: paused
        self.assertEqual(self.statusOf(jobid), QUEUED)
        self.assertEqual(proc.handOffs, 0)

    def test_not_past_a_queued_job(self):
        older = self.add('record', 'older')
        self.transact(inbox.index)   # in the ready queue now
        proc = self.byHand()
        jobid = self.add('record', 'new')
        self.assertNothingHanded(proc)
        self.assertEqual([self.statusOf(older), self.statusOf(jobid)],
                         [QUEUED, QUEUED])

    def test_not_past_a_due_scheduled_job(self):
        proc = self.byHand()
        self.transact(lambda s: s.addCronJob('record', delay=0.001))
        self.waitUntil(lambda: self.transact(
            lambda s: s._nextDue(now_()) is not None))
        self.add('record', 'new')
        self.assertNothingHanded(proc)

    def test_past_a_scheduled_job_not_due(self):
        proc = self.byHand()
        self.transact(lambda s: s.addCronJob('record', delay=3600))
        self.add('record', 'new')
        self.assertEqual(proc.handOffs, 1)

    def test_not_while_paused(self):
        proc = self.byHand()
        self.transact(lambda s: s.pause())
        jobid = self.add('record', 'x')
        self.assertNothingHanded(proc)
        self.assertEqual(self.statusOf(jobid), QUEUED)

    def test_not_when_tasks_have_limits(self):
        proc = self.byHand()
        self.transact(lambda s: s.setTaskLimits('record', maxConcurrent=1))
        self.add('record', 'x')
        self.assertNothingHanded(proc)

    def test_not_the_first_job_of_a_task(self):
        proc = self.byHand()
        self.add('echo', 'x')
        self.assertNothingHanded(proc)
        self.add('echo', 'y')
        self.assertNothingHanded(proc)   # the first is still queued

    def test_not_to_a_processor_without_hand_offs(self):
        proc = self.byHand(handOff=False)
        self.add('record', 'x')
        self.assertNothingHanded(proc)

    def test_not_to_a_busy_processor(self):
        proc = self.byHand()
        proc._waiting = False
        self.add('record', 'x')
        self.assertNothingHanded(proc)

    def test_one_hand_off_at_a_time(self):
        proc = self.byHand()
        first = self.add('record', 'first')
        self.add('record', 'second')   # the first waits to be run
        self.assertEqual((proc._handed, proc.handOffs), ([first], 1))
        token = proc.reserve()
        self.assertIsNone(token)
        proc._takeHanded()
        token = proc.reserve()
        self.assertIsNone(proc.reserve())
        proc.handOver(token, None)
        self.assertIsNotNone(proc.reserve())


class GiveBackTests(HandOffCase):
    """A job handed over that its processor will not run goes back to
    the queue as a new job would be, or ends cancelled."""

    def handed(self):
        proc = self.byHand()
        jobid = self.add('record', 'x')
        self.assertEqual(proc._handed, [jobid])
        proc._untrack(proc._takeHanded())
        return proc, jobid

    def test_back_at_its_place(self):
        proc, jobid = self.handed()
        proc._waiting = False
        later = self.add('record', 'later')
        given = self.transact(lambda s: handoff.giveBack(
            s, [jobid, later, 12345], proc.workerId))
        self.assertEqual(given, [jobid])
        self.assertEqual(self.transact(lambda s: (
            s.getStatus(jobid), s.jobs[jobid].attempts, s.jobs[jobid].lease,
            s.jobs[jobid].worker, s.countJobs(PROCESSING))),
            (QUEUED, 0, None, None, 0))
        claimed = self.transact(lambda s: [
            job.id for job in s.claimGroup('other', 2)])
        self.assertEqual(claimed, [jobid, later])

    def test_not_a_job_of_another_worker(self):
        proc, jobid = self.handed()
        self.assertEqual(self.transact(lambda s: handoff.giveBack(
            s, [jobid], 'another worker')), [])
        self.assertEqual(self.statusOf(jobid), PROCESSING)

    def test_a_cancel_requested_meanwhile_ends_it_cancelled(self):
        proc, jobid = self.handed()
        self.assertTrue(self.transact(lambda s: s.cancel(jobid)))
        self.transact(lambda s: handoff.giveBack(s, [jobid], proc.workerId))
        self.assertEqual(self.statusOf(jobid), CANCELLED)
        self.assertEqual(self.runs, [])


class WaitingTests(HandOffCase):
    """A processor with a hand-off under way waits for it: woken (by the
    commit's own invalidations, say) before it claims, stopping before
    its thread ends."""

    def inThread(self, func):
        thread = threading.Thread(target=func, daemon=True)
        thread.start()
        return thread

    def test_a_woken_processor_waits_for_the_hand_over(self):
        proc = self.byHand()
        token = proc.reserve()
        thread = self.inThread(proc._stopWaiting)
        thread.join(0.1)
        self.assertTrue(thread.is_alive())
        proc.handOver(token, None)
        thread.join(5)
        self.assertFalse(thread.is_alive())

    def test_a_stopping_processor_runs_what_its_commit_hands_over(self):
        proc = self.byHand()
        conn, jobid = self.addOpen()
        self.hooksBeforeCommit(conn)
        self.assertEqual(len(proc._reserved), 1)
        proc.stop()
        ending = self.inThread(proc._endHandOffs)
        ending.join(0.1)
        self.assertTrue(ending.is_alive())   # waits for the hand-over
        self.commit(conn)
        ending.join(10)
        self.assertFalse(ending.is_alive())
        self.assertEqual(self.statusOf(jobid), COMPLETED)
        self.assertEqual((proc._handed, proc._running), ([], set()))

    def test_a_late_hand_over_is_given_back(self):
        proc = self.byHand()
        conn, jobid = self.addOpen()
        self.hooksBeforeCommit(conn)
        proc.stop()
        proc._endHandOffs(timeout=0.01)
        self.commit(conn)
        self.assertEqual((proc._handed, proc._running), ([], set()))
        self.assertEqual(self.transact(lambda s: (
            s.getStatus(jobid), s.jobs[jobid].attempts,
            s.jobs[jobid].lease, s.countJobs(PROCESSING))),
            (QUEUED, 0, None, 0))
        self.assertIn('%s: jobs [%d] were handed over after the processor '
                      'ended: given back to the queue'
                      % (proc.workerId, jobid), self.log.messages())

    def test_after_an_unexpected_end_they_are_given_back(self):
        proc = self.byHand()
        self.add('record', 'x')
        self.assertEqual(len(proc._handed), 1)
        jobid = proc._handed[0]
        with unittest.mock.patch.object(
                proc, '_loop', side_effect=RuntimeError('bug')):
            proc()
        proc._heart.thread.join(10)   # it deregisters the worker
        self.assertEqual((proc._handed, proc._running, self.runs),
                         ([], set(), []))
        self.assertEqual(self.transact(lambda s: (
            s.getStatus(jobid), s.jobs[jobid].attempts)), (QUEUED, 0))
        self.assertIn('%s: jobs [%d] were left by a processor that ended '
                      'unexpectedly: given back to the queue'
                      % (proc.workerId, jobid), self.log.messages())
        self.assertIn('%s: the processor ended unexpectedly' % proc.workerId,
                      self.log.messages())


class MultiProcessorThreadTests(HandOffCase):

    def test_a_job_thread_that_cannot_start(self):
        proc = self.byHand()
        proc.__class__ = processor.MultiProcessor
        proc._slots = threading.BoundedSemaphore(1)
        proc._threads = set()
        jobid = self.add('record', 'x')
        self.assertEqual(proc._running, {jobid})
        self.assertEqual(list(proc._handedOids), [jobid])
        real = threading.Thread.start

        def start(thread):
            if thread.name.startswith('job-'):
                raise RuntimeError("can't start new thread")
            return real(thread)
        with unittest.mock.patch.object(threading.Thread, 'start', start):
            with self.assertRaises(RuntimeError):
                proc.step()
        self.assertEqual(proc._running, set())
        self.assertEqual(proc._handedOids, {})


class ThreadTests(HandOffCase):
    """The processor's own thread, end to end."""

    def test_a_processor_thread(self):
        proc = self.start()
        jobid = self.add('record', 'x')
        self.waitUntil(lambda: self.statusOf(jobid) == COMPLETED)
        self.assertEqual((self.runs, proc.handOffs), ([jobid], 1))

    def test_a_multiprocessor(self):
        proc = self.start(processor.MultiProcessor, maxThreads=2)
        jobid = self.add('record', 'x')
        self.waitUntil(lambda: self.statusOf(jobid) == COMPLETED)
        self.assertEqual((self.runs, proc.handOffs), ([jobid], 1))
        self.assertEqual(self.transact(lambda s: s.jobs[jobid].worker),
                         proc.workerId)


def test_suite():
    return unittest.defaultTestLoader.loadTestsFromName(__name__)
