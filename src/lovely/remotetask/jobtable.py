"""The job table: the jobs, their status index, the ready queue, the schedule.

``JobTable`` is the part of a task service that keeps its persistent
structures in step with its jobs.  Its structures (attributes of the
service) and how they behave under concurrent transactions (several web
requests adding jobs, several processors claiming and completing them, in
one process or many):

``jobs`` (IOBTree: id -> job)
    Written by ``add`` (insert) and ``clean`` (delete) only; claims and
    completions write the job objects, not the tree.  Concurrent inserts
    merge (BTree buckets resolve conflicts).  Ids come in sequential runs
    from a random start per connection (like zope.intid), so concurrent
    adders write to different buckets; two connections picking the same id
    conflict on the bucket and one retries with a new id.

``_retired`` (IITreeSet)
    Ids of cleaned jobs, so that an id handed out (say over XML-RPC) never
    names another job later.

``_index`` (dict: status -> time set, see timeset.py) and ``_counts``
(dict: status -> BTrees.Length)
    The status index, keyed by the time the job entered its status
    (``job._statusKey``): the management UI counts, filters and pages with
    it without loading jobs.  The dicts never change after creation, so
    they are never rewritten; ``Length`` merges any concurrent changes.

    The index of ``queued`` is also the ready queue (of the jobs of the
    default priority: the others wait in sets of their own, and jobs
    held back by their task's limits in their task's gate; see
    priorities.py, tasklimits.py and ``_queuedSets``): a queued job's
    key is the time it may run from (now for a new job, the end of its
    backoff for a repeated one), so the jobs that may run now are the
    head of the set, oldest first.  An add writes the set's last bucket,
    a claim its first ones; they merge (see timeset.py).  Concurrent
    claimers start at different places in the head (``_readyKeys``) so
    that they rarely take the same key (which conflicts, and one of them
    claims again).

``_schedule`` (time set)
    Delayed and cron jobs, keyed by their due time: the smallest key is the
    next due job.

``_byTask`` (OOBTree: task name -> IITreeSet of ids, with the sentinel -1)
and ``_taskCounts`` (OOBTree: task name -> BTrees.Length)
    The task filter of the UI; written by adds and cleans only.  Filtering
    by task and status together walks the status's keys and tests each id
    for membership in the task's set: no job is loaded.

``_uniqueKeys`` (OOBTree: unique key -> job id)
    Which job took each key last (held while it has not ended): written
    by adds and retries with a key, and by ``clean``, never by a job's
    end; see uniqueness.py for how concurrent adds of one key end with
    one job.

``_progress`` (IOBTree: job id -> Progress)
    What running jobs' tasks reported, written in short transactions of
    their own, never by a run or a claim; see progress.py.

``_followers`` (time set of (parent, child) links)
    Which job waits for which: inserted by adds with ``after``, removed
    after the parent ended; concurrent changes of different links merge
    (a time set's sentinels keep its buckets from emptying).  See
    dependencies.py.

``_created``, ``_started``, ``_duration`` (time sets)
    The sorts of ``listJobs(sort=...)``: see sorting.py.

``_inbox`` (time set)
    The new queued jobs that the structures above do not hold yet: an
    add writes its job, ``jobs`` and the inbox, and the status index, the
    ready queue, the task's id set, the counters and ``_created`` take
    them in batches.  Readers merge it in; see inbox.py.
"""
import datetime
import heapq
import itertools
import random

from BTrees.IIBTree import IITreeSet
from BTrees.IOBTree import IOBTree
from BTrees.Length import Length
from BTrees.OOBTree import OOBTree

from lovely.remotetask import events
from lovely.remotetask import inbox
from lovely.remotetask import interfaces
from lovely.remotetask import priorities
from lovely.remotetask.priorities import CLAIM_SPREAD
from lovely.remotetask import progress
from lovely.remotetask import sorting
from lovely.remotetask import tasklimits
from lovely.remotetask import timeset
from lovely.remotetask import uniqueness
from lovely.remotetask.interfaces import CRONJOB
from lovely.remotetask.interfaces import DELAYED
from lovely.remotetask.interfaces import PROCESSING
from lovely.remotetask.interfaces import QUEUED
from lovely.remotetask.interfaces import STATUSES
from lovely.remotetask.interfaces import checkCount
from lovely.remotetask.timeset import MAXID
from lovely.remotetask.timeset import keyId
from lovely.remotetask.timeset import keySecond
from lovely.remotetask.timeset import timeKey
from lovely.remotetask.timeset import timeKeys


UTC = datetime.timezone.utc


def now_(now=None):
    """``now`` as an aware UTC datetime.

    Accepts None (the current time), an aware datetime, or seconds since
    the epoch (as the original package's ``time.time()`` values).
    """
    if now is None:
        return datetime.datetime.now(UTC)
    if isinstance(now, datetime.datetime):
        if now.tzinfo is None:
            raise ValueError(f'now must be timezone-aware, got {now!r}')
        return now.astimezone(UTC)
    return datetime.datetime.fromtimestamp(now, UTC)


def checkJobId(jobid):
    """The job id as an int; ``InvalidJobId`` for anything else."""
    if isinstance(jobid, bool) or not isinstance(jobid, int) \
            or not 0 < jobid < MAXID:
        raise interfaces.InvalidJobId(jobid)
    return jobid


class JobTable:
    """The structures of the module doc, as part of a task service."""

    _v_nextid = None

    def _initTable(self):
        self.jobs = IOBTree()
        self._retired = IITreeSet()
        self._schedule = timeset.newTimeSet()
        self._index = {status: timeset.newTimeSet() for status in STATUSES}
        self._counts = {status: Length() for status in STATUSES}
        self._byTask = OOBTree()
        self._taskCounts = OOBTree()
        self._uniqueKeys = uniqueness.newKeyMap()
        self._followers = timeset.newTimeSet()   # see dependencies.py
        self._progress = progress.newReports()
        self._priorityQueues = priorities.newQueues()
        tasklimits.initGates(self)
        sorting.initIndexes(self)
        self._inbox = inbox.newInbox()

    # -- jobs by id ----------------------------------------------------------

    def __getitem__(self, name):
        """The job named by a decimal id (for traversal: SERVICE/JOBID)."""
        try:
            jobid = int(name)
        except (TypeError, ValueError):
            raise KeyError(name)
        return self.jobs[jobid]

    def get(self, name, default=None):
        try:
            return self[name]
        except KeyError:
            return default

    def _job(self, jobid):
        job = self.jobs.get(checkJobId(jobid))
        if job is None:
            raise interfaces.NoSuchJob(jobid)
        return job

    def _newId(self):
        while True:
            if self._v_nextid is None:
                self._v_nextid = random.randrange(1, MAXID)
            jobid = self._v_nextid
            self._v_nextid = jobid + 1 if jobid + 1 < MAXID else None
            if jobid not in self.jobs and jobid not in self._retired:
                return jobid
            self._v_nextid = None

    def _insert(self, job):
        job.__parent__ = self
        self.jobs[job.id] = job
        events.afterCommit(self, events.JobEnqueued(self, job))
        if job.status == QUEUED:
            # Indexed later, with others (see inbox.py).
            job._statusKey = timeKey(job.created, job.id)
            inbox.put(self, job)
            return
        status, job.status = job.status, None
        self._setStatus(job, status, job.created)
        inbox.taskSet(self, job.task).add(job.id)
        self._taskCounts[job.task].change(1)
        sorting.added(self, job)

    def _newest(self, status, limit=None):
        """The ids of up to ``limit`` (None: all) jobs in ``status``, the
        newest first; a list, so that the caller may change the index."""
        keys = self._statusKeys(status, None, True)
        return [keyId(key) for key in itertools.islice(keys, limit)]

    def _remove(self, status, limit=None, keys=None):
        """Remove up to ``limit`` (None: all) jobs in ``status``, the
        oldest first (or those of the index ``keys``, see retention.py);
        return their ids (an IITreeSet).

        Linear in the jobs removed: each removed id is looked up in each
        task's id set (there are few tasks), no set is walked; each job is
        loaded for its keys in the sort indexes (sorting.py).
        """
        index = self._index[status]
        if keys is None:
            keys = list(itertools.islice(timeKeys(index), limit))
        jobids = [keyId(key) for key in keys]
        # A late import: dependencies.py imports this module.
        from lovely.remotetask import dependencies
        chained = dependencies.hasLinks(self)
        for key, jobid in zip(keys, jobids):
            index.remove(key)
            job = self.jobs[jobid]
            sorting.removed(self, job)
            if chained:
                dependencies.forget(self, jobid, job)
            uniqueness.forget(self, job)
            progress.forget(self, jobid)
            del self.jobs[jobid]
        self._counts[status].change(-len(keys))
        for task, ids in self._byTask.items():
            gone = [jobid for jobid in jobids if jobid in ids]
            for jobid in gone:
                ids.remove(jobid)
            if gone:
                self._taskCounts[task].change(-len(gone))
        removed = IITreeSet(jobids)
        self._retired.update(removed)
        return removed

    def _prefetch(self, jobs):
        """Load the records of ``jobs`` not loaded yet in one round trip
        where the storage can (ZEO; RelStorage with a local cache): a
        group's jobs would otherwise be loaded one by one, a round trip
        each.  Returns ``jobs``."""
        jar = self._p_jar
        if jar is None or len(jobs) < 2:
            return jobs
        # The connection's own storage, not ``jar.prefetch``: during a
        # savepoint that is the savepoint's TmpStore, which has no
        # prefetch, and the connection would then switch it off for good
        # (ZODB issue 277).
        prefetch = getattr(getattr(jar, '_normal_storage', None),
                           'prefetch', None)
        connected = getattr(jar.db().storage, 'is_connected', None)
        if prefetch is None or (connected is not None and not connected()):
            return jobs   # (a ZEO client away would log each oid's error)
        ghosts = [job._p_oid for job in jobs if job._p_changed is None]
        if len(ghosts) > 1:
            prefetch(ghosts)
        return jobs

    # -- status, queue and schedule ------------------------------------------

    def _setStatus(self, job, status, at=None):
        """Move ``job`` to ``status`` in the index, keyed by ``at`` (now)."""
        old = job.status
        when = now_(at)
        key = timeKey(when, job.id)
        if old == status and job._statusKey == key:
            return
        if old == QUEUED and inbox.isPending(self, job):
            # A new job (inbox.py): in no set of the index, not counted.
            inbox.take(self, job)
            old = None
        sorting.statusChanged(self, job, old, status, when)
        if old is not None:
            self._statusSet(old, job).remove(job._statusKey)
            if old != status:
                self._counts[old].change(-1)
            if old == QUEUED and job._heldBy is not None:
                job._heldBy = None
            if old == PROCESSING and job._slot is not None:
                tasklimits.release(self, job)
        job._statusKey = key
        self._statusSet(status, job).add(key)
        if old != status:
            self._counts[status].change(1)
        job.status = status

    def _statusSet(self, status, job):
        """The set of the status index that holds ``job`` in ``status``.

        Queued jobs wait in the set of their priority, or in their
        task's gate while its limits hold them back.
        """
        if status != QUEUED:
            return self._index[status]
        if job._heldBy is not None:
            return tasklimits.heldSet(self, job._heldBy)
        return priorities.queuedSet(self, job.priority)

    def _queuedSets(self):
        """Every set that holds queued jobs: the index of ``queued``."""
        return [keys for priority, keys in priorities.allSets(self)] \
            + tasklimits.heldSets(self) + [self._inbox]

    def _statusSets(self, status):
        """The sets of the status index that hold the jobs in ``status``.
        """
        if status == QUEUED:
            return self._queuedSets()
        return [self._index[status]]

    def _timeSets(self):
        """Every time set of the table (for generations that rebuild
        them)."""
        return [keys for status, keys in sorted(self._index.items())
                if status != QUEUED] + self._queuedSets() + [
            self._schedule, self._followers, self._created, self._started,
            self._duration]

    def _statusKeys(self, status, after=None, reverse=False):
        """The index keys of ``status`` after the cursor ``after``, in
        key order (descending if ``reverse``), lazily."""
        if status == QUEUED:
            return priorities.queuedKeys(
                self._queuedSets(), after, reverse,
                lambda keys, after, reverse: _following(
                    keys, after, reverse, timeset._LOW, timeset._HIGH))
        return _following(self._index[status], after, reverse,
                          timeset._LOW, timeset._HIGH)

    def _queue(self, job, due=None):
        """Queue ``job``, to run from ``due`` (None: now); wake a processor.

        A job queued to run later (a repeat after a backoff) is keyed by
        its due time, a job that may run now by the current time.
        """
        self._unschedule(job)
        self._setStatus(job, QUEUED, due)
        job.due = due
        _wakeAfterCommit(self)

    def _scheduleAt(self, job, status, due):
        """Put a delayed or cron job into the schedule, due at ``due``."""
        self._unschedule(job)
        if job.status != status:
            self._setStatus(job, status)
        job.due = due
        self._schedule.add(timeKey(due, job.id))
        _wakeAfterCommit(self)

    def _unschedule(self, job):
        if job.due is not None:
            # A queued job's due time is its key in the index, not in the
            # schedule (but for one stored before generation 3).
            self._schedule.discard(timeKey(job.due, job.id))
        job.due = None

    def _nextDue(self, now):
        """A scheduled job due at ``now`` (the earliest), or None."""
        second = int(now.timestamp())
        for key in timeKeys(self._schedule):
            if keySecond(key) > second:
                return None
            # Keys have whole seconds: a job of this second may be due
            # later in it, and one after it (a greater id) earlier.
            job = self.jobs[keyId(key)]
            if job.due <= now:
                return job
        return None

    def _readyKeys(self, now, size, partition=None):
        """Up to ``size`` keys of queued jobs that may run at ``now``.

        The next in claim order (see priorities.py); with ``partition``
        (an int), one of ``CLAIM_SPREAD`` consecutive runs of ``size``
        keys from the head, so that concurrent claimers take different
        keys.  A key of an earlier second is ready without loading its
        job; a later one (a repeat waiting for its backoff, or a job
        added by a host whose clock is ahead) is checked on its job, and
        at most ``size`` such keys that are not due yet are looked at.
        """
        spread = 1 if partition is None else CLAIM_SPREAD
        return priorities.readyKeys(self, now, size, spread, partition)

    def _firstQueued(self):
        """When the first queued job may run (aware datetime), or None."""
        due = [self.jobs[keyId(key)].due
               or datetime.datetime.fromtimestamp(keySecond(key), UTC)
               for key in priorities.firstReady(self)
               + list(itertools.islice(inbox.keys(self), 1))]
        room = tasklimits.nextRoom(self)
        if room is not None:
            due.append(room)
        return min(due) if due else None

    def nextScheduled(self):
        """See ITaskServiceProcessing."""
        scheduled = timeset.firstKey(self._schedule)
        due = [when for when in (
            self._firstQueued(),
            None if scheduled is None else self.jobs[keyId(scheduled)].due)
            if when is not None]
        return min(due) if due else None

    def wakeOids(self):
        """The oids whose change means a job may be due (see wakeup.py)."""
        return [self._counts[status]._p_oid
                for status in (QUEUED, DELAYED, CRONJOB)] \
            + [self._inbox._p_oid]

    def compact(self):
        """See ITaskServiceProcessing."""
        sets = list(self._index.items()) + [('schedule', self._schedule)] \
            + [(f'priority {priority}', keys)
               for priority, keys in self._priorityQueues.items()] \
            + [('links', self._followers), ('inbox', self._inbox)]
        return [name for name, keys in sets
                if timeset.compact(keys, self._p_jar)]

    # -- counting and listing ------------------------------------------------

    @staticmethod
    def _checkStatus(status):
        if status is not None and status not in STATUSES:
            raise ValueError(f'Unknown status: {status!r}')

    def _filtered(self, status, task):
        """The ids of the jobs in ``status`` of ``task`` (None: any), lazily.

        By status: in the order the jobs entered it; otherwise by id.
        """
        self._checkStatus(status)
        if task is not None:
            inTask = self._inTask(task)
            if inTask is None:
                return iter(())
            if status is None:
                return self._idsAfter(None, task, None, False)
            return (keyId(key) for key in self._statusKeys(status)
                    if inTask(keyId(key)))
        if status is not None:
            return (keyId(key) for key in self._statusKeys(status))
        return iter(self.jobs.keys())

    def _taskSets(self, task):
        """The id sets of ``task``: the stored one (if any) and one of
        its pending jobs (inbox.py); [] for a task without jobs."""
        stored = self._byTask.get(task)
        pending = inbox.taskIds(self, task)
        return ([] if stored is None else [stored]) \
            + ([pending] if len(pending) > 1 else [])

    def _inTask(self, task):
        """A test of job ids for ``task``, None if it has no jobs."""
        sets = self._taskSets(task)
        if not sets:
            return None
        return lambda jobid: any(jobid in ids for ids in sets)

    def taskNames(self):
        """The names of the tasks that have jobs here, sorted."""
        return sorted(set(self._byTask.keys()) | inbox.tasks(self))

    def countJobs(self, status=None, task=None, createdAfter=None,
                  createdBefore=None):
        """See ITaskServiceRead."""
        self._checkStatus(status)
        if createdAfter is not None or createdBefore is not None:
            return sorting.countIds(self, status, task, createdAfter,
                                    createdBefore)
        pending = inbox.count(self)
        if task is None and status is None:
            # The counters, not len(self.jobs), which walks every bucket.
            return sum(count() for count in self._counts.values()) \
                + pending
        if task is None:
            return self._counts[status]() + (
                pending if status == QUEUED else 0)
        if status is None:
            count = self._taskCounts.get(task)
            return (0 if count is None else count()) + (
                pending and len(inbox.taskIds(self, task)) - 1)
        # Both: one membership test per job in the status, no job loaded.
        return sum(1 for jobid in self._filtered(status, task))

    def listJobs(self, status=None, task=None, start=0, size=None,
                 reverse=False, after=None, sort=None, createdAfter=None,
                 createdBefore=None, backwards=False):
        """See ITaskServiceRead."""
        self._checkStatus(status)
        sorting.checkSort(sort)
        checkCount(start, 'start')
        if size is not None:
            checkCount(size, 'size')
        if sort is None and (createdAfter is not None
                             or createdBefore is not None):
            sort = 'created'
        if backwards and sort not in sorting.NULLS_LAST:
            # Read from its end, the list is the other direction's.
            reverse, backwards = not reverse, False
        if sort is not None:
            ids = sorting.listIds(self, sort, status, task, start, size,
                                  reverse, after, createdAfter, createdBefore,
                                  backwards)
            return [self.jobs[jobid] for jobid in ids]
        ids = self._idsAfter(status, task, after, reverse)
        stop = None if size is None else start + size
        return [self.jobs[jobid]
                for jobid in itertools.islice(ids, start, stop)]

    def cursor(self, job, status=None, task=None, sort=None):
        """See ITaskServiceRead."""
        sorting.checkSort(sort)
        if status is None and sort is None:
            return job.id
        # The stored job, not the one given (which may be proxied).
        job = self._job(job.id)
        if sort is None:
            return job._statusKey
        return sorting.cursor(self, job, sort)

    def _idsAfter(self, status, task, after, reverse):
        """The ids of ``listJobs(status, task)`` after the cursor
        ``after`` (None: from the start) in the list's order, descending
        if ``reverse``, lazily: each step costs the same, whatever the
        size of the list."""
        self._checkStatus(status)
        inTask = None if task is None else self._inTask(task)
        if task is not None and inTask is None:
            return iter(())
        if status is not None:
            ids = (keyId(key) for key in self._statusKeys(
                status, after, reverse))
            if inTask is not None:
                # Not bounded: a membership test per job in the status.
                ids = (jobid for jobid in ids if inTask(jobid))
            return ids
        if task is not None:
            return heapq.merge(*(
                _following(ids, after, reverse, timeset._SENTINEL, None)
                for ids in self._taskSets(task)), reverse=reverse)
        return _following(self.jobs, after, reverse, None, None)


def _following(tree, after, reverse, low, high):
    """The keys of ``tree`` after ``after`` (before it, if ``reverse``;
    None: from the first or the last key), without the sentinels ``low``
    and ``high``."""
    if not reverse:
        keys = tree.keys() if after is None else tree.keys(
            after, excludemin=True)
        for key in keys:
            if key == low:
                continue
            if key == high:
                return
            yield key
        return
    try:
        key = tree.maxKey() if after is None else tree.maxKey(after - 1)
    except ValueError:
        return
    while key != low:
        if key != high:
            yield key
        try:
            key = tree.maxKey(key - 1)
        except ValueError:
            return


def _wakeAfterCommit(service):
    # The processor module imports the service: import it late.
    from lovely.remotetask import processor
    processor.wakeAfterCommit(service)
