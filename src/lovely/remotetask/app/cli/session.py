"""A command's hold on the database of ``zope.conf``.

``Session`` opens the database as ``remotetask worker`` does (the site
ZCML, the generations, no autostart), one connection, and finds task
services by their path from the root folder.  The log of ``zope.conf``
goes to standard error, and below warnings once the database is open, so
that standard output is the command's own (``--json`` stays JSON).

A FileStorage serves one process at a time: while ``remotetask serve``
or ``remotetask worker`` holds it, a command cannot open it and says so
(``DatabaseInUse``) instead of waiting or failing with a traceback.
ZEO and RelStorage databases are shared: commands work next to running
servers there.
"""
import contextlib
import logging
import sys

import transaction
import zc.lockfile
from zope.app.publication.zopepublication import ZopePublication
from zope.container.interfaces import IReadContainer

from lovely.remotetask.app import instance
from lovely.remotetask.app.database import close_databases
from lovely.remotetask.app.database import open_database
from lovely.remotetask.interfaces import ITaskService


#: The loggers that tell at INFO what every opening of a database does.
QUIET = ('zope.generations', 'lovely.remotetask.app', 'ZEO', 'relstorage')


class CommandError(Exception):
    """What a command prints, as ``remotetask: MESSAGE``, before it exits
    with status 2."""


class DatabaseInUse(CommandError):

    def __init__(self, configfile, error):
        super().__init__(
            f'the database of {configfile} is in use by another process '
            f'({error}), most likely a running `remotetask serve` or '
            f'`remotetask worker`.  A FileStorage serves one process at a '
            f'time: stop that process first, or use the JSON API of the '
            f'running server (docs/api.rst), or share the database through '
            f'ZEO or RelStorage (docs/scaleout.rst), where commands work '
            f'next to running servers.')


class Session:
    """The database, a connection and the root folder, for one command.

    Use it as a context manager; ``commit()`` what the command changed
    (leaving the block without it aborts).
    """

    def __init__(self, config=None, verbose=False):
        self.configfile = instance.resolve(config, create=False)
        self.verbose = verbose
        self.db = self.connection = None

    def __enter__(self):
        if not self.verbose:
            for name in QUIET:
                logging.getLogger(name).setLevel(logging.WARNING)
        # The eventlog of zope.conf writes to STDOUT: here, to stderr.
        with contextlib.redirect_stdout(sys.stderr):
            try:
                self.db = open_database(self.configfile, autostart=False)
            except zc.lockfile.LockError as error:
                raise DatabaseInUse(self.configfile, error) from None
        if not self.verbose:
            logging.getLogger().setLevel(logging.WARNING)
        self.tm = transaction.manager
        self.connection = self.db.open()
        return self

    def __exit__(self, *exc_info):
        self.tm.abort()
        self.connection.close()
        close_databases(self.db)

    def commit(self):
        self.tm.commit()

    def refresh(self):
        """See what other processes committed since."""
        self.tm.abort()
        self.tm.begin()

    @property
    def root(self):
        return self.connection.root()[ZopePublication.root_name]

    def traverse(self, path):
        """The object at a slash-separated ``path`` from the root folder.
        """
        obj = self.root
        for name in [n for n in path.split('/') if n]:
            if not IReadContainer.providedBy(obj) or name not in obj:
                raise CommandError(f'{path!r}: nothing is called {name!r} '
                                   f'there')
            obj = obj[name]
        return obj

    def services(self):
        """``{path: service}`` of the task services in the root folder
        and in the folders directly in it."""
        found = {}
        for name, obj in self.root.items():
            if ITaskService.providedBy(obj):
                found[name] = obj
            elif IReadContainer.providedBy(obj):
                for inner, each in obj.items():
                    if ITaskService.providedBy(each):
                        found[f'{name}/{inner}'] = each
        return found

    def service(self, path=None):
        """The task service at ``path``; without one, the only service
        there is."""
        if path:
            obj = self.traverse(path)
            if not ITaskService.providedBy(obj):
                raise CommandError(f'{path!r} is not a task service')
            return obj
        found = self.services()
        if len(found) == 1:
            return next(iter(found.values()))
        if not found:
            raise CommandError('there is no task service: create one with '
                               '`remotetask service create NAME`')
        raise CommandError(f'there are several task services '
                           f'({", ".join(sorted(found))}): say which with '
                           f'--service PATH')
