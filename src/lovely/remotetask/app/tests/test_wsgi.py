"""The WSGI guards of the server (lovely.remotetask.app.wsgi)."""
import base64
import unittest

from lovely.remotetask.app import wsgi


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
        self.assertFalse(wsgi.readable(basic(b'\xff\xfe:pw')))
        self.assertFalse(wsgi.readable(basic(b'admin:\xe9')))
        self.assertTrue(wsgi.readable(basic('j\u00fcrg:pw'.encode())))

    def test_not_utf8_is_400(self):
        app = Recorder()
        status, headers, body = call(
            wsgi.protect(app), HTTP_AUTHORIZATION=basic(b'\xff:x'))
        self.assertEqual(status, '400 Bad Request')
        self.assertEqual(app.calls, [])


class CrossOriginGuardTests(unittest.TestCase):

    def setUp(self):
        self.app = Recorder()
        self.guard = wsgi.CrossOriginGuard(self.app)

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
                ({'HTTP_HOST': '127.0.0.1:8080',
                  'PATH_INFO': '/++vh++https:tasks.example.com:443/++/a'},
                 ('https', 'tasks.example.com', 443)),
                ({'HTTP_HOST': '127.0.0.1:8080',
                  'PATH_INFO': '/site/++vh++http:example.com:8000/a/++/b'},
                 ('http', 'example.com', 8000))):
            self.assertEqual(wsgi.own_origin(environ), expected, environ)

    def test_virtual_host(self):
        self.assertEqual(self.status(
            REQUEST_METHOD='POST', HTTP_HOST='127.0.0.1:8080',
            PATH_INFO='/++vh++https:tasks.example.com:443/++/tasks',
            HTTP_ORIGIN='https://tasks.example.com'), '200 OK')

    def test_https_scheme_of_the_server(self):
        # A WSGI server behind a proxy that tells the scheme: the
        # publisher makes https URLs too.
        self.assertEqual(self.status(
            REQUEST_METHOD='POST', HTTP_HOST='tasks.example.com',
            **{'wsgi.url_scheme': 'https'},
            HTTP_ORIGIN='https://tasks.example.com'), '200 OK')
        self.assertEqual(self.app.calls[-1]['HTTPS'], 'on')


class SecurityHeadersTests(unittest.TestCase):

    def test_no_framing(self):
        status, headers, body = call(wsgi.SecurityHeaders(Recorder()))
        self.assertEqual(headers['X-Frame-Options'], 'DENY')
        self.assertEqual(headers['Content-Security-Policy'],
                         "frame-ancestors 'none'")
        self.assertNotIn('Cache-Control', headers)

    def test_no_store_with_credentials(self):
        status, headers, body = call(wsgi.SecurityHeaders(Recorder()),
                                     HTTP_AUTHORIZATION=basic(b'a:b'))
        self.assertEqual(headers['Cache-Control'], 'no-store')

    def test_own_headers_stay(self):
        app = Recorder([('Cache-Control', 'public, max-age=86400'),
                        ('X-Frame-Options', 'SAMEORIGIN')])
        status, headers, body = call(wsgi.SecurityHeaders(app),
                                     HTTP_AUTHORIZATION=basic(b'a:b'))
        self.assertEqual(headers['Cache-Control'], 'public, max-age=86400')
        self.assertEqual(headers['X-Frame-Options'], 'SAMEORIGIN')

    def test_refusals_get_them_too(self):
        status, headers, body = call(
            wsgi.protect(Recorder()), REQUEST_METHOD='POST',
            HTTP_ORIGIN='http://evil.example',
            HTTP_AUTHORIZATION=basic(b'a:b'))
        self.assertEqual(status, '403 Forbidden')
        self.assertEqual(headers['X-Frame-Options'], 'DENY')
        self.assertEqual(headers['Cache-Control'], 'no-store')
