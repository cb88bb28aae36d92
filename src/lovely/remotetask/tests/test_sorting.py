"""Sorted lists of jobs (sorting.py): the order, the pages, the cost."""
import datetime

from lovely.remotetask import inbox
from lovely.remotetask import sorting
from lovely.remotetask.generations import evolve4
from lovely.remotetask.interfaces import CANCELLED
from lovely.remotetask.interfaces import COMPLETED
from lovely.remotetask.interfaces import ERROR
from lovely.remotetask.interfaces import QUEUED
from lovely.remotetask.interfaces import STATUSES
from lovely.remotetask.job import Job
from lovely.remotetask.tests.test_concurrency import ServiceTestCase


UTC = datetime.timezone.utc
T0 = datetime.datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds):
    return T0 + datetime.timedelta(seconds=seconds)


def expected(service, sort, reverse=False, status=None, task=None):
    """The ids of the sort, computed from the jobs themselves."""
    jobs = [job for job in service.jobs.values()
            if status in (None, job.status) and task in (None, job.task)]

    def value(job):
        finished = job.status in sorting.FINISHED
        if sort == 'created':
            return (0, job.created.replace(microsecond=0), job.id)
        if sort == 'started' and job.status == 'processing' or (
                sort in ('started', 'duration', 'completed') and finished):
            if sort == 'duration':
                return (0, int((job.completed - job.started)
                               .total_seconds()), job.id)
            when = job.completed if sort == 'completed' else job.started
            return (0, when.replace(microsecond=0), job.id)
        if sort == 'status':
            return (STATUSES.index(job.status), job._statusKey)
        if sort == 'task':
            return (job.task, job.id)
        # No value: after the others, by status, then by entering it.
        group = sorting.UNSTARTED if sort == 'started' \
            else sorting.UNFINISHED
        return (group.index(job.status) + 1, job._statusKey)

    ordered = sorted(jobs, key=value, reverse=reverse)
    if reverse and sort in sorting.NULLS_LAST:
        # The jobs with a value first, then the others (each descending).
        groups = {}
        for job in ordered:
            groups.setdefault(value(job)[0], []).append(job)
        ordered = [job for group in sorted(groups)
                   for job in sorted(groups[group], key=value,
                                     reverse=True)]
    return [job.id for job in ordered]


class SortTests(ServiceTestCase):

    def setUp(self):
        super().setUp()
        self.populate(self.transact, 60)

    def populate(self, transact, count, start=1000):
        """``count`` jobs created a second apart, two tasks; of them
        processed, with durations that do not follow their start: a
        third completed, a sixth failed; a tenth cancelled."""
        def add(service):
            service._v_nextid = start
            ids = []
            for n in range(count):
                job = Job(service._newId(), 'record' if n % 4 else 'echo',
                          n, created=at(n))
                service._insert(job)
                ids.append(job.id)
            return ids
        ids = transact(add)

        def work(service):
            for n, jobid in enumerate(ids):
                if n % 3 == 0:
                    job = service._claimJob(jobid, 'w', at(1000 + n))
                    service.complete(job, n, at(1000 + n + (n * 7) % 11))
                elif n % 6 == 1:
                    job = service._claimJob(jobid, 'w', at(1000 + n))
                    service.fail(job, 'boom', now=at(1000 + n + n % 5),
                                 retry=False)
                elif n % 10 == 2:
                    service.cancel(jobid)
                elif n % 10 == 5:
                    service._claimJob(jobid, 'w', at(1000 + n))
            # The rest are indexed, as a processor's next claim does.
            inbox.index(service)
        transact(work)

    def walk(self, service, sort, size, reverse=False, **filters):
        got, after = [], None
        while True:
            page = service.listJobs(size=size, reverse=reverse, after=after,
                                    sort=sort, **filters)
            if not page:
                return got
            got += [job.id for job in page]
            after = service.cursor(page[-1], filters.get('status'),
                                   filters.get('task'), sort=sort)

    def test_each_sort_in_both_directions(self):
        service = self.fresh()
        for sort in sorting.SORTS:
            for reverse in (False, True):
                want = expected(service, sort, reverse)
                self.assertEqual(len(want), 60)
                got = [job.id for job in service.listJobs(
                    sort=sort, reverse=reverse)]
                self.assertEqual(got, want, (sort, reverse))
                self.assertEqual(self.walk(service, sort, 7, reverse), want,
                                 (sort, reverse))

    def test_filtered_sorts(self):
        service = self.fresh()
        for sort in sorting.SORTS:
            for status, task in ((COMPLETED, None), (None, 'echo'),
                                 (ERROR, 'record'), (QUEUED, None)):
                for reverse in (False, True):
                    want = expected(service, sort, reverse, status, task)
                    self.assertEqual(
                        self.walk(service, sort, 4, reverse, status=status,
                                  task=task), want,
                        (sort, status, task, reverse))
                    self.assertEqual(len(want),
                                     service.countJobs(status, task))

    def test_created_range(self):
        service = self.fresh()
        self.assertEqual(service.countJobs(createdAfter=at(10),
                                           createdBefore=at(20)), 10)
        jobs = service.listJobs(createdAfter=at(10), createdBefore=at(20))
        self.assertEqual([job.created for job in jobs],
                         [at(n) for n in range(10, 20)])
        jobs = service.listJobs(createdAfter=at(10), createdBefore=at(20),
                                reverse=True, size=3)
        self.assertEqual([job.input for job in jobs], [19, 18, 17])
        self.assertEqual(service.countJobs(createdAfter=at(55)), 5)
        self.assertEqual(service.countJobs(createdBefore=at(5)), 5)
        completed = [n for n in range(10, 20) if n % 3 == 0]
        self.assertEqual(service.countJobs(COMPLETED, createdAfter=at(10),
                                           createdBefore=at(20)),
                         len(completed))
        jobs = service.listJobs(COMPLETED, createdAfter=at(10),
                                createdBefore=at(20), sort='completed')
        self.assertEqual(sorted(job.input for job in jobs), completed)
        echo = [n for n in range(10, 20) if n % 4 == 0]
        self.assertEqual(service.countJobs(task='echo', createdAfter=at(10),
                                           createdBefore=at(20)), len(echo))

    def test_unknown_sort(self):
        service = self.fresh()
        with self.assertRaises(ValueError):
            service.listJobs(sort='id')
        with self.assertRaises(ValueError):
            service.cursor(service.listJobs(size=1)[0], sort='input')

    def test_clean_and_retry_leave_the_indexes(self):
        before = self.fresh()
        removable = sum(before.countJobs(status)
                        for status in (COMPLETED, ERROR, CANCELLED))

        def clean(service):
            job = service.listJobs(ERROR, size=1)[0]
            # A retry (opscore's) queues the failed job again.
            service._queue(job)
            return job.id, service.clean()
        jobid, removed = self.transact(clean)
        service = self.fresh()
        self.assertEqual(removed, removable - 1)
        self.assertEqual(len(service._started), 2)    # the sentinels
        self.assertEqual(len(service._duration), 2)
        self.assertEqual(len(service._created) + inbox.count(service),
                         2 + len(service.jobs))
        self.assertEqual(service.jobs[jobid].status, QUEUED)
        for sort in sorting.SORTS:
            self.assertEqual(self.walk(service, sort, 5),
                             expected(service, sort), sort)

    def test_generation_4_builds_the_indexes(self):
        service = self.fresh()
        want = {sort: expected(service, sort) for sort in sorting.SORTS}

        def strip(service):
            for name in ('_created', '_started', '_duration'):
                delattr(service, name)
            for job in service.jobs.values():
                job._sortKeys = None
        self.transact(strip)
        self.transact(evolve4.evolveService)
        service = self.fresh()
        for sort in sorting.SORTS:
            self.assertEqual([job.id for job in service.listJobs(sort=sort)],
                             want[sort], sort)
        self.transact(evolve4.evolveService)   # a second time: nothing


class FlatnessTests(ServiceTestCase):
    """A page of each sort loads as many objects in a big table as in a
    small one."""

    def loads(self, call):
        conn = self.open()
        service = self.service(conn)
        service.jobs, service._index   # the service itself is loaded
        conn.cacheMinimize()
        conn.getTransferCounts(clear=True)
        call(service)
        return conn.getTransferCounts()[0]

    def costs(self):
        """The loads of a first and a middle page of each sort, each
        direction."""
        costs = {}
        service = self.fresh()
        for sort in sorting.SORTS:
            for reverse in (False, True):
                jobs = service.listJobs(sort=sort, reverse=reverse)
                middle = service.cursor(jobs[len(jobs) // 2], sort=sort)
                for after in (None, middle):
                    costs[sort, reverse, after is None] = self.loads(
                        lambda s: [job.status for job in s.listJobs(
                            sort=sort, reverse=reverse, size=30,
                            after=after)])
        return costs

    def test_pages_cost_the_same_in_a_bigger_table(self):
        SortTests.populate(self, self.transact, 300)
        small = self.costs()
        SortTests.populate(self, self.transact, 3000, start=100000)
        big = self.costs()
        for case, cost in small.items():
            # 30 jobs, at most a bucket of the jobs tree for each (their
            # ids are random), and a few buckets of the indexes: the
            # same bound at any size.
            self.assertLess(cost, 30 + 30 + 15, (case, small))
            self.assertLess(big[case], 30 + 30 + 15, (case, big))

    def test_a_status_filter_walks_its_own_segment(self):
        # Sorted by start, completion or duration, the cancelled jobs
        # come after every queued one; filtered to the cancelled, a
        # page walks their segment only, and tests no job's status.
        ids = self.addJobs(2000, 1000)
        self.transact(lambda s: [s.cancel(i) for i in ids[:60]])
        for sort in ('started', 'completed', 'duration'):
            for reverse in (False, True):
                jobs = self.loads(lambda s: s.listJobs(
                    status=CANCELLED, sort=sort, reverse=reverse, size=30))
                self.assertLess(jobs, 30 + 15, (sort, reverse))
                page = self.fresh().listJobs(
                    status=CANCELLED, sort=sort, reverse=reverse, size=30)
                self.assertEqual(len(page), 30)
                self.assertEqual({job.status for job in page}, {CANCELLED})

    def test_new_jobs_cost_at_most_the_inbox_more(self):
        # New jobs not indexed yet (inbox.py) are merged into every page;
        # the task sort and filter load them to learn their task: at most
        # the inbox's size more, at any size of the table.
        SortTests.populate(self, self.transact, 300)

        def fill(service):
            service._v_nextid = 50000
            for n in range(inbox.SIZE):
                service.add('echo' if n % 2 else 'record', n)
        self.transact(fill)
        self.assertEqual(inbox.count(self.fresh()), inbox.SIZE)
        costs = self.costs()
        for case, cost in costs.items():
            bound = 30 + 30 + 15 + (inbox.SIZE if case[0] == 'task' else 0)
            self.assertLess(cost, bound, (case, costs))
        service = self.fresh()
        for sort in sorting.SORTS:
            for reverse in (False, True):
                self.assertEqual(
                    SortTests.walk(self, service, sort, 7, reverse),
                    expected(service, sort, reverse), sort)
                for filters in ({'status': QUEUED}, {'task': 'echo'},
                                {'status': QUEUED, 'task': 'record'}):
                    self.assertEqual(
                        SortTests.walk(self, service, sort, 7, reverse,
                                       **filters),
                        expected(service, sort, reverse, **filters),
                        (sort, filters))
