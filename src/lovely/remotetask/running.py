"""Running claimed jobs: alone, or a group in one commit; their leases.

``JobRunner`` is the part of a processor (processor.py) that runs the
jobs it claimed, in the transaction boundaries of DESIGN.md: the task's
writes and the job's completion in one commit; a group's tasks each in a
savepoint of its own, their bookkeeping in a before-commit hook of the
group's transaction; conflicts and storage faults run again (a group's
commit that conflicts: as a group once, then alone) and spend no
attempt; any other failure is recorded in a transaction of its
own.  While jobs run, a lease keeper thread renews their leases in short
transactions that write only the lease objects.  A job whose cancel was
requested while its task ran (cancelling.py) is not completed: the check
after the task, before the commit, rolls its writes back (the whole run,
or its task's savepoint in a group) and ``fail`` ends it cancelled.
"""
import logging
import random
import threading
import time
import traceback

import transaction
from transaction._transaction import Status as TxStatus
from transaction.interfaces import TransientError
from zope.component.hooks import setSite

from lovely.remotetask import cancelling
from lovely.remotetask import events
from lovely.remotetask import interfaces
from lovely.remotetask import storagefaults
from lovely.remotetask.interaction import runningAs
from lovely.remotetask.interfaces import TransactionEnded


log = logging.getLogger('lovely.remotetask')


def checkTransaction(manager, txn):
    """Raise ``TransactionEnded`` if ``txn`` is no longer current."""
    if manager.get() is not txn:
        raise TransactionEnded(
            'The task committed or aborted the transaction it runs in; the '
            "processor commits the task's writes with the job")


class JobRunner:
    """Runs claimed jobs and keeps their leases (see the module doc).

    A mixin of ``processor.BaseProcessor``, which provides the database,
    the worker id, the lease time, ``groupTime``, ``_transact``,
    ``_ran``, ``_handedJob`` and ``_forgetHanded`` (handoff.py: a
    handed job is loaded by its oid).
    """

    def run(self, jobid, now=None):
        """Run a claimed job: the task and the completion in one commit."""
        self.runGroup([jobid], now)

    def runGroup(self, jobids, now=None):
        """Run claimed jobs: their tasks and completions in one commit.

        Each task runs in a savepoint of its own: a task that fails is
        rolled back to it and its failure recorded with the others'
        completions; a task that conflicts runs again alone.  A group
        whose commit conflicts runs again, as a group; if it conflicts
        once more, its jobs run again alone.  A group whose tasks take
        longer than its time (``groupTime``, ``GROUP_OVERRUN`` times) is
        committed there, and its other jobs go on in a transaction of
        their own.  The time the group took sizes the next ones (``_ran``,
        see ``groupLimit``).
        """
        self._track(jobids)
        started = time.perf_counter()
        try:
            if len(jobids) == 1:
                self._run(jobids[0], now)
                return
            alone, pending = [], list(jobids)
            try:
                while len(pending) > 1:
                    part = pending
                    result = self._runTogether(part, now)
                    if isinstance(result, _Conflicted):
                        # Conflicts are transient: the group once more, as
                        # a group (alone, each job would cost a commit).
                        result = self._runTogether(part, now)
                    if isinstance(result, _Conflicted):
                        # The jobs it ran go alone; the rest go on.
                        alone.extend(part[:len(part) - len(result.rest)])
                        pending = result.rest
                        continue
                    more, pending = result
                    alone.extend(more)
                    # Ended: no more of the lease keeper's (or the
                    # heartbeat's) running jobs.
                    self._untrack(set(part) - set(more) - set(pending))
            except Exception as error:
                # A storage fault, or a transaction a task left unusable:
                # each job runs again alone (if it is still ours).
                storagefaults.repair(self.db, error)
                level = logging.INFO if storagefaults.isStorageFault(error) \
                    else logging.WARNING
                log.log(level, '%s: a group of %d jobs failed (%s: %s); '
                        'running them one by one', self.workerId,
                        len(pending), error.__class__.__name__, error)
            alone.extend(pending)
            for jobid in alone:
                self._run(jobid, now)
        finally:
            self._ran(len(jobids), time.perf_counter() - started)
            self._untrack(jobids)
            self._forgetHanded(jobids)

    def _track(self, jobids):
        """Keep the leases of ``jobids`` while they run."""
        with self._runningLock:
            self._trackLocked(jobids)

    def _trackLocked(self, jobids):
        """``_track``, for a caller holding ``_runningLock``."""
        self._running.update(jobids)
        if self._keeper is None:
            self._keeper = threading.Thread(
                target=self._keepLeases, name=f'leases:{self.name}',
                daemon=True)
            self._keeper.start()

    def _untrack(self, jobids):
        with self._runningLock:
            self._running.difference_update(jobids)
            if not self._running and self._stopping.is_set():
                self._keeperWake.set()  # let the keeper end

    def _runTogether(self, jobids, now):
        """Run a group in one transaction; return the ids to run alone and
        those not run yet (the group's time ran out), or ``_Conflicted``
        (with those not run) if the group's commit conflicted.

        The tasks run in savepoints; the jobs' own bookkeeping (status,
        index, output) is written after the last task, outside them, so
        that a savepoint stores only what its task wrote.
        """
        tm = transaction.manager.manager
        conn = self.db.open(transaction_manager=tm)
        try:
            tm.begin()
            service = conn.get(self.oid)
            txn = tm.get()
            setSite(service.site())
            alone, ends, rest = [], [], []
            # The bookkeeping is written when the transaction commits, also
            # should a task commit it: then the jobs before that task are
            # completed with their writes, exactly once.
            txn.addBeforeCommitHook(self._end, (service, ends, now))
            deadline = time.perf_counter() + self.groupTime * GROUP_OVERRUN
            try:
                for index, jobid in enumerate(jobids):
                    if index and time.perf_counter() > deadline:
                        # Slower jobs than the group was sized for (the
                        # last groups' were quicker): the rest later.
                        rest = jobids[index:]
                        break
                    job = self._handedJob(conn, jobid) \
                        or service.jobs.get(jobid)
                    if not self._holds(job):
                        self._leave(jobid, job)
                        continue
                    if cancelling.isRequested(job):
                        # Requested before this run began (say while an
                        # earlier run of the group conflicted): not run.
                        ends.append((job, (None, interfaces.JobCancelled(
                            jobid), None)))
                        continue
                    end = self._runSaved(service, job, tm, txn)
                    if end is None:
                        alone.append(jobid)
                    else:
                        ends.append((job, end))
            except _GroupBroken as broken:
                # The task ended the transaction: what it committed stays
                # (the jobs before it completed); its job fails, the
                # others run alone (those no longer ours are left).
                committed = txn.status == TxStatus.COMMITTED
                tm.abort()
                storagefaults.repair(self.db, broken.error)
                self._fail(jobids[index], broken.error, broken.text, now)
                before = alone if committed else jobids[:index]
                return list(before) + list(jobids[index + 1:]), []
            finally:
                setSite(None)
            try:
                tm.commit()
            except TransientError as error:
                tm.abort()
                if storagefaults.isStorageFault(error):
                    raise   # one by one, each with its backoff
                events.notify(events.ConflictRetried(service))
                log.info('%s: a group of %d jobs conflicted (%s: %s); '
                         'running it again', self.workerId,
                         len(jobids) - len(rest), error.__class__.__name__,
                         error)
                return _Conflicted(rest)
            return alone, rest
        finally:
            tm.abort()
            conn.close()

    def _end(self, service, ends, now):
        """Write the ends of a group's runs (before its commit)."""
        failed = sum(error is not None for job, (o, error, t) in ends)
        service._transactionManager().get().addAfterCommitHook(
            self._count, (len(ends) - failed, failed))
        for job, (output, error, text) in ends:
            if error is None:
                service.complete(job, output, now)
            else:
                service.fail(job, error, text, now)
        del ends[:]

    def _runSaved(self, service, job, tm, txn):
        """Run one task of a group in a savepoint.

        Returns ``(output, error, traceback)``, or None if the task
        conflicted (it is rolled back, to run again alone).
        """
        savepoint = tm.savepoint(optimistic=True)
        hooks = _hookMarks(txn)
        try:
            with runningAs(service, job):
                output = service.runTask(job)
            checkTransaction(tm, txn)
            # A cancel requested while the task ran: JobCancelled, rolled
            # back below like a failure; ``_end`` ends it cancelled.
            cancelling.checkRun(job)
            return output, None, None
        except BaseException as error:
            # BaseException too: a task calling sys.exit() must not end
            # the processor, nor leave its job processing.
            text = traceback.format_exc()
            if storagefaults.isDuplicateOid(error) and tm.get() is txn:
                # The abort may cost the connection an object of the
                # group's (see storagefaults.py): the group is not
                # committed, its jobs run again alone (``runGroup``
                # repairs the caches first).
                raise
            if isinstance(error, TransactionEnded) or not _usable(tm, txn):
                raise _GroupBroken(error, text)
            try:
                savepoint.rollback()
            except Exception:
                # A data manager the task joined cannot roll back.
                raise _GroupBroken(error, text)
            # The task's commit hooks go with its writes.
            _dropHooks(txn, hooks)
            if isinstance(error, TransientError) \
                    or storagefaults.isStorageFault(error):
                return None   # not the task's failure: run it alone
            return None, error, text

    def _count(self, committed, done, failed=0):
        """Count jobs done and failed (an after-commit hook)."""
        if committed:
            with self._runningLock:
                self.done += done
                self.failed += failed

    def _leave(self, jobid, job):
        log.warning('%s: job %s is no longer ours (%s); leaving it',
                    self.workerId, jobid,
                    'removed' if job is None else job.status)

    def _run(self, jobid, now):
        # The thread's own transaction manager, not a private one: a task
        # that uses transaction.get() (savepoints, commit hooks) must get
        # the transaction that commits its writes with the job.  Its
        # ``manager`` is the thread's real TransactionManager, which other
        # threads can reach too (DB.close() aborts through it).
        tm = transaction.manager.manager
        conn = self.db.open(transaction_manager=tm)
        faults = storagefaults.Backoff(self.db, self._leaseTime or 60.0)
        try:
            conflicts = 0
            while True:
                try:
                    # With ``server-sync`` a begin is a server round trip:
                    # a storage fault here is retried like one in the run.
                    tm.begin()
                    service = conn.get(self.oid)
                    job = self._handedJob(conn, jobid) \
                        or service.jobs.get(jobid)
                    held = self._holds(job)
                    # Requested while an earlier run of this job conflicted
                    # (see cancelling.py): end it without running it again.
                    cancelled = held and cancelling.isRequested(job)
                except Exception as error:
                    tm.abort()
                    if self._retryFault(jobid, error, faults):
                        continue
                    raise
                if not held:
                    self._leave(jobid, job)
                    return
                if cancelled:
                    tm.abort()
                    self._fail(jobid, interfaces.JobCancelled(jobid), None,
                               now)
                    return
                faults.held()
                site = service.site()
                setSite(site)
                txn = tm.get()
                try:
                    with runningAs(service, job):
                        service.runJob(job, now)
                    checkTransaction(tm, txn)
                    tm.commit()
                    self._count(True, 1)
                    return
                except BaseException as error:
                    # BaseException too: a task calling sys.exit() must not
                    # end the processor, nor leave its job processing.
                    text = traceback.format_exc()
                    tm.abort()
                    if storagefaults.isStorageFault(error):
                        # Not the task's fault: no attempt is spent.
                        if self._retryFault(jobid, error, faults):
                            continue
                        return
                    if not isinstance(error, TransientError):
                        self._fail(jobid, error, text, now)
                        return
                    conflicts += 1
                    if conflicts <= service.maxConflictRetries:
                        events.notify(events.ConflictRetried(service))
                        log.info('Job %s: conflict (%s), running it again',
                                 jobid, error.__class__.__name__)
                        time.sleep(conflictPause(conflicts))
                        continue
                    self._fail(jobid, f'{error.__class__.__name__}: gave up '
                               f'after {conflicts} conflicting runs', None,
                               now)
                    return
                finally:
                    setSite(None)
        finally:
            tm.abort()
            conn.close()

    def _retryFault(self, jobid, error, faults):
        """After a storage fault in a run: True to try again (after a
        pause), False to leave the job to its lease."""
        if storagefaults.isStorageFault(error) and not _closed(self.db):
            if faults.wait(error):
                log.info('Job %s: storage fault (%s: %s); trying again',
                         jobid, error.__class__.__name__, error)
                return True
            log.warning('%s: job %s: the storage kept failing (%s) for '
                        'longer than its lease; leaving it to be taken back',
                        self.workerId, jobid, error.__class__.__name__)
        return False

    def _holds(self, job):
        return (job is not None
                and job.status == interfaces.PROCESSING
                and job.lease is not None
                and job.lease.worker == self.workerId
                and not job.lease.revoked)

    def _fail(self, jobid, error, text, now):
        def fail(service, now):
            job = service.jobs.get(jobid)
            if self._holds(job):
                service.fail(job, error, text, now)
                return True
            return False
        if self._transact(fail, 10, now, self._leaseTime or 60.0):
            self._count(True, 0, 1)

    # -- leases ---------------------------------------------------------------

    def _keepLeases(self):
        """Renew the leases of the running jobs, until the processor stops.

        One thread for the processor's lifetime.  A stopping processor
        still holds the jobs it waits for: their leases are kept until they
        end (or the database closes, the process giving them up to their
        leases).
        """
        while True:
            interval = (self._leaseTime or 60.0) / 3
            self._keeperWake.wait(interval)
            with self._runningLock:
                self._keeperWake.clear()
                jobids = list(self._running)
                if (self._stopping.is_set() and not jobids) \
                        or _closed(self.db):
                    self._keeper = None
                    return
                if not jobids:
                    continue
            try:
                self._transact(
                    lambda service, now: service.renewLeases(
                        jobids, self.workerId, now), 2)
            except Exception:
                log.exception('%s: renewing leases failed', self.workerId)


#: The hooks of a transaction, in the order they run (transaction 5's
#: private lists: the package offers no way to remove a hook).
_HOOKS = ('_before_commit', '_after_commit', '_before_abort', '_after_abort')


def _hookMarks(txn):
    """How many hooks of each kind ``txn`` has now."""
    return {name: len(getattr(txn, name)) for name in _HOOKS
            if isinstance(getattr(txn, name, None), list)}


def _dropHooks(txn, marks):
    """Remove the hooks added to ``txn`` since ``marks``."""
    for name, count in marks.items():
        del getattr(txn, name)[count:]


def _usable(tm, txn):
    """Is ``txn`` still the thread's active transaction, able to commit?"""
    return (tm.get() is txn and txn.status == TxStatus.ACTIVE
            and not txn.isDoomed())


#: A group's transaction starts no more tasks after this many times the
#: processor's ``groupTime``: its other jobs go on in the next.
GROUP_OVERRUN = 2
#: Seconds before the first re-run of a run whose commit conflicted, at
#: most; each further re-run waits up to twice as long, at most
#: ``CONFLICT_PAUSE_MAX``.
CONFLICT_PAUSE = 0.01
CONFLICT_PAUSE_MAX = 0.5


def conflictPause(conflicts):
    """Seconds to wait before re-running a run that conflicted
    ``conflicts`` times: at random up to a bound that doubles (as
    ``bulk.inBatches`` does), so that the transaction it conflicted with
    (a batch of "cancel all", a burst of adds) can end, and two runs that
    conflicted with each other do not meet again at once."""
    return random.uniform(0, min(CONFLICT_PAUSE_MAX,
                                 CONFLICT_PAUSE * 2 ** (conflicts - 1)))


class _Conflicted:
    """What ``_runTogether`` returns when the group's commit conflicted:
    ``rest``, the jobs it did not start (its time ran out)."""

    def __init__(self, rest):
        self.rest = rest


class _GroupBroken(Exception):
    """A task of a group ended the group's transaction."""

    def __init__(self, error, text):
        super().__init__(error)
        self.error = error
        self.text = text


def _closed(db):
    # ZODB.DB.close() replaces its own ``close`` with a no-op: the only
    # trace a closed database leaves.
    return 'close' in vars(db)
