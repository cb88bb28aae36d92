"""Push wake-up: idle processors hear of new jobs from the database.

A commit in this process wakes this process's idle processor through an
after-commit hook (``processor.wakeAfterCommit``).  A commit in another
process (another ZEO client, say) reaches this process as an invalidation:
ZEO's ``ClientStorage`` passes the oids every transaction changed to the
database's ``MVCCAdapter``, which passes them to each of its connections'
storage instances.  A ``Listener`` stands among those instances and wakes
the processors that watch one of the oids: those of the service's counters
of queued, delayed and cron jobs, which every add, queueing and scheduling
writes.  So a remote worker starts a new job about one network round trip
after its commit, instead of after its poll interval; polling stays as the
fallback (and is all there is for storages that do not push invalidations,
such as RelStorage, which polls the database at each transaction start).

The adapter tells its instances while it holds its lock, and the listener
may be told before the processor's own connection is: a dispatcher thread
takes the lock once more before it wakes anybody, so that every instance
has the invalidation when the processor's next transaction begins.
"""
import logging
import threading
import weakref


log = logging.getLogger('lovely.remotetask')

_listeners = weakref.WeakKeyDictionary()     # database -> Listener
_lock = threading.Lock()


class Listener:
    """Hears a database's invalidations; wakes the processors that watch
    one of the changed oids."""

    def __init__(self, adapter):
        self._adapter = adapter
        self._watch = {}             # oid -> set of processors
        self._pending = set()        # processors to wake
        self._event = threading.Event()
        self._thread = threading.Thread(
            target=self._dispatch, name='remotetasks-wakeup', daemon=True)
        self._thread.start()

    # -- the MVCCAdapter's instance protocol (what it calls on each) -----

    def _invalidate(self, tid, oids):
        woken = set()
        for oid in oids:
            woken.update(self._watch.get(oid, ()))
        if woken:
            self._pending.update(woken)
            self._event.set()

    def _invalidateCache(self):
        for procs in list(self._watch.values()):
            self._pending.update(procs)
        self._event.set()

    # -- watching ----------------------------------------------------------

    def watch(self, proc, oids):
        for oid in oids:
            self._watch.setdefault(oid, set()).add(proc)

    def unwatch(self, proc):
        for procs in self._watch.values():
            procs.discard(proc)

    def _dispatch(self):
        while True:
            if not self._event.wait(5.0):
                if self._ended():
                    return
                continue
            self._event.clear()
            # Wait until the adapter has told every instance (see the
            # module doc).
            with self._adapter._lock:
                pass
            pending, self._pending = self._pending, set()
            for proc in pending:
                proc.wake()

    def _ended(self):
        """Nobody watches, or the database closed: leave the adapter."""
        with _lock:
            if not getattr(self._adapter, 'closed', False) and any(
                    self._watch.values()):
                return False
            for db, listener in list(_listeners.items()):
                if listener is self:
                    del _listeners[db]
        instances = getattr(self._adapter, '_instances', None)
        if instances is not None:
            with self._adapter._lock:
                instances.discard(self)
        return True


def watch(db, proc, oids):
    """Wake ``proc`` when another process commits a change to ``oids``.

    Returns False (and polling it is) when the storage does not push
    invalidations to this process.
    """
    adapter = getattr(db, '_mvcc_storage', None)
    instances = getattr(adapter, '_instances', None)
    if instances is None or not hasattr(adapter, '_lock'):
        return False
    with _lock:
        listener = _listeners.get(db)
        if listener is None:
            listener = _listeners[db] = Listener(adapter)
            with adapter._lock:
                instances.add(listener)
    listener.watch(proc, oids)
    return True


def unwatch(db, proc):
    listener = _listeners.get(db)
    if listener is not None:
        listener.unwatch(proc)
