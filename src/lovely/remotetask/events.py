"""What happens to jobs, told to whoever listens (metrics, logs, ...).

The processing steps (steps.py, running.py) and the job table call
``afterCommit`` or ``notify`` with one of the events below; the events
are delivered with ``zope.event.notify``, so a room such as
``lovely.remotetask.metrics`` subscribes to them (ZCML ``<subscriber>``
or ``zope.component.provideHandler``) without the core importing it.

Events of a transaction are delivered when it commits, never when it
aborts: a run that conflicts and runs again is counted once, as it
completes once.  ``afterCommit`` keeps one list per transaction and adds
one after-commit hook for it (a group of a hundred jobs costs one hook).
A listener that raises is logged and forgotten: observing never fails a
job.

Every event carries ``service`` (the label ``site@service`` of
``serviceLabel``, as autostart and ``remotetask worker --services`` name
services) and ``task`` (the task name) where it is about a job; the
values are read when the event is made, in the transaction, so that a
listener loads nothing from the database.
"""
import logging

import zope.event
from zope.interface import Attribute
from zope.interface import Interface
from zope.interface import implementer

from lovely.remotetask.timeset import keySecond


log = logging.getLogger('lovely.remotetask')


class IJobEvent(Interface):
    """Something happened to a job of a service."""

    service = Attribute('The service label, site@service')
    task = Attribute('The task name')
    jobid = Attribute('The job id')


class IJobEnqueued(IJobEvent):
    """A job was added (queued, delayed, a cron job or to start later)."""


class IJobStarted(IJobEvent):
    """A job was claimed by a processor."""

    waited = Attribute('Seconds from when it could run to its claim, or '
                       'None (a delayed or cron job)')


class IJobCompleted(IJobEvent):
    """A job's task returned; the job completed (or a cron job ran)."""

    duration = Attribute('Seconds from its claim to its completion')


class IJobFailed(IJobEvent):
    """A job's run failed."""

    outcome = Attribute("'retry' (queued again), 'error' (no attempt "
                        "left, or not repeatable) or 'rescheduled' (a cron "
                        "job)")


class ILeaseRecovered(IJobEvent):
    """A running job was taken back: its lease expired or its worker
    died."""


class IConflictRetried(Interface):
    """A run conflicted (ConflictError) and runs again."""

    service = Attribute('The service label, site@service')


@implementer(IJobEvent)
class JobEvent:

    def __init__(self, service, job):
        self.service = serviceLabel(service)
        self.task = job.task
        self.jobid = job.id

    def __repr__(self):
        return (f'<{type(self).__name__} {self.service} job {self.jobid} '
                f'{self.task!r}>')


@implementer(IJobEnqueued)
class JobEnqueued(JobEvent):
    pass


@implementer(IJobStarted)
class JobStarted(JobEvent):
    """Made before the job changes to ``processing`` (it reads when the
    job became ready)."""

    def __init__(self, service, job, now):
        super().__init__(service, job)
        since = readySince(job)
        self.waited = None if since is None else max(
            (now - since).total_seconds(), 0.0)


@implementer(IJobCompleted)
class JobCompleted(JobEvent):

    def __init__(self, service, job, now):
        super().__init__(service, job)
        started = job.started or now
        self.duration = max((now - started).total_seconds(), 0.0)


@implementer(IJobFailed)
class JobFailed(JobEvent):

    def __init__(self, service, job, outcome):
        super().__init__(service, job)
        self.outcome = outcome


@implementer(ILeaseRecovered)
class LeaseRecovered(JobEvent):
    pass


@implementer(IConflictRetried)
class ConflictRetried:

    def __init__(self, service):
        self.service = serviceLabel(service)


def readySince(job):
    """When a queued job became ready to run (aware datetime), or None.

    A job queued to run later (a repeat after its backoff) became ready
    at its due time; any other queued job when it entered the queue: its
    index key has whole seconds, its creation time is exact (and counts
    when the two fall in the same second: a new job).
    """
    from lovely.remotetask.interfaces import QUEUED
    if job.status != QUEUED:
        return None
    if job.due is not None:
        return job.due
    import datetime
    entered = datetime.datetime.fromtimestamp(
        keySecond(job._statusKey), datetime.timezone.utc)
    created = job.created
    if created is not None and created >= entered:
        return created
    return entered


def serviceLabel(service):
    """``site@service``: the root folder's services are ``@name``; a
    service that autostart cannot name is ``?@name``."""
    label = getattr(service, '_v_serviceLabel', None)
    if label is None:
        from lovely.remotetask.startup import _location
        site, name = _location(service)
        parent = getattr(service, '__parent__', None)
        if site is None and getattr(parent, '__parent__', 1) is None:
            site = ''   # in a root folder that is no site (yet)
        label = f'{"?" if site is None else site}@{name}'
        service._v_serviceLabel = label
    return label


def notify(event):
    """Deliver ``event`` now (see the module: a listener never fails the
    caller)."""
    try:
        zope.event.notify(event)
    except Exception:
        log.exception('A listener failed on %r', event)


def afterCommit(service, event):
    """Deliver ``event`` when the transaction of ``service`` commits."""
    txn = service._transactionManager().get()
    try:
        pending = txn.data(afterCommit)
    except KeyError:
        pending = []
        txn.set_data(afterCommit, pending)
        txn.addAfterCommitHook(_deliver, args=(pending,))
    pending.append(event)


def _deliver(committed, pending):
    if committed:
        for event in pending:
            notify(event)
