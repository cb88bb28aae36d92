"""Counts given by users are capped at ``MAX_COUNT`` (2**31 - 1): a
larger one is a clear ValueError, 400 or Fault, never an OverflowError
or a ValueError of itertools from deep inside, nor a 500."""
import argparse
import unittest
import xmlrpc.client
from unittest import mock

import transaction
import zope.component

from lovely.remotetask import interfaces
from lovely.remotetask import task
from lovely.remotetask import testing
from lovely.remotetask.interfaces import MAX_COUNT
from lovely.remotetask.service import TaskService
from lovely.remotetask.tests.fixtures import ServiceInDemoStorage
from lovely.remotetask.tests.test_functional_edges import MANAGER
from lovely.remotetask.tests.test_functional_edges import \
    FunctionalTestCase


TOO_MANY = MAX_COUNT + 1
HUGE = 2 ** 64


class ServiceTests(ServiceInDemoStorage):

    def setUp(self):
        super().setUp()
        zope.component.provideUtility(task.echo, interfaces.ITask, 'echo')

    def assertRefused(self, call, name, value):
        with self.assertRaises(ValueError) as caught:
            call()
        self.assertIs(type(caught.exception), ValueError)
        self.assertEqual(str(caught.exception),
                         f'{name} must be a whole number from 0 to '
                         f'2147483647, not {value!r}')

    def test_the_cap(self):
        self.assertEqual(MAX_COUNT, 2 ** 31 - 1)

    def test_maxRetries_of_add(self):
        jobid = self.service.add('echo', maxRetries=MAX_COUNT)
        self.assertEqual(self.service.jobs[jobid].maxRetries, MAX_COUNT)
        for value in (TOO_MANY, HUGE):
            self.assertRefused(
                lambda: self.service.add('echo', maxRetries=value),
                'maxRetries', value)
        # The low end says what it said.
        with self.assertRaisesRegex(ValueError, 'maxRetries must be an '
                                                'int >= 0, not -1'):
            self.service.add('echo', maxRetries=-1)

    def test_limits_of_bulk_changes(self):
        service = self.service
        for method in (service.retryAll, service.cancelAll, service.clean,
                       service.applyRetention):
            self.assertEqual(method(limit=MAX_COUNT), 0, method)
            for value in (TOO_MANY, HUGE, -1):
                self.assertRefused(lambda: method(limit=value), 'limit',
                                   value)
            self.assertRefused(lambda: method(limit='3'), 'limit', '3')
        self.assertEqual(service.cancelAll(), 0)

    def test_pages(self):
        service = self.service
        service.add('echo')
        self.assertEqual(service.listJobs(start=MAX_COUNT, size=MAX_COUNT),
                         [])
        for sort in (None, 'created'):
            for name in ('start', 'size'):
                for value in (TOO_MANY, HUGE, -1):
                    self.assertRefused(
                        lambda: service.listJobs(sort=sort, **{name: value}),
                        name, value)

    def test_task_limits(self):
        service = self.service
        service.setTaskLimits('echo', maxConcurrent=MAX_COUNT,
                              keepCompleted=MAX_COUNT)
        with self.assertRaisesRegex(
                ValueError, r'^maxConcurrent must be a whole number from 1 '
                            r'to 2147483647, not 2147483648$'):
            service.setTaskLimits('echo', maxConcurrent=TOO_MANY)
        for name in ('keepCompleted', 'keepFailed'):
            for value in (TOO_MANY, str(HUGE)):
                with self.assertRaisesRegex(
                        ValueError, f'^{name} must be a count from 0 to '
                                    f'2147483647 or a time'):
                    service.setTaskLimits('echo', **{name: value})
            # A time too long for a timedelta: no OverflowError.
            with self.assertRaisesRegex(ValueError, f'^{name} must be a '
                                                    f'count'):
                service.setRetention(**{name: '99999999999999999w'})
        # rateLimit's count was capped already, far below.
        with self.assertRaisesRegex(ValueError, 'count from 1 to 10000'):
            service.setTaskLimits('echo', rateLimit=(HUGE, 60))
        self.assertEqual(service.taskLimits('echo')['maxConcurrent'],
                         MAX_COUNT)

    def test_the_schema(self):
        import zope.schema
        for iface, name in ((interfaces.ITaskService, 'maxRetries'),
                            (interfaces.ITaskService, 'maxConflictRetries'),
                            (interfaces.ITaskService, 'maxDataSize'),
                            (interfaces.IJob, 'maxRetries')):
            field = iface[name]
            field.validate(MAX_COUNT)
            with self.assertRaises(zope.schema.interfaces.TooBig):
                field.validate(TOO_MANY)


class CommandLineTests(unittest.TestCase):

    def test_service_set(self):
        from lovely.remotetask.app.cli.services import parseSetting
        from lovely.remotetask.app.cli.session import CommandError
        self.assertEqual(parseSetting(f'maxRetries={MAX_COUNT}'),
                         ('maxRetries', MAX_COUNT))
        for name in ('maxRetries', 'maxConflictRetries', 'maxDataSize'):
            with self.assertRaises(CommandError) as caught:
                parseSetting(f'{name}={HUGE}')
            self.assertEqual(str(caught.exception),
                             f'{name}={HUGE}: Value is too big (int <= '
                             f'2147483647)')

    def test_counts_of_options(self):
        from lovely.remotetask.app.cli import jobid
        from lovely.remotetask.app.cli import positive
        self.assertEqual(positive(str(MAX_COUNT)), MAX_COUNT)
        for text in (str(TOO_MANY), str(HUGE)):
            with self.assertRaisesRegex(argparse.ArgumentTypeError,
                                        'is not from 1 to 2147483647'):
                positive(text)
        with self.assertRaisesRegex(argparse.ArgumentTypeError,
                                    'is not at least 1'):
            positive('0')
        # Job ids are checked by the service (InvalidJobId: a message).
        self.assertEqual(jobid(str(HUGE)), HUGE)

    def test_jobs_list_size(self):
        from lovely.remotetask.app.main import make_parser
        with self.assertRaises(SystemExit), \
                mock.patch('sys.stderr'):
            make_parser().parse_args(['jobs', 'list', '--size', str(HUGE)])


class JSONAPITests(unittest.TestCase):

    layer = testing.layer

    def setUp(self):
        from webtest import TestApp
        from lovely.remotetask.app.wsgi import protect
        root = testing.getRootFolder()
        root['tasks'] = self.service = TaskService()
        transaction.commit()
        self.app = TestApp(protect(testing.wsgiApp()))
        self.app.authorization = ('Basic', ('mgr', 'mgrpw'))

    def tearDown(self):
        transaction.abort()

    def post(self, path, body):
        response = self.app.post_json(f'/tasks/@@api/{path}', body,
                                      status=400)
        self.assertEqual(response.content_type, 'application/problem+json')
        return response.json['detail']

    def test_bodies(self):
        self.assertEqual(
            self.app.post_json('/tasks/@@api/jobs', {
                'task': 'echo', 'maxRetries': MAX_COUNT}).status_int, 201)
        self.assertEqual(self.post('jobs', {'task': 'echo',
                                            'maxRetries': HUGE}),
                         f'maxRetries must be a whole number from 0 to '
                         f'2147483647, not {HUGE}')
        self.assertEqual(self.post('retry', {'limit': TOO_MANY}),
                         'limit must be a whole number from 0 to '
                         '2147483647, not 2147483648')
        self.assertEqual(self.app.post_json('/tasks/@@api/retry', {
            'limit': MAX_COUNT}).json, {'retried': 0})
        self.assertEqual(self.service.countJobs(), 1)

    def test_queries(self):
        self.assertEqual(self.app.get(
            f'/tasks/@@api/jobs?start={MAX_COUNT}').json['jobs'], [])
        response = self.app.get('/tasks/@@api/jobs?start=9999999999',
                                status=400)
        self.assertEqual(response.json['detail'],
                         'start must be from 0 to 2147483647, not '
                         '9999999999')

    def test_the_description_says_so(self):
        from lovely.remotetask.jsonapi.openapi import description
        api = description('http://x/@@api')
        text = repr(api)
        self.assertIn(str(MAX_COUNT), text)
        schemas = api['components']['schemas']
        self.assertEqual(
            schemas['NewJob']['properties']['maxRetries']['maximum'],
            MAX_COUNT)
        self.assertEqual(
            schemas['RetryAll']['properties']['limit']['maximum'],
            MAX_COUNT)


class LimitsTabTests(FunctionalTestCase):

    def test_a_cap_too_large(self):
        body = (f'task=echo&maxConcurrent={HUGE}&rateCount=&rateSeconds='
                f'&keepCompleted={HUGE}&keepFailed=&SAVE=Save')
        response = self.post('/tasks/@@limits.html', body,
                             MANAGER + 'Sec-Fetch-Site: same-origin\n')
        self.assertEqual(response.getStatus(), 400)
        self.assertIn('maxConcurrent must be a whole number from 1 to '
                      '2147483647', response.getBody().decode())


class XMLRPCTests(FunctionalTestCase):
    """XML-RPC takes no counts but job ids, priorities and schedules,
    each checked already; its ints are unbounded in what it parses."""

    def call(self, name, *params):
        body = (f'<?xml version="1.0"?><methodCall><methodName>{name}'
                f'</methodName><params>'
                + ''.join(f'<param><value>{p}</value></param>'
                          for p in params)
                + '</params></methodCall>')
        response = testing.http(
            'POST /tasks/ HTTP/1.0\nAuthorization: Basic mgr:mgrpw\n'
            f'Content-Type: text/xml\n\n{body}')
        with self.assertRaises(xmlrpc.client.Fault) as caught:
            xmlrpc.client.loads(response.getBody())
        return caught.exception.faultCode, caught.exception.faultString

    def test_huge_ints_are_faults(self):
        huge = f'<int>{HUGE}</int>'
        echo, nil, no, empty = ('<string>echo</string>', '<nil/>',
                                '<boolean>0</boolean>', '<string></string>')
        self.assertEqual(
            self.call('add', echo, nil, no, empty,
                      f'<array><data><value>{huge}</value></data></array>'),
            (3, f'Job ids are integers in [1, 2**31), not {HUGE}'))
        self.assertEqual(
            self.call('add', echo, nil, no, empty,
                      '<array><data></data></array>', huge),
            (-32602, f'priority must be an int from 0 to 9, not {HUGE}'))
        for method in ('getStatus', 'cancel', 'retry', 'getJob'):
            self.assertEqual(self.call(method, huge)[0], 3, method)
        self.assertEqual(
            self.call('addCronJob', echo, nil,
                      f'<array><data><value>{huge}</value></data></array>'),
            (4, f'minute: {HUGE} is not in 0..59'))

