"""Retry and the job history: the edge cases (retry.rst tells the story)."""
from lovely.remotetask import bulk
from lovely.remotetask import history
from lovely.remotetask.interfaces import CANCELLED
from lovely.remotetask.interfaces import ERROR
from lovely.remotetask.interfaces import InvalidJobId
from lovely.remotetask.interfaces import NoSuchJob
from lovely.remotetask.interfaces import NotRetryable
from lovely.remotetask.interfaces import QUEUED
from lovely.remotetask.tests.test_concurrency import ServiceTestCase


def boom(service, jobid, input):
    raise RuntimeError(f'boom {input}')


class RetryTests(ServiceTestCase):

    def setUp(self):
        super().setUp()
        self.provideTask('boom', boom)

    def failJobs(self, count, start=1000):
        ids = self.addJobs(count, start, task='boom', maxRetries=0)
        self.transact(lambda s: s.process())
        return ids

    def test_history_is_bounded_and_survives_a_commit(self):
        [jobid] = self.failJobs(1)
        for n in range(history.MAX_HISTORY + 2):
            self.transact(lambda s: (s.retry(jobid), s.process()))
        job = self.fresh().jobs[jobid]
        self.assertEqual(len(job.history), history.MAX_HISTORY)
        self.assertEqual({a.outcome for a in job.history}, {'failed'})
        self.assertEqual({a.number for a in job.history}, {1})
        self.assertEqual(job.history[-1].error, 'RuntimeError: boom 0')
        self.assertLessEqual(job.history[0].ended, job.history[-1].ended)

    def test_retry_of_each_status_that_is_not_retryable(self):
        [jobid] = self.addJobs(1, 1000, task='echo', startLater=True)
        service = self.fresh()
        for status in ('start later',):
            with self.assertRaises(NotRetryable) as raised:
                service.retry(jobid)
            self.assertEqual(raised.exception.status, status)
            self.assertIsInstance(raised.exception, ValueError)
        self.assertRaises(NoSuchJob, service.retry, 999)
        self.assertRaises(InvalidJobId, service.retry, 'x')
        self.assertRaises(InvalidJobId, service.retry, True)

    def test_retry_all_checks_its_arguments_first(self):
        self.failJobs(2)
        service = self.fresh()
        for bad in ('completed', 'queued', (), ('error', 'nonsense')):
            self.assertRaises(ValueError, service.retryAll, bad)
        self.assertRaises(ValueError, service.retryAll, ERROR, 42)
        self.assertRaises(ValueError, bulk.retryAll, service, 'completed')
        self.assertEqual(service.countJobs(ERROR), 2)
        self.assertEqual(service.retryAll(task='nosuchtask'), 0)

    def test_retry_all_by_task_and_status(self):
        failed = self.failJobs(3)
        cancelled = self.addJobs(2, 2000, task='echo', startLater=True)
        self.transact(lambda s: [s.cancel(i) for i in cancelled])
        self.assertEqual(self.transact(
            lambda s: s.retryAll((ERROR, CANCELLED), task='echo')), 2)
        service = self.fresh()
        self.assertEqual([service.getStatus(i) for i in failed + cancelled],
                         [ERROR] * 3 + [QUEUED] * 2)
        self.assertConsistent(service)

    def test_bulk_retry_leaves_jobs_that_failed_after_it_began(self):
        ids = self.failJobs(5)
        conn = self.open()
        service = self.service(conn)
        # Jobs that enter 'error' after the bulk retry began (a second
        # later, as a processor failing them again would) are left.
        later = history.timeset.timeKey(
            self.now.replace(year=self.now.year + 1), 0)
        self.assertEqual(bulk.inBatches(
            service, lambda s, n: history.retryAll(s, ERROR, None, n,
                                                   later), 2), 5)
        service = self.fresh()
        self.assertEqual({service.getStatus(i) for i in ids}, {QUEUED})
        self.assertConsistent(service)
        # A bound before them retries none.
        self.transact(lambda s: s.process())
        before = history.timeset.timeKey(self.now.replace(
            year=self.now.year - 1), 0)
        self.assertEqual(self.transact(
            lambda s: history.retryAll(s, ERROR, None, None, before)), 0)

    def test_bulk_retry_in_batches(self):
        ids = self.failJobs(7)
        conn = self.open()
        self.assertEqual(bulk.retryAll(self.service(conn), size=3), 7)
        service = self.fresh()
        self.assertEqual({service.getStatus(i) for i in ids}, {QUEUED})
        self.assertEqual({service.jobs[i].attempts for i in ids}, {0})
        self.assertConsistent(service)


class BackoffTests(ServiceTestCase):
    """The default backoff (backoff.py) and the log levels of the ends of
    attempts (docs/design.rst, Logging)."""

    def setUp(self):
        super().setUp()
        self.provideTask('boom', boom)
        # The class defaults, not ServiceTestCase's immediate repeats.
        self.transact(lambda s: delattr(s, 'retryDelay'))

    def delays(self, start=1000, **kw):
        """The backoffs of a job's repeats, in seconds."""
        [jobid] = self.addJobs(1, start, task='boom', **kw)
        delays = []
        now = self.now
        while True:
            def step(service):
                service.processNext(now, jobid)
                job = service.jobs[jobid]
                return job.status, job.due
            status, due = self.transact(step)
            if status != QUEUED:
                return delays
            # A repeat at once has no due time: it is due now.
            delays.append(0 if due is None else (due - now).total_seconds())
            now = due or now

    def test_ten_seconds_doubling_with_ten_percent_jitter(self):
        delays = self.delays()
        self.assertEqual(len(delays), 3)
        for delay, base in zip(delays, (10, 20, 40)):
            self.assertGreaterEqual(delay, base * 0.9 - 1e-6)
            self.assertLessEqual(delay, base * 1.1 + 1e-6)

    def test_no_jitter_gives_exact_delays(self):
        self.transact(lambda s: setattr(s, 'retryJitter', 0))
        self.assertEqual(self.delays(retryDelay=3), [3, 6, 12])
        self.assertEqual(self.delays(2000, retryDelay=0), [0, 0, 0])

    def test_the_longest_delay_is_a_year(self):
        from lovely.remotetask import backoff
        from lovely.remotetask.job import MAX_DELAY
        from lovely.remotetask.interfaces import UnknownTask
        [jobid] = self.addJobs(1, 1000, task='boom', retryDelay=MAX_DELAY)
        service = self.fresh()
        job = service.jobs[jobid]
        job.attempts = 5
        self.assertEqual(backoff.retryDelay(service, job, None), MAX_DELAY)
        job.attempts = 1
        job.retryDelay = 0
        service.retryJitter = 0
        self.assertEqual(backoff.retryDelay(
            service, job, UnknownTask('x')), backoff.UNKNOWN_TASK_DELAY)

    def test_log_levels(self):
        import logging
        [done] = self.addJobs(1, 1000, task='echo')
        [refused] = self.addJobs(1, 2000, task='boom', maxRetries=0)
        self.transact(lambda s: s.processNext(self.now, done))
        completed = [r for r in self.log.records
                     if r.name == 'lovely.remotetask.completed']
        self.assertEqual(len(completed), 1)
        self.assertEqual(completed[0].levelno, logging.INFO)
        self.assertRegex(completed[0].getMessage(),
                         r"^Job 1000 \('echo'\) completed in \d+\.\d{3} s$")
        self.transact(lambda s: s.processNext(self.now, refused))
        [final] = [r for r in self.log.records if r.levelno >= logging.ERROR]
        self.assertIn('failed (attempt 1 of 1): RuntimeError: boom 0\n'
                      'Traceback (most recent call last):',
                      final.getMessage())
