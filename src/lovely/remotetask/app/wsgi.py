"""The WSGI application of the server.

``make_app()`` is what ``remotetask serve`` publishes on waitress; other
WSGI servers can publish it too::

    gunicorn --workers 1 --threads 8 \\
        'lovely.remotetask.app.wsgi:make_app("var/zope.conf")'

and PasteDeploy can find it as ``app_factory`` (``config_file`` names the
``zope.conf``; the entry point ``egg:lovely.remotetask#main``).

Around the publisher the application has three guards (outermost first):

``SecurityHeaders``
    Pages may not be framed (``X-Frame-Options: DENY``,
    ``Content-Security-Policy: frame-ancestors 'none'``: no clickjacking),
    and answers to requests with credentials are not stored by browsers
    or proxies (``Cache-Control: no-store``, unless the answer has a
    Cache-Control of its own, as the static resources do).

``CrossOriginGuard``
    Refuses (403) requests that another site makes a logged-in user's
    browser send: the ZMI of the Zope Toolkit changes things on POST and
    even on GET (the contents view deletes, the add menu adds), and
    HTTP basic authentication sends the credentials with every request.
    See ``lovely.remotetask.browser.util`` for the rules.

``RejectMalformedCredentials``
    Answers 400 to an ``Authorization`` header the publisher cannot read.
"""
import base64
import binascii
import logging
import os
from urllib.parse import unquote

import zope.component
import zope.event
from zope.app.wsgi import WSGIPublisherApplication
from zope.app.wsgi.interfaces import WSGIPublisherApplicationCreated
from ZODB.interfaces import IDatabase

from lovely.remotetask.app import credentials
from lovely.remotetask.app import instance
from lovely.remotetask.app.database import close_databases
from lovely.remotetask.app.database import open_database
from lovely.remotetask.app.database import stop_processors
from lovely.remotetask.browser.util import DEFAULT_PORTS
from lovely.remotetask.browser.util import refusal


logger = logging.getLogger('lovely.remotetask.app')

#: The environment variable naming zope.conf when ``make_app`` is not told.
CONFIG_ENVIRON = 'REMOTETASK_CONFIG'


def make_app(configfile=None, environ=None, tell=None):
    """Load ``zope.conf`` and return the WSGI application.

    ``configfile`` defaults to ``$REMOTETASK_CONFIG``, else
    ``var/zope.conf`` (created on first use).  This is
    ``zope.app.wsgi.getWSGIApplication`` (see ``database.open_database``):
    it sets up logging and the product configuration, executes the site's
    ZCML, opens the database and announces it (bootstrap, generations,
    autostart of the task services), and makes the publisher application.
    Then it registers the administrator.

    The publisher is wrapped in the guards of this module (above).

    ``tell`` is called with each line that tells how to log in (the
    password only when it was just generated); by default the lines are
    printed.  They never go to the log.
    """
    environ = os.environ if environ is None else environ
    if configfile is None:
        configfile = environ.get(CONFIG_ENVIRON) or None
    configfile = instance.resolve(configfile)
    # Bad REMOTETASK_ADMIN fails before the database is opened.
    credentials.from_environment(environ)
    db = open_database(configfile)
    application = WSGIPublisherApplication(db)
    zope.event.notify(WSGIPublisherApplicationCreated(application))
    try:
        admin = credentials.obtain(credentials.path_for(configfile),
                                   environ)
        credentials.register(admin)
    except BaseException:
        # No administrator, no server: leave the database as found.
        stop_processors(timeout=10.0)
        close_databases(db)
        raise
    for line in credentials.describe(admin):
        (tell or _print)(line)
    return protect(application)


def protect(application):
    """The publisher ``application`` with the guards of this module."""
    return SecurityHeaders(CrossOriginGuard(
        RejectMalformedCredentials(application)))


class RejectMalformedCredentials:
    """Answer 400 to basic credentials that are not base64 ``login:pw``.

    zope.publisher decodes them without a guard: a malformed header would
    be a 500 Internal Server Error with a traceback in the log for every
    such request.  This checks the header as the publisher reads it.
    """

    BODY = b'Bad Request: malformed Authorization header\n'

    def __init__(self, application):
        self.application = application

    def __call__(self, environ, start_response):
        if readable(environ.get('HTTP_AUTHORIZATION', '')):
            return self.application(environ, start_response)
        start_response('400 Bad Request', [
            ('Content-Type', 'text/plain; charset=utf-8'),
            ('Content-Length', str(len(self.BODY)))])
        return [self.BODY]


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
    origin is the one zope.publisher gives its URLs: the virtual host of
    a ``++vh++`` path, else ``Host`` (``HTTPS=on`` or ``wsgi.url_scheme``
    https choosing the scheme).
    """

    BODY = b'Forbidden: a cross-origin request is refused.\n'

    def __init__(self, application):
        self.application = application

    def __call__(self, environ, start_response):
        if environ.get('wsgi.url_scheme') == 'https':
            # zope.publisher reads the scheme from HTTPS only.
            environ.setdefault('HTTPS', 'on')
        reason = refusal(
            own_origin(environ), environ.get('REQUEST_METHOD', 'GET'),
            origin=environ.get('HTTP_ORIGIN'),
            referer=environ.get('HTTP_REFERER'),
            fetchSite=environ.get('HTTP_SEC_FETCH_SITE'),
            fetchMode=environ.get('HTTP_SEC_FETCH_MODE'),
            query=environ.get('QUERY_STRING', ''))
        if reason is None:
            return self.application(environ, start_response)
        logger.info('Refused a cross-origin %s %s (%s)',
                    environ.get('REQUEST_METHOD'),
                    environ.get('PATH_INFO', ''), reason)
        start_response('403 Forbidden', [
            ('Content-Type', 'text/plain; charset=utf-8'),
            ('Content-Length', str(len(self.BODY)))])
        return [self.BODY]


def own_origin(environ):
    """``(scheme, host, port)`` of the URLs the publisher makes."""
    for segment in unquote(environ.get('PATH_INFO', '')).split('/'):
        if segment.startswith('++vh++'):
            scheme, _, rest = segment[len('++vh++'):].partition(':')
            host, _, port = rest.rpartition(':')
            if not port.isdigit():
                host, port = rest, ''
            scheme = scheme.lower()
            return (scheme, host.lower(),
                    int(port) if port else DEFAULT_PORTS.get(scheme))
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


class SecurityHeaders:
    """No framing of any page; no storing of answers to credentials."""

    def __init__(self, application):
        self.application = application

    def __call__(self, environ, start_response):
        authenticated = bool(environ.get('HTTP_AUTHORIZATION'))

        def start(status, headers, exc_info=None):
            present = {name.lower() for name, value in headers}
            headers = list(headers)
            if 'x-frame-options' not in present:
                headers.append(('X-Frame-Options', 'DENY'))
            if 'content-security-policy' not in present:
                headers.append(('Content-Security-Policy',
                                "frame-ancestors 'none'"))
            if authenticated and 'cache-control' not in present:
                headers.append(('Cache-Control', 'no-store'))
            if exc_info is None:
                return start_response(status, headers)
            return start_response(status, headers, exc_info)

        return self.application(environ, start)


def _print(line):
    print(line, flush=True)


def database():
    """The main database opened by ``make_app``."""
    return zope.component.getUtility(IDatabase)


def app_factory(global_conf, config_file=None, **local_conf):
    """PasteDeploy application factory."""
    if config_file is not None and 'here' in global_conf:
        config_file = os.path.join(global_conf['here'], config_file)
    return make_app(config_file)
