"""Cancelling a running job: a request its task and processor honour.

``service.cancel(jobid)`` of a job in ``processing`` cannot stop the
task's thread; it records a cancel request (who, when) and answers True.
The request is cooperative:

- The task may ask ``service.isCancelled(jobid)`` (as the database has it
  now, not as of the run's beginning) and return early, or raise
  ``interfaces.JobCancelled``.
- The processor checks the request after the task returned, before the
  commit (``checkRun``): a requested job is not completed, its task's
  writes are rolled back, and it ends ``cancelled``.
- Any failure of a job whose cancel was requested ends it ``cancelled``
  too, not repeated (``fail`` asks ``isRequested``): the task's error, a
  ``JobCancelled`` it raised, and a worker that died (the job taken back
  by ``recover``).  A cancelled job can be retried (history.py).

How it behaves under concurrent transactions
============================================

The request lives in a ``CancelRequest`` of the job (``job.cancelRequest``,
a persistent object of its own, like the lease).  The first cancel of a
running job makes it, which writes the job: that cancel conflicts with
the run, which writes the job too, and the conflict orders them (below:
the run begins again, finds the request and ends the job ``cancelled``).
A claim does not make one (most jobs are never cancelled: two objects
fewer per claim with the progress record, see progress.py); it clears
the request of a job that has one.  A later cancel of that job writes
only the request, never the job, and does not conflict with the run.
The run never writes the request.  Two things are ordered by
``Connection.readCurrent`` instead, which makes a commit conflict when an
object it only *read* was changed by a concurrent commit:

- The cancel reads the job current: if the run (or ``recover``) commits
  the job's end first, the cancel conflicts and the publisher repeats
  it; it then finds the job finished and answers False.
- The run's check, and ``fail`` (also in ``recover``), read the request
  current: if the cancel commits first (also while the task ran: the run
  transaction sees the request as of its own beginning), the run's
  commit conflicts.  The processor then begins again and, before running
  the task again, finds the request and ends the job ``cancelled``
  (``running.py``).

So a cancel either comes before the job's end, and the job ends
``cancelled`` with none of its task's writes, or after it, and answers
False; never both, and never lost.
"""
import datetime
import logging

import persistent

from lovely.remotetask import history
from lovely.remotetask import interfaces
from lovely.remotetask import progress
from lovely.remotetask.interaction import currentPrincipalId
from lovely.remotetask.interfaces import CANCELLED
from lovely.remotetask.interfaces import PROCESSING


log = logging.getLogger('lovely.remotetask')

UTC = datetime.timezone.utc


class CancelRequest(persistent.Persistent):
    """A request to cancel a running job (see the module doc)."""

    requested = False
    by = None
    at = None

    def request(self, principal, now):
        self.requested = True
        self.by = principal
        self.at = now

    def clear(self):
        if self.requested:
            self.requested = False
            self.by = self.at = None


def startAttempt(job):
    """Clear the request of a job that is being claimed, if it has one
    (the claim writes the job anyway).  None is made: most jobs are never
    cancelled, and the first request of a job makes it (module doc)."""
    if job.cancelRequest is not None:
        job.cancelRequest.clear()


def request(service, job, now=None):
    """Request the cancel of a running job."""
    if job.status != PROCESSING:
        raise ValueError(f'Job {job.id} is {job.status}, not running')
    now = now or datetime.datetime.now(UTC)
    progress.readCurrent(job)
    if job.cancelRequest is None:
        job.cancelRequest = CancelRequest()
    if not job.cancelRequest.requested:
        job.cancelRequest.request(currentPrincipalId(), now)


def isRequested(job):
    """Was the cancel of the job requested (as the current transaction
    sees it)?  The current transaction then conflicts should a request be
    committed before it."""
    request = job.cancelRequest
    if request is None:
        return False
    progress.readCurrent(request)
    return request.requested


def isCancelled(job):
    """Is the job cancelled, or its cancel requested, as the database has
    it now?  (For the job's task: see the module doc.)"""
    if job.status == CANCELLED:
        return True
    request = job.cancelRequest
    if request is not None:
        return progress.readFresh(request, lambda r: r.requested)
    # None when this transaction began: a first cancel makes it, and
    # writes the job.
    return progress.readFresh(
        job, lambda j: j.cancelRequest is not None
        and j.cancelRequest.requested)


def checkRun(job):
    """After the task returned, before the commit: ``JobCancelled`` if
    the job's cancel was requested."""
    if isRequested(job):
        raise interfaces.JobCancelled(job.id)


def end(service, job, now):
    """End a job whose cancel was requested (or whose task raised
    ``JobCancelled``): ``cancelled``, with its attempt in its history."""
    job.lease = None
    job.completed = now
    history.recordAttempt(job, history.CANCELLED_RUN, now)
    service._unschedule(job)
    service._setStatus(job, CANCELLED, now)
    service._ended(job)  # unique key, dependants (see service.py)
    request = job.cancelRequest
    by = request.by if request is not None and request.requested else None
    service._log(logging.INFO, 'Job %s (%r) cancelled while running%s',
                 job.id, job.task, f' (requested by {by})' if by else '')
    return 'cancelled'
