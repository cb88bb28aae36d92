"""Pages of the job table by cursor: the same cost at any depth."""
from lovely.remotetask.interfaces import CANCELLED
from lovely.remotetask.interfaces import QUEUED
from lovely.remotetask.tests.test_concurrency import ServiceTestCase


class CursorTests(ServiceTestCase):

    def setUp(self):
        super().setUp()
        self.ids = self.addJobs(3000, 1000)
        self.transact(lambda s: [s.cancel(i) for i in self.ids[::3]])

    def lists(self):
        """(status, task, the ids listJobs gives without a cursor)."""
        service = self.fresh()
        for status in (None, QUEUED, CANCELLED):
            for task in (None, 'record'):
                yield status, task, [
                    j.id for j in service.listJobs(status, task)]
        self.assertEqual(len(service.listJobs()), 3000)

    def test_pages_by_cursor_cover_the_list(self):
        service = self.fresh()
        for status, task, expected in self.lists():
            for reverse in (False, True):
                want = expected[::-1] if reverse else expected
                got, after = [], None
                while True:
                    page = service.listJobs(
                        status, task, size=70, reverse=reverse, after=after)
                    if not page:
                        break
                    got += [j.id for j in page]
                    after = service.cursor(page[-1], status, task)
                self.assertEqual(got, want, (status, task, reverse))

    def loads(self, call):
        """How many objects ``call(service)`` loads with a cold cache."""
        conn = self.open()
        service = self.service(conn)
        service.jobs, service._index   # the service itself is loaded
        conn.cacheMinimize()
        conn.getTransferCounts(clear=True)
        call(service)
        return conn.getTransferCounts()[0]

    def test_a_late_page_loads_no_more_than_an_early_one(self):
        service = self.fresh()
        for status in (None, QUEUED):
            jobs = service.listJobs(status)
            early = service.cursor(jobs[10], status)
            late = service.cursor(jobs[-60], status)
            costs = [self.loads(lambda s: s.listJobs(
                         status, size=50, after=cursor, reverse=reverse))
                     for cursor in (early, late) for reverse in (False, True)]
            # 50 jobs and a few buckets of the index, wherever the page is.
            self.assertLess(max(costs), 50 + 12, (status, costs))
            self.assertLess(max(costs) - min(costs), 8, (status, costs))

    def test_an_offset_walks_to_it(self):
        # For comparison: listJobs(start=) walks the buckets before it.
        late = self.loads(lambda s: s.listJobs(start=2900, size=50))
        cursor = self.loads(lambda s: s.listJobs(
            size=50, after=self.fresh().listJobs()[2899].id))
        self.assertGreater(late, cursor + 20)

    def test_the_tables_last_pages_are_read_from_the_end(self):
        from lovely.remotetask.browser.table import JobSequence

        def page(start):
            def call(service):
                jobs = JobSequence(service, QUEUED)
                self.assertEqual(len(jobs), 2000)
                return jobs[start:start + 50]
            return call
        first, last = self.loads(page(0)), self.loads(page(1950))
        self.assertLess(abs(first - last), 8, (first, last))
        service = self.fresh()
        self.assertEqual(
            [j.id for j in JobSequence(service, QUEUED)[1950:2000]],
            [j.id for j in service.listJobs(QUEUED)][1950:])

    def test_the_tables_page_links_are_found_by_cursors(self):
        # Each link of a page deep in the table (Previous, Next, the
        # pages around) shows the rows of its offset, and costs what the
        # first page does, in every order and filter of the Jobs tab.
        from zope.publisher.browser import TestRequest

        from lovely.remotetask.browser.table import JobsTable
        from lovely.remotetask.tests.test_tablelinks import links
        from lovely.remotetask.tests.test_tablelinks import provideViews
        provideViews()

        def table(service, form, status, task):
            form = dict(form, **{'jobs-batchSize': '50'})
            jobs = JobsTable(service, TestRequest(form=form),
                             status=status, task=task)
            jobs.update()
            return jobs

        def rows(jobs):
            return [row[0][0].id for row in jobs.rows]

        for status, task in ((None, None), (QUEUED, None),
                             (None, 'record'), (QUEUED, 'record')):
            for order in ({}, {'jobs-sortOn': 'id'},
                          {'jobs-sortOrder': 'ascending'},
                          {'jobs-sortOn': 'status'},
                          {'jobs-sortOn': 'started'}):
                middle = dict(order, **{'jobs-batchStart': '1000'})
                deep = links(table(self.fresh(), middle, status, task))
                first = self.loads(
                    lambda s: table(s, order, status, task).render())
                for label in ('Previous', 'Next', '18', '19', '23', '24'):
                    form = deep[label]
                    offset = dict(order, **{
                        'jobs-batchStart': form['jobs-batchStart']})
                    what = (status, task, order, label)
                    self.assertTrue('jobs-after' in form
                                    or 'jobs-before' in form, what)
                    self.assertEqual(
                        rows(table(self.fresh(), form, status, task)),
                        rows(table(self.fresh(), offset, status, task)),
                        what)
                    cost = self.loads(
                        lambda s: table(s, form, status, task).render())
                    self.assertLess(cost, first + 10, (what, first, cost))
