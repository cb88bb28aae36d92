"""The WSGI application of the server.

``make_app()`` is what ``remotetask serve`` publishes on waitress; other
WSGI servers can publish it too::

    gunicorn --workers 1 --threads 8 \\
        'lovely.remotetask.app.wsgi:make_app("var/zope.conf")'

and PasteDeploy can find it as ``app_factory`` (``config_file`` names the
``zope.conf``).
"""
import base64
import binascii
import logging
import os

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

    The application answers 400 to an ``Authorization`` header that the
    publisher cannot read (see ``RejectMalformedCredentials``).

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
    return RejectMalformedCredentials(application)


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
    """Can zope.publisher read this ``Authorization`` header?"""
    if not authorization.lower().startswith('basic '):
        return True
    encoded = authorization.split(None, 1)[-1]
    try:
        decoded = base64.b64decode(encoded.encode('iso-8859-1'))
    except (binascii.Error, UnicodeEncodeError):
        return False
    return b':' in decoded


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
