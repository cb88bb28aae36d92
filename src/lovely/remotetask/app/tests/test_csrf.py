"""Fail closed: the form token (lovely.remotetask.app.csrf)."""
import doctest
import io
import unittest

from lovely.remotetask.app import csrf
from lovely.remotetask.app.guards import CrossOriginGuard
from lovely.remotetask.app.settings import Settings
from lovely.remotetask.app.tests.test_wsgi import Recorder
from lovely.remotetask.app.tests.test_wsgi import call


class Reader(Recorder):
    """Records the body the application reads."""

    def __call__(self, environ, start_response):
        environ['body'] = environ['wsgi.input'].read()
        return super().__call__(environ, start_response)


class FailClosedTests(unittest.TestCase):

    def setUp(self):
        self.app = Reader()
        self.tokens = csrf.Tokens(b'secret')
        self.token = self.tokens.token('admin')
        self.guard = CrossOriginGuard(self.app, Settings(), self.tokens)

    def status(self, body=b'', **environ):
        environ.setdefault(csrf.LOGIN, 'admin')
        environ['wsgi.input'] = io.BytesIO(body)
        environ['CONTENT_LENGTH'] = str(len(body))
        return call(self.guard, **environ)[0]

    def test_state_changes_need_evidence(self):
        form = 'application/x-www-form-urlencoded'
        for environ in (
                {'QUERY_STRING': 'ids:list=x&container_delete_button=1'},
                {'REQUEST_METHOD': 'HEAD', 'QUERY_STRING': 'a=1'},
                {'REQUEST_METHOD': 'POST', 'CONTENT_TYPE': form},
                {'REQUEST_METHOD': 'POST', 'CONTENT_TYPE': 'text/plain'},
                {'REQUEST_METHOD': 'POST',
                 'CONTENT_TYPE': 'multipart/form-data; boundary=x'},
                {'REQUEST_METHOD': 'POST'}):
            self.assertEqual(self.status(b'a=1', **environ),
                             '403 Forbidden', environ)
            # The browser's headers are evidence (judged by the rules).
            self.assertEqual(self.status(
                b'a=1', HTTP_ORIGIN='http://localhost:8080', **environ),
                '200 OK', environ)
        self.assertEqual(len(self.app.calls), 6)

    def test_what_needs_none(self):
        for environ in ({},
                        {'REQUEST_METHOD': 'POST',
                         'CONTENT_TYPE': 'text/xml'},
                        {'REQUEST_METHOD': 'PUT'},
                        {'REQUEST_METHOD': 'DELETE'},
                        {csrf.LOGIN: None, 'QUERY_STRING': 'a=1'}):
            self.assertEqual(self.status(**environ), '200 OK', environ)

    def test_the_token(self):
        self.assertEqual(self.status(
            QUERY_STRING=f'a=1&_csrf_token={self.token}'), '200 OK')
        body = f'ids:list=x&_csrf_token={self.token}'.encode()
        self.assertEqual(self.status(body, REQUEST_METHOD='POST',
                                     CONTENT_TYPE='text/plain'), '200 OK')
        # The publisher still reads the whole body.
        self.assertEqual(self.app.calls[-1]['body'], body)
        # The token of another user, or of another process, does not do.
        for token in (self.tokens.token('other'),
                      csrf.Tokens().token('admin')):
            self.assertEqual(self.status(QUERY_STRING=f'_csrf_token={token}'),
                             '403 Forbidden')


class TokensTests(unittest.TestCase):

    def page(self, content_type='text/html;charset=utf-8'):
        def app(environ, start_response):
            start_response('200 OK', [('Content-Type', content_type),
                                      ('Content-Length', '99')])
            return [b'<form action="." method="POST">', b'</form>']
        return app

    def test_into_html_forms_of_logged_in_users(self):
        tokens = csrf.Tokens(b'secret')
        status, headers, body = call(csrf.CSRFTokens(self.page(), tokens),
                                     **{csrf.LOGIN: 'admin'})
        self.assertIn(tokens.token('admin').encode(), body)
        self.assertEqual(headers['Content-Length'], str(len(body)))
        status, headers, body = call(csrf.CSRFTokens(self.page(), tokens))
        self.assertNotIn(b'_csrf_token', body)
        status, headers, body = call(
            csrf.CSRFTokens(self.page('text/plain'), tokens),
            **{csrf.LOGIN: 'admin'})
        self.assertNotIn(b'_csrf_token', body)


def test_suite():
    return unittest.TestSuite([
        unittest.defaultTestLoader.loadTestsFromName(__name__),
        doctest.DocTestSuite(csrf),
    ])
