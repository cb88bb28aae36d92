"""Unit tests of the ZMI views: the jobs table pages on the server (it
never loads more than a page), schedule fields, traversal."""
import datetime
import doctest
import re
import unittest
from urllib.parse import parse_qsl

import zope.component
import zope.component.testing
from zope.interface import Interface
from zope.interface import implementer
from zope.location.interfaces import IRoot
from zope.publisher.browser import TestRequest
from zope.publisher.interfaces.browser import IDefaultBrowserLayer
from zope.traversing.browser.absoluteurl import AbsoluteURL
from zope.traversing.browser.absoluteurl import SiteAbsoluteURL
from zope.traversing.browser.interfaces import IAbsoluteURL

from lovely.remotetask.browser import jobstate
from lovely.remotetask.browser.table import JobSequence
from lovely.remotetask.browser.table import JobsBatchProvider
from lovely.remotetask.browser.table import JobsTable


class Job:

    priority = 5
    uniqueKey = None
    waitingFor = ()

    def __init__(self, service, jobid):
        self.__parent__ = service
        self.__name__ = str(jobid)
        self.id = jobid
        self.task = 'echo'
        self.status = service.statuses[jobid % len(service.statuses)]
        self.created = datetime.datetime(2024, 1, 1,
                                         tzinfo=datetime.timezone.utc)
        self.started = self.completed = None
        self.attempts = 0
        self.worker = self.input = self.error = None


@implementer(IRoot)
class Service:
    """A service with a million jobs, which records what is loaded."""

    __parent__ = None
    __name__ = ''

    def __init__(self, count=1000000, statuses=('queued',)):
        self.count = count
        self.statuses = statuses
        self.calls = []
        #: The lookups of single jobs: (method, job id).
        self.lookups = []

    def countJobs(self, status=None, task=None, createdAfter=None,
                  createdBefore=None):
        return self.count

    def listJobs(self, status=None, task=None, start=0, size=None,
                 reverse=False, after=None, sort=None, createdAfter=None,
                 createdBefore=None, backwards=False):
        assert size is not None, 'listJobs asked for every job'
        # Unsorted: from the end is the other direction.
        reverse = reverse != backwards
        if after is not None:
            # Ids are the cursors; the jobs after ``after`` (before it,
            # if ``reverse``), ``start`` of them skipped.
            self.calls.append(
                (status, task, 'after', after, start, size, reverse))
            start += after if not reverse else self.count - after + 1
            after = None
        else:
            self.calls.append((status, task, start, size, reverse))
        stop = min(start + size, self.count)
        ids = range(start + 1, stop + 1)
        if reverse:
            ids = range(self.count - start, self.count - stop, -1)
        return [Job(self, jobid) for jobid in ids]

    def cursor(self, job, status=None, task=None, sort=None):
        return job.id

    def heldBack(self, jobid):
        self.lookups.append(('heldBack', jobid))
        return None

    def getProgress(self, jobid):
        self.lookups.append(('getProgress', jobid))
        return None


class JobSequenceTests(unittest.TestCase):

    def setUp(self):
        self.service = Service(10)
        self.jobs = JobSequence(self.service, 'queued', 'echo')

    def ids(self, jobs):
        return [job.id for job in jobs]

    def test_len_counts(self):
        self.assertEqual(len(self.jobs), 10)
        self.assertEqual(self.service.calls, [])

    def test_slice_loads_the_slice(self):
        self.assertEqual(self.ids(self.jobs[2:5]), [3, 4, 5])
        self.assertEqual(self.service.calls, [('queued', 'echo', 2, 3, False)])

    def test_slices_are_clipped(self):
        self.assertEqual(self.ids(self.jobs[8:50]), [9, 10])
        self.assertEqual(self.jobs[5:5], [])
        self.assertEqual(self.jobs[20:], [])

    def test_index(self):
        self.assertEqual(self.jobs[0].id, 1)
        self.assertEqual(self.jobs[-1].id, 10)
        self.assertRaises(IndexError, self.jobs.__getitem__, 10)
        self.assertRaises(IndexError, self.jobs.__getitem__, -11)

    def test_extended_slices_are_refused(self):
        self.assertRaises(ValueError, self.jobs.__getitem__, slice(0, 4, 2))

    def test_reverse(self):
        jobs = JobSequence(self.service, reverse=True)
        self.assertEqual(self.ids(jobs[0:3]), [10, 9, 8])


class JobsTableTests(unittest.TestCase):

    def setUp(self):
        zope.component.testing.setUp()
        zope.component.provideAdapter(
            AbsoluteURL, (Interface, IDefaultBrowserLayer), IAbsoluteURL)
        zope.component.provideAdapter(
            SiteAbsoluteURL, (IRoot, IDefaultBrowserLayer), IAbsoluteURL)
        zope.component.provideAdapter(
            JobsBatchProvider, (Interface, IDefaultBrowserLayer, JobsTable),
            name='jobs-batch')
        self.service = Service()

    def tearDown(self):
        zope.component.testing.tearDown()

    def render(self, **form):
        # Filtered by status, the default order is the latest first.
        form.setdefault('jobs-sortOrder', 'ascending')
        table = JobsTable(self.service, TestRequest(form=form),
                          status='queued')
        table.update()
        return table, table.render() + table.renderBatch()

    def test_a_page_loads_its_jobs_only(self):
        table, html = self.render(**{'jobs-batchStart': '500000',
                                     'jobs-batchSize': '20'})
        self.assertEqual(self.service.calls,
                         [('queued', None, 500000, 20, False)])
        self.assertEqual(len(table.rows), 20)
        self.assertIn('value="500001"', html)
        self.assertIn('jobs-batchStart=500020', html)  # Next
        self.assertIn('jobs-batchStart=499980', html)  # Previous
        self.assertIn('jobs-batchStart=999980', html)  # the last page

    def test_next_and_previous_carry_cursors(self):
        table, html = self.render(**{'jobs-batchStart': '500000',
                                     'jobs-batchSize': '20'})
        self.assertIn('jobs-after=500020', html)    # Next: after the last
        self.assertIn('jobs-before=500001', html)   # Previous: the first
        # A page asked for by its cursor is read from it, not counted to.
        self.service.calls = []
        table, html = self.render(**{'jobs-batchStart': '500020',
                                     'jobs-after': '500020',
                                     'jobs-batchSize': '20'})
        self.assertEqual(self.service.calls,
                         [('queued', None, 'after', 500020, 0, 20, False)])
        self.assertIn('value="500021"', html)
        self.assertIn('value="500040"', html)

    def links(self, html):
        """{page label: query} of the page links of ``html``."""
        found = re.findall(r'<a href="[^"?]*\?([^"]*)"[^>]*>([^<]*)</a>',
                           html)
        return {label: dict(parse_qsl(query.replace('&amp;', '&')))
                for query, label in found}

    def test_the_pages_around_carry_cursors(self):
        table, html = self.render(**{'jobs-batchStart': '500000',
                                     'jobs-batchSize': '20'})
        links = self.links(html)
        # Two pages on: after the last row, the 20 rows of the next page
        # skipped; two pages back: before the first, 20 rows skipped.
        self.assertEqual(links['25003'], {
            'jobs-batchStart': '500040', 'jobs-batchSize': '20',
            'jobs-after': '500020', 'jobs-skip': '20',
            'jobs-sortOrder': 'ascending', 'status': 'queued'})
        self.assertEqual(links['24999'], {
            'jobs-batchStart': '499960', 'jobs-batchSize': '20',
            'jobs-before': '500001', 'jobs-skip': '20',
            'jobs-sortOrder': 'ascending', 'status': 'queued'})
        # The next page: after the last row, nothing skipped.
        self.assertEqual(links['25002']['jobs-after'], '500020')
        self.assertNotIn('jobs-skip', links['25002'])
        # The first and the last page: by their offsets (cheap).
        self.assertEqual(links['1'], {
            'jobs-batchSize': '20', 'jobs-sortOrder': 'ascending',
            'status': 'queued'})
        self.assertEqual(links['50000'], {
            'jobs-batchStart': '999980', 'jobs-batchSize': '20',
            'jobs-sortOrder': 'ascending', 'status': 'queued'})
        # Followed, the links read from their cursors, not counting up.
        for label, call, first, last in (
                ('25003', (500020, 20, 20, False), 500041, 500060),
                ('24999', (500001, 20, 20, True), 499961, 499980)):
            self.service.calls = []
            table, html = self.render(**links[label])
            self.assertEqual(self.service.calls,
                             [('queued', None, 'after') + call])
            self.assertIn(f'value="{first}"', html)
            self.assertIn(f'value="{last}"', html)

    def test_the_current_page_keeps_its_cursor(self):
        form = {'jobs-batchStart': '500040', 'jobs-batchSize': '20',
                'jobs-after': '500020', 'jobs-skip': '20',
                'jobs-sortOrder': 'ascending'}
        table, html = self.render(**form)
        self.assertEqual(self.links(html)['25003'],
                         dict(form, status='queued'))
        self.assertEqual(table.pageCursor,
                         {'jobs-after': 500020, 'jobs-skip': 20})
        # Found by its offset: the current page's link has no cursor.
        table, html = self.render(**{'jobs-batchStart': '500040',
                                     'jobs-batchSize': '20'})
        self.assertEqual(table.pageCursor, {})
        self.assertNotIn('jobs-after',
                         self.links(html)['25003'])

    def test_a_bad_skip_is_none(self):
        for skip in ('-5', 'x', ['3']):
            self.service.calls = []
            table, html = self.render(**{'jobs-batchStart': '500020',
                                         'jobs-after': '500020',
                                         'jobs-skip': skip,
                                         'jobs-batchSize': '20'})
            self.assertEqual(
                self.service.calls,
                [('queued', None, 'after', 500020, 0, 20, False)], skip)

    def test_the_last_pages_are_read_from_the_end(self):
        table, html = self.render(**{'jobs-batchStart': '999980',
                                     'jobs-batchSize': '20'})
        self.assertEqual(self.service.calls,
                         [('queued', None, 0, 20, True)])
        self.assertIn('value="999981"', html)
        self.assertIn('value="1000000"', html)

    def test_descending(self):
        table, html = self.render(**{'jobs-sortOrder': 'descending'})
        self.assertEqual(self.service.calls,
                         [('queued', None, 0, 50, True)])
        self.assertIn('value="1000000"', html)

    def test_bad_batch_parameters(self):
        table, html = self.render(**{'jobs-batchStart': '-5',
                                     'jobs-batchSize': '0'})
        self.assertEqual(self.service.calls,
                         [('queued', None, 0, 50, False)])
        table, html = self.render(**{'jobs-batchStart': 'x',
                                     'jobs-batchSize': 'y'})
        self.assertEqual(self.service.calls[-1],
                         ('queued', None, 0, 50, False))

    def test_batch_size_is_clamped(self):
        for size, expected in (('500', 500), ('501', 500), ('10**9', 50),
                               ('1000000000', 500), ('1', 1), ('0', 50),
                               (['1'], 50), (None, 50), (7, 7), (True, 50)):
            table = JobsTable(self.service, TestRequest(
                form={'jobs-batchSize': size}))
            self.assertEqual(table.getBatchSize(), expected, size)

    def test_batch_start_is_a_number(self):
        for start, expected in (('10', 10), ('-3', 0), (['1'], 0),
                                ('1' * 40, 0), ('x', 0)):
            table = JobsTable(self.service, TestRequest(
                form={'jobs-batchStart': start}))
            self.assertEqual(table.getBatchStart(), expected, start)

    def test_sort_order_is_text(self):
        # Not text: the default order (the newest first).
        table = JobsTable(self.service, TestRequest(
            form={'jobs-sortOrder': ['ascending']}))
        self.assertTrue(table.reverse)
        table = JobsTable(self.service, TestRequest(
            form={'jobs-sortOrder': 'ascending'}))
        self.assertFalse(table.reverse)

    def test_no_checkboxes_unless_selectable(self):
        table = JobsTable(self.service, TestRequest(), selectable=False)
        table.update()
        self.assertNotIn('checkbox', table.render())
        self.assertNotIn('select', [c.__name__ for c in table.columns])

    def test_one_page_has_no_batch_links(self):
        self.service.count = 3
        table, html = self.render()
        self.assertIsNone(table.batchProvider)
        self.assertNotIn('batchStart', html)

    def test_no_jobs(self):
        self.service.count = 0
        table, html = self.render()
        self.assertEqual(table.rows, [])
        self.assertIsNone(table.batch)
        self.assertEqual(self.service.calls, [])


class JobStateTests(unittest.TestCase):
    """The Progress and Queue columns (jobstate.py)."""

    def setUp(self):
        zope.component.testing.setUp()
        zope.component.provideAdapter(
            AbsoluteURL, (Interface, IDefaultBrowserLayer), IAbsoluteURL)
        zope.component.provideAdapter(
            SiteAbsoluteURL, (IRoot, IDefaultBrowserLayer), IAbsoluteURL)
        zope.component.provideAdapter(
            JobsBatchProvider, (Interface, IDefaultBrowserLayer, JobsTable),
            name='jobs-batch')

    def tearDown(self):
        zope.component.testing.tearDown()

    def test_a_page_looks_up_its_own_jobs_only(self):
        # A million jobs of every status that has a lookup, and others.
        service = Service(statuses=('queued', 'processing', 'waiting',
                                    'completed'))
        table = JobsTable(service, TestRequest(form={
            'jobs-batchStart': '500000', 'jobs-batchSize': '20',
            'jobs-sortOrder': 'ascending'}))
        table.update()
        page = [row[0][0] for row in table.rows]
        table.render()
        table.rowData()
        self.assertEqual(service.calls, [(None, None, 500000, 20, False)])
        expected = (
            [('heldBack', job.id) for job in page if job.status == 'queued']
            + [('getProgress', job.id) for job in page
               if job.status == 'processing'])
        # Each once for the page's markup, once for its data: nothing else.
        self.assertEqual(sorted(service.lookups), sorted(expected * 2))
        self.assertEqual(len(expected), 10)

    def job(self, **attributes):
        job = Job(Service(), 1)
        job.__dict__.update(attributes)
        return job

    def test_the_default_priority_and_no_key_say_nothing(self):
        service = Service()
        self.assertEqual(jobstate.queueOf(service, self.job()), [])
        self.assertEqual(service.lookups, [('heldBack', 1)])
        self.assertEqual(
            jobstate.queueOf(service, self.job(priority=0, status='error')),
            [('priority', 'priority 0', None)])

    def test_a_long_key_is_cut_its_title_is_whole(self):
        key = 'k' * 200
        [(kind, text, title)] = jobstate.queueOf(
            Service(), self.job(uniqueKey=key, status='completed'))
        self.assertEqual((kind, title), ('key', key))
        self.assertEqual(len(text), len('key ') + jobstate.KEY)
        self.assertTrue(text.endswith('k\u2026'))

    def test_the_title_of_a_waiting_job_names_20_ids(self):
        [(kind, text, title)] = jobstate.queueOf(
            Service(), self.job(status='waiting', waitingFor=tuple(
                range(1, 26))))
        self.assertEqual(text, 'waits for 25 jobs')
        self.assertEqual(title, 'jobs ' + ', '.join(map(str, range(1, 21)))
                         + ', \u2026')
        [(kind, text, title)] = jobstate.queueOf(
            Service(), self.job(status='waiting', waitingFor=(7,)))
        self.assertEqual((text, title), ('waits for 1 job', 'jobs 7'))

    def test_held_back_and_its_whole_reason(self):
        service = Service()
        why = ('Held back by the limits of its task: 1 jobs of the task '
               'started in the last 60 s (at most 1).')
        service.heldBack = lambda jobid: why
        self.assertEqual(jobstate.queueOf(service, self.job()), [(
            'held', 'held back: 1 jobs of the task started in the last '
            '60 s (at most 1)', why)])

    def progress(self, report, status='processing'):
        service = Service()
        service.getProgress = lambda jobid: report
        return jobstate.progressOf(service, self.job(status=status))

    def test_progress_of_running_jobs_only(self):
        updated = datetime.datetime(2024, 1, 2, 3, 4, 5,
                                    tzinfo=datetime.timezone.utc)
        report = {'fraction': 0.125, 'message': None, 'updated': updated}
        self.assertEqual(self.progress(report), {
            'percent': '12 %', 'message': None,
            'updated': '2024-01-02 03:04:05 UTC'})
        self.assertIsNone(self.progress(report, status='completed'))
        self.assertIsNone(self.progress(None))
        report = {'fraction': None, 'message': 'a', 'updated': updated}
        self.assertEqual(self.progress(report)['percent'], None)


class ProgressCellTests(unittest.TestCase):
    """The cell of the Progress column."""

    setUp = JobStateTests.setUp
    tearDown = JobStateTests.tearDown

    def cells(self, report):
        service = Service(count=1, statuses=('processing',))
        service.getProgress = lambda jobid: report
        table = JobsTable(service, TestRequest(), selectable=False)
        table.update()
        [row] = table.rowData()
        [cell] = [cell for cell in row['cells']
                  if cell['class'] == 'tableProgress']
        return cell['nodes']

    def report(self, fraction, message):
        return {'fraction': fraction, 'message': message,
                'updated': datetime.datetime(2024, 1, 2, 3, 4, 5,
                                             tzinfo=datetime.timezone.utc)}

    def test_percent_and_message(self):
        [node] = self.cells(self.report(0.4, 'page 4\nof 10'))
        self.assertEqual(node['text'], '40 % page 4 of 10')
        self.assertEqual(node['attrs'], {
            'class': 'progress',
            'title': 'page 4\nof 10 (reported 2024-01-02 03:04:05 UTC)'})

    def test_a_long_message_is_cut_its_title_is_not(self):
        [node] = self.cells(self.report(None, 'x' * 1000))
        self.assertEqual(len(node['text']), 60)
        self.assertTrue(node['attrs']['title'].startswith('x' * 1000))

    def test_a_report_without_fraction_or_message(self):
        [node] = self.cells(self.report(None, None))
        self.assertEqual(node['text'], 'reported')
        self.assertEqual(node['attrs']['title'],
                         'reported 2024-01-02 03:04:05 UTC')

    def test_no_report_no_cell(self):
        self.assertEqual(self.cells(None), [])


class StyleTests(unittest.TestCase):

    def test_cells_and_values_are_bidi_isolated(self):
        # Overrides and isolates in job data (U+202A-202E, U+2066-2069)
        # reorder nothing outside the cell or value that holds them.
        import os
        import re
        from lovely.remotetask import browser
        path = os.path.join(os.path.dirname(browser.__file__),
                            'remotetask.css')
        with open(path) as css:
            text = re.sub(r'/\*.*?\*/', '', css.read(), flags=re.S)
        isolated = set()
        for selectors, body in re.findall(r'([^{}]+)\{([^}]*)\}', text):
            if re.search(r'unicode-bidi:\s*(isolate|plaintext)', body):
                isolated.update(' '.join(selector.split())
                                for selector in selectors.split(','))
        for selector in ('table.jobs td', 'table.jobs td *',
                         'table.job td', 'table.job td *', 'pre'):
            self.assertIn('.remotetask ' + selector, isolated)


def test_suite():
    return unittest.TestSuite([
        unittest.defaultTestLoader.loadTestsFromName(__name__),
        doctest.DocTestSuite('lovely.remotetask.browser.schedule',
                             optionflags=doctest.ELLIPSIS),
        doctest.DocTestSuite('lovely.remotetask.browser.traversal'),
        doctest.DocTestSuite('lovely.remotetask.browser.util'),
        doctest.DocTestSuite('lovely.remotetask.browser.job'),
        doctest.DocTestSuite('lovely.remotetask.browser.cron'),
        doctest.DocTestSuite('lovely.remotetask.browser.search'),
        doctest.DocTestSuite('lovely.remotetask.browser.table'),
        doctest.DocTestSuite('lovely.remotetask.browser.jobstate'),
    ])
