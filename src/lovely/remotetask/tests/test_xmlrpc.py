"""Unit tests of the XML-RPC API's conversions (see xmlrpc.rst)."""
import datetime
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

    def test_unknown_method(self):
        introspection = api.Introspection(None, None)
        with self.assertRaises(xmlrpc.client.Fault) as caught:
            introspection.methodHelp(42)
        self.assertEqual(caught.exception.faultCode, api.FAULT_INVALID_PARAMS)
