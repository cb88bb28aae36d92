"""The ``@@api`` view of a task service: routes, permissions, answers.

``SERVICE/@@api/PATH`` is one view that traverses the rest of the path
itself (``publishTraverse`` collects the names) and answers in
``__call__``: it finds the route of the path and the method
(``ROUTES``), checks the route's permission, reads the JSON body of a
POST and calls the route's endpoint (``endpoints.py``), which calls the
service.  The view is registered as ``zope.Public`` and checks the
permissions itself, so that a refusal is JSON too: anonymous callers get
401 with a ``WWW-Authenticate`` challenge, callers without the
permission 403 (as the XML-RPC traverser does).

Same origin: a POST must have ``Content-Type: application/json`` (else
415).  A page of another site cannot make a browser send that without a
CORS preflight (an OPTIONS request, which the server refuses), so the
credentials a browser holds for the server cannot be used from another
site; scripts with basic authentication need no form token.  GETs change
nothing.  See docs/api.rst.
"""
import json

import transaction
from zope.authentication.interfaces import IUnauthenticatedPrincipal
from zope.interface import implementer
from zope.publisher.browser import BrowserView
from zope.publisher.interfaces import NotFound
from zope.publisher.interfaces.browser import IBrowserPublisher
from zope.security import checkPermission
from zope.security.proxy import removeSecurityProxy
from zope.traversing.browser import absoluteURL

from lovely.remotetask.interfaces import MANAGE
from lovely.remotetask.interfaces import VIEW
from lovely.remotetask.jsonapi import endpoints
from lovely.remotetask.jsonapi.errors import APIError
from lovely.remotetask.jsonapi.errors import PROBLEM
from lovely.remotetask.jsonapi.errors import SERVICE_ERRORS
from lovely.remotetask.jsonapi.errors import BadRequest
from lovely.remotetask.jsonapi.errors import fromServiceError


JSON = 'application/json'
#: A path segment that is a job id.
ID = object()
#: The longest path the view traverses (``jobs/ID/cancel``).
MAX_DEPTH = 3

#: (path, method, endpoint, permission); HEAD is answered as GET.
ROUTES = (
    ((), 'GET', endpoints.summary, VIEW),
    (('jobs',), 'GET', endpoints.listJobs, VIEW),
    (('jobs',), 'POST', endpoints.addJob, MANAGE),
    (('jobs', ID), 'GET', endpoints.getJob, VIEW),
    (('jobs', ID, 'cancel'), 'POST', endpoints.cancel, MANAGE),
    (('jobs', ID, 'retry'), 'POST', endpoints.retry, MANAGE),
    (('jobs', ID, 'start'), 'POST', endpoints.start, MANAGE),
    (('cron',), 'POST', endpoints.addCronJob, MANAGE),
    (('counts',), 'GET', endpoints.counts, VIEW),
    (('workers',), 'GET', endpoints.workers, VIEW),
    (('pause',), 'POST', endpoints.pause, MANAGE),
    (('resume',), 'POST', endpoints.resume, MANAGE),
    (('retry',), 'POST', endpoints.retryAll, MANAGE),
    (('openapi.json',), 'GET', endpoints.openapi, VIEW),
)


def match(pattern, path):
    """The job id of ``path`` if it matches ``pattern`` (0 if the pattern
    has none), else None."""
    if len(pattern) != len(path):
        return None
    jobid = 0
    for expected, name in zip(pattern, path):
        if expected is ID:
            if not (name.isascii() and name.isdigit()) or len(name) > 10:
                return None
            jobid = int(name)
        elif expected != name:
            return None
    return jobid


def route(path, method):
    """``(endpoint, permission, jobid)`` for a path and method; APIError
    404 for an unknown path, 405 for a method the path does not take."""
    allowed = []
    for pattern, verb, endpoint, permission in ROUTES:
        jobid = match(pattern, path)
        if jobid is None:
            continue
        if verb == method or (verb, method) == ('GET', 'HEAD'):
            return endpoint, permission, jobid
        allowed.append(verb)
    if not allowed:
        raise APIError(404, f'No such resource: @@api/{"/".join(path)}')
    raise APIError(405, f'@@api/{"/".join(path)} takes '
                        f'{", ".join(allowed)}',
                   [('Allow', ', '.join(allowed))])


def unencodable(data):
    """The first string of JSON data (keys and values, nested) that
    cannot be encoded as UTF-8, or None.  ``json.loads`` accepts lone
    surrogates (``"\\ud800"``), which no page or log could show.

    >>> unencodable({'a': ['b', {'c': 1}]}) is None
    True
    >>> unencodable({'a': [{'k\\ud800': 1}]})
    'k\\ud800'
    """
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            try:
                value.encode('utf-8')
            except UnicodeEncodeError:
                return value
        elif isinstance(value, dict):
            stack.extend(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return None


class Call:
    """What an endpoint gets: the service, the job id of the path, the
    query, the JSON body and the URL of the API."""

    def __init__(self, service, jobid, query, body, url):
        self.service = service
        #: The service without its security proxy, for reading jobs
        #: (the view checked the permission).
        self.raw = removeSecurityProxy(service)
        self.jobid = jobid
        self.query = query
        self.body = body
        self.url = url


@implementer(IBrowserPublisher)
class API(BrowserView):
    """The JSON API of a task service (see the module)."""

    def __init__(self, context, request):
        super().__init__(context, request)
        self.path = []

    def publishTraverse(self, request, name):
        if len(self.path) >= MAX_DEPTH:
            raise NotFound(self, name, request)
        self.path.append(name)
        return self

    def browserDefault(self, request):
        return self, ()

    def __call__(self):
        try:
            status, data, headers = self.answer()
        except APIError as error:
            transaction.doom()
            return self.respond(error.status, error.data(), error.headers,
                                PROBLEM)
        return self.respond(status, data, headers)

    def answer(self):
        """``(status, data, headers)`` of the request, or APIError."""
        self.authorize(VIEW)
        endpoint, permission, jobid = route(tuple(self.path),
                                            self.request.method)
        self.authorize(permission)
        body = self.body() if self.request.method == 'POST' else None
        url = absoluteURL(self.context, self.request) + '/@@api'
        call = Call(self.context, jobid, self.query(), body, url)
        try:
            return endpoint(call)
        except SERVICE_ERRORS as error:
            raise fromServiceError(error) from error

    def authorize(self, permission):
        """401 for anonymous callers without ``permission``, 403 for
        others."""
        if checkPermission(permission, self.context):
            return
        if IUnauthenticatedPrincipal.providedBy(self.request.principal):
            raise APIError(401, 'Log in (HTTP basic authentication).',
                           [('WWW-Authenticate', 'basic realm="Zope"')])
        raise APIError(403, f'The permission {permission} is needed.')

    def query(self):
        """The query parameters: name -> text (given once each)."""
        query = {}
        for name, value in self.request.form.items():
            if not isinstance(value, str):
                raise BadRequest(f'The parameter {name!r} must be given '
                                 f'once, as text.')
            query[name] = value
        return query

    def body(self):
        """The JSON object of a POST; 415 unless it is JSON, 400 unless it
        is an object of valid Unicode text."""
        kind = (self.request.getHeader('Content-Type') or '').split(';')[0]
        if kind.strip().lower() != JSON:
            raise APIError(415, f'A POST to the API must have the '
                                f'Content-Type {JSON}.')
        raw = self.request.bodyStream.read()
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as error:
            raise BadRequest(f'The body is not JSON: {error}') from None
        if not isinstance(data, dict):
            raise BadRequest('The body must be a JSON object.')
        bad = unencodable(data)
        if bad is not None:
            raise BadRequest(f'The body holds text that is not valid '
                             f'Unicode (a lone surrogate): {bad[:50]!r}')
        return data

    def respond(self, status, data, headers=(), kind=JSON):
        if self.request.method == 'HEAD':
            # The publication empties the answer to a HEAD
            # (``setResult('')``), which it can do for text and JSON
            # types only: a problem+json answer would become a 500.
            # (The server's guards ask the API a HEAD as a GET.)
            kind = JSON
        response = self.request.response
        response.setStatus(status)
        response.setHeader('Content-Type', kind)
        for name, value in headers:
            response.setHeader(name, value)
        return (json.dumps(data, indent=2, sort_keys=True) + '\n').encode(
            'utf-8')
