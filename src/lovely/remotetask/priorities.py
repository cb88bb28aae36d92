"""Priorities: queued jobs wait in one ready queue per priority.

A job is added with a ``priority`` from ``LOWEST`` (0) to ``HIGHEST``
(9), ``DEFAULT`` (5) if not given.  Processors take due jobs of a higher
priority first and, within a priority, the oldest first (FIFO).

Shape
-----

The jobs of the default priority wait where every queued job waited
before priorities existed: in the status index of ``queued``
(``_index[QUEUED]``, a time set keyed by the time the job may run, see
jobtable.py).  The jobs of every other priority wait in a time set of
their own, ``_priorityQueues[priority]``, keyed the same way.  The dict
is made once (by the service, or by generation 5 for older services)
and never changes afterwards, so it is never written; its sets are.
So a service whose jobs all have the default priority adds and claims
exactly as before: the other sets stay empty (a claim looks at their
first key, no job is loaded).

Together the sets are the status index of ``queued``: counting uses the
one counter of the status (``_counts[QUEUED]``), listing merges the sets
by key (``queuedKeys``), so the Jobs tab lists queued jobs in the order
they may run from, whatever their priority.

Order of claims, and why low priorities do not starve
-----------------------------------------------------

Claims merge the heads of the sets (``readyKeys``) by a *virtual time*:
the time a job may run from, minus ``priority * service.priorityAging``
seconds.  So a job of priority 6 goes before every job of priority 5
that became ready less than ``priorityAging`` seconds before it, and a
job of priority 0 goes before a job of priority 9 that became ready
``9 * priorityAging`` seconds (or more) after it.  That is aging with a
bound: a job waits at most ``(HIGHEST - its priority) * priorityAging``
seconds behind jobs of higher priorities that arrive after it (plus the
time to run the jobs that were ahead of it anyway).  The default of
``priorityAging`` is an hour per level: a strict order for any queue
that drains within the hour.  It is read at claim time, so changing it
rekeys nothing.

Concurrency
-----------

Each set behaves as the index of ``queued`` always did (see timeset.py):
an add writes a set's last bucket, a claim its first ones, and they
merge.  Concurrent claimers take different runs of keys of the merged
order (``partition``, as jobtable's ``_readyKeys`` does for one set), so
they rarely take the same job; when they do, one of them conflicts and
claims again.
"""
import heapq
import itertools

from lovely.remotetask import timeset
from lovely.remotetask.interfaces import QUEUED
from lovely.remotetask.timeset import keyId
from lovely.remotetask.timeset import keySecond
from lovely.remotetask.timeset import timeKeys


LOWEST, DEFAULT, HIGHEST = 0, 5, 9
#: Concurrent claimers start at one of this many places in the ready jobs.
CLAIM_SPREAD = 4
PRIORITIES = range(LOWEST, HIGHEST + 1)
#: The default of a service's ``priorityAging``: seconds of waiting that
#: one priority level is worth.
AGING = 3600.0


def checkPriority(priority):
    """The priority as an int; ``ValueError`` for anything else.

    >>> checkPriority(9)
    9
    >>> checkPriority(10)
    Traceback (most recent call last):
    ...
    ValueError: priority must be an int from 0 to 9, not 10
    """
    if isinstance(priority, bool) or not isinstance(priority, int) \
            or priority not in PRIORITIES:
        raise ValueError(f'priority must be an int from {LOWEST} to '
                         f'{HIGHEST}, not {priority!r}')
    return priority


def newQueues():
    """The sets of the priorities other than the default."""
    return {priority: timeset.newTimeSet() for priority in PRIORITIES
            if priority != DEFAULT}


def queuedSet(service, priority):
    """The set in which a queued job of ``priority`` waits."""
    if priority == DEFAULT:
        return service._index[QUEUED]
    return service._priorityQueues[priority]


def allSets(service):
    """``(priority, set)`` of every priority, the highest first."""
    queues = service._priorityQueues
    return [(priority, service._index[QUEUED] if priority == DEFAULT
             else queues[priority]) for priority in reversed(PRIORITIES)]


def usedSets(service):
    """``(priority, set)`` of the priorities with queued jobs."""
    return [(priority, keys) for priority, keys in allSets(service)
            if timeset.firstKey(keys) is not None]


def queuedKeys(sets, after=None, reverse=False, following=None):
    """The keys of ``sets`` merged in key order (descending if
    ``reverse``), after the key ``after``; ``following(set, after,
    reverse)`` gives one set's keys (see jobtable._following)."""
    return heapq.merge(*(following(keys, after, reverse) for keys in sets),
                       reverse=reverse)


def _ready(service, keys, now, size):
    """The keys of one set that may run at ``now``, oldest first.

    As jobtable's ``_readyKeys`` always did for the one set: a key of
    an earlier second is ready without loading its job; a later one is
    checked on its job, and at most ``size + 16`` keys not due yet are
    looked at.
    """
    second = int(now.timestamp())
    notYet = 0
    for key in timeKeys(keys):
        if keySecond(key) >= second:
            due = service.jobs[keyId(key)].due
            if due is not None and due > now:
                notYet += 1
                if notYet > size + 16:
                    return
                continue
        yield key


def claimOrder(key, priority, aging):
    """What sorts ``key`` of ``priority`` into claim order."""
    return (keySecond(key) - priority * aging, -priority, key)


def _virtual(keys, priority, aging):
    """``((virtual time, -priority, key), key)`` of ``keys``: sorted
    so, the keys of several priorities merge in claim order."""
    for key in keys:
        yield claimOrder(key, priority, aging), key


def readyKeys(service, now, size, spread=1, partition=None):
    """Up to ``size`` keys of queued jobs that may run at ``now``.

    In claim order (see the module doc); with ``partition``, one of
    ``spread`` consecutive runs of ``size`` keys of that order, so that
    concurrent claimers take different keys.
    """
    if size <= 0:
        return []
    used = usedSets(service)
    if len(used) == 1:
        ready = _ready(service, used[0][1], now, size)
    else:
        aging = service.priorityAging
        ready = (key for virtual, key in heapq.merge(
            *(_virtual(_ready(service, keys, now, size), priority, aging)
              for priority, keys in used)))
    return partitionRun(list(itertools.islice(ready, size * spread)),
                        size, partition, spread)


def partitionRun(items, size, partition, spread=CLAIM_SPREAD):
    """The ``size`` items of ``items`` (in claim order) that a claimer
    with ``partition`` takes: the ``partition % spread``-th run, or the
    last one if there are fewer; all of the first run without one."""
    if partition is None or len(items) <= size:
        return items[:size]
    start = min((partition % spread) * size, len(items) - size)
    return items[start:start + size]


def firstReady(service):
    """The first key of each set with queued jobs (for ``nextScheduled``).
    """
    return [key for key in (timeset.firstKey(keys)
                            for priority, keys in allSets(service))
            if key is not None]
