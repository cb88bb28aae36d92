"""Hand-off: a new job goes straight to an idle processor of this process.

A processor that claims a new job puts two fsynced commits between the
add and the task's start: the add's and the claim's.  When this process's
processor of the service waits idle with nothing else to claim, the
adding transaction claims the job for it as it commits, and the
processor, handed the job once that commit is done, runs it without a
claim of its own: one commit fewer between the add and the start (about
a millisecond on a FileStorage).

``add`` puts its job into the inbox as always (the transaction sees it
queued, and may cancel it, say) and registers a before-commit hook.  At
the commit the hook looks again, and hands off only when all of these
hold, so that the job is the one the processor's next claim would take:
the job is the only new one (a transaction hands off one job at most,
and a batch of adds stays for all the workers to share) and is still
queued; no other job is queued or due; no task has limits; the service
is not paused; the job's task has jobs already (the first job of a task
creates its id set, which two processes' hand-offs would both insert);
and the processor takes hand-offs (``handOff``, a processor argument,
default True), waits idle, is not stopping and has no other hand-off
under way.  What the hook reads is the transaction's snapshot, as a
processor's claim reads its own: a pause committed meanwhile holds from
the next claim on.

Then the hook reserves the processor and claims the job for it, the
claim of ``claimGroup`` (``_start``: the job leaves the inbox for the
index of running jobs, under a lease of the processor's dated at the
commit), and an after-commit hook hands the job over: the processor
keeps its lease from then on and runs it at its next step.  A commit
that fails, or a transaction aborted after the hook, ends the
reservation with nothing handed over.  The end of a reservation wakes
the processor, whose wakes meanwhile (by the commit's own
invalidations, say) are left to it; one that wakes all the same (its
poll) waits for the hand-over before it claims, and a stopping one
before its thread ends,
so a handed job is run by the processor it was claimed for, or (the
process dying) taken back like any other once its lease expires or its
worker's heartbeats stop.  A reservation that nothing ended within
``RESERVATION`` seconds (a transaction dropped without an abort) lapses.

Concurrent transactions: the claim writes what a processor's claim of a
new job writes (the job, the inbox, the index of running jobs and its
counter, the task's id set and counter, ``_created``); concurrent adds
merge with it as they merge with such a claim.
"""
import itertools
import logging
import threading
import time

from lovely.remotetask import inbox
from lovely.remotetask import tasklimits
from lovely.remotetask.interfaces import QUEUED
from lovely.remotetask.jobtable import now_
from lovely.remotetask.running import _closed
from lovely.remotetask.timeset import keyId


log = logging.getLogger('lovely.remotetask')

#: Seconds after which a reservation that nothing ended lapses.
RESERVATION = 30.0
#: Seconds a woken processor waits for a hand-off under way.
WAIT = 1.0


def offer(service, job):
    """Offer the new queued ``job`` to this process's idle processor of
    ``service`` when the transaction commits (see the module doc)."""
    jar = service._p_jar
    if jar is None or service._p_oid is None:
        return
    # The processor module imports the service's: import it late.
    from lovely.remotetask import processor
    proc = processor.idleProcessor(jar.db(), service._p_oid)
    if proc is None:
        return
    txn = jar.transaction_manager.get()
    try:
        offered = txn.data(offer)
    except KeyError:
        offered = []
        txn.set_data(offer, offered)
        txn.addBeforeCommitHook(_handOff, args=(service, proc, offered))
    offered.append(job)


def _handOff(service, proc, offered):
    """The before-commit hook: claim the offered job for ``proc``."""
    now = now_()
    job = _onlyNew(service, offered)
    if job is None or not _alone(service, job, now):
        return
    token = proc.reserve()
    if token is None:
        return
    txn = service._p_jar.transaction_manager.get()
    try:
        service._start(job, proc.workerId, now)
    except BaseException:
        proc.handOver(token, None)
        raise
    ended = []

    def handOver(committed):
        if not ended:   # one of the two hooks, once
            ended.append(True)
            proc.handOver(token, job.id if committed else None)
    txn.addAfterCommitHook(handOver)
    txn.addAfterAbortHook(handOver, args=(False,))


def _onlyNew(service, offered):
    """The inbox's only job, if it is one of ``offered`` (still queued);
    else None."""
    keys = list(itertools.islice(inbox.keys(service), 2))
    if len(keys) != 1:
        return None
    jobid = keyId(keys[0])
    for job in offered:
        if job.id == jobid and job.status == QUEUED \
                and service.jobs.get(jobid) is job:
            return job
    return None


def _alone(service, job, now):
    """Would the processor's next claim take ``job``?"""
    return (not service._counts[QUEUED]() and job.task in service._byTask
            and tasklimits.unlimited(service) and not service.isPaused()
            and service._nextDue(now) is None)


class HandOffs:
    """The part of a processor that takes jobs claimed for it by other
    transactions (see the module doc).

    A mixin of ``processor.BaseProcessor``, which provides the running
    jobs' set and its lock, ``_trackLocked``, ``runGroup``, ``wake`` and
    the stop event.
    """

    def _initHandOffs(self, handOff):
        self.handOff = handOff
        #: Jobs handed over so far.
        self.handOffs = 0
        self._handed = []       # job ids handed over, not run yet
        self._reserved = {}     # token -> when it lapses (monotonic)
        self._tokens = itertools.count()
        self._waiting = False   # idle: waiting for work (see _idle)
        self._loopEnded = False
        self._handOffEnded = threading.Condition(self._runningLock)

    def takesHandOff(self):
        """Would this processor take a hand-off now?  (Unlocked: a hint
        for ``offer``; ``reserve`` decides.)"""
        return self.handOff and self._waiting and not self._reserved \
            and not self._handed and not self._stopping.is_set()

    def reserve(self):
        """Reserve this processor for a hand-off being committed: a token
        for ``handOver``, or None if it takes none now."""
        with self._runningLock:
            self._lapse()
            if not self.handOff or not self._waiting or self._reserved \
                    or self._handed or self._loopEnded \
                    or self._stopping.is_set():
                return None
            token = next(self._tokens)
            self._reserved[token] = time.monotonic() + RESERVATION
            return token

    def handOver(self, token, jobid):
        """End the reservation ``token``: its commit handed over ``jobid``
        (None: nothing, the commit failed), to run at the next step; its
        lease is kept from now on."""
        with self._runningLock:
            self._reserved.pop(token, None)
            taken = jobid is not None and not self._loopEnded
            if taken:
                self._handed.append(jobid)
                self.handOffs += 1
                self._trackLocked([jobid])
            self._handOffEnded.notify_all()
        # Also when nothing was handed over: wakes during the hand-off
        # were left to its end (see ``wake``).
        self._wakeup.set()
        if jobid is not None and not taken:
            log.warning('%s: job %s was handed over after the processor '
                        'ended; its lease will expire and it will be run '
                        'again', self.workerId, jobid)

    def _stopWaiting(self, timeout=WAIT):
        """The processor stops waiting idle; a hand-off under way is
        waited for (at most ``timeout`` seconds)."""
        with self._runningLock:
            self._waiting = False
            self._handOffEnded.wait_for(self._settled, timeout)

    def _settled(self):
        self._lapse()
        return not self._reserved

    def _lapse(self):
        clock = time.monotonic()
        for token, lapses in list(self._reserved.items()):
            if lapses < clock:
                del self._reserved[token]

    def _takeHanded(self):
        """The jobs handed over since the last look."""
        with self._runningLock:
            jobids, self._handed = self._handed, []
        return jobids

    def _endHandOffs(self, run=True, timeout=5.0):
        """Take no more jobs; run those handed over and not run yet, after
        waiting for a hand-off under way (unless not ``run``, or the
        database is closed: they are left to their leases then)."""
        if run:
            self._stopWaiting(timeout)
        with self._runningLock:
            self._loopEnded = True
            jobids, self._handed = self._handed, []
        if jobids and run and not _closed(self.db):
            self.runGroup(jobids)
        elif jobids:
            self._untrack(jobids)
