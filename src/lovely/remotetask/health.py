"""Health checks: is the process alive, is it ready to work (``/health``).

``/health/live``
    Liveness: the process answers.  Always 200 while it does.
``/health`` and ``/health/ready``
    Readiness: 200 when the database answers (and, in a ``remotetask
    worker``, when its processors run), else 503.

The answer is JSON and tells up or down and the version, nothing more
(no storage address, no error message: those go to the log)::

    {"status": "up", "checks": {"database": "up"}, "version": "1.0"}

A room that calls inward: it reads the database and the processor
registry of this process.  See ``health.rst`` and
``docs/operations.rst``.
"""
import json
import logging
import threading
import time
import weakref

import transaction

from lovely.remotetask import processor


log = logging.getLogger('lovely.remotetask')

UP = 'up'
DOWN = 'down'
#: Seconds a readiness check waits for the database.
TIMEOUT = 5.0
#: Seconds the answer of the database stays fresh: a flood of requests
#: costs at most about one check a second.
FRESH = 1.0
#: Seconds a request waits for the check another one runs: the server's
#: threads are few, and ``/health`` needs no login.
PATIENCE = 0.5
#: Seconds the last answer may stand in for a check that takes longer.
STALE = 10.0
CONTENT_TYPE = 'application/json'
PATHS = {'/health': 'ready', '/health/ready': 'ready',
         '/health/live': 'live'}


def version():
    from lovely.remotetask.workers import version
    return version()


def databaseUp(db):
    """Does the database answer?  (May block: see ``_bounded``.)

    A ZEO client knows whether it is connected; otherwise a new
    transaction (which polls RelStorage, and syncs a ZEO client with
    ``server-sync``) and the root object must load.
    """
    connected = getattr(db.storage, 'is_connected', None)
    if connected is not None and not connected():
        return False
    tm = transaction.TransactionManager()
    conn = db.open(transaction_manager=tm)
    try:
        tm.begin()
        conn.root().get('Application')
        return True
    finally:
        tm.abort()
        conn.close()


class _Probe:
    """One check of one database at a time, bounded by ``TIMEOUT``.

    A check that hangs (a storage waiting for a server) answers down
    after ``TIMEOUT``; until it ends, later checks answer down at once
    instead of starting more threads that would hang too.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._running = {}   # id(db) -> thread

    def __call__(self, db, timeout):
        result = []

        def probe():
            try:
                result.append(databaseUp(db))
            except Exception as error:
                log.info('Health check: the database is down (%s: %s)',
                         type(error).__name__, error)
                result.append(False)
            finally:
                with self._lock:
                    self._running.pop(id(db), None)
        with self._lock:
            if id(db) in self._running:
                return False
            thread = threading.Thread(target=probe, daemon=True,
                                      name='health-check')
            self._running[id(db)] = thread
        thread.start()
        thread.join(timeout)
        return bool(result and result[0])


_probe = _Probe()


class _Entry:

    def __init__(self, last=None):
        self.done = threading.Event()
        self.result = False
        self.at = None      # when the check ended
        self.waiting = 0
        #: The entry of the check before, if it ended (its answer is the
        #: last known one while this one runs).
        self.last = last


class SharedCheck:
    """``check(db, timeout)`` shared by concurrent callers, its result
    kept ``fresh`` seconds.

    The first caller runs the check; callers that come while it runs
    wait for it ``patience`` seconds at most (and never past ``timeout``
    plus ``grace``) and get its result; past that they answer at once
    the result of the check before if it ended at most ``stale`` seconds
    ago, else down.  So only the caller that runs the check waits for a
    stalled database, not every thread of the server.  Callers within
    ``fresh`` seconds of its end get its result without a check.  So a
    flood of ``/health`` requests opens about one database connection a
    second, whatever its size.  Each database has its own entry.
    """

    def __init__(self, check, fresh=FRESH, grace=1.0,
                 clock=time.monotonic, patience=PATIENCE, stale=STALE):
        self.check = check
        self.fresh = fresh
        self.grace = grace
        self.clock = clock
        self.patience = patience
        self.stale = stale
        self._lock = threading.Lock()
        self._entries = weakref.WeakKeyDictionary()

    def __call__(self, db, timeout):
        with self._lock:
            entry = self._entries.get(db)
            if entry is not None and entry.done.is_set() and (
                    self.clock() - entry.at < self.fresh):
                return entry.result
            if entry is None or entry.done.is_set():
                self._entries[db] = mine = _Entry(entry)
            else:
                mine = None
                entry.waiting += 1
        if mine is None:
            try:
                if entry.done.wait(min(self.patience,
                                       timeout + self.grace)):
                    return entry.result
                return self._lastKnown(entry)
            finally:
                with self._lock:
                    entry.waiting -= 1
        try:
            mine.result = bool(self.check(db, timeout))
        except Exception:
            log.exception('Health check: the check failed')
            mine.result = False
        finally:
            with self._lock:
                mine.at = self.clock()
                mine.last = None    # keep one entry back, not a chain
                mine.done.set()
        return mine.result

    def _lastKnown(self, entry):
        """For a caller that waited enough: the result of the check
        before ``entry``'s if it is recent, else down."""
        with self._lock:
            if entry.done.is_set():     # it ended just now
                return entry.result
            last = entry.last
        if last is not None and self.clock() - last.at <= self.stale:
            return last.result
        return False

    def _inFlight(self, db):
        entry = self._entries.get(db)
        return entry if entry is not None and not entry.done.is_set() \
            else None

    def inFlight(self, db):
        """Does a check of ``db`` run now?"""
        with self._lock:
            return self._inFlight(db) is not None

    def waiting(self, db):
        """How many callers wait for the check of ``db`` that runs."""
        with self._lock:
            entry = self._inFlight(db)
            return entry.waiting if entry is not None else 0


_shared = SharedCheck(_probe)


def processorsUp(db):
    """Do this process's processors of ``db`` run?  (At least one, and
    each one's thread is alive.)"""
    states = processor.processorStates(db)
    return bool(states) and all(alive for name, alive in states)


def readiness(db, processors=False, timeout=TIMEOUT):
    """``(ready, answer)``: see the module.

    The database's answer is shared and kept ``FRESH`` seconds
    (``SharedCheck``); the processors' (in memory) is read each time.
    """
    checks = {'database': UP if _shared(db, timeout) else DOWN}
    if processors:
        checks['processors'] = UP if processorsUp(db) else DOWN
    ready = all(value == UP for value in checks.values())
    return ready, {'status': UP if ready else DOWN, 'checks': checks,
                   'version': version()}


def liveness():
    return True, {'status': UP, 'version': version()}


def check(kind, db, processors=False):
    """``(http status, JSON body)`` of ``live`` or ``ready``."""
    ok, body = liveness() if kind == 'live' else readiness(db, processors)
    status = '200 OK' if ok else '503 Service Unavailable'
    return status, json.dumps(body, sort_keys=True).encode('utf-8') + b'\n'


HEADERS = [('Content-Type', CONTENT_TYPE), ('Cache-Control', 'no-store')]


class HealthCheck:
    """WSGI: answer ``/health``, ``/health/live``, ``/health/ready``
    without a login (GET and HEAD); pass anything else on.

    ``database`` is the database, or a function returning it (the
    server opens it after making its application).
    """

    def __init__(self, application, database, processors=False):
        self.application = application
        self.database = database
        self.processors = processors

    def __call__(self, environ, start_response):
        kind = PATHS.get(environ.get('PATH_INFO', ''))
        if kind is None or environ.get('REQUEST_METHOD') not in (
                'GET', 'HEAD'):
            return self.application(environ, start_response)
        db = self.database() if callable(self.database) else self.database
        status, body = check(kind, db, self.processors)
        start_response(status, HEADERS + [
            ('Content-Length', str(len(body)))])
        return [] if environ['REQUEST_METHOD'] == 'HEAD' else [body]


def notFound(environ, start_response):
    body = b'Not Found\n'
    start_response('404 Not Found', [
        ('Content-Type', 'text/plain; charset=utf-8'),
        ('Content-Length', str(len(body)))])
    return [body]


# -- the page ----------------------------------------------------------------

class HealthPage:
    """``/health`` of a server whose health is not public
    (``health-public off``): behind ``lovely.remotetask.Monitor``.
    ``/health/live`` and ``/health/ready`` traverse to the same page."""

    kind = 'ready'

    def __init__(self, context, request):
        self.context = context
        self.request = request

    def publishTraverse(self, request, name):
        if name in ('live', 'ready'):
            self.kind = name
            return self
        from zope.publisher.interfaces import NotFound
        raise NotFound(self, name, request)

    def browserDefault(self, request):
        return self, ()

    def __call__(self):
        status, body = check(self.kind, database(self.context))
        self.request.response.setStatus(int(status.split()[0]))
        self.request.response.setHeader('Content-Type', CONTENT_TYPE)
        return body


def database(context):
    """The database of a (security proxied) persistent object."""
    from zope.security.proxy import removeSecurityProxy
    return removeSecurityProxy(context)._p_jar.db()
