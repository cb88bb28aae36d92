"""The Jobs tab's page links on a real service: every link shows the rows
its page number stands for, in every order and filter, whatever cursor
it carries (browser/table.py)."""
import itertools
import re
from urllib.parse import parse_qsl

import zope.component
import zope.interface
from zope.interface import Interface
from zope.publisher.browser import TestRequest
from zope.publisher.interfaces.browser import IDefaultBrowserLayer
from zope.traversing.browser.interfaces import IAbsoluteURL

from lovely.remotetask import sorting
from lovely.remotetask.browser.table import SORTS
from lovely.remotetask.browser.table import JobsBatchProvider
from lovely.remotetask.browser.table import JobsTable
from lovely.remotetask.interfaces import COMPLETED
from lovely.remotetask.interfaces import QUEUED
from lovely.remotetask.interfaces import STATUSES
from lovely.remotetask.interfaces import WAITING
from lovely.remotetask.tests.test_concurrency import ServiceTestCase
from lovely.remotetask.tests.test_sorting import SortTests
from lovely.remotetask.tests.test_sorting import at
from lovely.remotetask.tests.test_sorting import expected


SIZE = 6


@zope.component.adapter(Interface, IDefaultBrowserLayer)
@zope.interface.implementer(IAbsoluteURL)
class URL:

    def __init__(self, context, request):
        pass

    def __call__(self):
        return 'http://localhost/tasks'


def provideViews():
    """What a jobs table needs to render its links."""
    zope.component.provideAdapter(URL)
    zope.component.provideAdapter(
        JobsBatchProvider, (Interface, IDefaultBrowserLayer, JobsTable),
        name='jobs-batch')


def links(table):
    """{label: query} of the page links of a jobs table."""
    html = table.renderBatch()
    return {label: dict(parse_qsl(query.replace('&amp;', '&')))
            for query, label in re.findall(
                r'<a href="[^"?]*\?([^"]*)"[^>]*>([^<]*)</a>', html)}


class TableLinkTests(ServiceTestCase):

    def setUp(self):
        super().setUp()
        provideViews()
        # Jobs of every status (also jobs waiting for another, which
        # have neither a start nor a completion)...
        SortTests.populate(self, self.transact, 130)
        first = self.fresh().listJobs(QUEUED, size=1)[0].id
        self.transact(lambda s: [s.add('echo', n, after=[first])
                                 for n in range(9)])

    def table(self, form, **filters):
        jobs = JobsTable(self.fresh(), TestRequest(form=form), **filters)
        jobs.update()
        return jobs

    def rows(self, table):
        return [row[0][0].id for row in table.rows]

    def test_waiting_jobs_are_in_every_sort(self):
        service = self.fresh()
        self.assertEqual(service.countJobs(WAITING), 9)
        for sort in sorting.SORTS:
            for reverse in (False, True):
                self.assertEqual(
                    [job.id for job in service.listJobs(
                        WAITING, sort=sort, reverse=reverse)],
                    expected(service, sort, reverse, status=WAITING), sort)
                self.assertEqual(
                    [job.id for job in service.listJobs(
                        sort=sort, reverse=reverse)],
                    expected(service, sort, reverse), sort)

    def test_backwards_is_the_list_from_its_end(self):
        service = self.fresh()
        for sort, status in itertools.product(
                (None,) + sorting.SORTS, (None,) + STATUSES):
            for reverse in (False, True):
                ids = [job.id for job in service.listJobs(
                    status, sort=sort, reverse=reverse)]
                back = [job.id for job in service.listJobs(
                    status, sort=sort, reverse=reverse, backwards=True)]
                self.assertEqual(back, ids[::-1], (sort, status, reverse))
                if len(ids) > 8:
                    # From a cursor: the jobs before it, nearest first.
                    cursor = service.cursor(
                        service._job(ids[7]), status, sort=sort)
                    before = service.listJobs(
                        status, sort=sort, reverse=reverse, after=cursor,
                        backwards=True, start=2, size=3)
                    self.assertEqual([job.id for job in before],
                                     ids[2:5][::-1], (sort, status))

    def test_every_link_shows_its_page(self):
        created = {'createdAfter': at(20), 'createdBefore': at(117)}
        for status, task, times, sortOn, order in itertools.product(
                (None, QUEUED, COMPLETED, WAITING), (None, 'echo'),
                (None, created), SORTS, ('ascending', 'descending')):
            if sortOn == 'entered' and status is None:
                continue
            base = {'jobs-sortOn': sortOn, 'jobs-sortOrder': order,
                    'jobs-batchSize': str(SIZE)}
            filters = dict(status=status, task=task, created=times)
            table = self.table(base, **filters)
            if table.batch is None:
                continue
            jobs = table.jobs
            every = [job.id for job in jobs.service.listJobs(
                status=status, task=task, sort=jobs.sort,
                reverse=jobs.reverse, **(times or {}))]
            pages = table.batch.total
            for current in sorted({1, 2, pages // 2, pages - 2}):
                if not 0 <= current < pages:
                    continue
                page = self.table(dict(base, **{
                    'jobs-batchStart': str(current * SIZE)}), **filters)
                for label, link in links(page).items():
                    start = int(link.get('jobs-batchStart', '0'))
                    self.assertEqual(
                        self.rows(self.table(link, **filters)),
                        every[start:start + SIZE],
                        (status, task, bool(times), sortOn, order,
                         current, label, link))
                    if label == str(current + 1):
                        # The current page: its link shows it again.
                        self.assertEqual(start, current * SIZE)

    def test_cursors_that_fit_no_list_show_the_offset(self):
        every = [job.id for job in self.fresh().listJobs(
            sort='created', reverse=True)]
        for cursor in ('-5', str(2 ** 70), str(10 ** 29),
                       '1' * 31, 'x'):
            for name in ('jobs-after', 'jobs-before'):
                for skip in ('0', '12', str(2 ** 40)):
                    table = self.table({
                        'jobs-batchStart': '12', 'jobs-batchSize': '6',
                        name: cursor, 'jobs-skip': skip})
                    self.assertEqual(self.rows(table), every[12:18],
                                     (name, cursor, skip))
                    self.assertEqual(table.pageCursor, {})

    def test_the_first_page_shows_new_jobs(self):
        # The links to the first page carry no cursor; one that does (a
        # Previous link of an earlier release, say) is read by its offset
        # all the same: a job added since shows, in the page and its
        # refresh.
        page = self.table({'jobs-batchStart': '12', 'jobs-batchSize': '6'})
        self.assertNotIn('jobs-before', links(page)['1'])
        previous = links(page)['Previous']
        self.assertIn('jobs-before', previous)
        jobid = self.transact(lambda s: s.add('echo', 'new'))
        first = self.table(dict(previous, **{'jobs-batchStart': '0'}))
        self.assertEqual(self.rows(first)[0], jobid)
        self.assertEqual(first.pageCursor, {})

    def test_pages_off_the_size_show_their_offset(self):
        # A start made by hand between two pages' starts: the links
        # around it carry no cursor (no skip fits), and show their rows.
        every = [job.id for job in self.fresh().listJobs(
            sort='created', reverse=True)]
        page = self.table({'jobs-batchStart': '17', 'jobs-batchSize': '5'})
        for label, link in links(page).items():
            start = int(link.get('jobs-batchStart', '0'))
            self.assertEqual(self.rows(self.table(link)),
                             every[start:start + 5], (label, link))
