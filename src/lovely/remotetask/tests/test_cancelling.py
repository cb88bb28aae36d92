"""Progress reports and the cancel of running jobs under concurrent
transactions (FileStorage: real conflicts); progress.rst tells the story.
"""
from ZODB.POSException import ConflictError

from lovely.remotetask import progress
from lovely.remotetask.interfaces import CANCELLED
from lovely.remotetask.interfaces import COMPLETED
from lovely.remotetask.interfaces import PROCESSING
from lovely.remotetask.interfaces import QUEUED
from lovely.remotetask.tests.test_concurrency import ServiceTestCase


class CancelTests(ServiceTestCase):

    def claimed(self, count=1, start=1000, task='record'):
        ids = self.addJobs(count, start, task=task)
        self.transact(lambda s: s.claimGroup('w', count, self.now))
        return ids

    def test_a_progress_report_never_conflicts_with_the_run(self):
        [jobid] = self.claimed()
        run = self.open()
        service = self.service(run)
        job = service.jobs[jobid]
        output = service.runTask(job)
        service.setProgress(jobid, 0.5, 'half')   # commits on its own
        self.assertEqual(self.fresh().getProgress(jobid)['message'], 'half')
        service.complete(job, output)   # the run writes the job
        self.commit(run)                # and does not conflict
        service = self.fresh()
        self.assertEqual(service.getStatus(jobid), COMPLETED)
        self.assertEqual(service.getProgress(jobid)['fraction'], 0.5)

    def test_a_cancel_committed_during_the_run_makes_its_commit_conflict(self):
        [jobid] = self.claimed()
        run = self.open()
        service = self.service(run)
        job = service.jobs[jobid]
        self.assertEqual(self.transact(lambda s: s.cancel(jobid)), True)
        # The run's snapshot predates the request: it completes the job,
        # but its commit conflicts instead of losing the request.
        service.runJob(job)
        self.assertRaises(ConflictError, self.commit, run)
        service = self.begin(run)
        self.assertEqual(service.getStatus(jobid), PROCESSING)
        self.assertTrue(service.isCancelled(jobid))
        self.assertEqual(service.fail(service.jobs[jobid], 'whatever'),
                         'cancelled')
        self.commit(run)
        service = self.fresh()
        self.assertEqual(service.getStatus(jobid), CANCELLED)
        self.assertEqual(service.getError(jobid), None)
        self.assertEqual(service.jobs[jobid].history[-1].outcome,
                         'cancelled')
        self.assertConsistent(service)

    def test_a_cancel_after_the_run_committed_answers_false(self):
        [jobid] = self.claimed()
        web = self.open()
        self.assertTrue(self.service(web).cancel(jobid))
        self.transact(lambda s: s.runJob(s.jobs[jobid]))  # completes first
        self.assertRaises(ConflictError, self.commit, web)
        service = self.begin(web)    # the publisher repeats the request
        self.assertFalse(service.cancel(jobid))
        self.commit(web)
        service = self.fresh()
        self.assertEqual(service.getStatus(jobid), COMPLETED)
        self.assertFalse(service.isCancelled(jobid))

    def test_a_requested_job_of_a_dead_worker_ends_cancelled(self):
        ids = self.claimed(2)
        self.transact(lambda s: s.cancel(ids[0]))
        lost = self.transact(lambda s: s.recover(self.now, dead=['w']))
        self.assertEqual(sorted(lost), ids)
        service = self.fresh()
        self.assertEqual([service.getStatus(i) for i in ids],
                         [CANCELLED, QUEUED])
        self.assertConsistent(service)

    def test_a_failing_task_of_a_requested_job_is_not_repeated(self):
        [jobid] = self.claimed()
        self.transact(lambda s: s.cancel(jobid))
        self.assertEqual(self.transact(
            lambda s: s.fail(s.jobs[jobid], RuntimeError('boom'))),
            'cancelled')
        self.assertEqual(self.fresh().getStatus(jobid), CANCELLED)

    def test_a_group_ends_the_requested_job_cancelled_the_others_done(self):
        def write(service, jobid, input):
            service._p_jar.root()['data'][jobid] = input
            return input
        self.provideTask('write', write)
        ids = self.addJobs(3, 1000, task='write')
        proc = self.processor()
        self.transact(lambda s: s.claimGroup(proc.workerId, 3, self.now))
        self.transact(lambda s: s.cancel(ids[1]))
        proc.runGroup(ids)
        service = self.fresh()
        self.assertEqual([service.getStatus(i) for i in ids],
                         [COMPLETED, CANCELLED, COMPLETED])
        data = service._p_jar.root()['data']
        self.assertEqual((ids[0] in data, ids[1] in data, ids[2] in data),
                         (True, False, True))
        self.assertConsistent(service)

    def test_a_single_run_requested_before_it_began_is_not_run(self):
        [jobid] = self.addJobs(1, 1000)
        proc = self.processor()
        self.transact(lambda s: s.claimGroup(proc.workerId, 1, self.now))
        self.transact(lambda s: s.cancel(jobid))
        proc.run(jobid)
        self.assertEqual(self.runs, [])
        self.assertEqual(self.fresh().getStatus(jobid), CANCELLED)

    def test_process_next_a_task_that_cancels_its_own_job(self):
        def selfCancel(service, jobid, input):
            service._p_jar.root()['data']['touched'] = True
            service.cancel(jobid)
            return 'done'
        self.provideTask('selfCancel', selfCancel)
        [jobid] = self.addJobs(1, 1000, task='selfCancel')
        self.transact(lambda s: s.processNext())
        service = self.fresh()
        self.assertEqual(service.getStatus(jobid), CANCELLED)
        self.assertNotIn('touched', service._p_jar.root()['data'])

    def test_a_retried_job_starts_with_a_clear_request_and_progress(self):
        [jobid] = self.claimed()
        self.fresh().setProgress(jobid, 1, 'all')
        self.transact(lambda s: s.cancel(jobid))
        self.transact(lambda s: s.recover(self.now, dead=['w']))
        self.transact(lambda s: s.retry(jobid))
        self.assertFalse(self.fresh().isCancelled(jobid))
        self.transact(lambda s: s.claim('v', self.now))
        service = self.fresh()
        self.assertEqual(service.getStatus(jobid), PROCESSING)
        self.assertIsNone(service.getProgress(jobid))
        self.assertFalse(service.isCancelled(jobid))

    def test_a_claim_makes_no_record(self):
        # Most jobs never report nor get cancelled: a claim stores no
        # progress record and no cancel request for them.
        [jobid] = self.claimed()
        job = self.fresh().jobs[jobid]
        self.assertIsNone(job.progress)
        self.assertIsNone(job.cancelRequest)
        self.assertEqual(job.claims, 1)
        self.assertNotIn(jobid, self.fresh()._progress)

    def test_clean_drops_the_record(self):
        [jobid] = self.claimed()
        self.fresh().setProgress(jobid, 1, 'all')
        self.assertIn(jobid, self.fresh()._progress)
        self.transact(lambda s: s.runJob(s.jobs[jobid], self.now))
        self.assertEqual(self.transact(lambda s: s.clean()), 1)
        self.assertNotIn(jobid, self.fresh()._progress)

    def test_bad_reports_are_refused(self):
        [jobid] = self.claimed()
        service = self.fresh()
        for fraction in (True, -0.1, 1.5, float('nan'), '0.5'):
            self.assertRaises(ValueError, service.setProgress, jobid,
                              fraction)
        self.assertRaises(ValueError, service.setProgress, jobid, 0, b'x')
        service.setProgress(jobid, 1, 'x' * 5000)
        report = self.fresh().getProgress(jobid)
        self.assertEqual(len(report['message']), progress.MAX_MESSAGE)
        self.assertEqual(report['fraction'], 1.0)
