"""Edge cases of the ZMI and the XML-RPC API, through the WSGI application.
"""
import unittest
import xmlrpc.client

import transaction

from lovely.remotetask import testing
from lovely.remotetask.service import TaskService


MANAGER = 'Authorization: Basic mgr:mgrpw\n'


class FunctionalTestCase(unittest.TestCase):

    layer = testing.layer

    def setUp(self):
        root = testing.getRootFolder()
        root['tasks'] = self.service = TaskService()
        transaction.commit()

    def tearDown(self):
        transaction.abort()

    def post(self, path, body, headers=MANAGER,
             contentType='application/x-www-form-urlencoded'):
        return testing.http(
            f'POST {path} HTTP/1.0\n{headers}Content-Type: {contentType}\n'
            f'Content-Length: {len(body)}\n\n{body}')


class JobsViewTests(FunctionalTestCase):

    def test_cancel_ids_that_name_no_job(self):
        jobid = self.service.add('echo')
        transaction.commit()
        response = self.post(
            '/tasks/@@jobs.html',
            f'jobs:list=abc&jobs:list=12345&jobs:list={jobid}&CANCEL=Cancel')
        self.assertIn(b'1 of 3 jobs cancelled', response.getBody())
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
        response = self.post('/tasks', 'CLEAN_ALL=Remove+all')
        self.assertIn(b'Cleaned 0 Jobs', response.getBody())

    def test_start_twice_stop_twice(self):
        for expected in (b'Processing started', b'Processing started'):
            response = self.post('/tasks', 'START_PROCESSING=1')
            self.assertIn(expected, response.getBody())
        transaction.abort()
        self.assertTrue(self.service.isProcessing())
        for expected in (b'Processing stopped', b'Processing stopped'):
            response = self.post('/tasks', 'STOP_PROCESSING=1')
            self.assertIn(expected, response.getBody())
        self.assertFalse(self.service.isProcessing())


class XMLRPCTests(FunctionalTestCase):

    def call(self, body, headers=MANAGER):
        response = self.post('/tasks/', body, headers, 'text/xml')
        self.assertEqual(response.getStatus(), 200)
        return xmlrpc.client.loads(response.getBody())

    def fault(self, body, headers=MANAGER):
        with self.assertRaises(xmlrpc.client.Fault) as caught:
            self.call(body, headers)
        return caught.exception

    def test_malformed_xml_is_a_fault_for_anyone(self):
        for headers in (MANAGER, ''):
            fault = self.fault('<methodCall><methodName>add', headers)
            self.assertEqual(fault.faultCode, -1)
            self.assertIn('ExpatError', fault.faultString)

    def test_no_method_name(self):
        fault = self.fault('<methodCall><params/></methodCall>')
        self.assertEqual(fault.faultCode, -1)

    def test_not_xmlrpc(self):
        fault = self.fault('<html><body>hello</body></html>')
        self.assertEqual(fault.faultCode, -1)

    def test_nothing_is_stored_on_a_fault(self):
        fault = self.fault(xmlrpc.client.dumps(('echo', {}, 'maybe'), 'add'))
        self.assertEqual(fault.faultCode, -32602)
        transaction.abort()
        self.assertEqual(self.service.countJobs(), 0)

    def test_a_call(self):
        (jobid,), method = self.call(xmlrpc.client.dumps(('echo',), 'add'))
        transaction.abort()
        self.assertIsNone(self.service[jobid].input)
