"""The WSGI application of the server.

``make_app()`` is what ``remotetask serve`` publishes on waitress; other
WSGI servers can publish it too::

    gunicorn --workers 1 --threads 8 \\
        'lovely.remotetask.app.wsgi:make_app("var/zope.conf")'

and PasteDeploy can find it as ``app_factory`` (``config_file`` names the
``zope.conf``; the entry point ``egg:lovely.remotetask#main``).

Around the publisher the application has the guards of
``lovely.remotetask.app.guards`` and
``lovely.remotetask.app.authentication``, set by the web settings of
``zope.conf`` (``lovely.remotetask.app.settings``).
"""
import logging
import os

import zope.component
import zope.event
from zope.app.wsgi import WSGIPublisherApplication
from zope.app.wsgi.interfaces import WSGIPublisherApplicationCreated
from ZODB.interfaces import IDatabase

from lovely.remotetask.app import credentials
from lovely.remotetask.app import csrf
from lovely.remotetask.app import instance
from lovely.remotetask.app import settings as web
from lovely.remotetask.app.apipath import JSONErrors
from lovely.remotetask.app.authentication import Authenticate
from lovely.remotetask.app.authentication import BodyLimit
from lovely.remotetask.app.authentication import check_password
from lovely.remotetask.app.badrequests import ConversionGuard
from lovely.remotetask.app.badrequests import MethodGuard
from lovely.remotetask.app.database import close_databases
from lovely.remotetask.app.database import open_database
from lovely.remotetask.app.database import stop_processors
from lovely.remotetask.app.guards import CrossOriginGuard
from lovely.remotetask.app.guards import DropCookies
from lovely.remotetask.app.guards import RejectMalformedCredentials
from lovely.remotetask.app.guards import SecurityHeaders
from lovely.remotetask.app.guards import VirtualHostGuard
from lovely.remotetask.health import HealthCheck


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

    The publisher is wrapped in the guards (above).

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
        settings = web.load()
        admin = credentials.obtain(credentials.path_for(configfile),
                                   environ)
        credentials.register(admin)
    except BaseException:
        # No settings or administrator, no server: leave the database
        # as found.
        stop_processors(timeout=10.0)
        close_databases(db)
        raise
    for line in credentials.describe(admin):
        (tell or _print)(line)
    return protect(application, settings, database=db)


def protect(application, settings=web.Settings(), check=check_password,
            database=None):
    """The publisher ``application`` with the guards (see the module).

    ``check(login, password)`` tells whether credentials are right.
    With ``health-public`` on (``settings``), ``/health`` answers
    without a login, before the guards that ask for one (it reads
    ``database``, by default the one ``make_app`` opened).
    """
    tokens = csrf.Tokens()
    application = csrf.CSRFTokens(application, tokens)
    application = CrossOriginGuard(application, settings, tokens)
    application = ConversionGuard(application)
    application = BodyLimit(application, settings.max_request_body)
    application = Authenticate(application, check=check)
    application = RejectMalformedCredentials(application)
    application = MethodGuard(application)
    application = VirtualHostGuard(application, settings)
    application = DropCookies(application)
    application = JSONErrors(application)
    if settings.health_public:
        application = HealthCheck(application, database or globalDatabase)
    return SecurityHeaders(application)


def _print(line):
    print(line, flush=True)


def database():
    """The main database opened by ``make_app``."""
    return zope.component.getUtility(IDatabase)


globalDatabase = database


def app_factory(global_conf, config_file=None, **local_conf):
    """PasteDeploy application factory."""
    if config_file is not None and 'here' in global_conf:
        config_file = os.path.join(global_conf['here'], config_file)
    return make_app(config_file)
