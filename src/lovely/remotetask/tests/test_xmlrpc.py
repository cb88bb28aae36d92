"""Unit tests of the XML-RPC API's conversions (see xmlrpc.rst)."""
import datetime
import doctest
import io
import sys
import unittest
import xmlrpc.client

from lovely.remotetask import xmlrpc as api


class MarshallableTests(unittest.TestCase):

    def assertMarshalled(self, value, expected):
        result = api.marshallable(value)
        self.assertEqual(result, expected)
        # ... and XML-RPC can carry it, without the None extension:
        xmlrpc.client.dumps((result,), allow_none=False)

    def test_scalars(self):
        self.assertMarshalled(None, '')
        self.assertMarshalled(True, True)
        self.assertMarshalled('text', 'text')
        self.assertMarshalled(1.5, 1.5)

    def test_int_range(self):
        self.assertMarshalled(2 ** 31 - 1, 2 ** 31 - 1)
        self.assertMarshalled(-2 ** 31, -2 ** 31)
        self.assertMarshalled(2 ** 31, '2147483648')
        self.assertMarshalled(-2 ** 31 - 1, '-2147483649')

    def test_nested(self):
        self.assertMarshalled({'a': [None, (2 ** 40,)], 3: frozenset('ba')},
                              {'a': ['', ['1099511627776']],
                               '3': ['a', 'b']})

    def test_binary(self):
        result = api.marshallable(bytearray(b'\x00'))
        self.assertIsInstance(result, xmlrpc.client.Binary)
        self.assertEqual(result.data, b'\x00')

    def test_datetimes(self):
        naive = datetime.datetime(2024, 1, 2, 3, 4, 5)
        self.assertEqual(api.marshallable(naive).value, '20240102T03:04:05')
        aware = datetime.datetime(
            2024, 1, 2, 3, 4, 5,
            tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
        self.assertEqual(api.marshallable(aware).value, '20240102T01:04:05')

    def test_objects(self):
        self.assertMarshalled(object, "<class 'object'>")
        self.assertMarshalled(1j, '1j')

    def test_xmlrpc_types_stay(self):
        # Inputs stored before they were converted (see fromXMLRPC).
        result = api.marshallable([xmlrpc.client.DateTime('20240102T03:04:05'),
                                   xmlrpc.client.Binary(b'\x01')])
        self.assertEqual(result[0].value, '20240102T03:04:05')
        self.assertEqual(result[1].data, b'\x01')

    def test_depth(self):
        value = 1
        for i in range(api.MAX_DEPTH):
            value = [value]
        self.assertMarshalled({'ok': value[0]}, {'ok': value[0]})
        self.assertRaises(api.TooDeep, api.marshallable, {'deep': value})
        loop = {}
        loop['self'] = loop
        self.assertRaises(api.TooDeep, api.marshallable, loop)


class FromXMLRPCTests(unittest.TestCase):

    def test_dates(self):
        utc = datetime.timezone.utc
        for text, expected in (
                ('20240102T03:04:05', datetime.datetime(2024, 1, 2, 3, 4, 5,
                                                        tzinfo=utc)),
                ('2024-01-02T03:04:05', datetime.datetime(2024, 1, 2, 3, 4, 5,
                                                          tzinfo=utc)),
                ('2024-01-02T05:04:05+02:00',
                 datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=utc))):
            value = api.fromXMLRPC(xmlrpc.client.DateTime(text))
            self.assertEqual(value, expected)
            self.assertIs(value.tzinfo, utc)

    def test_bad_dates(self):
        for text in ('tomorrow', '', '20241301T00:00:00'):
            with self.assertRaises(xmlrpc.client.Fault) as caught:
                api.fromXMLRPC({'at': [xmlrpc.client.DateTime(text)]})
            self.assertEqual(caught.exception.faultCode,
                             api.FAULT_INVALID_PARAMS)

    def test_nested(self):
        value = api.fromXMLRPC(
            {'a': [xmlrpc.client.Binary(b'x'), {'b': 1}], 'c': 'd'})
        self.assertEqual(value, {'a': [b'x', {'b': 1}], 'c': 'd'})

    def test_depth(self):
        value = 1
        for i in range(api.MAX_DEPTH):
            value = [value]
        self.assertEqual(api.fromXMLRPC(value), value)
        with self.assertRaises(xmlrpc.client.Fault) as caught:
            api.fromXMLRPC([value])
        self.assertEqual(caught.exception.faultCode, api.FAULT_INVALID_PARAMS)

    def test_messages_are_short(self):
        deep = 1
        for i in range(5000):
            deep = [deep]
        with self.assertRaises(xmlrpc.client.Fault) as caught:
            api._check('jobid', deep, int)
        self.assertLess(len(caught.exception.faultString), 100)
        with self.assertRaises(xmlrpc.client.Fault) as caught:
            api._check('task', 'x' * 10 ** 6, int)
        self.assertLess(len(caught.exception.faultString), 200)


class SignatureTests(unittest.TestCase):

    def test_every_method_has_a_signature_per_arity(self):
        introspection = api.Introspection(None, None)
        for name in introspection.listMethods():
            signatures = introspection.methodSignature(name)
            method = getattr(api.TaskServiceAPI, name)
            required = method.__code__.co_argcount - 1 - len(
                method.__defaults__ or ())
            self.assertEqual(len(signatures[0]) - 1, required, name)
            self.assertTrue(introspection.methodHelp(name), name)

    def test_every_api_method_is_listed(self):
        self.assertEqual(
            sorted(api.READ_METHODS + api.MANAGE_METHODS),
            sorted(name for name in vars(api.TaskServiceAPI)
                   if not name.startswith('_')))

    def test_permissions(self):
        self.assertEqual(api.READ_METHODS, (
            'getAvailableTasks', 'getError', 'getJob', 'getProgress',
            'getResult', 'getStatus', 'isPaused', 'listWorkers'))
        self.assertEqual(api.MANAGE_METHODS, (
            'add', 'addCronJob', 'cancel', 'pause', 'resume', 'retry',
            'retryAll', 'startJob'))
        self.assertEqual(
            sorted(api.METHODS),
            sorted(api.READ_METHODS + api.MANAGE_METHODS + (
                'system.listMethods', 'system.methodHelp',
                'system.methodSignature',
                # 0.5.2's bare names of the introspection methods
                'listMethods', 'methodHelp', 'methodSignature')))
        for name, (cls, attribute) in api.METHODS.items():
            permission = getattr(cls, attribute).xmlrpcPermission
            self.assertEqual(permission, api.MANAGE
                             if name in api.MANAGE_METHODS else api.VIEW)

    def test_unknown_method(self):
        introspection = api.Introspection(None, None)
        with self.assertRaises(xmlrpc.client.Fault) as caught:
            introspection.methodHelp(42)
        self.assertEqual(caught.exception.faultCode, api.FAULT_INVALID_PARAMS)


class RequestTests(unittest.TestCase):
    """What the request cannot read is a Fault, never an exception."""

    def request(self, body):
        if isinstance(body, str):
            body = body.encode('utf-8')
        request = api.XMLRPCRequest(io.BytesIO(body), {
            'CONTENT_LENGTH': str(len(body)), 'REQUEST_METHOD': 'POST'})
        request.processInputs()
        return request

    def fault(self, body):
        request = self.request(body)
        call = request.traverse(object())
        self.assertIsInstance(call, api.FaultCall)
        self.assertEqual(request.getPositionalArguments(), ())
        return call.fault

    def test_a_call(self):
        request = self.request(xmlrpc.client.dumps((1, 'a'), 'system.x'))
        self.assertIsNone(request.fault)
        self.assertEqual(request.getPositionalArguments(), (1, 'a'))

    def test_faults(self):
        for body, code in (
                ('', api.FAULT_PARSE_ERROR),
                ('<methodCall>', api.FAULT_PARSE_ERROR),
                ('<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>',
                 api.FAULT_INVALID_REQUEST),
                ('<methodCall/>', api.FAULT_INVALID_REQUEST),
                ('<methodCall><methodName>x</methodName><params><param>'
                 '<value><double>x</double></value></param></params>'
                 '</methodCall>', api.FAULT_INVALID_REQUEST),
                (xmlrpc.client.dumps((), 'a.b c'), api.FAULT_NO_SUCH_METHOD),
                (xmlrpc.client.dumps((), 'a._b'), api.FAULT_NO_SUCH_METHOD),
                (xmlrpc.client.dumps((), '++vh++x'),
                 api.FAULT_NO_SUCH_METHOD)):
            self.assertEqual(self.fault(body).faultCode, code, body)

    def test_a_fault_call_dooms_the_transaction(self):
        import transaction
        transaction.begin()
        try:
            fault = api.FaultCall(1, 'no')()
            self.assertEqual((fault.faultCode, fault.faultString), (1, 'no'))
            self.assertTrue(transaction.get().isDoomed())
        finally:
            transaction.abort()

    def test_internal_errors_tell_nothing(self):
        response = api.XMLRPCResponse()
        try:
            raise KeyError('<Secret object at 0x1>')
        except KeyError:
            response.handleException(sys.exc_info())
        body = b''.join(response.consumeBodyIter())
        with self.assertRaises(xmlrpc.client.Fault) as caught:
            xmlrpc.client.loads(body)
        self.assertEqual(caught.exception.faultCode, api.FAULT_INTERNAL_ERROR)
        self.assertEqual(caught.exception.faultString,
                         'Internal error (KeyError)')

    def test_faults_stay(self):
        response = api.XMLRPCResponse()
        try:
            raise xmlrpc.client.Fault(7, 'seven')
        except xmlrpc.client.Fault:
            response.handleException(sys.exc_info())
        with self.assertRaises(xmlrpc.client.Fault) as caught:
            xmlrpc.client.loads(b''.join(response.consumeBodyIter()))
        self.assertEqual(caught.exception.faultCode, 7)


def test_suite():
    return unittest.TestSuite([
        unittest.defaultTestLoader.loadTestsFromName(__name__),
        doctest.DocTestSuite('lovely.remotetask.xmlrpc'),
    ])
