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
fallback.  RelStorage pushes no invalidations (it polls the database at
each transaction start): on PostgreSQL, ``pgnotify`` does the same with
LISTEN/NOTIFY.

The adapter tells its instances while it holds its lock, and the listener
may be told before the processor's own connection is: a woken processor
calls ``settle``, which takes that lock once, before its next transaction
begins, so that its connection has the invalidation by then.
"""
import threading
import weakref


_listeners = weakref.WeakKeyDictionary()     # database -> Listener
_lock = threading.Lock()


class Listener:
    """Hears a database's invalidations; wakes the processors that watch
    one of the changed oids."""

    def __init__(self, adapter):
        self.adapter = adapter
        self.watching = {}             # oid -> set of processors

    # -- the MVCCAdapter's instance protocol (what it calls on each) -----

    def _invalidate(self, tid, oids):
        for oid in oids:
            for proc in tuple(self.watching.get(oid, ())):
                proc.wake()

    def _invalidateCache(self):
        for procs in tuple(self.watching.values()):
            for proc in tuple(procs):
                proc.wake()


def _adapter(db):
    """The database's MVCCAdapter, if it has one we can listen to."""
    adapter = getattr(db, '_mvcc_storage', None)
    if getattr(adapter, '_instances', None) is None \
            or not hasattr(adapter, '_lock'):
        return None
    return adapter


def watch(db, proc, oids):
    """Wake ``proc`` when another connection commits a change to ``oids``.

    Returns False (and polling it is) when the storage does not push
    invalidations to this process.
    """
    adapter = _adapter(db)
    if adapter is None:
        from lovely.remotetask import pgnotify
        return pgnotify.watch(db, proc)
    with _lock:
        listener = _listeners.get(db)
        if listener is None:
            listener = _listeners[db] = Listener(adapter)
            with adapter._lock:
                adapter._instances.add(listener)
        for oid in oids:
            listener.watching.setdefault(oid, set()).add(proc)
    return True


def unwatch(db, proc):
    """Stop waking ``proc``; the last one leaves the adapter."""
    from lovely.remotetask import pgnotify
    pgnotify.unwatch(db, proc)
    with _lock:
        listener = _listeners.get(db)
        if listener is None:
            return
        for procs in listener.watching.values():
            procs.discard(proc)
        if any(listener.watching.values()):
            return
        del _listeners[db]
    instances = getattr(listener.adapter, '_instances', None)
    if instances is not None:
        with listener.adapter._lock:
            instances.discard(listener)


def settle(db):
    """Wait until the invalidations being delivered have reached every
    connection of ``db`` (see the module doc)."""
    adapter = _adapter(db)
    if adapter is not None:
        with adapter._lock:
            pass
