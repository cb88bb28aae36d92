"""Fail closed: a state change needs evidence that it comes from the
server's own pages.

The cross-site guard (``guards.CrossOriginGuard``) judges a request by
the headers browsers send: ``Sec-Fetch-Site``, ``Origin``, ``Referer``.
Older browsers send no ``Sec-Fetch-Site``, and current ones send none
over plain HTTP (except to localhost); ``Origin`` and ``Referer`` may be
missing too (privacy settings, old browsers).  A request that may change
something and carries none of them is refused, unless it carries the
token of its user, which only the server's own pages hold:

- ``CSRFTokens`` puts a hidden ``_csrf_token`` field into every POST form
  of the HTML pages it answers to a logged-in user (the ZMI's own forms
  too: the folder contents, the add forms, the Jobs tab).
- ``missing_evidence`` tells the guard whether a request needs the token
  and does not carry it (in its query, or in its form body).

What may change something (``changes_state``): a POST whose body a page
of another site could send (a form: urlencoded, multipart or text/plain,
or no content type), and a GET or HEAD with a query (the ZMI's folder
contents delete and its add menu adds on GET).  Other requests need no
token: another site's page cannot send them without the server's consent
(CORS), which it never gives: XML-RPC (``text/xml``), the JSON API
(``application/json``), PUT, DELETE.  A GET of the JSON API with a query
needs no token either: there the query only filters and pages
(``apipath.api_read``).

The token is an HMAC of the login with a secret of the process: a page
loaded before the server restarted holds an old token (reload it).
"""
import hashlib
import hmac
import io
import re
import secrets

from lovely.remotetask.app.apipath import api_read
from lovely.remotetask.browser.util import SAFE_METHODS


FIELD = '_csrf_token'
#: The environ key the authentication guard puts the checked login in.
LOGIN = 'lovely.remotetask.login'
#: Content types another site's page can post (no CORS preflight).
SIMPLE_TYPES = ('application/x-www-form-urlencoded', 'multipart/form-data',
                'text/plain', '')
FORM = re.compile(rb'<form\b[^>]*>', re.I)
POST = re.compile(rb'''\bmethod\s*=\s*["']?post\b''', re.I)


class Tokens:
    """The tokens of one process: ``token(login)``."""

    def __init__(self, secret=None):
        self.secret = secret or secrets.token_bytes(32)

    def token(self, login):
        return hmac.new(self.secret, login.encode('utf-8'),
                        hashlib.sha256).hexdigest()


def changes_state(environ):
    """May this request change something?  (See the module.)"""
    method = environ.get('REQUEST_METHOD', 'GET')
    if method in SAFE_METHODS:
        return bool(environ.get('QUERY_STRING')) and not api_read(environ)
    if method == 'POST':
        kind = environ.get('CONTENT_TYPE', '').split(';')[0].strip()
        return kind.lower() in SIMPLE_TYPES
    return False


def has_evidence(environ):
    """Does the request carry a header the cross-site guard judged?"""
    return any(environ.get(name) for name in (
        'HTTP_SEC_FETCH_SITE', 'HTTP_ORIGIN', 'HTTP_REFERER'))


def carries(environ, token):
    """Is ``token`` in the query or the body of the request?

    A body is read (it is at most ``max-request-body``: see
    ``BodyLimit``) and put back for the publisher.  The token is a
    secret of the server: wherever it occurs, the sender read it from a
    page of the server.
    """
    expected = token.encode('ascii')
    if expected in environ.get('QUERY_STRING', '').encode('latin-1'):
        return True
    length = (environ.get('CONTENT_LENGTH') or '0').strip()
    if not length.isdigit() or not int(length):
        return False
    body = environ['wsgi.input'].read(int(length))
    environ['wsgi.input'] = io.BytesIO(body)
    return expected in body


def missing_evidence(environ, tokens):
    """True if the request must be refused: it may change something,
    comes from a logged-in user, and has neither a header of the
    browser nor the user's token."""
    login = environ.get(LOGIN)
    if login is None or has_evidence(environ) or \
            not changes_state(environ):
        return False
    return not carries(environ, tokens.token(login))


class CSRFTokens:
    """Put the user's token into the POST forms of HTML answers."""

    def __init__(self, application, tokens):
        self.application = application
        self.tokens = tokens

    def __call__(self, environ, start_response):
        login = environ.get(LOGIN)
        if login is None:
            return self.application(environ, start_response)
        started = []

        def start(status, headers, exc_info=None):
            started[:] = [status, headers, exc_info]
            return lambda data: None  # write(): not used by the publisher

        result = self.application(environ, start)
        try:
            body = b''.join(result)
        finally:
            if hasattr(result, 'close'):
                result.close()
        status, headers, exc_info = started
        kind = dict((k.lower(), v) for k, v in headers).get(
            'content-type', '')
        if kind.startswith('text/html'):
            body = self.insert(body, self.tokens.token(login))
            headers = [(k, v) for k, v in headers
                       if k.lower() != 'content-length']
            headers.append(('Content-Length', str(len(body))))
        if exc_info is None:
            start_response(status, headers)
        else:
            start_response(status, headers, exc_info)
        return [body]

    @staticmethod
    def insert(page, token):
        r"""``page`` with a hidden token field in every POST form.

        >>> print(CSRFTokens.insert(
        ...     b'<form method="post" action="."><input name="a" /></form>'
        ...     b'<form action="."></form>', 'abc').decode()
        ...     .replace('><', '>\n<'))
        <form method="post" action=".">
        <input type="hidden" name="_csrf_token" value="abc" />
        <input name="a" />
        </form>
        <form action=".">
        </form>
        """
        field = (f'<input type="hidden" name="{FIELD}" value="{token}" />'
                 ).encode('ascii')

        def add(match):
            tag = match.group()
            return tag + field if POST.search(tag) else tag
        return FORM.sub(add, page)
