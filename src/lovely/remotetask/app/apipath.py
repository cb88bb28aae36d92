"""Requests to the JSON API (``SERVICE/@@api/...``, see
``lovely.remotetask.jsonapi``), as the WSGI guards see them.

``is_api(environ)``: the path goes to the API.  ``JSONErrors`` answers
the refusals of the guards (401, 403, 405, 413, 429 ...) and of the
publisher (a 401 while traversing to the service) to such requests as
``application/problem+json``, as the API answers its own errors, keeping
their status and headers.  It answers a HEAD as the GET of the path,
without the body (the publication would answer an error of the API to
a HEAD with a 500: it cannot empty a ``problem+json`` answer).

``api_read(environ)``: a GET or HEAD whose last object is the API.  Its
query only filters and pages (the API changes nothing on GET), so the
form token that ``csrf`` asks of other GETs with a query is not needed.
What the publisher calls is the last object of the path, and a form
field named ``x:method`` or ``x:action`` would add a name to it; so the
path must have no ``..``, every name after ``@@api`` must be a plain name
(no ``@@view`` or ``++namespace++``: the API traverses plain names to
itself), and no query name may hold a ``:``.

    >>> api_read({'REQUEST_METHOD': 'GET',
    ...           'PATH_INFO': '/tasks/@@api/jobs',
    ...           'QUERY_STRING': 'status=error&size=10'})
    True
    >>> api_read({'REQUEST_METHOD': 'GET',
    ...           'PATH_INFO': '/tasks/@@api/jobs/../../@@contents.html',
    ...           'QUERY_STRING': 'delete=1'})
    False
    >>> api_read({'REQUEST_METHOD': 'GET', 'PATH_INFO': '/tasks/@@api',
    ...           'QUERY_STRING': 'x:method=@@contents.html'})
    False
    >>> api_read({'REQUEST_METHOD': 'POST', 'PATH_INFO': '/tasks/@@api'})
    False
"""
import http
import json
from urllib.parse import parse_qsl

API = '@@api'
PROBLEM = 'application/problem+json'


def segments(path):
    """The names of a path (``PATH_INFO``, decoded already), without the
    empty ones and ``.``, as zope.publisher splits it."""
    return [name for name in path.split('/') if name not in ('', '.')]


def is_api(environ):
    return API in segments(environ.get('PATH_INFO', ''))


def api_read(environ):
    """Is this a GET (or HEAD) of the API?  (See the module.)"""
    if environ.get('REQUEST_METHOD', 'GET') not in ('GET', 'HEAD'):
        return False
    names = segments(environ.get('PATH_INFO', ''))
    if API not in names or '..' in names:
        return False
    after = names[len(names) - names[::-1].index(API):]
    if any(name[:1] in '@+' or ';' in name for name in after):
        return False
    query = parse_qsl(environ.get('QUERY_STRING', ''),
                      keep_blank_values=True)
    return not any(':' in name for name, value in query)


class JSONErrors:
    """Errors to API requests as problem details (see the module)."""

    def __init__(self, application):
        self.application = application

    def __call__(self, environ, start_response):
        if not is_api(environ):
            return self.application(environ, start_response)
        head = environ.get('REQUEST_METHOD') == 'HEAD'
        if head:
            environ = dict(environ, REQUEST_METHOD='GET')
        started = []

        def start(status, headers, exc_info=None):
            started[:] = [status, headers, exc_info]
            return lambda data: None

        result = self.application(environ, start)
        try:
            body = b''.join(result)
        finally:
            if hasattr(result, 'close'):
                result.close()
        status, headers, exc_info = started
        code = int(status.split()[0])
        kind = dict((k.lower(), v) for k, v in headers).get(
            'content-type', '')
        if code >= 400 and 'json' not in kind:
            body = problem(code, body, kind)
            headers = [(k, v) for k, v in headers
                       if k.lower() not in ('content-type',
                                            'content-length')]
            headers += [('Content-Type', PROBLEM),
                        ('Content-Length', str(len(body)))]
        if exc_info is None:
            start_response(status, headers)
        else:
            start_response(status, headers, exc_info)
        return [] if head else [body]


def problem(code, body, kind):
    """The problem details of an error answer that is not JSON."""
    try:
        title = http.HTTPStatus(code).phrase
    except ValueError:
        title = 'Error'
    detail = title
    if kind.startswith('text/plain'):
        detail = body.decode('utf-8', 'replace').strip() or title
    return (json.dumps({'status': code, 'title': title, 'detail': detail},
                       indent=2, sort_keys=True) + '\n').encode('utf-8')
