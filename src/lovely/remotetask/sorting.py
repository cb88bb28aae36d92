"""Sorted lists of jobs: the indexes behind the Jobs tab's sort links.

``listJobs(sort=...)`` lists jobs by created, started, completed,
duration, status or task, ascending or descending, a page at a time: a
page loads the jobs it shows and a few buckets, whatever the size of the
table (tests/test_sorting.py counts the loads).  Three structures are new
(attributes of the service, built for older databases by generation 4);
the rest is derived from the job table's (see jobtable.py):

``_created`` (time set: ``timeKey(job.created, id)``)
    Every job, by when it was created, but for the new jobs of the inbox
    (whose keys there are the same, and which walks merge in; see
    inbox.py).  Written when jobs leave the inbox (one key each, in the
    set's last bucket: concurrent inserts merge there as they do in the
    index of queued jobs, see timeset.py) and by ``clean``, which loads
    each removed job to find its key.

``_started`` and ``_duration`` (time sets)
    The finished jobs (completed or error) by when their last run started
    and by how long it took (``seconds << 31 | id``).  Written when a job
    enters or leaves a finished status (a completion, a retry, a clean),
    never by an add or a claim.  A completion inserts near the end of
    ``_started``; durations spread over the set, so concurrent completions
    rarely write the same bucket (and BTrees merge them when they do).
    The keys a job has there are kept on the job (``_sortKeys``), which
    is written with its status anyway.

Each sort is a walk of segments, each segment one index or several merged
by key (heapq.merge of their lazy key iterators):

=========== ============================================================
created     ``_created``
started     the running jobs (the index of ``processing``, keyed by their
            start) merged with ``_started``; then the jobs not started
            (queued, waiting, start later, delayed, cron, cancelled), by
            status
completed   the finished jobs (the indexes of ``completed`` and ``error``
            are keyed by the completion); then the unfinished, by status
duration    ``_duration``; then the unfinished jobs, by status
status      the status indexes one after another (each by the time the job
            entered the status)
task        the task id sets one after another, by task name (each by id)
=========== ============================================================

Times are whole seconds (the keys of time sets): jobs of one second
follow each other in id order, and ids are random.  Jobs without the
value sorted on (a job that has not run has no start) come after the
others in either direction.  A cursor (``cursor``) is
``segment << 64 | key``: a page starts after it at the cost of a tree
lookup.  Filtered by status, a walk skips the segments that cannot hold
its jobs, and needs no test in a segment of that status alone (the
waiting jobs sorted by when they started, say).  Other filters are
tested per job walked: a task is a membership test in its id set (no
job loaded), a status in a segment of several statuses (the running and
finished jobs sorted by start, every job sorted by created) or a
creation time range loads the job; so such a list filtered to a rare
status walks far (the unsorted status filter does not).
"""
import heapq
import itertools

from BTrees.LLBTree import LLTreeSet

from lovely.remotetask import timeset
from lovely.remotetask.interfaces import CANCELLED
from lovely.remotetask.interfaces import COMPLETED
from lovely.remotetask.interfaces import CRONJOB
from lovely.remotetask.interfaces import DELAYED
from lovely.remotetask.interfaces import ERROR
from lovely.remotetask.interfaces import PROCESSING
from lovely.remotetask.interfaces import QUEUED
from lovely.remotetask.interfaces import STARTLATER
from lovely.remotetask.interfaces import STATUSES
from lovely.remotetask.interfaces import WAITING
from lovely.remotetask.timeset import keyId
from lovely.remotetask.timeset import timeKey


SORTS = ('created', 'started', 'completed', 'duration', 'status', 'task')
FINISHED = (COMPLETED, ERROR)
UNSTARTED = (QUEUED, WAITING, STARTLATER, DELAYED, CRONJOB, CANCELLED)
UNFINISHED = (PROCESSING,) + UNSTARTED
#: Sorts whose jobs without a value follow the others in both directions.
NULLS_LAST = ('started', 'completed', 'duration')
_SHIFT = 64
_MASK = 2 ** _SHIFT - 1


def checkSort(sort):
    if sort is not None and sort not in SORTS:
        raise ValueError(f'Unknown sort: {sort!r}; one of {", ".join(SORTS)}')


def initIndexes(table):
    table._created = timeset.newTimeSet()
    table._started = timeset.newTimeSet()
    table._duration = timeset.newTimeSet()


def added(table, job):
    """Index a new job."""
    table._created.add(timeKey(job.created, job.id))


def finishedKeys(job, when):
    """The keys of a finished job in ``_started`` and ``_duration``."""
    completed = job.completed or when
    started = job.started or completed
    seconds = max(0, int((completed - started).total_seconds()))
    return (timeKey(started, job.id),
            (min(seconds, 2 ** 31) << 31) | job.id)


def statusChanged(table, job, old, new, when):
    """Keep ``_started`` and ``_duration`` in step with a status change
    (``when``: the time of the change, an aware datetime)."""
    keys = job._sortKeys
    if keys is not None and (old in FINISHED or new not in FINISHED):
        table._started.discard(keys[0])
        table._duration.discard(keys[1])
        job._sortKeys = None
    if new in FINISHED:
        job._sortKeys = keys = finishedKeys(job, when)
        table._started.add(keys[0])
        table._duration.add(keys[1])


def removed(table, job):
    """Unindex a job that ``clean`` removes (it is loaded for its keys)."""
    table._created.discard(timeKey(job.created, job.id))
    keys = job._sortKeys
    if keys is not None:
        table._started.discard(keys[0])
        table._duration.discard(keys[1])


# -- walking -----------------------------------------------------------------

#: The sorts whose segments are by status: the statuses of the first
#: segment (the jobs with a value; None: no such segment), and those of
#: the segments after it, one each.
_STATUS_SEGMENTS = {
    'started': ((PROCESSING,) + FINISHED, UNSTARTED),
    'completed': (FINISHED, UNFINISHED),
    'duration': (FINISHED, UNFINISHED),
    'status': (None, STATUSES),
}


def segmentStatuses(sort):
    """The statuses of the jobs of each segment of ``sort``; None when
    the segments hold jobs of any status."""
    if sort not in _STATUS_SEGMENTS:
        return None
    head, tail = _STATUS_SEGMENTS[sort]
    return ([head] if head else []) + [(name,) for name in tail]


def _valued(table, sort):
    """The sets of the first segment of ``sort``: its jobs with a value."""
    index = table._index
    if sort == 'started':
        return [index[PROCESSING], table._started]
    if sort == 'completed':
        return [index[COMPLETED], index[ERROR]]
    return [table._duration]


def segments(table, sort, status=None, task=None):
    """The segments of ``sort`` (see the module doc): lists of sets.

    Filtered by status, only the segments that can hold its jobs (an
    empty list for the others).  The queued jobs are in several sets
    (priorities, gates, the inbox: see jobtable's ``_statusSets``); the
    jobs of a task in its id set and, while they are new, in the inbox
    (see inbox.py).
    """
    if sort == 'created':
        return [[table._created, table._inbox]]
    if sort == 'task':
        return [table._taskSets(name) if task in (None, name) else []
                for name in table.taskNames()]
    if sort not in _STATUS_SEGMENTS:
        raise ValueError(sort)
    head, tail = _STATUS_SEGMENTS[sort]
    parts = ([_valued(table, sort)] if head else []) + [
        table._statusSets(name) for name in tail]
    return [part if status is None or status in statuses else []
            for part, statuses in zip(parts, segmentStatuses(sort))]


def _statusWalked(sort, status):
    """Do the segments of ``sort`` that can hold jobs of ``status`` hold
    only those (then the walk filters by status without a job loaded)?"""
    statuses = segmentStatuses(sort)
    return statuses is not None and all(
        len(names) == 1 for names in statuses if status in names)


def _keys(tree, after, reverse):
    """The keys of one set after the key ``after``, without sentinels."""
    from lovely.remotetask.jobtable import _following
    if isinstance(tree, LLTreeSet):
        return _following(tree, after, reverse, timeset._LOW, timeset._HIGH)
    return _following(tree, after, reverse, timeset._SENTINEL, None)


def _idOf(tree):
    return keyId if isinstance(tree, LLTreeSet) else int


def walk(table, sort, reverse=False, after=None, status=None, task=None,
         backwards=False):
    """``(cursor, job id)`` of the sort, after the cursor ``after``.

    ``backwards``: the same list read from its end (before the cursor).
    Descending, the jobs without a value still come last: the list
    backwards is then its segments in reverse order, each ascending, not
    the ascending list.
    """
    parts = segments(table, sort, status, task)
    order = list(range(len(parts)))
    segmentsBack = reverse and sort not in NULLS_LAST
    if backwards:
        segmentsBack, reverse = not segmentsBack, not reverse
    if segmentsBack:
        order.reverse()
    first = key = None
    if after is not None:
        first, key = after >> _SHIFT, after & _MASK
        order = order[order.index(first):] if first in order else []
    for number in order:
        start = key if number == first else None
        streams = [((key, _idOf(tree)(key))
                    for key in _keys(tree, start, reverse))
                   for tree in parts[number]]
        for key, jobid in heapq.merge(*streams, reverse=reverse):
            yield number << _SHIFT | key, jobid


def cursor(table, job, sort):
    """The cursor of ``job`` in ``sort``: where a page after it starts."""
    if sort == 'created':
        return timeKey(job.created, job.id)
    if sort == 'status':
        return STATUSES.index(job.status) << _SHIFT | job._statusKey
    if sort == 'task':
        return table.taskNames().index(job.task) << _SHIFT | job.id
    keys = job._sortKeys
    if sort == 'started':
        if job.status == PROCESSING:
            return job._statusKey
        if job.status in FINISHED:
            return keys[0]
        return (UNSTARTED.index(job.status) + 1) << _SHIFT | job._statusKey
    if job.status in FINISHED:
        return job._statusKey if sort == 'completed' else keys[1]
    return (UNFINISHED.index(job.status) + 1) << _SHIFT | job._statusKey


# -- filters -----------------------------------------------------------------

def createdRange(createdAfter, createdBefore):
    """The key range of ``_created`` (whole seconds): ``(min, max)``."""
    low = timeset._LOW + 1 if createdAfter is None \
        else timeKey(createdAfter, 0)
    high = timeset._HIGH - 1 if createdBefore is None \
        else timeKey(createdBefore, 0) - 1
    return low, high


def filtered(table, pairs, sort, status, task, createdAfter, createdBefore):
    """The pairs of ``walk`` that pass the filters the walk does not
    apply itself (see the module doc for what each costs)."""
    inTask = None if task is None else table._inTask(task)
    if task is not None and inTask is None:
        return iter(())
    if sort == 'task':
        inTask = None
    statusTest = None if _statusWalked(sort, status) else status
    low, high = createdRange(createdAfter, createdBefore)
    timed = createdAfter is not None or createdBefore is not None
    keyTimed = timed and sort == 'created'

    def passes(pair):
        key, jobid = pair
        if keyTimed and not low <= key & _MASK <= high:
            return False
        if inTask is not None and not inTask(jobid):
            return False
        if statusTest is None and (keyTimed or not timed):
            return True
        job = table.jobs[jobid]
        if statusTest is not None and job.status != statusTest:
            return False
        return keyTimed or not timed \
            or low <= timeKey(job.created, 0) <= high

    return filter(passes, pairs)


def listIds(table, sort, status=None, task=None, start=0, size=None,
            reverse=False, after=None, createdAfter=None, createdBefore=None,
            backwards=False):
    """The ids of a page of a sorted list (see ``listJobs``; the caller
    turns ``backwards`` into ``reverse`` where they are the same)."""
    if sort == 'created' and after is None and (
            createdAfter is not None or createdBefore is not None):
        # Start at the range's end rather than walk to it.
        low, high = createdRange(createdAfter, createdBefore)
        after = (high + 1) if reverse else (low - 1)
    pairs = walk(table, sort, reverse, after, status, task, backwards)
    if sort == 'created' and (createdAfter is not None
                              or createdBefore is not None):
        low, high = createdRange(createdAfter, createdBefore)
        pairs = itertools.takewhile(
            (lambda pair: pair[0] >= low) if reverse
            else (lambda pair: pair[0] <= high), pairs)
    pairs = filtered(table, pairs, sort, status, task, createdAfter,
                     createdBefore)
    stop = None if size is None else start + size
    return [jobid for key, jobid in itertools.islice(pairs, start, stop)]


def countIds(table, status=None, task=None, createdAfter=None,
             createdBefore=None):
    """How many jobs pass the filters, with a creation time range."""
    low, high = createdRange(createdAfter, createdBefore)
    keys = itertools.chain(table._created.keys(low, high),
                           timeset.timeKeys(table._inbox, low, high))
    if status is None and task is None:
        # The keys of the range: buckets are read, no job.
        return sum(1 for key in keys)
    inTask = None if task is None else table._inTask(task)
    if task is not None and inTask is None:
        return 0
    count = 0
    for key in keys:
        jobid = keyId(key)
        if inTask is not None and not inTask(jobid):
            continue
        if status is not None and table.jobs[jobid].status != status:
            continue
        count += 1
    return count
