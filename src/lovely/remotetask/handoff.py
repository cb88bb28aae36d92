"""Hand-off: a new job goes straight to an idle processor of this process.

A processor that claims a new job puts two fsynced commits between the
add and the task's start: the add's and the claim's.  When this process's
processor of the service waits idle with nothing else to claim, ``add``
claims the job for it in the adding transaction instead, and the
processor, handed the job once that transaction committed, runs it
without a claim of its own: one commit fewer between the add and the
start (about a millisecond on a FileStorage).

The add claims as the processor would (``claimGroup`` with the
processor's worker id, one job), so nothing changes for crash safety:
the job is ``processing`` under the processor's lease from the add's
commit on, the processor keeps the lease from the moment it is handed
the job, and a process that dies before the job ends leaves a lease that
expires (or a worker whose heartbeats stop): another processor takes the
job back (see ``recover``).  A transaction that aborts takes its claim
with it, and nothing is handed.  A processor stopping runs the jobs it
was handed before its thread ends; one handed a job after that (an add
that committed just then) leaves the job to its lease.

The add hands off only when all of these hold, so that the job is the
one the processor's next claim would take anyway: the processor takes
hand-offs (``handOff``, a processor argument, default True), waits idle
and is not stopping; the service is not paused; no other job is queued
or new (the add's job is the inbox's only one); and no task has limits.
Otherwise the add wakes the processor after its commit, as before.  A
transaction hands off one job at most: the other jobs of a batch of adds
are for all the workers to share.

Concurrent transactions: the claim in the add writes what a claim
writes (the job, its lease, the index of running jobs and its counter,
the task's id set and counter, ``_created``); the inbox gets the job's
key and loses it again in the same transaction, so its state does not
change.  Concurrent adds merge with it as they merge with a processor's
claim.  Two adds that both find the processor idle both hand it their
job; it runs the two as a group.
"""
import logging

from lovely.remotetask import inbox
from lovely.remotetask import tasklimits
from lovely.remotetask.interfaces import QUEUED
from lovely.remotetask.jobtable import now_
from lovely.remotetask.running import _closed


log = logging.getLogger('lovely.remotetask')


def claimer(service, job):
    """How the new queued ``job`` goes to this process's idle processor
    of ``service``: a function that claims it for the processor in this
    transaction, to be handed over when it commits (``_insert`` calls it
    instead of putting the job into the inbox); None if it does not
    (see the module doc)."""
    jar = service._p_jar
    if jar is None or service._p_oid is None or job.status != QUEUED:
        return None
    # The processor module imports the service's: import it late.
    from lovely.remotetask import processor
    proc = processor.idleProcessor(jar.db(), service._p_oid)
    if proc is None:
        return None
    txn = jar.transaction_manager.get()
    now = now_()
    if _handedIn(txn) or not _alone(service, now):
        return None

    def claim(job):
        # Not in the inbox (nor in a ready queue): straight to running.
        job.status = None
        service._start(job, proc.workerId, now)
        txn.set_data(claimer, True)
        txn.addAfterCommitHook(_handOver, args=(proc, [job.id]))
    return claim


def _handedIn(txn):
    """Did ``txn`` hand off a job?  (One per transaction: a batch of adds
    is for all the workers to share.)"""
    try:
        return txn.data(claimer)
    except KeyError:
        return False


def _alone(service, now):
    """Would a new job be the processor's next claim?  (Nothing else is
    queued, new or due, no task has limits, the service is not paused.)"""
    return (not service._counts[QUEUED]() and not inbox.count(service)
            and tasklimits.unlimited(service) and not service.isPaused()
            and service._nextDue(now) is None)


def _handOver(committed, proc, jobids):
    if committed:
        proc.handOver(jobids)


class HandOffs:
    """The part of a processor that takes jobs claimed for it by other
    transactions (see the module doc).

    A mixin of ``processor.BaseProcessor``, which provides the running
    jobs' set and its lock, ``_track``, ``runGroup`` and the wake-up.
    """

    #: Take jobs claimed for this processor by adds of this process.
    handOff = True

    def _initHandOffs(self, handOff):
        self.handOff = handOff
        self._handed = []       # job ids handed over, not run yet
        self._waiting = False   # idle: waiting for work (see _idle)
        self._loopEnded = False

    def takesHandOff(self):
        """Would an add now hand this processor its job?"""
        return self.handOff and self._waiting \
            and not self._stopping.is_set()

    def handOver(self, jobids):
        """Take jobs claimed for this processor (committed); they run at
        its next step, and their leases are kept from now on."""
        with self._runningLock:
            taken = not self._loopEnded
            if taken:
                self._handed.extend(jobids)
                self._trackLocked(jobids)
        if taken:
            self.wake()
        else:
            log.warning('%s: jobs %s were handed over after the processor '
                        'stopped; their leases will expire and they will '
                        'be run again', self.workerId, jobids)

    def _takeHanded(self):
        """The jobs handed over since the last look."""
        with self._runningLock:
            jobids, self._handed = self._handed, []
        return jobids

    def _endHandOffs(self, run=True):
        """Take no more jobs; run those handed over and not run yet
        (unless not ``run``, or the database is closed: they are left to
        their leases then)."""
        with self._runningLock:
            self._loopEnded = True
            jobids, self._handed = self._handed, []
        if jobids and run and not _closed(self.db):
            self.runGroup(jobids)
        elif jobids:
            self._untrack(jobids)
