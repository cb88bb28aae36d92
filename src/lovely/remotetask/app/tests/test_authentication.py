"""Authentication before the body, the login throttle, the body limit."""
import base64
import unittest

from lovely.remotetask.app.authentication import Authenticate
from lovely.remotetask.app.authentication import BodyLimit
from lovely.remotetask.app.authentication import LoginThrottle
from lovely.remotetask.app.tests.test_wsgi import Recorder
from lovely.remotetask.app.tests.test_wsgi import call


def basic(credentials):
    return 'Basic ' + base64.b64encode(credentials.encode()).decode()


class Clock:
    now = 1000.0

    def __call__(self):
        return self.now


class AuthenticateTests(unittest.TestCase):

    def setUp(self):
        self.app = Recorder()
        self.clock = Clock()
        self.guard = Authenticate(
            self.app, LoginThrottle(self.clock),
            check=lambda login, password: (login, password) == ('a', 'pw'))

    def status(self, credentials=None, **environ):
        if credentials is not None:
            environ['HTTP_AUTHORIZATION'] = basic(credentials)
        environ.setdefault('REMOTE_ADDR', '192.0.2.1')
        return call(self.guard, **environ)

    def test_anonymous_bodies_are_not_read(self):
        for environ in ({'REQUEST_METHOD': 'POST', 'CONTENT_LENGTH': '5'},
                        {'REQUEST_METHOD': 'POST'},
                        {'REQUEST_METHOD': 'OPTIONS'},
                        {'REQUEST_METHOD': 'GET', 'CONTENT_LENGTH': '9'},
                        {'REQUEST_METHOD': 'GET',
                         'HTTP_TRANSFER_ENCODING': 'chunked'}):
            status, headers, body = self.status(**environ)
            self.assertEqual(status, '401 Unauthorized', environ)
            self.assertEqual(headers['WWW-Authenticate'],
                             'basic realm="Zope"')
        self.assertEqual(self.app.calls, [])
        # An anonymous GET goes on: the publisher answers it.
        self.assertEqual(self.status()[0], '200 OK')

    def test_right_and_wrong(self):
        self.assertEqual(self.status('a:pw', REQUEST_METHOD='POST')[0],
                         '200 OK')
        with self.assertLogs('lovely.remotetask.app') as logged:
            self.assertEqual(self.status('a:wrong')[0], '401 Unauthorized')
            self.assertEqual(self.status('nobody:pw')[0],
                             '401 Unauthorized')
        self.assertEqual(len(self.app.calls), 1)
        self.assertIn("Failed login 'a' from 192.0.2.1", logged.output[0])
        self.assertNotIn('wrong', logged.output[0])

    def test_failed_logins_are_throttled(self):
        # Issue 9: 60 wrong passwords at 200/s, then the right one worked.
        statuses = [self.status('a:guess%d' % n)[0] for n in range(60)]
        self.assertEqual(statuses[:5], ['401 Unauthorized'] * 5)
        self.assertIn('429 Too Many Requests', statuses)
        status, headers, body = self.status('a:pw')
        self.assertEqual(status, '429 Too Many Requests')
        self.assertTrue(int(headers['Retry-After']) >= 1)
        self.assertEqual(self.app.calls, [])
        # Once the wait is over, the right password works, and the
        # failures are forgotten.
        self.clock.now += LoginThrottle.MAX_WAIT
        self.assertEqual(self.status('a:pw')[0], '200 OK')
        self.assertEqual(self.status('a:wrong')[0], '401 Unauthorized')

    def test_per_address_and_per_login(self):
        for n in range(LoginThrottle.FREE['address'] + 1):
            self.status(f'user{n}:x')
        # Another login from the same address waits.
        self.assertEqual(self.status('a:pw')[0], '429 Too Many Requests')
        # The same login from elsewhere does not (yet).
        self.assertEqual(self.status('a:pw', REMOTE_ADDR='192.0.2.2')[0],
                         '200 OK')
        # Failures of a login from other addresses never lock its owner
        # out (a review found that anyone could lock the admin out).
        for n in range(LoginThrottle.FREE['login'] + 1):
            self.status('a:guess', REMOTE_ADDR=f'198.51.100.{n}')
        self.assertEqual(
            self.status('a:pw', REMOTE_ADDR='203.0.113.1')[0], '200 OK')

    def test_the_login_is_logged_escaped(self):
        with self.assertLogs('lovely.remotetask.app') as logged:
            self.status('x\n2030-01-01 CRITICAL forged:pw')
        self.assertNotIn('\n', logged.output[0])


class ThrottleTests(unittest.TestCase):

    def test_waits_grow_to_a_limit(self):
        clock = Clock()
        throttle = LoginThrottle(clock)
        free = LoginThrottle.FREE['address']
        for n in range(free):
            throttle.failed('a', 'x')
            self.assertEqual(throttle.wait('a', 'x'), 0)
        waits = []
        for n in range(10):
            throttle.failed('a', 'x')
            waits.append(throttle.wait('a', 'x'))
        self.assertEqual(waits[:3], [2.0, 4.0, 8.0])
        self.assertEqual(waits[-1], LoginThrottle.MAX_WAIT)
        clock.now += LoginThrottle.FORGET + 1
        self.assertEqual(throttle.failed('a', 'x'), (1, 1))

    def test_bounded(self):
        throttle = LoginThrottle(Clock())
        throttle.MAX_KEYS = 10
        for n in range(100):
            throttle.failed(f'login{n}', f'address{n}')
        self.assertEqual(len(throttle._failures), 10)


class BodyLimitTests(unittest.TestCase):

    def test_limit(self):
        app = Recorder()
        guard = BodyLimit(app, 100)
        self.assertEqual(call(guard, CONTENT_LENGTH='100')[0], '200 OK')
        self.assertEqual(call(guard)[0], '200 OK')
        with self.assertLogs('lovely.remotetask.app'):
            self.assertEqual(call(guard, CONTENT_LENGTH='101')[0],
                             '413 Content Too Large')
        self.assertEqual(call(guard, CONTENT_LENGTH='x')[0],
                         '400 Bad Request')
        self.assertEqual(len(app.calls), 2)
