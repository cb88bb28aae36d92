"""Processors: claim a job, run it, complete it, back off.

Thread names: a processor's loop runs in the thread ``remotetasks.`` plus
the service's dotted path (the one thread of a service whose name starts
so); its helpers are ``leases:NAME`` (the lease keeper) and
``job-ID:NAME`` (a MultiProcessor's job threads).

A processor owns its database connections (never a web request's) and
runs each job in the transaction boundaries of DESIGN.md:

1. claim: a short transaction that marks the job ``processing`` and
   writes its lease; a conflict means "try the next claim";
2. run: the task's writes and the job's completion in one transaction;
   a conflict re-runs the task (bounded by the service's
   ``maxConflictRetries``, then it counts as a failed attempt);
3. fail: any other exception undoes the run and records the failure
   (message and traceback text) in a new transaction.

While a job runs, a lease keeper thread renews its lease in transactions
of its own that write only the lease object.  Every processor also takes
back the jobs of workers whose lease expired (``TaskService.recover``).

A processor thread registers itself with its service and writes a
heartbeat every few seconds (``workers.Heartbeat``, a thread of its own);
through the heartbeats the processors find dead workers and take their
jobs back within seconds.  A paused service (``TaskService.pause``) is
claimed from by no processor.  Storage faults (a ZEO disconnect, a lock
timeout, see storagefaults.py) during a run are retried with backoff
while the job's lease may still be held; they never count as failed
attempts.

The module keeps the processors of this process in a registry keyed by
(database, service oid), so that ``startProcessing`` twice starts one
thread and a committed ``add`` wakes the idle processor at once.
"""
import itertools
import logging
import math
import os
import random
import socket
import threading
import time
import traceback
import uuid

import transaction
from transaction.interfaces import TransientError
from zope.interface import implementer

from lovely.remotetask import dependencies
from lovely.remotetask import handoff
from lovely.remotetask import interfaces
from lovely.remotetask import pgnotify
from lovely.remotetask import storagefaults
from lovely.remotetask import wakeup
from lovely.remotetask import workers
from lovely.remotetask.retention import BATCH as RETENTION_BATCH
from lovely.remotetask.running import JobRunner
from lovely.remotetask.running import _closed
from lovely.remotetask.running import checkTransaction  # noqa: F401 (API)


log = logging.getLogger('lovely.remotetask')


def workerName(label):
    """A worker id unique to this process: host:pid:label."""
    return f'{socket.gethostname()}:{os.getpid()}:{label}'


@implementer(interfaces.IProcessor)
class BaseProcessor(handoff.HandOffs, JobRunner):
    """The claim / run / fail steps and the loop shared by processors."""

    #: Seconds to pause after an unexpected error, doubling up to
    #: ``maxBackoff``.
    minBackoff = 0.5
    maxBackoff = 60.0
    #: Claims that conflict are retried this often in one step.
    claimRetries = 5
    #: An idle processor compacts the service's indexes at most this often.
    compactInterval = 10.0
    #: Seconds between sweeps of the links of chains (see dependencies.py).
    chainInterval = 1.0
    #: How many processors claim from the service at once (sizes groups).
    claimers = 1
    #: Seconds between passes of retention (the service's, once read).
    _retentionInterval = 0.0
    #: After a storage fault the loop pauses at most this long.
    maxFaultBackoff = 2.0
    #: Jobs completed and failed since the processor started.
    done = failed = 0

    def __init__(self, db, serviceOid, name='remotetasks', waitTime=1.0,
                 partition=None, workerId=None, maxGroup=300,
                 groupTime=0.25, handOff=True):
        self.db = db
        self.maxGroup = maxGroup
        self.groupTime = groupTime
        self._jobTime = None    # seconds per job of the last groups
        self.oid = serviceOid
        self.name = name
        self.waitTime = waitTime
        self.partition = partition
        self.workerId = workerId or workerName(
            f'{name}:{uuid.uuid4().hex[:8]}')
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._running = set()   # job ids this processor runs right now
        self._runningLock = threading.Lock()
        self._initHandOffs(handOff)
        self._leaseTime = None
        self._lastDone = {}     # housekeeping name -> time.monotonic()
        self._claims = 0        # claims so far (see _claimPartition)
        self._chainStart = 0    # where the next sweep of chains starts
        self._keeper = None
        self._keeperWake = threading.Event()
        self._nextDue = None    # when the next scheduled job is due
        self._watching = None   # oids whose change wakes this processor
        self._heart = None      # the workers.Heartbeat while it runs
        # A restarted ZEO server hands out the oids a client prefetched
        # from the one before: drop them (see storagefaults.py).
        storagefaults.guardPrefetchedOids(db)

    # -- transactions ---------------------------------------------------------

    def _transact(self, func, retries, now=None, faultTime=0.0):
        """Call ``func(service, now)`` in a fresh transaction and commit.

        Conflicts are retried ``retries`` times; the last one propagates.
        Storage faults are retried with backoff for ``faultTime`` seconds.
        """
        tm = transaction.TransactionManager()
        conn = self.db.open(transaction_manager=tm)
        backoff = storagefaults.Backoff(self.db, faultTime)
        try:
            for attempt in itertools.count():
                try:
                    tm.begin()
                    result = func(conn.get(self.oid), now)
                    tm.commit()
                    return result
                except Exception as error:
                    tm.abort()
                    if faultTime and storagefaults.isStorageFault(error) \
                            and not _closed(self.db):
                        if backoff.wait(error):   # (repairs first)
                            continue
                    else:
                        # Whoever handles it: the caches are whole again.
                        storagefaults.repair(self.db, error)
                    if not isinstance(error, TransientError) \
                            or attempt >= retries:
                        raise
        finally:
            tm.abort()
            conn.close()

    def claim(self, now=None):
        """Claim the next due job (committed); return its id or None."""
        jobids = self.claimGroup(now, 1)
        return jobids[0] if jobids else None

    def claimGroup(self, now=None, limit=None):
        """Claim a group of due jobs in one commit; return their ids.

        The group is one job when the queue is short and grows with it, up
        to ``limit`` (by default ``groupLimit()``).
        """
        self._nowAndThen('recover', (self._leaseTime or 60.0) / 2,
                         lambda service, now: service.recover(now), 2, now)
        # The rest of the housekeeping waits for a claim that finds
        # nothing, so that a job that woke this processor starts without
        # waiting for it; a busy processor does it when twice overdue.
        self._housekeeping(now, 2)
        limit = self.groupLimit() if limit is None else limit

        def claim(service, now):
            self._leaseTime = service.leaseTime
            if self._watching is None:
                self._watching = service.wakeOids()
            if service.isPaused():
                self._nextDue = None
                return []
            size = service.groupSize(limit, self.claimers)
            jobs = service.claimGroup(self.workerId, size, now,
                                      self._claimPartition())
            if not jobs:
                self._nextDue = service.nextScheduled()
            return [job.id for job in jobs]
        try:
            jobids = self._followingUp(claim, now)
        except TransientError:
            log.info('%s: claims keep conflicting; trying again later',
                     self.workerId)
            return []
        if self._watching and not self._stopping.is_set():
            # Commits of other processes wake this processor from now on;
            # one committed since this claim began is looked for once.
            if wakeup.watch(self.db, self, self._watching):
                self.wake()
            self._watching = ()
        if not jobids:
            self._housekeeping(now)
            # Idle: put index sets that a burst spread over several
            # buckets back into one (see TaskService.compact).
            self._nowAndThen('compact', self.compactInterval,
                             lambda service, now: service.compact(), 0)
        return jobids

    def groupLimit(self):
        """The largest group to claim: as many jobs as run in about
        ``groupTime`` seconds (by the time the last groups took per job),
        at most ``maxGroup``; one before the first group ran.

        A group's completions, and its tasks' writes, wait for its last
        job, and a group whose commit conflicts runs again job by job: a
        group of slow jobs is kept short, one of quick jobs (where the
        commit is the cost) long.
        """
        perJob = self._jobTime
        if perJob is None:
            return 1
        if perJob <= 0:
            return self.maxGroup
        return max(1, int(min(self.maxGroup, self.groupTime / perJob)))

    def _ran(self, jobs, seconds):
        """Note that a group of ``jobs`` took ``seconds`` (with its
        commit): the time per job that sizes the next groups."""
        perJob = seconds / max(jobs, 1)
        with self._runningLock:   # groups end in threads of their own
            last = self._jobTime
            self._jobTime = perJob if last is None else (last + perJob) / 2

    def _housekeeping(self, now, overdue=1):
        """Retention and the chains' sweep, each in its own transaction,
        each at most every ``overdue`` times its interval."""
        # Results with a lifetime (see retention.py), in small batches.
        self._nowAndThen('retain', self._retentionInterval, self._retain, 0,
                         now, overdue)
        # Links of chains that no ending transaction settled (a process
        # that died between the end and its follow-up, see dependencies.py).
        self._nowAndThen('chains', self.chainInterval, self._sweepChains, 0,
                         now, overdue)

    def _followingUp(self, claim, now):
        """``_transact(claim)``, which first follows up on the chains of
        the jobs this process ended (see dependencies.py): what it could
        not finish, or all if it failed, is put back for the next."""
        recent = dependencies.takeRecent(self.db, self.oid)
        again = []

        def claimAfterFollowUp(service, now):
            nonlocal again
            if recent:
                again = service.followUpChains(recent)[1]
            return claim(service, now)
        try:
            return self._transact(claimAfterFollowUp, self.claimRetries, now)
        except BaseException:
            again = [(jobid, decided, tries + 1)
                     for jobid, decided, tries in recent]
            raise
        finally:
            if again:
                dependencies.putBack(self.db, self.oid, again)

    def _retain(self, service, now):
        self._retentionInterval = service.retentionInterval
        if service.applyRetention(now) >= RETENTION_BATCH:
            # More to do: due again now (at the next idle claim; a busy
            # processor's in one interval, as when it is twice overdue).
            self._lastDone['retain'] = \
                time.monotonic() - self._retentionInterval

    def _sweepChains(self, service, now):
        start, settled = service.sweepChains(self._chainStart)

        def committed(ok):
            # The next sweep goes on from here only if this one counted.
            if ok:
                self._chainStart = start
                if settled:
                    log.info('%s: settled %d jobs of chains whose parents '
                             'ended', self.workerId, settled)
        service._transactionManager().get().addAfterCommitHook(committed)

    def _nowAndThen(self, name, interval, func, retries, now=None,
                    overdue=1):
        """``_transact(func)``, at most every ``interval`` seconds (when
        ``overdue`` times that has passed).

        A conflict means another processor is doing the same: skipped
        until next time.
        """
        clock = time.monotonic()
        if clock - self._lastDone.get(name, -math.inf) < interval * overdue:
            return
        self._lastDone[name] = clock
        try:
            self._transact(func, retries, now)
        except TransientError:
            pass

    def _claimPartition(self):
        """The partition of the next claim: the processor's, turned by
        one at each claim, so that a claimer starts at the head of the
        queue every fourth claim (a fixed one that never did could leave
        the oldest job, or one of a higher priority, behind for good).
        """
        if self.partition is None:
            return None
        self._claims += 1
        return self.partition + self._claims

    # -- the loop -------------------------------------------------------------

    def step(self, now=None):
        """See IProcessor."""
        jobids = self._takeHanded() or self.claimGroup(now)
        if not jobids:
            return False
        self.runGroup(jobids, now)
        return True

    def __call__(self):
        """See IProcessor."""
        try:
            # Registration and heartbeats (see workers.py); the heartbeat
            # thread ends, deregistering, once this processor stopped and
            # its jobs ended.
            self._heart = workers.Heartbeat(self)
            self._heart.start()
            self._loop()
            self._endHandOffs()
        except BaseException:
            log.exception('%s: the processor ended unexpectedly',
                          self.workerId)
        finally:
            # Jobs handed over after an unexpected end: to their leases.
            self._endHandOffs(run=False)
            self.stop()
            wakeup.unwatch(self.db, self)
            _forget(self)

    def _loop(self):
        backoff = self.minBackoff
        while not self._stopping.is_set():
            try:
                worked = self.step()
                backoff = self.minBackoff
            except Exception as error:
                if self._stopping.is_set() or _closed(self.db):
                    break
                if storagefaults.isStorageFault(error):
                    # The storage is away (say a ZEO server restarting):
                    # look again soon, without a traceback per try.
                    pause = min(backoff, self.maxFaultBackoff) \
                        * random.uniform(0.5, 1.0)
                    log.warning('%s: storage fault (%s: %s); pausing %.2g s',
                                self.workerId, error.__class__.__name__,
                                error, pause)
                else:
                    pause = backoff
                    log.exception('%s: processing failed; pausing %g s',
                                  self.workerId, backoff)
                self._stopping.wait(pause)
                backoff = min(backoff * 2, self.maxBackoff)
                continue
            if not worked:
                self._idle()

    def _idle(self):
        timeout = self.waitTime
        if self._nextDue is not None:
            untilDue = self._nextDue.timestamp() - time.time()
            timeout = min(timeout, max(untilDue, 0.001))
        # Adds of this process may hand a waiting processor their job
        # (see handoff.py).
        self._waiting = True
        try:
            woken = self._wakeup.wait(timeout)
        finally:
            self._stopWaiting()
        self._wakeup.clear()
        if woken:
            # Woken, perhaps by another process's commit: let its
            # invalidation reach this processor's connection first.
            wakeup.settle(self.db)

    def wake(self):
        """See IProcessor."""
        # A hand-off under way wakes the processor as it ends (after the
        # commit that woke it here, say): not twice; but one under way
        # for longer than handoff.WAIT may never end (see handoff.py).
        if not self._reserving(handoff.WAIT):
            self._wakeup.set()

    def stop(self):
        """See IProcessor."""
        self._stopping.set()
        wakeup.unwatch(self.db, self)
        self._wakeup.set()
        self._keeperWake.set()
        if self._heart is not None:
            self._heart.wake.set()
        keeper = self._keeper
        if keeper is not None and keeper is not threading.current_thread() \
                and not self._running:
            keeper.join(5.0)

    # -- 0.5.2 names ----------------------------------------------------------

    @property
    def running(self):
        """See IProcessor: True until ``stop`` is called."""
        return not self._stopping.is_set()

    def hasJobsWaiting(self, now=None):
        """Is a job due now?  (Its own transaction.)"""
        return self._transact(
            lambda service, now: service.hasJobsWaiting(now), 0, now)

    def claimNextJob(self, now=None):
        """0.5.2's name of ``claim``."""
        from lovely.remotetask.compat import deprecated
        deprecated('IProcessor.claimNextJob()', 'claim()')
        return self.claim(now)

    def processNext(self, jobid=None, now=None):
        """0.5.2's name of ``claim`` and ``run`` of one job (no
        ``jobid``), and of ``run(jobid)`` (a job this processor claimed)."""
        from lovely.remotetask.compat import deprecated
        if jobid is None:
            # One job, as 0.5.2 ran (``step`` may run a group).
            deprecated('IProcessor.processNext()', 'step()')
            jobid = self.claim(now)
            if jobid is None:
                return False
        else:
            deprecated('IProcessor.processNext(jobid)', 'run(jobid)')
        self.run(jobid, now)
        return True


class SimpleProcessor(BaseProcessor):
    """Runs one job at a time, oldest first."""


class MultiProcessor(BaseProcessor):
    """Runs up to ``maxThreads`` jobs at once, each in a thread of its own.

    The loop claims jobs while it has free threads; each claimed job runs
    in a daemon thread with its own connection.
    """

    def __init__(self, db, serviceOid, name='remotetasks', waitTime=1.0,
                 maxThreads=5, **kw):
        super().__init__(db, serviceOid, name, waitTime, **kw)
        self.maxThreads = self.claimers = maxThreads
        self._slots = threading.BoundedSemaphore(maxThreads)
        self._threads = set()

    def step(self, now=None):
        """Claim a group of jobs and run it in a thread (waits for a free
        one)."""
        if not self._slots.acquire(timeout=self.waitTime):
            return True  # all threads busy: not idle
        try:
            jobids = self._takeHanded() or self.claimGroup(now)
        except BaseException:
            self._slots.release()
            raise
        if not jobids:
            self._slots.release()
            return False
        thread = threading.Thread(
            target=self._runInThread, args=(jobids, now),
            name=f'job-{jobids[0]}:{self.name}', daemon=True)
        self._threads.add(thread)
        try:
            thread.start()
        except BaseException as error:
            # No thread for the claimed jobs: give them back at once rather
            # than leaving them to their leases.
            self._threads.discard(thread)
            self._slots.release()
            self._untrack(jobids)   # (handed jobs are tracked already)
            self._forgetHanded(jobids)
            text = traceback.format_exc()
            for jobid in jobids:
                self._fail(jobid, error, text, now)
            raise
        return True

    def _runInThread(self, jobids, now):
        try:
            self.runGroup(jobids, now)
        except Exception:
            log.exception('%s: jobs %s: recording their end failed; their '
                          'leases will expire and they will be run again',
                          self.workerId, jobids)
        finally:
            self._threads.discard(threading.current_thread())
            self._slots.release()
            self.wake()

    @property
    def threads(self):
        """The threads running jobs now, a copy (0.5.2's name)."""
        return list(self._threads)

    def join(self, timeout=None):
        """Wait for the running jobs' threads."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in list(self._threads - {threading.current_thread()}):
            thread.join(None if deadline is None
                        else max(deadline - time.monotonic(), 0))


# -- the processors of this process -------------------------------------------

_registry = {}            # (db, oid) -> (processor, thread)
_registryLock = threading.Lock()


def start(db, oid, name, factory=SimpleProcessor, arguments=None):
    """Start a processor thread for a service; False if one runs already."""
    with _registryLock:
        entry = _registry.get((db, oid))
        if entry is not None and entry[1].is_alive():
            return False
        proc = factory(db, oid, name=name, **(arguments or {}))
        thread = threading.Thread(target=proc, name=name, daemon=True)
        _registry[(db, oid)] = (proc, thread)
        thread.start()
    log.info('Started processing %s (%s)', name, proc.workerId)
    return True


def stop(db, oid, timeout=10.0):
    """Stop the processor of a service and wait for it (bounded).

    A processor still finishing a job after ``timeout`` stays registered
    (``isRunning`` is true, a new start is refused) until its thread ends.
    """
    entry = _registry.get((db, oid))
    if entry is None:
        return False
    proc, thread = entry
    proc.stop()
    if thread is not threading.current_thread():
        thread.join(timeout)
        if hasattr(proc, 'join'):
            proc.join(timeout)
    if thread.is_alive():
        log.warning('Processor %s is still finishing a job', proc.name)
    else:
        _forget(proc)
        heart = proc._heart
        if heart is not None and heart.thread.is_alive() \
                and heart.thread is not threading.current_thread():
            # Let it deregister the worker (a clean stop) before, say,
            # the process closes the database.
            heart.wake.set()
            heart.thread.join(min(timeout, 5.0))
        log.info('Stopped processing %s', proc.name)
    return True


def _forget(proc):
    """Remove a processor from the registry (if it is still there)."""
    with _registryLock:
        key = (proc.db, proc.oid)
        entry = _registry.get(key)
        if entry is not None and entry[0] is proc:
            del _registry[key]


_stopProcessor = stop


def stopAll(timeout=10.0, db=None):
    """Stop every processor of this process (of ``db`` only, if given)."""
    with _registryLock:
        keys = [key for key in _registry if db is None or key[0] is db]
    for key in keys:
        stop(*key, timeout=timeout)
    return len(keys)


def serviceNames():
    """The names of the services processed in this process."""
    with _registryLock:
        return sorted(proc.name for proc, thread in _registry.values())


def processorStates(db=None):
    """``(name, alive)`` of this process's processors (of ``db`` only,
    if given): is each one's thread alive?  (For health checks.)"""
    with _registryLock:
        return sorted((proc.name, thread.is_alive())
                      for (each, oid), (proc, thread) in _registry.items()
                      if db is None or each is db)


def workerOfThread(name):
    """The worker id of the processor a thread of this process belongs
    to (see the module doc for the thread names), or None."""
    name = name.split(':', 1)[1] if name.startswith(('job-', 'leases:')) \
        else name
    with _registryLock:
        for proc, thread in _registry.values():
            if proc.name == name:
                return proc.workerId
    return None


def isRunning(db, oid):
    entry = _registry.get((db, oid))
    return entry is not None and entry[1].is_alive()


def idleProcessor(db, oid):
    """This process's processor of a service if it would take a new job
    an add hands it (see handoff.py), else None."""
    entry = _registry.get((db, oid))
    if entry is not None and entry[1].is_alive() \
            and entry[0].takesHandOff():
        return entry[0]
    return None


def wake(db, oid):
    entry = _registry.get((db, oid))
    if entry is not None:
        entry[0].wake()


def wakeAfterCommit(service):
    """Wake this process's processor of ``service`` when the transaction
    commits (no polling delay between a commit and the job's start)."""
    jar = service._p_jar
    if jar is None or service._p_oid is None:
        return
    txn = jar.transaction_manager.get()
    try:
        keys = txn.data(wakeAfterCommit)
    except KeyError:
        keys = set()
        txn.set_data(wakeAfterCommit, keys)
        txn.addAfterCommitHook(_wakeAfterCommit, args=(keys,))
    keys.add((jar.db(), service._p_oid))


def _wakeAfterCommit(committed, keys):
    if committed:
        for key in keys:
            wake(*key)
        # Other processes on RelStorage (ZEO tells them by itself).
        for db in {db for db, oid in keys}:
            pgnotify.notify(db)


#: Connections a processor may hold at once besides its job threads:
#: its claims, its lease keeper, its heartbeat, the wake-up watch.
CONNECTIONS_PER_PROCESSOR = 4


def fitPool(db, size):
    """Let the connection pool of ``db`` keep ``size`` connections.

    ZODB logs a warning for every connection opened beyond its pool
    size (``pool-size`` of ``<zodb>``, default 7): a worker with
    ``--threads 4`` on two services needs more.  A larger pool size
    configured stays.
    """
    if db.getPoolSize() < size:
        db.setPoolSize(size)


def runWorker(db, services='*@*', threads=1, stop=None, waitTime=0.5,
              rescan=30.0, timeout=30.0):
    """Process the task services named by ``services`` until ``stop``.

    This is the body of a ``remotetask worker`` process: ``services`` is
    an autostart specification, ``threads`` the number of jobs run at
    once per service, ``waitTime`` how often an idle processor looks for
    new jobs (other processes' commits cannot wake it), ``rescan`` how
    often services added meanwhile are picked up.  When ``stop`` (a
    threading.Event) is set, the running jobs get ``timeout`` seconds to
    finish; a job still running then is taken up by another worker once
    its lease expires.
    """
    from zope.app.publication.zopepublication import ZopePublication

    from lovely.remotetask.startup import findServices
    stopEvent = stop or threading.Event()
    started = {}
    first = True
    try:
        while not stopEvent.is_set():
            conn = db.open(
                transaction_manager=transaction.TransactionManager())
            try:
                root = conn.root().get(ZopePublication.root_name)
                # Services may appear later: say so once, then quietly.
                found = [] if root is None else findServices(
                    root, services, 'worker',
                    logging.WARNING if first else logging.DEBUG)
                first = False
                found = [(name, service._p_oid) for name, service in found]
            finally:
                conn.transaction_manager.abort()
                conn.close()
            # Before the processors open their connections.
            processors = len(set(started) | {oid for name, oid in found})
            fitPool(db, processors * (threads + CONNECTIONS_PER_PROCESSOR)
                    + 1)
            for name, oid in found:
                # The loop of a processor claims for all its threads: the
                # partition spreads the claims of concurrent processes.
                factory, args = (MultiProcessor, dict(maxThreads=threads)) \
                    if threads > 1 else (SimpleProcessor, {})
                args['partition'] = random.randrange(1024)
                args['waitTime'] = waitTime
                # A processor that died (see BaseProcessor.__call__) is
                # started again; a running one is left alone.
                if start(db, oid, f'remotetasks.{name}', factory, args):
                    log.info('worker %s: %s %s with %d thread(s)',
                             workerName('worker'),
                             'restarted' if oid in started else 'processing',
                             name, threads)
                started[oid] = name
            stopEvent.wait(rescan)
    finally:
        for oid in started:
            _stopProcessor(db, oid, timeout)


# -- 0.5.2 names -------------------------------------------------------------

def __getattr__(name):
    from lovely.remotetask import compat
    return compat.moduleAttribute(__name__, name)
