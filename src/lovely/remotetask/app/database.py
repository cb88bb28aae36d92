"""The database of the server: opening, describing, closing.

``open_database`` is ``zope.app.wsgi.config`` made of the same parts
(the zope.conf schema of zope.app.appsetup, ``appsetup.config``,
``appsetup.multi_database``, the ``DatabaseOpened`` event), with two
differences that the one-call version cannot offer (and the log keeps
one record on one line: ``logsafe``):

- A worker does not autostart: the ``autostart`` key of ``<product-config
  lovely.remotetask>`` is dropped before the database is announced, since
  the worker's command line says what it processes.

- Processes that start together on a new database (a server and its
  workers over ZEO) all initialise it when it is announced: the root
  folder, the error log, the schema generations.  All but one of them get
  a ``ConflictError``.  The subscribers that do this look before they
  write, so announcing again, after the winner's commit, has nothing left
  to do: the announcement is repeated (a few times, after a short random
  pause) instead of ending the process.
"""
import logging
import os
import random
import re
import sys
import time

import transaction
import transaction.interfaces
import ZConfig
import zope.app.appsetup.product
import zope.event
import zope.processlifetime
from zope.app.appsetup import appsetup

from lovely.remotetask import processor
from lovely.remotetask import storagefaults
from lovely.remotetask.app import logsafe


logger = logging.getLogger('lovely.remotetask.app')

PRODUCT = 'lovely.remotetask'
SCHEMA = os.path.join(os.path.dirname(appsetup.__file__), 'schema',
                      'schema.xml')
#: How often the announcement of an opened database is tried.
ATTEMPTS = 5


class InvalidConfiguration(Exception):
    """zope.conf does not follow its schema."""

    def __init__(self, path, error):
        super().__init__(path, error)
        self.path = path
        self.error = error

    def __str__(self):
        return f'{self.path}: {self.error}'


def configure(configfile, autostart=True):
    """Read ``zope.conf`` and execute the site's ZCML; return the options.

    As ``zope.app.wsgi.config`` does: Python path, product configuration,
    logging, developer mode, ZCML.  With ``autostart`` false the product
    configuration of lovely.remotetask loses its ``autostart`` key.
    """
    schema = ZConfig.loadSchema(SCHEMA)
    try:
        options, handlers = ZConfig.loadConfig(schema, configfile)
    except ZConfig.ConfigurationError as e:
        raise InvalidConfiguration(configfile, e) from e
    if options.path:
        sys.path[:0] = [os.path.abspath(p) for p in options.path]
    zope.app.appsetup.product.setProductConfigurations(
        options.product_config)
    if not autostart:
        withoutAutostart()
    options.eventlog()
    for configureLogger in options.loggers:
        configureLogger()
    logsafe.install()
    features = ()
    if options.devmode:
        features += ('devmode',)
        logger.warning(
            'Developer mode is enabled: this is a security risk and should '
            'NOT be enabled on servers others can reach (devmode in %s).',
            configfile)
    appsetup.config(options.site_definition, features=features)
    return options


def withoutAutostart():
    """Drop ``autostart`` from the product configuration."""
    config = zope.app.appsetup.product.getProductConfiguration(PRODUCT)
    if config and 'autostart' in config:
        config = {k: v for k, v in config.items() if k != 'autostart'}
        zope.app.appsetup.product.setProductConfiguration(PRODUCT, config)


def open_database(configfile, autostart=True):
    """Load ``zope.conf`` and the site ZCML, open and return the database.

    The database is announced (``DatabaseOpened``): the root folder is
    created if missing, the schema generations evolve, and the task
    services named by ``autostart`` start processing unless
    ``autostart`` is false.
    """
    options = configure(configfile, autostart)
    db = appsetup.multi_database(options.databases)[0][0]
    # Web requests add jobs too: a ZEO client of the server must not reuse
    # the oids it prefetched before a server restart (storagefaults.py).
    storagefaults.guardPrefetchedOids(db)
    announce(db)
    return db


def announce(db, notify=zope.event.notify, attempts=ATTEMPTS,
             pause=random.uniform):
    """Notify ``DatabaseOpened``; repeat it if it conflicts.

    Another process initialising the same new database at the same moment
    makes the subscribers' commits conflict; repeated, they find the
    other process's work done.  ``pause(a, b)`` is how long to wait before
    the next attempt.
    """
    for attempt in range(1, attempts + 1):
        try:
            notify(zope.processlifetime.DatabaseOpened(db))
            return attempt
        except transaction.interfaces.TransientError as e:
            transaction.abort()
            if attempt == attempts:
                raise
            logger.info(
                'Another process initialises the database at the same '
                'time (%s); trying again', type(e).__name__)
            time.sleep(pause(0.05, 0.5) * attempt)


def describe_storage(db):
    """Where ``db`` is stored, for the log (no passwords)."""
    storage = db.storage
    name = re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r'\1***',
                  str(storage.getName()))
    return f'{type(storage).__name__} {name}'


def close_databases(db):
    """Close ``db`` and the other databases of its multi-database."""
    databases = getattr(db, 'databases', None) or {'': db}
    for name, each in sorted(databases.items()):
        description = describe_storage(each)
        each.close()
        logger.info('Closed the database %s', description)


def stop_processors(timeout):
    """Stop the processor threads of this process.

    A running job gets ``timeout`` seconds to finish; one that does not is
    taken up again when its lease expires.
    """
    processor.stopAll(timeout)
