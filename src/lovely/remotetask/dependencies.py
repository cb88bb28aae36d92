"""Chains: jobs that wait for other jobs.

``add(task, input, after=[a, b])`` adds a job in status ``waiting``; it
is queued when both ``a`` and ``b`` have completed.  If one of them ends
in error or is cancelled, the job is cancelled, with the reason as its
error, and so are the jobs waiting for it, and theirs (unless they were
added with ``runAnyway``: then they are queued when all they wait for
ended, however it ended).  At the add, a job of ``after`` that completed
already counts as done, one that failed or was cancelled applies the rule
at once.

Where it is kept
================

``job.after`` (tuple of ids)
    What the job waits or waited for; written once, by the add.
``job.waitingFor`` (tuple of ids)
    Those of ``after`` that have not ended yet.
``_followers`` (LLTreeSet of links), an attribute of the service
    One key per (parent, waiting job): ``parent << 31 | child`` (ids are
    below 2**31), so a parent's links are one range of keys.  The add of
    a waiting job inserts its links; they are removed once the parent
    ended and its waiting jobs were settled (``forget``).
``job.dependants``
    The jobs added to wait for this one: those settled (kept on the job
    by ``forget``) and those still linked.

Concurrency
===========

The add of a dependant writes neither its parent nor anything the
parent's run writes: it inserts keys into ``_followers``, whose buckets
merge concurrent inserts and removals of different keys.  So adds never
make a running parent's commit conflict (and its task run again), however
many are added while it runs.  The add reads its parents current
(``Connection.readCurrent``): if one of them changes before the add
commits, the add conflicts instead, and its retry sees the parent as it
is now (ended, say: then the rule applies at once).

The transaction that ends a parent (its run's commit, a failure, a
cancel) settles the waiting jobs it sees: those added before it began,
which is every job of a chain built before it ran.  They are queued (or
cancelled) in that same transaction.  The end of a parent writes each of
its waiting jobs (``waitingFor``), so the ends of two parents of one job
conflict, and the retry sees the other parent ended: a job is neither
left waiting for parents that all ended nor queued twice.

A dependant added while its parent's ending transaction was open, and
committed before it, is not seen by it; its link is.  After that
transaction commits, the processors of the process that ended the
parent settle such late links (``followUp``, in their next claim
transaction: no transaction of its own) and remove the parent's links.
No link can come after: an add that read the parent before its end
conflicts (above), one that began after sees it ended.  Ends elsewhere
(an operator's cancel in a web process, a process that died between the
end and its next claim) are left to the ``sweep`` that every processor
runs every ``chainInterval`` seconds: it settles the links of ended (or
removed) parents, a bounded batch at a time, so no link is lost.
``clean`` settles the links of the jobs it removes.

A retry of a job that failed (``service.retry``) does not bring back the
jobs cancelled with it: add them again.  A retry of a job that was
cancelled because of its parent waits again for the parents that have
not ended, and is refused (``NotRetryable``) while a parent it needs
ended in error or was cancelled: retry that one first.

A task can also add its follow-up jobs itself, inside its run
(``service.add(...)`` in the task): they are added in the transaction
that completes the task, so they exist if and only if the run commits.
"""
import collections

from BTrees.LLBTree import LLTreeSet

from lovely.remotetask import interfaces
from lovely.remotetask.interfaces import CANCELLED
from lovely.remotetask.interfaces import COMPLETED
from lovely.remotetask.interfaces import ENDED
from lovely.remotetask.interfaces import WAITING
from lovely.remotetask.job import CronJob
from lovely.remotetask.jobtable import checkJobId
from lovely.remotetask.timeset import MAXID

#: The most jobs one job may wait for.
MAX_AFTER = 1000
#: Links of parents ``sweep`` looks at per transaction.
SWEEP_BATCH = 100
#: Ids of ended jobs a process remembers for ``followUp`` (per service).
RECENT = 10000
_RECENT = {}   # (id(db), service oid) -> deque of job ids
_SHIFT = 31
_MASK = MAXID - 1


def newFollowers():
    """The empty set of links (a service's ``_followers``)."""
    return LLTreeSet()


def _link(parentid, childid):
    return parentid << _SHIFT | childid


def linked(service, parentid):
    """The ids of the jobs linked to wait for ``parentid`` (a list)."""
    low = parentid << _SHIFT
    return [key & _MASK
            for key in service._followers.keys(low, low | _MASK)]


def dependants(job):
    """The ids of the jobs added to wait for ``job``: the settled ones,
    then those still linked (see the module doc)."""
    service = job.__parent__
    # ``dependants`` in the record: a job stored before generation 7.
    ids = tuple(job._dependants) or tuple(vars(job).get('dependants', ()))
    if service is not None and getattr(service, '_followers', None):
        ids += tuple(jobid for jobid in linked(service, job.id)
                     if jobid not in ids)
    return ids


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
        _readCurrent(parent)
        service._followers.add(_link(parent.id, job.id))


def retried(service, job):
    """A retry of ``job``, which waited for other jobs: link it again to
    those that have not ended; return ``WAITING`` if there are any, else
    None (it may run).  ``NotRetryable`` (and nothing changed) while one
    of them failed or was cancelled and the job does not run anyway;
    removed ones count as done."""
    present = [service.jobs[jobid] for jobid in job.after
               if jobid in service.jobs]
    if not job.runAnyway:
        for parent in present:
            if parent.status in ENDED and parent.status != COMPLETED:
                raise interfaces.NotRetryable(
                    job.id, job.status,
                    f'job {parent.id}, which it waits for, is '
                    f'{parent.status}: retry that one first')
    waiting = [parent for parent in present if parent.status not in ENDED]
    job.waitingFor = tuple(parent.id for parent in waiting)
    for parent in waiting:
        _readCurrent(parent)
        service._followers.add(_link(parent.id, job.id))
    return WAITING if waiting else None


def _readCurrent(obj):
    jar = obj._p_jar
    if jar is not None and obj._p_oid is not None:
        jar.readCurrent(obj)


def settle(service, job):
    """``job`` ended: queue the jobs waiting for nothing else, cancel
    those it failed (and, in turn, the jobs waiting for those).  Returns
    the jobs that ended (``job`` first, then those cancelled) and how
    many jobs it settled (queued or cancelled)."""
    ended, done, settled = [job], [], 0
    while ended:
        parent = ended.pop()
        done.append(parent)
        for child in _waiting(service, parent.id):
            child.waitingFor = tuple(
                jobid for jobid in child.waitingFor if jobid != parent.id)
            if parent.status != COMPLETED and not child.runAnyway:
                service._setStatus(child, CANCELLED)
                child.error = _reason(parent)
                ended.append(child)
                settled += 1
            elif not child.waitingFor:
                service._queue(child)
                settled += 1
    return done, settled


def _waiting(service, parentid):
    """The jobs linked to ``parentid`` that still wait for it."""
    for childid in linked(service, parentid):
        child = service.jobs.get(childid)
        if child is not None and child.status == WAITING \
                and parentid in child.waitingFor:
            yield child


def ended(service, job):
    """``job`` ended in the current transaction: settle the jobs waiting
    for it; once committed, the processors of this process follow up on
    its links (see the module doc)."""
    if service._followers:
        jobids = [each.id for each in settle(service, job)[0]]
    else:
        jobids = [job.id]   # a link may come, and not be seen here
    jar = service._p_jar
    if jar is None or service._p_oid is None:
        return
    txn = service._transactionManager().get()
    try:
        pending = txn.data(_recent)
    except KeyError:
        pending = []
        txn.set_data(_recent, pending)
        txn.addAfterCommitHook(_committed,
                               (_recent(jar.db(), service._p_oid), pending))
    pending.extend(jobids)


def _recent(db, oid):
    """The ids of the jobs of a service that ended lately in this process
    (bounded: the oldest drop off, left to the sweep)."""
    key = (id(db), oid)
    recent = _RECENT.get(key)
    if recent is None:
        recent = _RECENT.setdefault(key, collections.deque(maxlen=RECENT))
    return recent


def _committed(committed, recent, jobids):
    if committed:
        recent.extend(jobids)


def takeRecent(service):
    """The ids of the jobs of ``service`` that ended lately in this
    process, taken (for ``followUp``)."""
    jar = service._p_jar
    if jar is None:
        return []
    recent = _RECENT.get((id(jar.db()), service._p_oid))
    jobids = []
    while recent:
        try:
            jobids.append(recent.popleft())
        except IndexError:
            break
    return jobids


def followUp(service, jobids):
    """After the commit that ended the jobs ``jobids``: settle the jobs
    linked to them that the ending transaction did not see, keep their
    ids on the parent, remove the links.  Returns how many jobs it
    settled."""
    count = 0
    if not service._followers:
        return count
    for jobid in jobids:
        if not linked(service, jobid):
            continue
        job = service.jobs.get(jobid)
        if job is not None and job.status not in ENDED:
            continue   # ended, then retried since: it is a parent again
        count += forget(service, jobid, job)
    return count


def forget(service, jobid, job):
    """The job ``jobid`` (``job``, or None if removed) ended: settle what
    is linked to it, remove its links.  Returns how many jobs it settled
    (queued or cancelled)."""
    children = linked(service, jobid)
    if not children:
        return 0
    if job is None:
        done, settled = [], _orphans(service, jobid)
    else:
        done, settled = settle(service, job)
        job._dependants = tuple(job._dependants) + tuple(
            childid for childid in children
            if childid not in job._dependants)
    low = jobid << _SHIFT
    for childid in children:
        service._followers.remove(low | childid)
    for each in done[1:]:
        settled += forget(service, each.id, each)
    return settled


def _orphans(service, parentid):
    """Settle the jobs waiting for a job that was removed before it
    settled them (a database written by other code): how it ended is
    not known, so they are cancelled, unless they run anyway."""
    settled = 0
    for child in list(_waiting(service, parentid)):
        child.waitingFor = tuple(
            jobid for jobid in child.waitingFor if jobid != parentid)
        if not child.runAnyway:
            service._setStatus(child, CANCELLED)
            child.error = (f'Cancelled: job {parentid}, which it waited '
                           f'for, was removed before it was settled')
            service._ended(child)
            settled += 1
        elif not child.waitingFor:
            service._queue(child)
            settled += 1
    return settled


def sweep(service, start=0, batch=SWEEP_BATCH):
    """Forget the links of up to ``batch`` parents that ended (or were
    removed), looking at parents from id ``start`` on.  Returns where the
    next sweep starts (0: from the beginning again) and how many jobs it
    settled."""
    count = seen = 0
    for parentid in _parentIds(service, start):
        if seen >= batch:
            return parentid, count
        seen += 1
        job = service.jobs.get(parentid)
        if job is None or job.status in ENDED:
            count += forget(service, parentid, job)
    return 0, count


def _parentIds(service, start):
    """The ids of the linked parents from ``start`` on, ascending."""
    followers = service._followers
    low = start << _SHIFT
    while True:
        try:
            key = followers.minKey(low)
        except ValueError:
            return
        parentid = key >> _SHIFT
        yield parentid
        low = (parentid + 1) << _SHIFT


def _reason(parent):
    """The error of a job cancelled because of ``parent``."""
    how = 'was cancelled' if parent.status == CANCELLED \
        else 'ended in error'
    return f'Cancelled: job {parent.id}, which it waited for, {how}'
