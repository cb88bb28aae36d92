"""The size caps of a job's input and output (limits.py), and how the
job page shows large values."""
import threading
import unittest
import warnings

import transaction
import zope.component

from lovely.remotetask import interfaces
from lovely.remotetask import testing
from lovely.remotetask.limits import MAX_DATA_SIZE
from lovely.remotetask.service import TaskService
from lovely.remotetask.task import SimpleTask
from lovely.remotetask.tests.fixtures import ServiceInDemoStorage


MANAGER = 'Authorization: Basic mgr:mgrpw\n'


class ServiceLimitTests(ServiceInDemoStorage):

    def setUp(self):
        super().setUp()
        self.output = None
        zope.component.provideUtility(
            SimpleTask(lambda input: self.output), interfaces.ITask, 'out')

    def test_the_default(self):
        self.assertEqual(self.service.maxDataSize, MAX_DATA_SIZE)
        self.assertEqual(MAX_DATA_SIZE, 1024 * 1024)

    def test_a_large_input_is_refused_and_nothing_is_added(self):
        big = {'data': b'x' * MAX_DATA_SIZE}
        for add in (lambda: self.service.add('out', big),
                    lambda: self.service.addCronJob('out', big, minute=(1,))):
            with self.assertRaises(interfaces.DataTooLarge) as caught:
                add()
            self.assertIsInstance(caught.exception, ValueError)
            self.assertIn('more than the 1,048,576 bytes',
                          str(caught.exception))
        self.assertEqual(self.service.countJobs(), 0)

    def test_an_input_at_the_limit_is_taken(self):
        self.service.maxDataSize = 1000
        self.service.add('out', 'x' * 900)
        self.assertRaises(interfaces.DataTooLarge, self.service.add, 'out',
                          ['x' * 900, 'y' * 200])

    def test_no_limit(self):
        self.service.maxDataSize = None
        jobid = self.service.add('out', b'x' * (MAX_DATA_SIZE + 1))
        self.output = b'y' * (MAX_DATA_SIZE + 1)
        self.service.processNext()
        self.assertEqual(self.service.getStatus(jobid), 'completed')

    def test_an_input_that_cannot_be_stored(self):
        with self.assertRaises(ValueError) as caught:
            self.service.add('out', [threading.Lock()] * 1000)
        self.assertIn('The input cannot be stored: TypeError',
                      str(caught.exception))

    def test_a_large_output_fails_the_job_once(self):
        self.service.maxDataSize = 1000
        jobid = self.service.add('out', maxRetries=3)
        self.output = {'report': 'z' * 5000}
        self.service.process()
        job = self.service.jobs[jobid]
        self.assertEqual(job.status, 'error')
        self.assertEqual(job.attempts, 1)   # a TaskError: not repeated
        self.assertIsNone(job.output)
        self.assertRegex(job.error, r'^The output is 5,\d+ bytes \(pickled\), '
                         r'more than the 1,000 bytes the service takes')

    def test_an_output_that_cannot_be_stored(self):
        for limit in (None, 10):
            self.service.maxDataSize = limit
            jobid = self.service.add('out')
            self.output = threading.Lock()
            self.service.processNext()
            self.assertEqual(self.service.getError(jobid),
                             'The output cannot be stored: TypeError: cannot '
                             "pickle '_thread.lock' object")


class JobPageTests(unittest.TestCase):

    layer = testing.layer

    def setUp(self):
        # The ZODB warns of records this large: that is the point here.
        catcher = warnings.catch_warnings()
        catcher.__enter__()
        self.addCleanup(catcher.__exit__)
        warnings.filterwarnings('ignore', '(?s).*saving is large')
        root = testing.getRootFolder()
        root['tasks'] = self.service = TaskService()
        self.service.maxDataSize = None   # stored before there was a cap
        transaction.commit()

    def tearDown(self):
        transaction.abort()

    def page(self, jobid):
        response = testing.http(f'GET /tasks/{jobid} HTTP/1.0\n{MANAGER}\n')
        self.assertEqual(response.getStatus(), 200)
        return response.getBody().decode()

    def test_a_50_MB_input_makes_a_small_page(self):
        jobid = self.service.add('echo', '<' * (50 * 1024 * 1024))
        transaction.commit()
        body = self.page(jobid)
        self.assertLess(len(body), 100 * 1024)
        self.assertIn('52,428,800 characters; the first 10,000 are shown.',
                      body)
        self.assertIn('&lt;' * 100, body)

    def test_large_data_is_abbreviated(self):
        # Distinct strings: the pickle of one string many times is small.
        jobid = self.service.add('echo',
                                 {n: f'{n:0100d}' for n in range(50000)})
        self.service.processNext(jobid=jobid)
        transaction.commit()
        body = self.page(jobid)
        self.assertLess(len(body), 100 * 1024)
        self.assertEqual(body.count('bytes (pickled); an abbreviation is '
                                    'shown.'), 2)   # input and output

    def test_a_long_error_is_cut(self):
        def fail(input):
            raise ValueError('e' * 100000)
        zope.component.provideUtility(SimpleTask(fail), interfaces.ITask,
                                      'fail')
        # The layer's registry outlives the test: leave it as it was.
        self.addCleanup(
            zope.component.getGlobalSiteManager().unregisterUtility,
            provided=interfaces.ITask, name='fail')
        jobid = self.service.add('fail', maxRetries=0)
        self.service.processNext()
        transaction.commit()
        body = self.page(jobid)
        self.assertLess(len(body), 100 * 1024)
        self.assertIn('100,012 characters; the first 10,000 are shown.', body)
