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
``job.waitingFor``
    Those of ``after`` that have not ended, read from them (not stored).
``_followers`` (a time set of links), an attribute of the service
    One key per (parent, waiting job): ``parent << 31 | child`` (ids are
    below 2**31), so a parent's links are one range of keys.  The add of
    a waiting job inserts its links; they are removed once the parent
    ended and what waits for it was decided (``followUp``, ``forget``).
``job.dependants``
    The jobs added to wait for this one while it had not ended: those
    whose links were removed (kept on the job) and those still linked.

Concurrency
===========

The add of a dependant writes neither its parent nor anything the
parent's run writes: it inserts keys into ``_followers``, a time set
(timeset.py), whose sentinels and big buckets let concurrent inserts and
removals of different links merge.  So adds never make a running
parent's commit conflict (and its task run again), however many are
added while it runs.  The add reads its parents current
(``Connection.readCurrent``): if one of them changes before the add
commits, the add conflicts instead, and its retry sees the parent as it
is now (ended, say: then the rule applies at once).

A waiting job is written once, by the transaction that decides it: the
one in which, as it sees the jobs, all it waits for have ended (queued),
or one of them failed (cancelled).  The transaction that ends a parent
decides the jobs linked to it that it sees; a job still waiting for
another parent is not written.  So the ends of two parents of one job
do not conflict either: if each sees the other still running, neither
decides, and the follow-up of either (below), which sees both ended,
queues the job.  Two transactions that both decide a job write it and
conflict (jobs resolve no conflicts), and the retry sees it decided: a
job is never queued twice.

A dependant added while its parent's ending transaction was open, and
committed before it, is not seen by it; its link is.  After the end
commits, the processors of the process that ended the parent follow up
(``followUp``, in their next claim transaction: no transaction of its
own): they decide what the end did not and remove the parent's links.
No link can come after: an add that read the parent before its end
conflicts (above), one that began after sees it ended.  Ends elsewhere
(an operator's cancel in a web process, a process that died between the
end and its next claim, a follow-up whose claim failed three times) are
left to the ``sweep`` that every processor runs every ``chainInterval``
seconds (when a claim finds nothing; at least every two intervals while
it is busy): it decides and removes the links of ended (or removed) parents,
``SWEEP_BATCH`` links per pass, going round all links; with many
chains waiting, a round takes (links / batch) seconds.  ``clean``
decides and removes the links of the jobs it removes: a removed job
counts as completed (one that failed decided what waited for it when it
ended or was removed).

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
import itertools

from lovely.remotetask import interfaces
from lovely.remotetask import progress
from lovely.remotetask import timeset
from lovely.remotetask.interfaces import CANCELLED
from lovely.remotetask.interfaces import COMPLETED
from lovely.remotetask.interfaces import ENDED
from lovely.remotetask.interfaces import QUEUED
from lovely.remotetask.interfaces import WAITING
from lovely.remotetask.job import CronJob
from lovely.remotetask.jobtable import checkJobId
from lovely.remotetask.timeset import MAXID

#: The most jobs one job may wait for.
MAX_AFTER = 1000
#: Links ``sweep`` looks at per transaction.
SWEEP_BATCH = 200
#: Ids of ended jobs a process remembers for ``followUp`` (per service).
RECENT = 10000
#: How often ``followUp`` looks again at a job that looked not ended
#: (a snapshot older than its end) before leaving it to the sweep.
FOLLOW_UP_TRIES = 3
_RECENT = {}   # (id(db), service oid) -> deque of (job id, decided, tries)
_SHIFT = 31
_MASK = MAXID - 1
_FIRST, _LAST = 1 << _SHIFT, (MAXID << _SHIFT) - 1   # the links' range


def newFollowers():
    """The empty set of links (a service's ``_followers``): a time set
    (timeset.py), whose "second" is the parent's id, for its sentinels
    and big buckets."""
    return timeset.newTimeSet()


def _link(parentid, childid):
    return parentid << _SHIFT | childid


def hasLinks(service):
    """Does any job wait for another?"""
    for key in service._followers.keys(_FIRST, _LAST):
        return True
    return False


def linked(service, parentid):
    """The ids of the jobs linked to wait for ``parentid`` (a list)."""
    low = parentid << _SHIFT
    return [key & _MASK
            for key in service._followers.keys(low, low | _MASK)]


def dependants(job):
    """The ids of the jobs added to wait for ``job``: the settled ones,
    then those still linked (see the module doc)."""
    service = job.__parent__
    ids = _settled(job)
    if service is not None and getattr(service, '_followers', None):
        ids += tuple(jobid for jobid in linked(service, job.id)
                     if jobid not in ids)
    return ids


def _settled(job):
    # ``dependants`` in the record: a job stored before generation 7.
    return tuple(job._dependants) or tuple(vars(job).get('dependants', ()))


def waitingFor(job, always=False):
    """The ids of the jobs a waiting job (with ``always``, any job) waits
    for: those of ``after`` that have not ended (read from them: nothing
    stores it)."""
    service = job.__parent__
    if (job.status != WAITING and not always) or service is None:
        return ()
    return tuple(jobid for jobid in job.after
                 if _status(service, jobid) not in ENDED + (None,))


def _status(service, jobid):
    job = service.jobs.get(jobid)
    return None if job is None else job.status


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
    """Link the new ``job`` (just inserted, waiting) to those of ``jobs``
    that have not ended."""
    job.after = tuple(parent.id for parent in jobs)
    if job.status != WAITING:
        return
    for parent in jobs:
        if parent.status not in ENDED:
            progress.readCurrent(parent)
            service._followers.add(_link(parent.id, job.id))


def retried(service, job):
    """A retry of ``job``, which waited for other jobs: link it again to
    those that have not ended; return ``WAITING`` if there are any, else
    None (it may run).  ``NotRetryable`` (and nothing changed) while one
    of them failed or was cancelled and the job does not run anyway;
    removed ones count as done."""
    status, culprit = _verdict(service, job)
    if status == CANCELLED:
        raise interfaces.NotRetryable(
            job.id, job.status,
            f'job {culprit.id}, which it waits for, is {culprit.status}: '
            f'retry that one first')
    if status == QUEUED:
        return None
    for jobid in waitingFor(job, always=True):
        progress.readCurrent(service.jobs[jobid])
        service._followers.add(_link(jobid, job.id))
    return WAITING


def _verdict(service, job):
    """What the jobs ``job`` waits for say, as this transaction sees
    them: ``(CANCELLED, the one that failed)`` (unless it runs anyway),
    ``(WAITING, None)`` while one has not ended, else ``(QUEUED, None)``.
    A removed job counts as completed: one that failed cancelled what
    waited for it when it ended, or when it was removed (``forget``)."""
    waiting = False
    for jobid in job.after:
        parent = service.jobs.get(jobid)
        if parent is None:
            continue
        if parent.status not in ENDED:
            waiting = True
        elif parent.status != COMPLETED and not job.runAnyway:
            return CANCELLED, parent
    return (WAITING, None) if waiting else (QUEUED, None)


def _decide(service, child):
    """Queue or cancel a waiting ``child`` if what it waits for allows;
    its new status (``WAITING``: unchanged, nothing written)."""
    status, culprit = _verdict(service, child)
    if status == CANCELLED:
        service._setStatus(child, CANCELLED)
        child.error = _reason(culprit)
    elif status == QUEUED:
        service._queue(child)
    return status


def _waiting(service, parentid, childids=None):
    """The waiting jobs linked to ``parentid`` (of ``childids``)."""
    for childid in linked(service, parentid) if childids is None \
            else childids:
        child = service.jobs.get(childid)
        if child is not None and child.status == WAITING:
            yield child


def settle(service, job):
    """``job`` ended: queue the jobs linked to it that wait for nothing
    else, cancel those it failed, and, in turn, the jobs waiting for
    those.  A job still waiting for another is not written: the end of
    that one decides.  Returns ``(job id, ids decided)`` of ``job`` and of
    each job it cancelled."""
    ended, done = [job], []
    while ended:
        parent = ended.pop()
        decided, cancelled = _decideWaiting(service, parent.id)
        ended.extend(cancelled)
        done.append((parent.id, tuple(decided)))
    return done


def _decideWaiting(service, parentid, childids=None):
    """Decide the waiting jobs linked to ``parentid`` (of ``childids``);
    the ids of those decided, and the jobs cancelled."""
    decided, cancelled = [], []
    for child in list(_waiting(service, parentid, childids)):
        status = _decide(service, child)
        if status != WAITING:
            decided.append(child.id)
        if status == CANCELLED:
            cancelled.append(child)
    return decided, cancelled


def ended(service, job):
    """``job`` ended in the current transaction: settle the jobs waiting
    for it; once committed, the processors of this process follow up on
    its links (see the module doc)."""
    if hasLinks(service):
        done = settle(service, job)
    else:
        done = [(job.id, ())]   # a link may come, and not be seen here
    jar = service._p_jar
    if jar is None or service._p_oid is None:
        return
    # A hook per end: a savepoint rolled back drops the hooks added
    # after it, with the ends they belong to.
    service._transactionManager().get().addAfterCommitHook(
        _committed, (_recent(jar.db(), service._p_oid), done))


def _recent(db, oid):
    """The jobs of a service that ended lately in this process, as
    ``(job id, ids decided, tries)`` (bounded: the oldest drop off, left
    to the sweep)."""
    key = (id(db), oid)
    recent = _RECENT.get(key)
    if recent is None:
        recent = _RECENT.setdefault(key, collections.deque(maxlen=RECENT))
    return recent


def _committed(committed, recent, done):
    if committed:
        recent.extend((jobid, decided, 0) for jobid, decided in done)


def takeRecent(db, oid):
    """The jobs of the service ``oid`` that ended lately in this process,
    taken (for ``followUp``; ``putBack`` what it leaves)."""
    recent = _RECENT.get((id(db), oid))
    entries = []
    while recent:
        try:
            entries.append(recent.popleft())
        except IndexError:
            break
    return entries


def putBack(db, oid, entries):
    """Entries ``followUp`` could not finish, for the next one; those
    tried ``FOLLOW_UP_TRIES`` times are left to the sweep."""
    _recent(db, oid).extend(
        entry for entry in entries if entry[2] < FOLLOW_UP_TRIES)


def followUp(service, entries):
    """After the commits that ended the jobs of ``entries`` (see
    ``takeRecent``): decide the jobs linked to them that their ending
    transactions did not, remove their links.  Returns how many jobs it
    settled and the entries to look at again (a job that does not look
    ended yet: this transaction's snapshot is older than its end)."""
    settled, again = 0, []
    if not hasLinks(service):
        return settled, again
    for jobid, decided, tries in entries:
        children = linked(service, jobid)
        if not children:
            continue
        job = service.jobs.get(jobid)
        if job is not None and job.status not in ENDED:
            again.append((jobid, decided, tries + 1))
            continue
        settled += forget(service, jobid, job,
                          [c for c in children if c not in decided],
                          children)
    return settled, again


def forget(service, jobid, job, undecided=None, children=None):
    """The job ``jobid`` (``job``, or None if removed) ended: decide the
    jobs linked to it (those of ``undecided``; None: all), remove its
    links (those to ``children``; None: all), and so for the jobs it
    cancels.  Returns how many jobs it settled (queued or cancelled)."""
    settled = 0
    stack = [(jobid, job, undecided, children)]
    while stack:
        jobid, job, undecided, children = stack.pop()
        if children is None:
            children = linked(service, jobid)
        decided, cancelled = _decideWaiting(
            service, jobid, children if undecided is None else undecided)
        settled += len(decided)
        stack.extend((child.id, child, None, None) for child in cancelled)
        if job is not None and children:
            known = _settled(job)
            job._dependants = known + tuple(
                childid for childid in children if childid not in known)
        for childid in children:
            service._followers.remove(_link(jobid, childid))
    return settled


def sweep(service, start=0, batch=SWEEP_BATCH):
    """Decide the jobs linked to jobs that ended (or were removed) and
    remove those links: up to ``batch`` links, from the link ``start``
    on.  Returns where the next sweep starts (0: from the beginning
    again) and how many jobs it settled."""
    keys = list(itertools.islice(
        service._followers.keys(max(start, _FIRST), _LAST), batch + 1))
    after = keys.pop() if len(keys) > batch else 0
    settled = 0
    for parentid, group in itertools.groupby(keys, lambda k: k >> _SHIFT):
        children = [key & _MASK for key in group]
        job = service.jobs.get(parentid)
        if job is None or job.status in ENDED:
            settled += forget(service, parentid, job, children, children)
    return after, settled


def _reason(parent):
    """The error of a job cancelled because of ``parent``."""
    how = 'was cancelled' if parent.status == CANCELLED \
        else 'ended in error'
    return f'Cancelled: job {parent.id}, which it waited for, {how}'
