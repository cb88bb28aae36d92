"""Edge cases of tasks that misbehave and of index maintenance.

Each test provokes one situation that once lost or broke something: a
compaction racing an add, a task using ``transaction.get()``, a task that
commits, unpicklable output, ``SystemExit`` in a task, a cron schedule
changed mid-run.
"""
import datetime
import threading

import transaction
import zope.component
import zope.component.testing
import zope.interface
from persistent.mapping import PersistentMapping
from ZODB.POSException import ReadConflictError

from lovely.remotetask import inbox
from lovely.remotetask import interfaces
from lovely.remotetask import processor
from lovely.remotetask import task
from lovely.remotetask.interfaces import COMPLETED
from lovely.remotetask.interfaces import ERROR
from lovely.remotetask.interfaces import QUEUED
from lovely.remotetask.service import TaskService
from lovely.remotetask.tests.fixtures import ServiceInFileStorage
from lovely.remotetask.tests.fixtures import provide
from lovely.remotetask.timeset import spread as _spread
from lovely.remotetask.timeset import timeIds as _timeIds
from lovely.remotetask.timeset import TimeSet


class RobustnessTests(ServiceInFileStorage):

    def populate(self, root):
        provide('echo', task.echo)
        root['data'] = PersistentMapping()

    def step(self):
        proc = processor.SimpleProcessor(self.db, self.oid, name='test')
        self.addCleanup(proc.stop)
        return proc.step()

    # -- compaction -----------------------------------------------------------

    def spreadQueue(self):
        """A 'queued' set spread over buckets, with a few jobs left."""
        service, tm = self.service()
        ids = [service.add('echo', i)
               for i in range(2 * TimeSet.max_leaf_size + 100)]
        for jobid in ids[:-3]:
            service.cancel(jobid)
        tm.commit()
        self.assertTrue(_spread(service._index[QUEUED]))

    def test_an_add_committed_during_compaction_is_not_lost(self):
        self.spreadQueue()
        compacting, tmc = self.service()
        self.assertEqual(compacting.compact(), [QUEUED])
        adding, tma = self.service()
        new = adding.add('echo', 'new')
        inbox.index(adding)   # as the next claim does (see inbox.py)
        tma.commit()
        # The rebuild read the old buckets "current": it conflicts.
        self.assertRaises(ReadConflictError, tmc.commit)
        check, tm = self.service()
        self.assertIn(new, list(_timeIds(check._index[QUEUED])))
        self.assertEqual(check.countJobs(QUEUED), 4)

    def test_an_add_after_compaction_conflicts_and_retries(self):
        self.spreadQueue()
        compacting, tmc = self.service()
        adding, tma = self.service()
        new = adding.add('echo', 'new')
        inbox.index(adding)   # as the next claim does (see inbox.py)
        compacting.compact()
        tmc.commit()
        self.assertRaises(ReadConflictError, tma.commit)
        tma.abort()
        new = adding.add('echo', 'new')
        inbox.index(adding)
        tma.commit()
        check, tm = self.service()
        self.assertFalse(_spread(check._index[QUEUED]))
        self.assertEqual(sorted(check.listJobs(QUEUED), key=id)[0].status,
                         QUEUED)
        self.assertIn(new, list(_timeIds(check._index[QUEUED])))

    # -- tasks and their transaction ------------------------------------------

    def test_a_task_savepoint_is_the_jobs(self):
        def careful(service, jobid, input):
            data = service._p_jar.root()['data']
            data['kept'] = True
            savepoint = transaction.savepoint()
            data['undone'] = True
            savepoint.rollback()
            return sorted(data)
        provide('careful', careful)
        service, tm = self.service()
        jobid = service.add('careful')
        tm.commit()
        self.assertTrue(self.step())
        tm.begin()
        self.assertEqual(service.getResult(jobid), ['kept'])
        self.assertEqual(sorted(service._p_jar.root()['data']), ['kept'])

    def test_a_task_commit_hook_fires_with_the_job(self):
        fired = []

        def hooked(service, jobid, input):
            transaction.get().addAfterCommitHook(
                lambda ok: fired.append((jobid, ok)))
        provide('hooked', hooked)
        service, tm = self.service()
        jobid = service.add('hooked')
        tm.commit()
        self.step()
        self.assertEqual(fired, [(jobid, True)])

    def test_a_task_that_commits_fails(self):
        def committing(service, jobid, input):
            transaction.commit()
        provide('committing', committing)
        service, tm = self.service()
        jobid = service.add('committing')
        tm.commit()
        self.step()
        tm.begin()
        self.assertEqual(service.getStatus(jobid), ERROR)
        self.assertIn('committed or aborted', service.getError(jobid))
        # processNext (on a connection of the thread's transaction manager,
        # as in a web request) raises it, dropping what followed.
        conn = self.db.open()
        self.addCleanup(conn.close)
        self.addCleanup(transaction.abort)
        service = conn.get(self.oid)
        jobid = service.add('committing')
        transaction.commit()
        self.assertRaises(interfaces.TransactionEnded,
                          service.processNext, None, jobid)

    def test_unpicklable_output_is_the_tasks_failure(self):
        provide('lock', lambda service, jobid, input: threading.Lock())
        service, tm = self.service()
        jobid = service.add('lock')
        ok = service.add('echo', 'fine')
        tm.commit()
        self.step()
        self.step()
        tm.begin()
        self.assertEqual(service.getStatus(jobid), ERROR)
        self.assertEqual(service.jobs[jobid].attempts, 1)  # not repeated
        self.assertTrue(service.getError(jobid).startswith(
            'The output cannot be stored: TypeError'))
        self.assertEqual(service.getStatus(ok), COMPLETED)

    def test_system_exit_in_a_task_fails_the_job_not_the_processor(self):
        def leave(input):
            raise SystemExit('bye')
        zope.component.provideUtility(task.SimpleTask(leave),
                                      interfaces.ITask, 'leave')
        service, tm = self.service()
        jobid = service.add('leave', maxRetries=0)
        tm.commit()
        self.assertTrue(self.step())
        tm.begin()
        self.assertEqual(service.getStatus(jobid), ERROR)
        self.assertEqual(service.getError(jobid), 'SystemExit: bye')

    # -- cron and scheduling --------------------------------------------------

    def test_a_running_cron_jobs_schedule_cannot_change(self):
        service, tm = self.service()
        jobid = service.addCronJob('echo', minute=(5,))
        now = service.jobs[jobid].scheduledFor
        self.assertIs(service.claim('w', now), service.jobs[jobid])
        with self.assertRaises(interfaces.InvalidSchedule):
            service.jobs[jobid].update(minute=(6,))
        self.assertEqual(service.jobs[jobid].minute, (5,))

    def test_has_jobs_waiting_agrees_with_claim_within_a_second(self):
        service, tm = self.service()
        jobid = service.addCronJob('echo', delay=10)
        due = service.jobs[jobid].scheduledFor
        early = due - datetime.timedelta(microseconds=1)
        if early.second != due.second:  # due on a whole second
            early = due
            due = due + datetime.timedelta(microseconds=1)
        self.assertEqual(service.hasJobsWaiting(early),
                         service.processNext(early))
        self.assertTrue(service.hasJobsWaiting(due))
        self.assertTrue(service.processNext(due))

    def test_processor_arguments_are_not_shared(self):
        service, tm = self.service()
        with self.assertRaises(TypeError):
            service.processorArguments['maxThreads'] = 3
        service.processorArguments = {'waitTime': 0.1}
        self.assertEqual(TaskService.processorArguments['waitTime'], 1.0)
