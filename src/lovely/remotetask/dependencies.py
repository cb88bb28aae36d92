"""Chains: jobs that wait for other jobs.

``add(task, input, after=[a, b])`` adds a job in status ``waiting``; the
transaction that ends the last of ``a`` and ``b`` queues it if both
completed.  If one of them ends in error or is cancelled, the job is
cancelled in that transaction, with the reason as its error, and so are
the jobs waiting for it, and theirs (unless they were added with
``runAnyway``: then they are queued when all they wait for ended, however
it ended).  At the add, a job of ``after`` that completed already counts
as done, one that failed or was cancelled applies the rule at once.

Where it is kept: on the jobs themselves, no structure of the service.

``job.after`` (tuple of ids)
    What the job waits or waited for; written once, by the add.
``job.waitingFor`` (tuple of ids)
    Those of ``after`` that have not ended yet.
``job.dependants`` (tuple of ids)
    The jobs added to run after this one; the add of each writes it.

Concurrency: jobs do not resolve conflicts (see job.py), and that is what
makes chains exact.  An add with ``after=[p]`` writes ``p`` (its
``dependants``); the end of ``p`` writes ``p`` (its status): an add racing
the end of its parent conflicts, and the retry sees the parent ended (and
queues or cancels the new job at once) or sees the new dependant (and
settles it).  The end of a parent writes each waiting dependant (its
``waitingFor``), so the ends of two parents of one job conflict too, and
the retry sees the other parent ended: a job cannot be left waiting for
parents that have all ended, nor queued twice.  The price: adds of
dependants of one job conflict with each other and with the run of that
job (the processor repeats a conflicting run, see running.py); unrelated
chains never meet.

A retry of a job that failed (``service.retry``) does not bring back the
jobs cancelled with it: add them again.

A task can also add its follow-up jobs itself, inside its run
(``service.add(...)`` in the task): they are added in the transaction
that completes the task, so they exist if and only if the run commits.
"""
from lovely.remotetask import interfaces
from lovely.remotetask import uniqueness
from lovely.remotetask.interfaces import CANCELLED
from lovely.remotetask.interfaces import COMPLETED
from lovely.remotetask.interfaces import ENDED
from lovely.remotetask.interfaces import WAITING
from lovely.remotetask.job import CronJob
from lovely.remotetask.jobtable import checkJobId

#: The most jobs one job may wait for.
MAX_AFTER = 1000


def parents(service, after):
    """The jobs named by ``after`` (ids; one id is one job), without
    repeats, in order; ``InvalidDependency`` for an id that names no job
    (any more) or a cron job."""
    if isinstance(after, int) and not isinstance(after, bool):
        after = (after,)
    if isinstance(after, (str, bytes)):
        raise interfaces.InvalidDependency(
            f'after must be job ids, not {after!r}')
    ids = tuple(dict.fromkeys(checkJobId(jobid) for jobid in after))
    if len(ids) > MAX_AFTER:
        raise interfaces.InvalidDependency(
            f'A job may wait for at most {MAX_AFTER} jobs, not {len(ids)}')
    jobs = []
    for jobid in ids:
        job = service.jobs.get(jobid)
        if job is None:
            if jobid in service._retired:
                raise interfaces.InvalidDependency(
                    f'Job {jobid} was removed (cleaned): how it ended is '
                    f'not known')
            raise interfaces.InvalidDependency(f'No such job: {jobid}')
        if isinstance(job, CronJob) and job.delay is None:
            raise interfaces.InvalidDependency(
                f'Job {jobid} is a cron job: it never ends')
        jobs.append(job)
    return jobs


def verdict(jobs, runAnyway):
    """Before an add: the status the new job starts in (``WAITING``,
    ``CANCELLED``, or None: it may run), and, if cancelled, why."""
    if not runAnyway:
        for job in jobs:
            if job.status in ENDED and job.status != COMPLETED:
                return CANCELLED, _reason(job)
    if any(job.status not in ENDED for job in jobs):
        return WAITING, None
    return None, None


def attach(service, job, jobs):
    """Make the new ``job`` (just inserted) wait for those of ``jobs``
    that have not ended."""
    job.after = tuple(parent.id for parent in jobs)
    waiting = [parent for parent in jobs if parent.status not in ENDED]
    job.waitingFor = tuple(parent.id for parent in waiting)
    if job.status != WAITING:
        return
    for parent in waiting:
        parent.dependants += (job.id,)   # the write that conflicts


def settle(service, job):
    """``job`` ended: queue the jobs waiting for nothing else, cancel
    those it failed (and, in turn, the jobs waiting for those)."""
    ended = [job]
    while ended:
        parent = ended.pop()
        for childid in parent.dependants:
            child = service.jobs.get(childid)
            if child is None or child.status != WAITING:
                continue
            child.waitingFor = tuple(
                jobid for jobid in child.waitingFor if jobid != parent.id)
            if parent.status != COMPLETED and not child.runAnyway:
                service._setStatus(child, CANCELLED)
                child.error = _reason(parent)
                uniqueness.release(service, child)
                ended.append(child)
            elif not child.waitingFor:
                service._queue(child)


def _reason(parent):
    """The error of a job cancelled because of ``parent``."""
    how = 'was cancelled' if parent.status == CANCELLED \
        else 'ended in error'
    return f'Cancelled: job {parent.id}, which it waited for, {how}'
