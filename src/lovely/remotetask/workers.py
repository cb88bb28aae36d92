"""The worker registry: who processes a service, whether it lives.

Every processor thread (the one of ``serve`` and those of ``remotetask
worker`` processes) registers itself with the service it processes,
writes a heartbeat every few seconds while it runs and deregisters when
it stops cleanly.  The other processors watch the heartbeats: a worker
whose heartbeat stops is dead, and its jobs are taken back at once
instead of when their leases expire.

Liveness is judged without comparing clocks across machines: a heartbeat
increments the worker's *sequence number*; every processor remembers, on
its own monotonic clock, when it last saw each worker's number change.  A
number that has not changed for ``workerTimeout`` seconds of the
observer's own time means a dead worker.  An observer that could not look
for a while itself (its storage was away) starts its observations anew,
so an outage that stops every heartbeat kills no one.  The wall-clock
time a heartbeat carries (``beat``) is shown to people, never acted on.

The structures (one ``WorkerRegistry`` per service, ``service._workers``)
and how they behave under concurrent transactions:

``WorkerRegistry`` (persistent)
    Holds the three objects below and is never written after it is
    created (with the service, or lazily by the first registration of a
    service stored before this module existed).

``records`` (OOBTree: worker id -> ``WorkerRecord``)
    The tree is written only to register, to deregister and to drop a
    dead worker's record (an hour after its death): rare, and concurrent
    writes of different keys merge.  Each ``WorkerRecord`` is a persistent
    object of its own, written by its worker alone (its heartbeats): a
    heartbeat writes no job, no index and no other worker's object, so it
    never conflicts with a job transaction nor with another heartbeat.

``verdicts`` (OOBTree: worker id -> when it was found dead)
    Written by the processor that finds a worker dead, in the transaction
    that takes the worker's jobs back (so two observers finding the same
    death conflict there, and one of them does nothing), and by a worker
    found dead while alive (a long stall), which takes its verdict back.

``control`` (``ClusterControl``, persistent)
    The pause flag of the whole cluster: written only by ``pause`` and
    ``resume``, read by every claim, so a claim never conflicts with it
    (reads do not conflict) and sees a pause at its next transaction.
"""
import datetime
import logging
import os
import socket
import threading
import time

import persistent
from BTrees.OOBTree import OOBTree

from lovely.remotetask.jobtable import now_


log = logging.getLogger('lovely.remotetask')

#: Dead workers' records are kept this long, then dropped.
KEEP_DEAD = datetime.timedelta(hours=1)

ALIVE = 'alive'
STOPPING = 'stopping'
DEAD = 'dead'
#: No verdict yet, but no heartbeat for longer than the timeout by the
#: reader's wall clock: shown, never acted on (clocks may differ).
LATE = 'late'


def version():
    try:
        from importlib.metadata import version
        return version('lovely.remotetask')
    except Exception:
        return 'unknown'


class ClusterControl(persistent.Persistent):
    """The cluster's pause flag (see the module doc)."""

    paused = False
    changed = None   # when it was last paused or resumed


class WorkerRecord(persistent.Persistent):
    """One worker, as its own heartbeats describe it (see the module doc).

    Written only by the worker it describes.
    """

    stopping = False
    running = ()
    done = failed = 0

    def __init__(self, id, host, pid, services, threads, started, version):
        self.id = id
        self.host = host
        self.pid = pid
        self.services = tuple(services)
        self.threads = threads
        self.started = started
        self.version = version
        self.seq = 0
        self.beat = started

    def __repr__(self):
        return f'<WorkerRecord {self.id!r} #{self.seq}>'


class WorkerRegistry(persistent.Persistent):
    """The registry of a service's workers (see the module doc)."""

    def __init__(self):
        self.records = OOBTree()
        self.verdicts = OOBTree()
        self.control = ClusterControl()


class WorkerSteps:
    """The registry's part of a task service: the workers, pause/resume."""

    #: Seconds without a heartbeat after which a worker is dead.
    workerTimeout = 15.0

    def __init__(self):
        super().__init__()
        self._workers = WorkerRegistry()

    @property
    def heartbeatInterval(self):
        """Seconds between a worker's heartbeats (a third of the timeout)."""
        return self.workerTimeout / 3

    def _registry(self, create=False):
        # getattr, not __dict__: reading __dict__ does not load a ghost.
        registry = getattr(self, '_workers', None)
        if registry is None and create:
            # A service stored before the registry existed.
            registry = self._workers = WorkerRegistry()
        return registry

    # -- cluster control ------------------------------------------------------

    def pause(self, now=None):
        """See ITaskServiceManage."""
        self._setPaused(True, now)

    def resume(self, now=None):
        """See ITaskServiceManage."""
        self._setPaused(False, now)

    def _setPaused(self, paused, now):
        control = self._registry(create=True).control
        if control.paused != paused:
            control.paused = paused
            control.changed = now_(now)
            log.info('Service %s %s for every worker', self.__name__,
                     'paused' if paused else 'resumed')

    def isPaused(self):
        """See ITaskServiceRead."""
        registry = self._registry()
        return registry is not None and registry.control.paused

    # -- the registry ---------------------------------------------------------

    def register(self, workerId, services=(), threads=1, now=None,
                 host=None, pid=None):
        """Register a worker (its heartbeats will follow); its record.

        ``host`` and ``pid`` are this process's unless given.
        """
        registry = self._registry(create=True)
        record = WorkerRecord(
            workerId, host or socket.gethostname(),
            os.getpid() if pid is None else pid, services, threads,
            now_(now), version())
        registry.records[workerId] = record
        if workerId in registry.verdicts:
            del registry.verdicts[workerId]
        return record

    def deregister(self, workerId):
        """Remove a worker that stops cleanly."""
        registry = self._registry()
        if registry is not None and workerId in registry.records:
            del registry.records[workerId]
            if workerId in registry.verdicts:
                del registry.verdicts[workerId]

    def heartbeat(self, workerId, running=(), done=0, failed=0,
                  stopping=False, services=None, now=None):
        """Write a worker's heartbeat; False if it is not registered.

        A worker that was found dead while alive (stalled for longer than
        the timeout) takes its verdict back; its jobs were taken back.
        """
        registry = self._registry()
        record = None if registry is None else registry.records.get(workerId)
        if record is None:
            return False
        record.seq += 1
        record.beat = now_(now)
        record.running = tuple(sorted(running))
        record.done, record.failed = done, failed
        record.stopping = stopping
        if services is not None and tuple(services) != record.services:
            record.services = tuple(services)
        if workerId in registry.verdicts:
            del registry.verdicts[workerId]
            log.warning('%s: was found dead (no heartbeat for %g s), its jobs '
                        'taken back; alive again', workerId,
                        self.workerTimeout)
        return True

    def workerRecords(self):
        """The registered workers' records, by id."""
        registry = self._registry()
        return [] if registry is None else list(registry.records.values())

    def workerStatus(self, record, now=None):
        """alive, stopping, dead or late (see the module constants)."""
        registry = self._registry()
        if registry is not None and record.id in registry.verdicts:
            return DEAD
        if record.stopping:
            return STOPPING
        age = (now_(now) - record.beat).total_seconds()
        return LATE if age > self.workerTimeout else ALIVE

    def listWorkers(self, now=None):
        """See ITaskServiceRead."""
        now = now_(now)
        result = []
        for record in self.workerRecords():
            result.append(dict(
                id=record.id, host=record.host, pid=record.pid,
                services=list(record.services), threads=record.threads,
                started=record.started, version=record.version,
                running=list(record.running), done=record.done,
                failed=record.failed, heartbeat=record.seq,
                lastHeartbeat=record.beat,
                age=max((now - record.beat).total_seconds(), 0.0),
                status=self.workerStatus(record, now)))
        return result

    def activeWorkers(self, now=None):
        """The ids of the workers alive (or stopping) now."""
        return [record.id for record in self.workerRecords()
                if self.workerStatus(record, now) in (ALIVE, STOPPING)]

    # -- dead workers ---------------------------------------------------------

    def findDead(self, observer, now=None):
        """Find dead workers, take their jobs back, drop old records.

        ``observer`` is a ``Observations`` of the calling processor (its
        memory of the heartbeat numbers it saw).  Returns the ids of the
        workers found dead now.
        """
        registry = self._registry()
        if registry is None:
            return []
        now = now_(now)
        dead = []
        for record in list(registry.records.values()):
            if record.id == observer.me:
                continue
            if record.id in registry.verdicts:
                if now - registry.verdicts[record.id] > KEEP_DEAD:
                    del registry.records[record.id]
                    del registry.verdicts[record.id]
                    observer.forget(record.id)
                continue
            if observer.silent(record.id, record.seq) > self.workerTimeout:
                registry.verdicts[record.id] = now
                dead.append(record.id)
                self._log(logging.WARNING, 'Worker %s (pid %s on %s) is dead: '
                          'no heartbeat for %g s', record.id, record.pid,
                          record.host, self.workerTimeout)
        if dead:
            self.recover(now, dead=dead)
        return dead


class Observations:
    """What one processor saw of the others' heartbeats, on its own clock.

    ``silent(id, seq)`` is how long (seconds of this observer's monotonic
    clock) worker ``id`` has shown the sequence number ``seq``.  A gap
    between two looks longer than ``gap`` (the observer could not look:
    its storage was away, its process stalled) starts every observation
    anew.
    """

    def __init__(self, clock, gap):
        self.clock = clock
        self.gap = gap
        self._seen = {}      # worker id -> (seq, clock when it changed)
        self._looked = None  # clock of the previous look
        self.me = None       # the observer's own worker id (not watched)

    def look(self):
        """Start a look at the heartbeats (call once per pass)."""
        now = self.clock()
        if self._looked is not None and now - self._looked > self.gap:
            self._seen = {key: (seq, now)
                          for key, (seq, since) in self._seen.items()}
        self._looked = now

    def silent(self, workerId, seq):
        now = self.clock()
        seen = self._seen.get(workerId)
        if seen is None or seen[0] != seq:
            self._seen[workerId] = (seq, now)
            return 0.0
        return now - seen[1]

    def forget(self, workerId):
        self._seen.pop(workerId, None)


class Heartbeat:
    """The thread that registers a processor and keeps it visibly alive.

    Named ``heartbeat:NAME``.  It registers the processor, then every
    ``workerTimeout / 6`` seconds looks at the other workers' heartbeats
    (``findDead``) and every ``workerTimeout / 3`` seconds writes its own,
    each in a short transaction of its own.  It ends, deregistering the
    processor, once the processor is stopping and runs no job any more
    (or the database closed).  Storage faults are logged and retried at
    the next tick: they never end it.
    """

    def __init__(self, processor):
        self.processor = processor
        self.wake = threading.Event()
        self.timeout = 15.0
        self.observations = Observations(time.monotonic, self.timeout / 2)
        self.observations.me = processor.workerId
        self.registered = False
        self._lastBeat = None
        self._failing = False
        self.thread = threading.Thread(
            target=self._run, name=f'heartbeat:{processor.name}',
            daemon=True)

    def start(self):
        self.thread.start()

    def _ended(self):
        proc = self.processor
        return _closed(proc.db) or (
            proc._stopping.is_set() and not proc._running)

    def _run(self):
        proc = self.processor
        try:
            while not self._ended():
                try:
                    self.tick()
                    self._failing = False
                except Exception as error:
                    if not self._failing:
                        log.warning('%s: heartbeat failed (%s: %s); trying '
                                    'again', proc.workerId,
                                    error.__class__.__name__, error)
                    self._failing = True
                self.wake.wait(self.timeout / 6)
                self.wake.clear()
        finally:
            if self.registered and not _closed(proc.db):
                try:
                    proc._transact(lambda service, now: service.deregister(
                        proc.workerId), 5)
                except Exception:
                    log.warning('%s: could not deregister; it will be '
                                'found dead', proc.workerId)

    def tick(self):
        """One look at the others and, when due, one heartbeat."""
        proc = self.processor
        clock = time.monotonic()
        if not self.registered:
            self.timeout = proc._transact(self._register, 5)
            self.observations.gap = self.timeout / 2
            self.registered = True
            self._lastBeat = clock
        self.observations.look()
        proc._transact(lambda service, now: service.findDead(
            self.observations, now), 2)
        if clock - self._lastBeat >= self.timeout / 3:
            proc._transact(self._beat, 5)
            self._lastBeat = clock

    def _register(self, service, now):
        proc = self.processor
        service.register(proc.workerId, _serviceNames(proc),
                         getattr(proc, 'maxThreads', 1), now)
        return service.workerTimeout

    def _beat(self, service, now):
        proc = self.processor
        with proc._runningLock:
            running = list(proc._running)
        if not service.heartbeat(
                proc.workerId, running, proc.done, proc.failed,
                proc._stopping.is_set(), _serviceNames(proc), now):
            # Dropped (dead for an hour while alive): register anew.
            self._register(service, now)
        self.timeout = service.workerTimeout
        self.observations.gap = self.timeout / 2


def _serviceNames(proc):
    from lovely.remotetask import processor
    return processor.serviceNames() or [proc.name]


def _closed(db):
    return 'close' in vars(db)
