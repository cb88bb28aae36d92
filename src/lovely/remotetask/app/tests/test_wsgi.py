"""The WSGI guards of the server (lovely.remotetask.app.wsgi)."""
import base64
import unittest

from lovely.remotetask.app import guards
from lovely.remotetask.app import wsgi
from lovely.remotetask.app.settings import Settings


def basic(credentials):
    return 'Basic ' + base64.b64encode(credentials).decode()


class Recorder:
    """A WSGI application that records what reaches it."""

    def __init__(self, headers=()):
        self.calls = []
        self.headers = list(headers)

    def __call__(self, environ, start_response):
        self.calls.append(environ)
        start_response('200 OK', [('Content-Type', 'text/plain')]
                       + self.headers)
        return [b'ok']


def call(application, **environ):
    environ.setdefault('REQUEST_METHOD', 'GET')
    environ.setdefault('HTTP_HOST', 'localhost:8080')
    started = []
    body = b''.join(application(
        environ, lambda status, headers, exc_info=None:
        started.append((status, headers))))
    status, headers = started[0]
    return status, dict(headers), body


class CredentialsTests(unittest.TestCase):

    def test_not_utf8(self):
        self.assertFalse(guards.readable(basic(b'\xff\xfe:pw')))
        self.assertFalse(guards.readable(basic(b'admin:\xe9')))
        self.assertTrue(guards.readable(basic('j\u00fcrg:pw'.encode())))

    def test_not_utf8_is_400(self):
        app = Recorder()
        status, headers, body = call(
            wsgi.protect(app), HTTP_AUTHORIZATION=basic(b'\xff:x'))
        self.assertEqual(status, '400 Bad Request')
        self.assertEqual(app.calls, [])


class CrossOriginGuardTests(unittest.TestCase):

    def setUp(self):
        self.app = Recorder()
        self.guard = guards.CrossOriginGuard(self.app)

    def status(self, **environ):
        return call(self.guard, **environ)[0]

    def test_scripts_pass(self):
        for method in ('GET', 'POST', 'PUT', 'DELETE'):
            self.assertEqual(self.status(REQUEST_METHOD=method,
                                         QUERY_STRING='a=1'), '200 OK')

    def test_cross_origin_posts_are_refused(self):
        for headers in ({'HTTP_ORIGIN': 'http://evil.example'},
                        {'HTTP_ORIGIN': 'http://localhost'},  # port 80
                        {'HTTP_ORIGIN': 'https://localhost:8080'},
                        {'HTTP_ORIGIN': 'null'},
                        {'HTTP_REFERER': 'http://evil.example/'},
                        {'HTTP_SEC_FETCH_SITE': 'cross-site'},
                        {'HTTP_SEC_FETCH_SITE': 'same-site'}):
            for method in ('POST', 'PUT', 'DELETE', 'PATCH'):
                self.assertEqual(
                    self.status(REQUEST_METHOD=method, **headers),
                    '403 Forbidden', (method, headers))
        self.assertEqual(self.app.calls, [])

    def test_same_origin_passes(self):
        for headers in ({'HTTP_ORIGIN': 'http://localhost:8080'},
                        {'HTTP_REFERER': 'http://LOCALHOST:8080/x?y'},
                        {'HTTP_SEC_FETCH_SITE': 'same-origin',
                         'HTTP_ORIGIN': 'http://localhost:8080'},
                        {'HTTP_SEC_FETCH_SITE': 'none'}):
            self.assertEqual(self.status(REQUEST_METHOD='POST', **headers),
                             '200 OK', headers)

    def test_links_from_elsewhere_pass_without_a_query(self):
        # The ZMI deletes and adds on GET (contents.html, the add menu):
        # a link or an image of another site must not carry a query.
        for headers in ({'HTTP_SEC_FETCH_SITE': 'cross-site',
                         'HTTP_SEC_FETCH_MODE': 'navigate'},
                        {'HTTP_REFERER': 'http://wiki.example/page'}):
            self.assertEqual(self.status(**headers), '200 OK')
            self.assertEqual(self.status(REQUEST_METHOD='HEAD', **headers),
                             '200 OK')
            self.assertEqual(
                self.status(QUERY_STRING='ids:list=tasks&'
                            'container_delete_button=Delete', **headers),
                '403 Forbidden')
        self.assertEqual(self.status(HTTP_SEC_FETCH_SITE='cross-site',
                                     HTTP_SEC_FETCH_MODE='no-cors'),
                         '403 Forbidden')

    def test_own_origin(self):
        for environ, expected in (
                ({'HTTP_HOST': 'localhost:8080'}, ('http', 'localhost', 8080)),
                ({'HTTP_HOST': 'Example.COM'}, ('http', 'example.com', 80)),
                ({'HTTP_HOST': 'example.com', 'HTTPS': 'on'},
                 ('https', 'example.com', 443)),
                ({'HTTP_HOST': '[::1]:8080'}, ('http', '::1', 8080)),
                ({'SERVER_NAME': 'host', 'SERVER_PORT': '8443',
                  'SERVER_PORT_SECURE': '1'}, ('https', 'host', 8443)),
                # A ++vh++ of the request is not the server's origin.
                ({'HTTP_HOST': '127.0.0.1:8080',
                  'PATH_INFO': '/++vh++https:tasks.example.com:443/++/a'},
                 ('http', '127.0.0.1', 8080))):
            self.assertEqual(guards.own_origin(environ), expected, environ)

    def test_the_request_does_not_choose_the_origin(self):
        # The attack of issue 9: a ++vh++ naming the attacker's site made
        # the attacker's Origin the site's own.
        self.assertEqual(self.status(
            REQUEST_METHOD='POST', HTTP_HOST='127.0.0.1:8080',
            PATH_INFO='/++vh++http:evil.example:80/++/tasks',
            QUERY_STRING='', HTTP_ORIGIN='http://evil.example'),
            '403 Forbidden')
        self.assertEqual(self.app.calls, [])

    def test_public_url(self):
        guard = guards.CrossOriginGuard(self.app, Settings(
            public_origin=('https', 'tasks.example.com', 443)))
        post = dict(REQUEST_METHOD='POST', HTTP_HOST='127.0.0.1:8080')
        self.assertEqual(call(guard, HTTP_ORIGIN='https://tasks.example.com',
                              **post)[0], '200 OK')
        # Not the Host the request names, nor its ++vh++.
        self.assertEqual(call(guard, HTTP_ORIGIN='http://127.0.0.1:8080',
                              **post)[0], '403 Forbidden')
        self.assertEqual(call(
            guard, HTTP_ORIGIN='http://evil.example',
            PATH_INFO='/++vh++http:evil.example:80/++/tasks', **post)[0],
            '403 Forbidden')

    def test_https_scheme_of_the_server(self):
        # A WSGI server behind a proxy that tells the scheme: the
        # publisher makes https URLs too.
        self.assertEqual(self.status(
            REQUEST_METHOD='POST', HTTP_HOST='tasks.example.com',
            **{'wsgi.url_scheme': 'https'},
            HTTP_ORIGIN='https://tasks.example.com'), '200 OK')
        self.assertEqual(self.app.calls[-1]['HTTPS'], 'on')


class SecurityHeadersTests(unittest.TestCase):

    def test_no_framing_no_foreign_script(self):
        status, headers, body = call(guards.SecurityHeaders(Recorder()))
        self.assertEqual(headers['X-Frame-Options'], 'DENY')
        policy = [part.strip() for part in
                  headers['Content-Security-Policy'].split(';')]
        self.assertIn("frame-ancestors 'none'", policy)
        self.assertIn("script-src 'self'", policy)
        self.assertIn("default-src 'self'", policy)
        self.assertEqual(headers['X-Content-Type-Options'], 'nosniff')
        self.assertEqual(headers['Referrer-Policy'], 'same-origin')
        self.assertNotIn('Cache-Control', headers)

    def test_no_store_with_credentials(self):
        status, headers, body = call(guards.SecurityHeaders(Recorder()),
                                     HTTP_AUTHORIZATION=basic(b'a:b'))
        self.assertEqual(headers['Cache-Control'], 'no-store')

    def test_own_headers_stay(self):
        app = Recorder([('Cache-Control', 'public, max-age=86400'),
                        ('X-Frame-Options', 'SAMEORIGIN')])
        status, headers, body = call(guards.SecurityHeaders(app),
                                     HTTP_AUTHORIZATION=basic(b'a:b'))
        self.assertEqual(headers['Cache-Control'], 'public, max-age=86400')
        self.assertEqual(headers['X-Frame-Options'], 'SAMEORIGIN')

    def test_refusals_get_them_too(self):
        status, headers, body = call(
            wsgi.protect(Recorder(), check=lambda login, pw: True),
            REQUEST_METHOD='POST', HTTP_ORIGIN='http://evil.example',
            HTTP_AUTHORIZATION=basic(b'a:b'))
        self.assertEqual(status, '403 Forbidden')
        self.assertEqual(headers['X-Frame-Options'], 'DENY')
        self.assertEqual(headers['Cache-Control'], 'no-store')


class VirtualHostGuardTests(unittest.TestCase):

    PUBLIC = Settings(public_origin=('https', 'tasks.example.com', 443),
                      public_url='https://tasks.example.com',
                      virtual_hosting=True)

    def status(self, settings, path):
        app = Recorder()
        status = call(guards.VirtualHostGuard(app, settings),
                      PATH_INFO=path)[0]
        self.assertEqual(bool(app.calls), status == '200 OK')
        return status

    def test_off_by_default(self):
        for path in ('/++vh++https:evil.example:443/++/tasks',
                     '/tasks/++vh++http:evil.example:80/++/',
                     '/++VH++https:evil.example:443/++/tasks',
                     '/%2B%2Bvh%2B%2Bhttps:evil.example:443/++/tasks',
                     '/++vh++https:tasks.example.com:443/++/tasks'):
            self.assertEqual(self.status(Settings(), path),
                             '400 Bad Request', path)
        self.assertEqual(self.status(Settings(), '/tasks/@@jobs.html'),
                         '200 OK')

    def test_on_for_the_public_url_only(self):
        self.assertEqual(self.status(
            self.PUBLIC, '/++vh++https:tasks.example.com:443/++/tasks'),
            '200 OK')
        self.assertEqual(self.status(
            self.PUBLIC, '/++vh++https:tasks.example.com:443/admin/++/'),
            '200 OK')
        self.assertEqual(self.status(self.PUBLIC, '/tasks'), '200 OK')
        for path in ('/++vh++https:evil.example:443/++/tasks',
                     '/++vh++http:tasks.example.com:80/++/tasks',
                     '/++vh++https:tasks.example.com:443/++/'
                     '++vh++https:evil.example:443/++/'):
            self.assertEqual(self.status(self.PUBLIC, path),
                             '400 Bad Request', path)

    def test_refusal_is_logged_escaped(self):
        with self.assertLogs('lovely.remotetask.app', 'INFO') as logged:
            self.status(Settings(), '/++vh++x\n2030-01-01 CRITICAL forged')
        self.assertEqual(len(logged.output), 1)
        self.assertNotIn('\n', logged.output[0])
        self.assertIn('\\n2030', logged.output[0])


class LogTests(unittest.TestCase):

    def test_one_record_one_line(self):
        import io
        import logging
        from lovely.remotetask.app import logsafe
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        logger = logging.getLogger('lovely.remotetask.test.logsafe')
        logger.addHandler(handler)
        logger.propagate = False
        try:
            logsafe.install([logger])
            logger.error('%s', 'http://x/a\n2030-01-01 CRITICAL FORGED')
            try:
                1 / 0
            except ZeroDivisionError:
                logger.exception('URL\r\x1b[2J')
        finally:
            logger.removeHandler(handler)
        lines = stream.getvalue().splitlines()
        self.assertEqual(lines[0],
                         'http://x/a\\n2030-01-01 CRITICAL FORGED')
        self.assertEqual(lines[1], 'URL\\r\\x1b[2J')
        self.assertEqual(lines[2], 'Traceback (most recent call last):')


class SettingsTests(unittest.TestCase):

    def test_defaults(self):
        from lovely.remotetask.app.settings import parse
        self.assertEqual(parse(None), Settings())
        self.assertFalse(Settings().virtual_hosting)
        self.assertEqual(Settings().max_request_body, 10 * 1024 * 1024)

    def test_values(self):
        from lovely.remotetask.app.settings import parse
        settings = parse({'public-url': 'https://Tasks.example.com/x',
                          'virtual-hosting': 'on',
                          'max-request-body': '2MB'})
        self.assertEqual(settings.public_origin,
                         ('https', 'tasks.example.com', 443))
        self.assertTrue(settings.virtual_hosting)
        self.assertEqual(settings.max_request_body, 2 * 1024 * 1024)

    def test_mistakes(self):
        from lovely.remotetask.app.settings import InvalidSetting
        from lovely.remotetask.app.settings import parse
        for config in ({'virtual-hosting': 'on'},
                       {'virtual-hosting': 'maybe'},
                       {'public-url': 'tasks.example.com'},
                       {'max-request-body': 'ten'}):
            with self.assertRaises(InvalidSetting):
                parse(config)


def test_suite():
    import doctest
    return unittest.TestSuite([
        unittest.defaultTestLoader.loadTestsFromName(__name__),
        doctest.DocTestSuite('lovely.remotetask.app.guards'),
        doctest.DocTestSuite('lovely.remotetask.app.logsafe'),
        doctest.DocTestSuite('lovely.remotetask.app.settings'),
        doctest.DocTestSuite('lovely.remotetask.app.badrequests'),
    ])


class ReviewFindingsTests(unittest.TestCase):
    """What an independent review of the guards found (each failed
    before its fix)."""

    def test_cookies_do_not_reach_the_publisher(self):
        # The publisher reads form values from cookies too: a cookie set
        # by another application of the host made a plain link add a
        # service through the contents view.
        app = Recorder()
        status, headers, body = call(
            wsgi.protect(app, check=lambda login, pw: True),
            PATH_INFO='/@@contents.html', HTTP_AUTHORIZATION=basic(b'a:b'),
            HTTP_COOKIE='type_name=BrowserAdd__x; new_value=evil',
            HTTP_SEC_FETCH_SITE='cross-site', HTTP_SEC_FETCH_MODE='navigate')
        self.assertEqual(status, '200 OK')
        self.assertNotIn('HTTP_COOKIE', app.calls[0])

    def test_failures_elsewhere_do_not_lock_a_login_out(self):
        from lovely.remotetask.app.authentication import LoginThrottle
        throttle = LoginThrottle(clock=lambda: 1000.0)
        for n in range(50):
            throttle.failed('admin', f'10.0.0.{n}')
        self.assertEqual(throttle.wait('admin', '127.0.0.1'), 0.0)
        # From one address, the login is slowed down after 10 failures
        # (and the address after 5, whatever the login).
        for n in range(12):
            throttle.failed('admin', '10.9.9.9')
        self.assertGreater(throttle.wait('admin', '10.9.9.9'), 0)
        self.assertGreater(throttle.wait('other', '10.9.9.9'), 0)

    def test_bodies_without_a_length_are_limited(self):
        # Servers that pass chunked bodies on without Content-Length let
        # the publisher read any size.
        import io
        app = Recorder()
        protected = wsgi.protect(app, Settings(max_request_body=1000),
                                 check=lambda login, pw: True)
        for size, expected in ((1000, '200 OK'),
                               (50000, '413 Content Too Large')):
            status, headers, body = call(
                protected, REQUEST_METHOD='POST', PATH_INFO='/tasks/',
                HTTP_AUTHORIZATION=basic(b'a:b'),
                HTTP_ORIGIN='http://localhost:8080',
                CONTENT_TYPE='text/xml', HTTP_TRANSFER_ENCODING='chunked',
                **{'wsgi.input': io.BytesIO(b'x' * size)})
            self.assertEqual(status, expected, size)
        self.assertEqual(len(app.calls), 1)
        self.assertEqual(app.calls[0]['CONTENT_LENGTH'], '1000')
        self.assertEqual(app.calls[0]['wsgi.input'].read(), b'x' * 1000)
