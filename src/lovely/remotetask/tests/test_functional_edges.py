"""Edge cases of the ZMI and the XML-RPC API, through the WSGI application.
"""
import logging
import unittest
import xmlrpc.client
from unittest import mock

import transaction
import zope.component
import zope.error.error
import zope.interface
from zope.securitypolicy.principalpermission import \
    principalPermissionManager as ppm

from lovely.remotetask import testing
from lovely.remotetask.service import TaskService


MANAGER = 'Authorization: Basic mgr:mgrpw\n'
VIEWER = 'Authorization: Basic viewer:viewerpw\n'
ANONYMOUS = ''
EVIL = 'Origin: http://evil.example\n'
FORM = 'application/x-www-form-urlencoded'


class FunctionalTestCase(unittest.TestCase):

    layer = testing.layer

    def setUp(self):
        root = testing.getRootFolder()
        root['tasks'] = self.service = TaskService()
        transaction.commit()

    def tearDown(self):
        transaction.abort()

    def post(self, path, body, headers=MANAGER, contentType=FORM):
        return testing.http(
            f'POST {path} HTTP/1.0\n{headers}Content-Type: {contentType}\n'
            f'Content-Length: {len(body)}\n\n{body}')

    def get(self, url, headers=MANAGER):
        path = url.replace('http://localhost', '', 1)
        return testing.http(f'GET {path} HTTP/1.0\n{headers}\n')

    def press(self, path, body, headers=MANAGER):
        """POST a button: a redirect to the page; the page's body."""
        response = self.post(path, body, headers)
        self.assertEqual(response.getStatus(), 303, response.getBody())
        return self.get(response.getHeader('Location')).getBody()


class JobsViewTests(FunctionalTestCase):

    def test_cancel_ids_that_name_no_job(self):
        jobid = self.service.add('echo')
        transaction.commit()
        body = self.press(
            '/tasks/@@jobs.html',
            f'jobs:list=abc&jobs:list=12345&jobs:list={jobid}&CANCEL=Cancel')
        self.assertIn(b'1 of 3 jobs cancelled', body)
        transaction.abort()
        self.assertEqual(self.service.getStatus(jobid), 'cancelled')

    def test_post_without_a_button(self):
        jobid = self.service.add('echo')
        transaction.commit()
        response = self.post('/tasks/@@jobs.html', f'jobs:list={jobid}')
        self.assertEqual(response.getStatus(), 200)
        self.assertNotIn(b'class="message"', response.getBody())
        transaction.abort()
        self.assertEqual(self.service.getStatus(jobid), 'queued')

    def test_cleaning_nothing(self):
        body = self.press('/tasks', 'CLEAN_ALL=Remove+all&confirmed=1')
        self.assertIn(b'Cleaned 0 Jobs', body)

    def test_bulk_buttons_ask_first(self):
        jobid = self.service.add('echo')
        transaction.commit()
        for button in ('CANCEL_ALL', 'CLEAN_ALL', 'CLEAN_COMPLETED',
                       'CLEAN_CANCELLED', 'CLEAN_ERROR'):
            response = self.post('/tasks?task=echo', f'{button}=1')
            self.assertEqual(response.getStatus(), 200)
            body = response.getBody()
            self.assertIn(b'class="confirmation"', body)
            self.assertIn(b'name="confirmed" value="1"', body)
            self.assertIn(b'action="http://localhost/tasks?task=echo"', body)
        transaction.abort()
        self.assertEqual(self.service.getStatus(jobid), 'queued')
        body = self.press('/tasks', 'CANCEL_ALL=1&confirmed=1')
        self.assertIn(b'All jobs cancelled', body)

    def test_viewers_may_not_ask_either(self):
        response = self.post('/tasks', 'CLEAN_ALL=1', VIEWER)
        self.assertEqual(response.getStatus(), 403)

    def test_start_twice_stop_twice(self):
        for expected in (b'Processing started', b'Processing started'):
            body = self.press('/tasks', 'START_PROCESSING=1')
            self.assertIn(expected, body)
        transaction.abort()
        self.assertTrue(self.service.isProcessing())
        for expected in (b'Processing stopped', b'Processing stopped'):
            body = self.press('/tasks', 'STOP_PROCESSING=1')
            self.assertIn(expected, body)
        self.assertFalse(self.service.isProcessing())

    def test_a_button_redirects_to_the_page_it_was_on(self):
        response = self.post(
            '/tasks?status=queued&task=echo&jobs-batchStart=50'
            '&done=cleaned&count=99', 'CLEAN_ALL=1&confirmed=1')
        self.assertEqual(response.getStatus(), 303)
        self.assertEqual(
            response.getHeader('Location'),
            'http://localhost/tasks?count=0&done=cleaned&jobs-batchStart=50'
            '&status=queued&task=echo')

    def test_cross_origin_posts_change_nothing(self):
        jobid = self.service.add('echo')
        transaction.commit()
        for headers in (EVIL, 'Referer: http://evil.example/x.html\n',
                        'Sec-Fetch-Site: cross-site\n',
                        'Origin: null\n',
                        'Origin: http://localhost.evil.example\n',
                        'Origin: http://localhost:81\n',
                        'Sec-Fetch-Site: same-origin\n' + EVIL +
                        'Sec-Fetch-Site: cross-site\n'):
            for body in ('CANCEL_ALL=1', f'CANCEL=1&jobs:list={jobid}',
                         'START_PROCESSING=1', 'CLEAN_ALL=1'):
                response = self.post('/tasks', body, MANAGER + headers)
                self.assertEqual(response.getStatus(), 403, headers)
                self.assertIn(b'cross-origin', response.getBody())
        transaction.abort()
        self.assertEqual(self.service.getStatus(jobid), 'queued')
        self.assertFalse(self.service.isProcessing())

    def test_same_origin_posts_work(self):
        jobid = self.service.add('echo')
        transaction.commit()
        for headers in ('Origin: http://localhost\n',
                        'Origin: HTTP://LOCALHOST:80\n',
                        'Referer: http://localhost/tasks?x=1\n',
                        'Sec-Fetch-Site: same-origin\n'
                        'Origin: http://localhost\n'):
            self.press('/tasks', 'STOP_PROCESSING=1', MANAGER + headers)
        self.press('/tasks', f'CANCEL=1&jobs:list={jobid}',
                   MANAGER + 'Origin: http://localhost\n')
        transaction.abort()
        self.assertEqual(self.service.getStatus(jobid), 'cancelled')

    def test_a_get_is_never_refused_by_the_view(self):
        # Reading is harmless; the WSGI guard of the server is stricter.
        response = self.get('/tasks?status=queued', MANAGER + EVIL)
        self.assertEqual(response.getStatus(), 200)

    def test_records_and_lists_are_no_job_ids(self):
        jobid = self.service.add('echo')
        transaction.commit()
        body = self.press('/tasks', 'CANCEL=1&jobs.a:record=1')
        self.assertIn(b'0 of 1 jobs cancelled', body)
        body = self.press('/tasks', f'CANCEL=1&jobs={jobid}')
        self.assertIn(b'Jobs were successfully cancelled.', body)

    def test_odd_table_parameters(self):
        for i in range(3):
            self.service.add('echo')
        transaction.commit()
        for query in ('jobs-batchSize:list=1', 'jobs-batchStart:list=1',
                      'jobs-batchSize.a:record=1', 'jobs-batchSize=1e3',
                      'jobs-sortOrder:list=descending', 'status:list=x',
                      'task.a:record=echo', 'done:list=cleaned',
                      'done=cleaned&count:list=1'):
            response = self.get(f'/tasks?{query}')
            self.assertEqual(response.getStatus(), 200, query)
            self.assertEqual(response.getBody().count(b'name="jobs:list"'),
                             3, query)

    def test_batch_size_is_clamped(self):
        for i in range(501):
            self.service.add('echo')
        transaction.commit()
        for size, shown in (('1000', 500), ('500', 500), ('7', 7),
                            ('0', 50), ('-1', 50), ('x', 50)):
            body = self.get(f'/tasks?jobs-batchSize={size}').getBody()
            self.assertEqual(body.count(b'name="jobs:list"'), shown, size)

    def test_viewers_get_no_checkboxes(self):
        self.service.add('echo')
        transaction.commit()
        body = self.get('/tasks', VIEWER).getBody()
        self.assertIn(b'class="tableId"', body)
        self.assertNotIn(b'name="jobs:list"', body)


class UnencodableDataTests(FunctionalTestCase):
    """Lone surrogates in stored job data (Python code can store them;
    the APIs refuse them) show escaped, instead of failing the page."""

    def setUp(self):
        super().setUp()
        self.jobid = self.service.add('echo', {'x': 'in\ud800'})
        job = self.service.jobs[self.jobid]
        job.uniqueKey = 'key\ud800'
        job.error = 'err\udfff'
        transaction.commit()

    def test_the_jobs_tab_shows_the_job(self):
        response = self.get('/tasks/@@jobs.html')
        self.assertEqual(response.getStatus(), 200)
        body = response.getBody()
        self.assertIn(b'key key\\ud800', body)
        self.assertIn(b'err\\udfff', body)
        self.assertIn(b"'in\\ud800'", body)

    def test_the_job_page_shows_the_job(self):
        response = self.get(f'/tasks/{self.jobid}')
        self.assertEqual(response.getStatus(), 200)
        body = response.getBody()
        self.assertIn(b'key\\ud800', body)
        self.assertIn(b'err\\udfff', body)

    def test_the_live_refresh_shows_the_job(self):
        response = self.get('/tasks/jobs.json')
        self.assertEqual(response.getStatus(), 200)
        self.assertIn(b'key\\\\ud800', response.getBody())


class CronFormTests(FunctionalTestCase):

    SCHEDULE = 'hour=&dayOfMonth=&month=&dayOfWeek='

    def form(self, path, body, headers=MANAGER):
        response = self.post(path, body, headers)
        transaction.abort()
        return response

    def test_cross_origin_posts_change_nothing(self):
        cronid = self.service.addCronJob('echo', minute=(5,))
        transaction.commit()
        response = self.form(
            '/tasks/@@addcron.html',
            f'task=echo&minute=1&{self.SCHEDULE}&delay=&ADD=Add',
            MANAGER + EVIL)
        self.assertEqual(response.getStatus(), 403)
        response = self.form(
            f'/tasks/{cronid}/@@edit.html',
            f'task=echo&minute=1&{self.SCHEDULE}&delay=&SAVE=Save',
            MANAGER + EVIL)
        self.assertEqual(response.getStatus(), 403)
        self.assertEqual(self.service.countJobs(), 1)
        self.assertEqual(self.service[cronid].minute, (5,))
        response = self.form(
            '/tasks/@@addcron.html',
            f'task=echo&minute=1&{self.SCHEDULE}&delay=&ADD=Add',
            MANAGER + 'Origin: http://localhost\n')
        self.assertEqual(response.getStatus(), 302)
        self.assertEqual(self.service.countJobs(), 2)

    def test_lists_and_converted_values_are_field_errors(self):
        for fields, error in (
                ('task=echo&minute=1&minute=2', b'minute: expected one'),
                ('task=echo&minute:int=1', b'minute: expected one'),
                ('task=echo&hour.a:record=1', b'hour: expected one'),
                ('task=echo&task=echo', b'Choose one of the available'),
                ('task=echo&delay=1&delay=2', b'The delay is a number'),
                ('task=echo&delay:float=1', b'The delay is a number'),
                ('task=echo&delay=nan', b'The delay is a number'),
                ('task=echo&delay=1e300', b'delay: expected seconds')):
            response = self.form('/tasks/@@addcron.html',
                                 f'{fields}&ADD=Add')
            self.assertEqual(response.getStatus(), 200, fields)
            self.assertIn(error, response.getBody(), fields)
        self.assertEqual(self.service.countJobs(), 0)

    def test_the_delay_error_is_shown_at_the_delay(self):
        response = self.form('/tasks/@@addcron.html',
                             'task=echo&delay=1e9&ADD=Add')
        body = response.getBody()
        delay = body.index(b'id="cron-delay"')
        error = body.index(b'delay: expected seconds')
        self.assertLess(delay, error)

    def test_a_finished_job_keeps_its_task(self):
        for finish in (self.service.cancel, self.finish):
            cronid = self.service.addCronJob('echo', {'keep': 1},
                                             minute=(5,))
            finish(cronid)
            transaction.commit()
            before = self.service.countJobs()
            status = self.service.getStatus(cronid)
            response = self.form(
                f'/tasks/{cronid}/@@edit.html',
                f'task=exception&minute=5&{self.SCHEDULE}&delay=&SAVE=Save')
            self.assertEqual(response.getStatus(), 200)
            self.assertIn(
                f'The job is {status}: its task cannot be changed'.encode(),
                response.getBody())
            self.assertEqual(self.service.countJobs(), before)
            self.assertEqual(self.service[cronid].task, 'echo')
            self.assertEqual(self.service.countJobs(task='exception'), 0)

    def finish(self, jobid):
        job = self.service[jobid]
        job.status = 'completed'

    def test_delayed_jobs_may_change_their_task(self):
        cronid = self.service.addCronJob('echo', delay=60)
        transaction.commit()
        response = self.form(
            f'/tasks/{cronid}/@@edit.html',
            f'task=exception&minute=&{self.SCHEDULE}&delay=60&SAVE=Save')
        self.assertEqual(response.getStatus(), 302)
        self.assertEqual(self.service.getStatus(cronid), 'cancelled')
        self.assertEqual(self.service.countJobs(task='exception'), 1)

    def test_a_job_that_cannot_be_cancelled_keeps_its_task(self):
        cronid = self.service.addCronJob('echo', minute=(5,))
        transaction.commit()
        with mock.patch.object(TaskService, 'cancel',
                               lambda self, jobid: False):
            response = self.form(
                f'/tasks/{cronid}/@@edit.html',
                f'task=exception&minute=5&{self.SCHEDULE}&delay=&SAVE=Save')
        self.assertEqual(response.getStatus(), 200)
        self.assertIn(b'could not be cancelled', response.getBody())
        self.assertEqual(self.service.countJobs(), 1)
        self.assertEqual(self.service.getStatus(cronid), 'cronjob')


class TraversalTests(FunctionalTestCase):

    def test_anonymous_learns_no_names(self):
        # Even where anonymous users may see the site (zope.View), they
        # may not see task services.
        ppm.grantPermissionToPrincipal('zope.View', 'zope.anybody')
        self.addCleanup(ppm.unsetPermissionForPrincipal,
                        'zope.View', 'zope.anybody')
        for path in ('/tasks/abc', '/tasks/99', '/tasks/jobs.html'):
            self.assertEqual(self.get(path, ANONYMOUS).getStatus(), 401,
                             path)
        self.assertEqual(self.get('/tasks/abc').getStatus(), 404)
        self.assertEqual(self.get('/tasks/99').getStatus(), 404)


class XMLRPCTests(FunctionalTestCase):

    def call(self, body, headers=MANAGER):
        response = self.post('/tasks/', body, headers, 'text/xml')
        self.assertEqual(response.getStatus(), 200)
        return xmlrpc.client.loads(response.getBody())

    def fault(self, body, headers=MANAGER):
        with self.assertRaises(xmlrpc.client.Fault) as caught:
            self.call(body, headers)
        return caught.exception

    def setUp(self):
        super().setUp()
        # The error log writes an error of a type at most so often.
        zope.error.error._rate_restrict_pool.clear()

    def assertNoErrorLogged(self):
        return self.assertNoLogs(level=logging.ERROR)

    def test_malformed_xml_is_a_fault_for_anyone(self):
        for headers in (MANAGER, ''):
            with self.assertNoErrorLogged():
                fault = self.fault('<methodCall><methodName>add', headers)
            self.assertEqual(fault.faultCode, -32700)
            self.assertIn('Parse error: no element found', fault.faultString)

    def test_no_method_name(self):
        with self.assertNoErrorLogged():
            fault = self.fault('<methodCall><params/></methodCall>')
        self.assertEqual(fault.faultCode, -32600)
        fault = self.fault('<methodCall><methodName></methodName>'
                           '</methodCall>')
        self.assertEqual(fault.faultCode, -32600)

    def test_not_xmlrpc(self):
        for body in ('<html><body>hello</body></html>',
                     xmlrpc.client.dumps(('x',), methodresponse=True),
                     '<methodCall><methodName>add</methodName><params>'
                     '<param><value><boolean>2</boolean></value></param>'
                     '</params></methodCall>'):
            with self.assertNoErrorLogged():
                fault = self.fault(body)
            self.assertEqual(fault.faultCode, -32600, body)

    def test_method_names(self):
        for name in ('nosuch', 'system.nosuch', 'system', 'getStatus.x',
                     'system.listMethods.__call__', '@@absolute_url',
                     '++etc++site', '..', 'add..x', '_check', '42'):
            with self.assertNoErrorLogged():
                fault = self.fault(xmlrpc.client.dumps((), name))
            self.assertEqual(fault.faultCode, -32601, name)
            self.assertNotIn(' object at ', fault.faultString)

    def test_wrong_number_of_arguments(self):
        for args, name in (((1, 2), 'getStatus'), ((), 'add'),
                           (tuple(range(9)), 'addCronJob'),
                           (('x', 'y'), 'system.methodHelp'),
                           ((1,), 'system.listMethods')):
            with self.assertNoErrorLogged():
                fault = self.fault(xmlrpc.client.dumps(args, name))
            self.assertEqual(fault.faultCode, -32602, name)
            self.assertTrue(fault.faultString.startswith(name + ': expected'))

    def test_anonymous_gets_401_even_with_zope_view(self):
        ppm.grantPermissionToPrincipal('zope.View', 'zope.anybody')
        self.addCleanup(ppm.unsetPermissionForPrincipal,
                        'zope.View', 'zope.anybody')
        self.test_anonymous_gets_401_before_any_method_is_looked_up()

    def test_anonymous_gets_401_before_any_method_is_looked_up(self):
        for args, name in (((), 'nosuch'), ((1, 2), 'getStatus'),
                           ((), 'system.nosuch'), ((), 'add')):
            response = self.post('/tasks/', xmlrpc.client.dumps(args, name),
                                 ANONYMOUS, 'text/xml')
            self.assertEqual(response.getStatus(), 401, name)

    def test_faults_of_methods_are_not_logged(self):
        with self.assertNoErrorLogged():
            fault = self.fault(xmlrpc.client.dumps(('nosuchtask',), 'add'))
        self.assertEqual(fault.faultCode, 1)

    def test_unexpected_errors_are_logged_and_tell_nothing(self):
        def getAvailableTasks(self):
            raise RuntimeError('<Secret object at 0x1234>')

        with mock.patch.object(TaskService, 'getAvailableTasks',
                               getAvailableTasks), \
                self.assertLogs('SiteError', logging.ERROR):
            fault = self.fault(
                xmlrpc.client.dumps((), 'getAvailableTasks'))
        self.assertEqual(fault.faultCode, -32603)
        self.assertEqual(fault.faultString, 'Internal error (RuntimeError)')

    def test_cookies_fill_no_arguments(self):
        # zope.publisher's mapply would take a missing argument from a
        # cookie of the same name.
        (jobid,), method = self.call(
            xmlrpc.client.dumps(('echo',), 'add'),
            MANAGER + 'Cookie: input=from-a-cookie; startLater=1\n')
        transaction.abort()
        self.assertIsNone(self.service[jobid].input)
        self.assertEqual(self.service.getStatus(jobid), 'queued')

    def test_nothing_is_stored_on_a_fault(self):
        fault = self.fault(xmlrpc.client.dumps(('echo', {}, 'maybe'), 'add'))
        self.assertEqual(fault.faultCode, -32602)
        transaction.abort()
        self.assertEqual(self.service.countJobs(), 0)

    def test_deep_input(self):
        for depth in (101, 2000, 50000):
            value = '<value><array><data>' * depth + \
                '<value><int>1</int></value>' + \
                '</data></array></value>' * depth
            body = (f"<?xml version='1.0'?><methodCall><methodName>add"
                    f"</methodName><params><param><value><string>echo"
                    f"</string></value></param><param>{value}</param>"
                    f"</params></methodCall>")
            with self.assertNoErrorLogged():
                fault = self.fault(body)
            self.assertEqual(fault.faultCode, -32602)
        transaction.abort()
        self.assertEqual(self.service.countJobs(), 0)

    def test_datetime_and_binary_input(self):
        (jobid,), method = self.call(xmlrpc.client.dumps(
            ('echo', {'at': [xmlrpc.client.DateTime('20240102T03:04:05')],
                      'data': xmlrpc.client.Binary(b'\x00\xff')}), 'add'))
        transaction.abort()
        job = self.service[jobid]
        self.assertEqual(job.input['data'], b'\x00\xff')
        at = job.input['at'][0]
        self.assertEqual(at.isoformat(), '2024-01-02T03:04:05+00:00')
        self.assertIsNotNone(at.tzinfo)

    def test_applications_publish_more_views(self):
        from zope.app.publisher.xmlrpc import MethodPublisher
        from zope.publisher.interfaces.xmlrpc import IXMLRPCRequest
        from zope.security.checker import NamesChecker
        from lovely.remotetask.interfaces import ITaskService

        class Extra(MethodPublisher):
            __Security_checker__ = NamesChecker(
                ['hello'], 'lovely.remotetask.View')

            def hello(self, name):
                return f'hello {name}'

        registry = zope.component.getGlobalSiteManager()
        registry.registerAdapter(Extra, (ITaskService, IXMLRPCRequest),
                                 zope.interface.Interface, 'extra')
        self.addCleanup(registry.unregisterAdapter, Extra,
                        (ITaskService, IXMLRPCRequest),
                        zope.interface.Interface, 'extra')
        (answer,), method = self.call(
            xmlrpc.client.dumps(('you',), 'extra.hello'))
        self.assertEqual(answer, 'hello you')
        response = self.post('/tasks/', xmlrpc.client.dumps(
            ('you',), 'extra.hello'), ANONYMOUS, 'text/xml')
        self.assertEqual(response.getStatus(), 401)

    def test_a_call(self):
        (jobid,), method = self.call(xmlrpc.client.dumps(('echo',), 'add'))
        transaction.abort()
        self.assertIsNone(self.service[jobid].input)
