"""The inbox: new jobs, indexed in batches.

An add stores its job (the job and a bucket of ``jobs``) and one key in
the inbox, nothing else.  The structures an add used to write too (the
ready queue of its priority, the counter of queued jobs, the task's id
set and counter, the index of creation times: five more objects) are
written later, for many jobs at once, by whichever transaction comes
first of:

- a processor's claim (which indexes the inbox, then claims from the
  ready queues, so that a lone new job is still claimed by the next
  claim);
- the add that finds the inbox full (``SIZE`` keys): without a processor
  at work, a batch of adds pays for one indexing;
- any change of a pending job's status (a cancel, say), which indexes
  that job first.

``_inbox`` (a time set, see timeset.py: ``timeKey(created, id)``)
    The pending jobs' keys, which are also their keys in the index of
    queued jobs (``job._statusKey``, set by the add) and in ``_created``.
    Adds insert keys, indexing removes them.  The set stays small (one
    bucket, ``SIZE`` keys or a few more), its first key is the low
    sentinel: concurrent adds merge with each other and with an indexing
    that removes other keys.  Two transactions indexing the same keys
    conflict (each inserts the same key into the ready queue) and one of
    them retries: a job is never indexed twice.  A set that concurrent
    adds pushed over a bucket is put back into one by the next indexing
    (as ``timeset.compact`` does).

Readers see pending jobs as queued jobs: the counts add the inbox's
(which loads at most ``SIZE`` jobs for a task's count), listings merge
its keys with the ready queues', with ``_created``, and with the task id
sets (as small sets built on the fly: see ``taskIds``).
"""
from BTrees.IIBTree import IITreeSet
from BTrees.Length import Length

from lovely.remotetask import priorities
from lovely.remotetask import sorting
from lovely.remotetask import tasklimits
from lovely.remotetask import timeset
from lovely.remotetask.interfaces import QUEUED
from lovely.remotetask.priorities import CLAIM_SPREAD
from lovely.remotetask.timeset import keyId
from lovely.remotetask.timeset import timeKeys


#: An add indexes the inbox when it holds this many keys (below a
#: bucket's 120, so that the set stays one bucket).
SIZE = 50


class Inbox(timeset.TimeSet):
    """The inbox's time set: buckets of BTrees' default size."""
    max_leaf_size = 120


def newInbox():
    return timeset.newTimeSet(Inbox)


def count(table):
    """How many jobs wait in the inbox."""
    return len(table._inbox) - 2


def keys(table, low=timeset._LOW + 1, high=timeset._HIGH - 1):
    """The pending jobs' keys, oldest first."""
    return timeKeys(table._inbox, low, high)


def jobs(table):
    """The pending jobs (to be loaded: fetched at once), oldest first."""
    return table._prefetch([table.jobs[keyId(key)] for key in keys(table)])


def put(table, job):
    """Put a new queued job (in ``jobs`` already) into the inbox.

    A full inbox is indexed first: the add pays for the batch.  So is
    one that concurrent adds pushed over a bucket: its adds would write
    a bucket, not the set, whose change wakes the processors (see
    ``wakeOids``).
    """
    if count(table) >= SIZE or timeset.spread(table._inbox):
        _ghostAfterCommit(table, index(table))
    table._inbox.add(job._statusKey)


def _ghostAfterCommit(table, jobs):
    """Make the jobs an add indexed ghosts once its transaction commits.

    Indexing read them whole, and the adding connection seldom reads them
    again, while the processors change every one of them: each change
    costs the adder's next transaction an invalidation, and that of a
    job kept whole costs three times that of a ghost (after a drain of
    5,000 jobs, the next add's transaction began 4 to 6 ms late).
    """
    txn = table._transactionManager().get()
    txn.addAfterCommitHook(_ghost, args=(jobs,))


def _ghost(committed, jobs):
    if committed:
        for job in jobs:
            job._p_deactivate()


def due(table, now, size):
    """Should a claim of ``size`` jobs at ``now`` index the inbox first?

    When the ready queues are short (the claim may need the new jobs), or
    when a new job has waited since an earlier second (it may have a high
    priority).  Not otherwise: under a backlog concurrent claimers take
    different parts of the ready queues (see jobtable's ``_readyKeys``),
    and indexing the same new jobs would make them conflict; the adds
    index them then (``put``), at most a second late.
    """
    first = next(iter(keys(table)), None)
    if first is None:
        return False
    return (table._counts[QUEUED]() < size * CLAIM_SPREAD
            or timeset.keySecond(first) < int(now.timestamp()))


def isPending(table, job):
    """Is ``job`` in the inbox (queued, not indexed yet)?"""
    # getattr: generations before 9 (evolve3, say) change the status of
    # jobs of a service that has no inbox yet.
    pending = getattr(table, '_inbox', None)
    return pending is not None and job._statusKey is not None \
        and job._statusKey in pending


def index(table, pending=None):
    """Index the pending jobs (all, or the jobs ``pending``): each goes
    where an add used to put it, the ready queue of its priority among
    them; return them."""
    whole = pending is None
    if whole:
        pending = jobs(table)
    _leave(table, pending)
    for job in pending:
        priorities.queuedSet(table, job.priority).add(job._statusKey)
    table._counts[QUEUED].change(len(pending))
    if whole:
        timeset.compact(table._inbox, table._p_jar)
    return pending


def take(table, job):
    """Index a pending job that leaves ``queued`` now (a claim, a cancel):
    as ``index`` does, but for the ready queue and its counter, which it
    would leave at once."""
    _leave(table, [job])


def _leave(table, pending):
    """Move ``pending`` out of the inbox into the task id sets (their
    counters change once per task) and ``_created``."""
    tasks = {}
    for job in pending:
        table._inbox.remove(job._statusKey)
        tasks.setdefault(job.task, []).append(job.id)
        sorting.added(table, job)
    for task, ids in tasks.items():
        taskSet(table, task).update(ids)
        table._taskCounts[task].change(len(ids))


def claimOrIndex(table, now, size, partition=None):
    """The new jobs a claim of ``size`` at ``now`` takes directly.

    When no other job is queued (nothing to merge with) and no task has
    limits (nothing to hold back), the pending jobs are claimed in claim
    order (priority, then time: see priorities.py) without entering the
    ready queue: a lone new job costs its claim no write of the ready
    queue and its counter.  A claimer with a ``partition`` takes its run
    of them, as from the ready queue (``priorities.partitionRun``), so
    that concurrent claimers take different jobs, and leaves the rest
    where they are; a lone claimer indexes the rest.  Otherwise all are
    indexed and [] returned.
    """
    # The newest key (the low sentinel if there is none).
    last = table._inbox.maxKey(timeset._HIGH - 1)
    if (table._counts[QUEUED]() or last == timeset._LOW
            or timeset.keySecond(last) > int(now.timestamp())
            or not tasklimits.unlimited(table)):
        index(table)
        return []
    pending = jobs(table)
    aging = table.priorityAging
    pending.sort(key=lambda job: priorities.claimOrder(
        job._statusKey, job.priority, aging))
    claimed = priorities.partitionRun(pending, size, partition)
    if partition is None:
        index(table, pending[size:])
    return claimed


def taskSet(table, task):
    """The id set of ``task`` (made, with its counter, if new)."""
    ids = table._byTask.get(task)
    if ids is None:
        ids = table._byTask[task] = timeset.newIdSet()
        table._taskCounts[task] = Length()
    return ids


def taskIds(table, task):
    """The ids of the pending jobs of ``task`` (None: of every task), as
    an id set (not stored) that merges with the task id sets."""
    ids = IITreeSet([timeset._SENTINEL])
    ids.update(job.id for job in jobs(table)
               if task is None or job.task == task)
    return ids


def tasks(table):
    """The names of the tasks of pending jobs."""
    return {job.task for job in jobs(table)}
