"""How far a running job got: reported by its task, read by the UI.

A task reports its progress with the service and job id it is called
with::

    def __call__(self, service, jobid, input):
        for n, item in enumerate(items):
            ...
            service.setProgress(jobid, n / len(items), f'{n} items done')

``service.getProgress(jobid)`` answers ``{'fraction', 'message',
'updated'}`` (``fraction`` in [0, 1] or None, ``message`` text or None,
``updated`` an aware UTC datetime), or None when the job reported none
in its current (or last) attempt.  The job's page shows it.

How it behaves under concurrent transactions
============================================

The task runs in the job's run transaction, which commits the task's
writes and the job's completion together, at the end.  The progress
must be visible before that, so each report is committed at once, in a
short transaction of its own: a connection of its own with a
``TransactionManager`` of its own (``inOwnTransaction``), not the
thread's, so the run transaction is neither committed nor joined.

The reports live in a map of the service, ``_progress`` (IOBTree: job id
-> ``Progress``, with a sentinel key 0 so that its first bucket never
empties), not on the job: the run writes the job, and a report never
does, so the two never conflict.  A job's first report inserts its
record (inserts of different jobs merge in the bucket); later reports
write only the record.  The record says which attempt reported (the
job's count of claims): a record of an earlier attempt reads as no
report, so a claim has nothing to clear and writes nothing for it (most
jobs never report).  Reports of one job come from its one task, one
after another: they do not conflict with each other either; a report
that conflicts all the same is repeated a few times and then given up,
with a warning in the log: a report is advice, never a reason for the
job to fail.  ``clean`` removes the records of the jobs it removes.

The run transaction still holds the state of the map as of its own
beginning: read progress in a new transaction (the UI's requests do).

A job claimed in the same transaction that runs it (``processNext``) has
its reports written in that transaction (and shown once it commits), as
has a service that is not committed yet.

Each report is a commit: report a few times a second at most, not once
per item of a million.
"""
import datetime
import logging
import math

import persistent
import transaction
from BTrees.IOBTree import IOBTree
from transaction.interfaces import TransientError
from ZODB.POSException import POSKeyError
from ZODB.utils import z64

from lovely.remotetask.interfaces import PROCESSING


log = logging.getLogger('lovely.remotetask')

UTC = datetime.timezone.utc
#: The longest message a report keeps.
MAX_MESSAGE = 1000
#: How often a report that conflicts is repeated.
RETRIES = 3


class Progress(persistent.Persistent):
    """The progress a job's task reported (see the module doc)."""

    fraction = None
    message = None
    updated = None
    #: Which claim of the job made the attempt that reported (its
    #: ``claims``).
    attempt = None

    def set(self, fraction, message, now, attempt=None):
        self.fraction = fraction
        self.message = message
        self.updated = now
        self.attempt = attempt

    def clear(self):
        if self.updated is not None:
            self.fraction = self.message = self.updated = None

    def asDict(self):
        if self.updated is None:
            return None
        return {'fraction': self.fraction, 'message': self.message,
                'updated': self.updated}


#: The sentinel key of a service's map of reports.
SENTINEL = 0


def newReports():
    """The empty map of reports (a service's ``_progress``)."""
    reports = IOBTree()
    reports[SENTINEL] = None
    return reports


def checkReport(fraction, message):
    """The report as stored; ``ValueError`` for a bad one."""
    if fraction is not None:
        if isinstance(fraction, bool) or not isinstance(
                fraction, (int, float)) or not math.isfinite(fraction) \
                or not 0 <= fraction <= 1:
            raise ValueError(f'fraction must be a number from 0 to 1 or '
                             f'None, not {fraction!r}')
        fraction = float(fraction)
    if message is not None:
        if not isinstance(message, str):
            raise ValueError(f'message must be text or None, not '
                             f'{type(message).__name__}')
        try:
            message.encode('utf-8')
        except UnicodeEncodeError:
            raise ValueError(f'message must be valid Unicode (no lone '
                             f'surrogate), not {message[:50]!r}') from None
        message = message[:MAX_MESSAGE]
    return fraction, message


def setProgress(service, job, fraction=None, message=None, now=None):
    """Record a report of ``job``'s task (see the module doc)."""
    fraction, message = checkReport(fraction, message)
    if job.status != PROCESSING:
        raise ValueError(f'Job {job.id} is {job.status}: only a running '
                         f'job reports progress')
    now = now or datetime.datetime.now(UTC)
    jobid, attempt = job.id, job.claims

    def report(service):
        record = service._progress.get(jobid)
        if record is None:
            record = service._progress[jobid] = Progress()
        record.set(fraction, message, now, attempt)
    record = service._progress.get(jobid)
    try:
        if job._p_changed:
            # Claimed in this very transaction (processNext): the report
            # goes with it.
            report(service)
        elif record is not None and _committed(record):
            inOwnTransaction(record, lambda record: record.set(
                fraction, message, now, attempt))
        else:
            inOwnTransaction(service, report)
    except TransientError as error:
        log.warning('Job %s: its progress report conflicted %d times (%s); '
                    'dropped', job.id, RETRIES + 1,
                    error.__class__.__name__)


def getProgress(service, job):
    """``{'fraction', 'message', 'updated'}`` of the job's current (or
    last) attempt, or None."""
    record = service._progress.get(job.id)
    if record is None or record.attempt != job.claims:
        return None
    return record.asDict()


def forget(service, jobid):
    """``jobid`` is being removed (``clean``): drop its record."""
    if jobid in service._progress:
        del service._progress[jobid]


def _committed(obj):
    """Is ``obj`` stored by a committed transaction?"""
    return (obj._p_jar is not None and obj._p_oid is not None
            and obj._p_serial != z64)


def inOwnTransaction(obj, change, retries=RETRIES):
    """``change(obj)`` committed at once, in a transaction of its own.

    ``change`` gets ``obj`` as loaded in a connection of its own and a
    new transaction.  An object that is not committed yet (added in the
    current transaction) is changed in place, in the current transaction.
    A conflict repeats the change, up to ``retries`` times; then it
    propagates.
    """
    if not _committed(obj):
        change(obj)
        return
    manager = transaction.TransactionManager()
    conn = obj._p_jar.db().open(transaction_manager=manager)
    try:
        for attempt in range(retries + 1):
            try:
                manager.begin()
                change(conn.get(obj._p_oid))
                manager.commit()
                return
            except POSKeyError:
                # Stored by a savepoint of the current transaction only.
                manager.abort()
                change(obj)
                return
            except TransientError:
                manager.abort()
                if attempt == retries:
                    raise
    finally:
        manager.abort()
        conn.close()


def readCurrent(obj):
    """Make the current transaction conflict if ``obj`` changes before it
    commits (``Connection.readCurrent``; see cancelling.py and
    dependencies.py)."""
    jar = obj._p_jar
    if jar is not None and obj._p_oid is not None:
        obj._p_activate()
        jar.readCurrent(obj)


def readFresh(obj, read):
    """``read(obj)`` as the database has it now (not as of the current
    transaction's beginning): in a connection of its own."""
    if not _committed(obj):
        return read(obj)
    manager = transaction.TransactionManager()
    conn = obj._p_jar.db().open(transaction_manager=manager)
    try:
        manager.begin()
        try:
            return read(conn.get(obj._p_oid))
        except POSKeyError:
            return read(obj)
    finally:
        manager.abort()
        conn.close()
