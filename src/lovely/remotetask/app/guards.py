"""The WSGI guards around the publisher (see ``wsgi.protect``).

Outermost first:

``SecurityHeaders``
    Pages may not be framed (``X-Frame-Options: DENY``, CSP
    ``frame-ancestors 'none'``: no clickjacking); scripts come from the
    server itself only (CSP ``script-src 'self'``: no inline script, no
    script of another host even if a page named one); no guessing of
    content types (``X-Content-Type-Options: nosniff``); the ``Referer``
    is sent to the server only (``Referrer-Policy: same-origin``), which
    the cross-site guard reads; answers to requests with credentials are
    not stored by browsers or proxies (``Cache-Control: no-store``,
    unless the answer has a Cache-Control of its own, as the static
    resources do).

``DropCookies``
    The request's cookies are not passed on: logins are HTTP basic
    authentication, nothing here keeps state in cookies, and the
    publisher reads form values from cookies too (``request.get``), so a
    cookie set by another application of the same host (cookies ignore
    the port) could make a plain link change things.

``VirtualHostGuard``
    Zope's virtual hosting (``++vh++`` in the path) only when
    ``virtual-hosting on`` (``settings``), and then only to the
    configured ``public-url``: 400 otherwise.  A request may not choose
    the host the scripts of its page come from.

``MethodGuard`` (``lovely.remotetask.app.badrequests``)
    405 for methods other than GET, HEAD and POST.

``RejectMalformedCredentials``
    Answers 400 to an ``Authorization`` header the publisher cannot read.

``Authenticate``, ``BodyLimit`` (``lovely.remotetask.app.authentication``)
    Credentials are checked, and failed logins slowed down, before the
    publisher reads a body; anonymous requests with a body get 401, bodies
    over ``max-request-body`` 413.

``ConversionGuard`` (``lovely.remotetask.app.badrequests``)
    400 for ``?x:int=abc``: form fields that fail their conversion.

``CrossOriginGuard``
    Refuses (403) requests that another site makes a logged-in user's
    browser send: the ZMI of the Zope Toolkit changes things on POST and
    even on GET (the contents view deletes, the add menu adds), and
    HTTP basic authentication sends the credentials with every request.
    See ``lovely.remotetask.browser.util`` for the rules.  The server's
    own origin is ``public-url``, else the ``Host`` of the request:
    never a ``++vh++`` of the request.  It fails closed: a logged-in
    request that may change something and carries none of the headers
    the rules read must carry the user's form token
    (``lovely.remotetask.app.csrf``).

``CSRFTokens`` (``lovely.remotetask.app.csrf``)
    Puts the user's token into the POST forms of the HTML pages.

``JSONErrors`` (``lovely.remotetask.app.apipath``), just inside
``SecurityHeaders``, answers the refusals of all of these to requests of
the JSON API (``SERVICE/@@api/...``) as ``application/problem+json``.
"""
import base64
import binascii
import logging
from urllib.parse import unquote

from lovely.remotetask.app.csrf import missing_evidence
from lovely.remotetask.app.logsafe import loggable
from lovely.remotetask.app.settings import Settings
from lovely.remotetask.browser.util import DEFAULT_PORTS
from lovely.remotetask.browser.util import refusal


logger = logging.getLogger('lovely.remotetask.app')

#: The Content-Security-Policy of every answer.  Styles may be inline:
#: the Rotterdam skin imports its style sheets from <style> elements.
CSP = ("default-src 'self'; script-src 'self'; "
       "style-src 'self' 'unsafe-inline'; img-src 'self'; "
       "object-src 'none'; base-uri 'self'; form-action 'self'; "
       "frame-ancestors 'none'")


def answer(start_response, status, body, headers=()):
    """A short plain text answer."""
    body = body.encode('utf-8')
    start_response(status, [
        ('Content-Type', 'text/plain; charset=utf-8'),
        ('Content-Length', str(len(body)))] + list(headers))
    return [body]


class RejectMalformedCredentials:
    """Answer 400 to basic credentials that are not base64 ``login:pw``.

    zope.publisher decodes them without a guard: a malformed header would
    be a 500 Internal Server Error with a traceback in the log for every
    such request.  This checks the header as the publisher reads it.
    """

    BODY = 'Bad Request: malformed Authorization header\n'

    def __init__(self, application):
        self.application = application

    def __call__(self, environ, start_response):
        if readable(environ.get('HTTP_AUTHORIZATION', '')):
            return self.application(environ, start_response)
        return answer(start_response, '400 Bad Request', self.BODY)


def readable(authorization):
    """Can zope.publisher read this ``Authorization`` header?

    Basic credentials are base64 of ``login:password`` in UTF-8 (the
    principal registry decodes them so).
    """
    if not authorization.lower().startswith('basic '):
        return True
    encoded = authorization.split(None, 1)[-1]
    try:
        decoded = base64.b64decode(encoded.encode('iso-8859-1'))
        decoded.decode('utf-8')
    except (binascii.Error, UnicodeError):
        return False
    return b':' in decoded


class CrossOriginGuard:
    """Answer 403 to a request that another site made a browser send.

    See ``lovely.remotetask.browser.util.refusal``.  The site's own
    origin is ``public-url`` (``settings``), else the ``Host`` of the
    request (``HTTPS=on`` or ``wsgi.url_scheme`` https choosing the
    scheme).
    """

    BODY = 'Forbidden: a cross-origin request is refused.\n'
    NO_EVIDENCE = ('Forbidden: nothing shows that this request comes from '
                   'a page of this server (no Origin, Referer or '
                   'Sec-Fetch-Site header, no form token).  Reload the '
                   'page and use its form or links.\n')

    def __init__(self, application, settings=Settings(), tokens=None):
        self.application = application
        self.settings = settings
        #: ``csrf.Tokens``; None: requests without headers pass (tests).
        self.tokens = tokens

    def __call__(self, environ, start_response):
        if environ.get('wsgi.url_scheme') == 'https':
            # zope.publisher reads the scheme from HTTPS only.
            environ.setdefault('HTTPS', 'on')
        reason = refusal(
            self.settings.public_origin or own_origin(environ),
            environ.get('REQUEST_METHOD', 'GET'),
            origin=environ.get('HTTP_ORIGIN'),
            referer=environ.get('HTTP_REFERER'),
            fetchSite=environ.get('HTTP_SEC_FETCH_SITE'),
            fetchMode=environ.get('HTTP_SEC_FETCH_MODE'),
            query=environ.get('QUERY_STRING', ''))
        body = self.BODY
        if reason is None and self.tokens is not None and \
                missing_evidence(environ, self.tokens):
            reason = 'no evidence of same origin'
            body = self.NO_EVIDENCE
        if reason is None:
            return self.application(environ, start_response)
        logger.info('Refused a cross-origin %s %s (%s)',
                    loggable(environ.get('REQUEST_METHOD', '')),
                    loggable(environ.get('PATH_INFO', '')),
                    loggable(reason))
        return answer(start_response, '403 Forbidden', body)


def own_origin(environ):
    """``(scheme, host, port)`` of the request's ``Host``."""
    https = (environ.get('HTTPS', '').lower() == 'on'
             or environ.get('SERVER_PORT_SECURE') == '1')
    scheme = 'https' if https else 'http'
    if environ.get('HTTP_HOST'):
        host = environ['HTTP_HOST'].strip()
        name, _, port = host.rpartition(':')
        if not port.isdigit() or host.endswith(']'):
            name, port = host, ''
    else:
        name = environ.get('SERVER_NAME', '')
        port = environ.get('SERVER_PORT', '')
    port = int(port) if port.isdigit() else DEFAULT_PORTS[scheme]
    return scheme, name.strip('[]').lower(), port


# -- virtual hosting -------------------------------------------------------

VH = '++vh++'


def virtual_hosts(path):
    """The ``++vh++`` segments of a path, as given (any case, quoted or
    not)."""
    found = []
    for each in {path, unquote(path)}:
        for segment in each.split('/'):
            if segment.lower().startswith(VH) and segment not in found:
                found.append(segment)
    return found


def vh_origin(segment):
    """``(scheme, host, port)`` of a ``++vh++scheme:host:port`` segment.

    >>> vh_origin('++vh++https:Tasks.example.com:443')
    ('https', 'tasks.example.com', 443)
    >>> vh_origin('++vh++http:example.com'), vh_origin('++vh++x')
    (('http', 'example.com', 80), None)
    """
    scheme, _, rest = segment[len(VH):].partition(':')
    host, _, port = rest.rpartition(':')
    if not port.isdigit():
        host, port = rest, ''
    scheme = scheme.lower()
    if scheme not in DEFAULT_PORTS or not host:
        return None
    return (scheme, host.strip('[]').lower(),
            int(port) if port else DEFAULT_PORTS[scheme])


class VirtualHostGuard:
    """400 for a ``++vh++`` the operator did not allow (see the module)."""

    def __init__(self, application, settings=Settings()):
        self.application = application
        self.settings = settings

    def __call__(self, environ, start_response):
        hosts = virtual_hosts(environ.get('PATH_INFO', ''))
        reason = None
        if hosts and not self.settings.virtual_hosting:
            reason = 'virtual hosting (++vh++) is not enabled'
        elif len(hosts) > 1:
            reason = 'more than one ++vh++'
        elif hosts and vh_origin(hosts[0]) != self.settings.public_origin:
            reason = 'the ++vh++ is not the public-url'
        if reason is None:
            return self.application(environ, start_response)
        logger.info('Refused %s %s: %s',
                    loggable(environ.get('REQUEST_METHOD', '')),
                    loggable(environ.get('PATH_INFO', '')), reason)
        return answer(start_response, '400 Bad Request',
                      f'Bad Request: {reason}.\n')


class DropCookies:
    """The request without its cookies (see the module)."""

    def __init__(self, application):
        self.application = application

    def __call__(self, environ, start_response):
        environ.pop('HTTP_COOKIE', None)
        return self.application(environ, start_response)


class SecurityHeaders:
    """The headers of every answer (see the module)."""

    HEADERS = (
        ('X-Frame-Options', 'DENY'),
        ('Content-Security-Policy', CSP),
        ('X-Content-Type-Options', 'nosniff'),
        ('Referrer-Policy', 'same-origin'),
    )

    def __init__(self, application):
        self.application = application

    def __call__(self, environ, start_response):
        authenticated = bool(environ.get('HTTP_AUTHORIZATION'))

        def start(status, headers, exc_info=None):
            present = {name.lower() for name, value in headers}
            headers = list(headers) + [
                (name, value) for name, value in self.HEADERS
                if name.lower() not in present]
            if authenticated and 'cache-control' not in present:
                headers.append(('Cache-Control', 'no-store'))
            if exc_info is None:
                return start_response(status, headers)
            return start_response(status, headers, exc_info)

        return self.application(environ, start)
