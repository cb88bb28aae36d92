"""Retrying failed and cancelled jobs; the history of a job's attempts.

``retry(service, job)`` puts a job in ``error`` or ``cancelled`` back
into the queue: its attempts start again from none, its error and
traceback are cleared (the error stays in its history), and the audit
log records who retried it.  A cron job goes back to its schedule
instead (its next due time); any other job is queued to run now (a job
cancelled while it waited in ``start later`` too).  Retrying a job in
any other status raises ``NotRetryable``: it is queued, running or done.

``retryAll(service, status, task, limit)`` retries the jobs in one of
those statuses (of one task), the oldest first; ``bulk.retryAll`` calls
it in batches, each a transaction of its own.

The history
===========

A job keeps the last ``MAX_HISTORY`` of its attempts in ``job.history``:
a tuple of ``Attempt`` (its number, when it started and ended, the
worker, how it ended: ``completed``, ``failed`` or ``cancelled``, and
the error message of a failed one).  An attempt is added by the
transaction that ends it (the run's commit, the failure's, the
recovery's): that transaction writes the job anyway, so the history
costs no write of its own and conflicts with nothing the job did not
conflict with before.  The tuple is part of the job's own record
(immutable, replaced on each change), not a persistent object of its
own.  Jobs stored before there was a history have the class default,
an empty tuple: no generation is needed.
"""
import collections
import itertools
import logging

from lovely.remotetask import audit
from lovely.remotetask import dependencies
from lovely.remotetask import interfaces
from lovely.remotetask import timeset
from lovely.remotetask import uniqueness
from lovely.remotetask.interfaces import CANCELLED
from lovely.remotetask.interfaces import ERROR
from lovely.remotetask.interfaces import WAITING
from lovely.remotetask.jobtable import now_

log = logging.getLogger('lovely.remotetask')


#: A job keeps this many of its latest attempts.
MAX_HISTORY = 10
#: An attempt keeps at most this many characters of its error message
#: (the job keeps the whole message of its last failure).
MAX_ERROR = 1000
#: Jobs in these statuses may be retried.
RETRYABLE = (ERROR, CANCELLED)
#: How an attempt ended.
COMPLETED, FAILED, CANCELLED_RUN = 'completed', 'failed', 'cancelled'

Attempt = collections.namedtuple(
    'Attempt', 'number started ended worker outcome error')
Attempt.__doc__ = """One attempt of a job (see the module doc).

``number`` counts the attempts since the job was added or last retried;
``started`` and ``ended`` are aware UTC datetimes (``started`` None for a
job that was never started); ``error`` is None unless it failed."""


def recordAttempt(job, outcome, now, error=None):
    """Add the attempt that just ended to ``job.history`` (bounded)."""
    if error is not None and len(error) > MAX_ERROR:
        error = error[:MAX_ERROR - 1] + '…'
    entry = Attempt(job.attempts, job.started, now, job.worker, outcome,
                    error)
    job.history = (tuple(job.history) + (entry,))[-MAX_HISTORY:]


def retry(service, job, now=None):
    """Queue a failed or cancelled job again (see the module doc)."""
    if job.status not in RETRYABLE:
        raise interfaces.NotRetryable(job.id, job.status)
    # DuplicateJob if another job took its unique key meanwhile, before
    # anything changes.
    uniqueness.checkRetake(service, job)
    # A job of a chain waits again for the jobs it needs that have not
    # ended; refused while one of them failed (dependencies.py).
    status = dependencies.retried(service, job) if job.after else None
    uniqueness.takeBack(service, job)
    # A late import: the job module imports nothing of the service.
    from lovely.remotetask.job import CronJob
    now = now_(now)
    job.attempts = 0
    job.error = job.traceback = None
    job.completed = None
    if isinstance(job, CronJob) and job.delay is None:
        service._scheduleNext(job, now)
    elif status == WAITING:
        service._setStatus(job, WAITING, now)
    else:
        service._queue(job)
    _clearCancel(job)
    audit.record(service, 'retry', (job.id,))


def _clearCancel(job):
    # A job cancelled while it ran carries the request (see
    # cancelling.py); its next run must not see it.
    request = getattr(job, 'cancelRequest', None)
    if request is not None and request.requested:
        request.clear()


def checkStatus(status):
    """``status`` as a tuple of retryable statuses; ``ValueError`` for
    any other."""
    statuses = (status,) if isinstance(status, str) else tuple(status)
    bad = [s for s in statuses if s not in RETRYABLE]
    if bad or not statuses:
        raise ValueError(
            f'Only jobs in status {", ".join(RETRYABLE)} can be retried, '
            f'not {", ".join(map(repr, bad)) or "none"}')
    return statuses


def retryAll(service, status=ERROR, task=None, limit=None, before=None):
    """Retry up to ``limit`` (None: all) jobs in ``status`` (of ``task``),
    the oldest first; return how many.

    ``before``: only jobs that entered their status before this key of
    the status index (see timeset.py), so that a batched retry does not
    retry again the jobs that failed again meanwhile.
    """
    statuses = checkStatus(status)
    if task is not None and not isinstance(task, str):
        raise ValueError(f'task must be a task name, not {task!r}')
    byTask = None if task is None else service._byTask.get(task)
    if task is not None and byTask is None:
        return 0
    count = 0
    for name in statuses:
        index = service._index[name]
        keys = timeset.timeKeys(index) if before is None \
            else timeset.timeKeys(index, max=before - 1)
        ids = (timeset.keyId(key) for key in keys)
        if byTask is not None:
            ids = (jobid for jobid in ids if jobid in byTask)
        left = None if limit is None else limit - count
        # A list first: retrying changes the index being walked.
        for jobid in list(itertools.islice(ids, left)):
            try:
                retry(service, service.jobs[jobid])
            except (interfaces.DuplicateJob, interfaces.NotRetryable) \
                    as error:
                # Another job holds its unique key now, or a job it waits
                # for failed: this one stays.
                log.warning('Job %s not retried: %s', jobid, error)
                continue
            count += 1
    return count
