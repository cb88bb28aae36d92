"""Push wake-up on RelStorage over PostgreSQL: LISTEN/NOTIFY.

RelStorage pushes no invalidations: each connection polls the database
when its transaction begins.  So a commit that queues or schedules a job
also sends ``NOTIFY lovely_remotetask`` (after the commit, on a
connection of its own: the job is visible by then), and every process
with processors watching that database LISTENs on a connection of its
own, in a thread that wakes them.  Any failure here (no psycopg2, the
server gone for a moment) only leaves the processors to their polling;
it is logged at DEBUG and tried again later.
"""
import logging
import select
import threading
import weakref


log = logging.getLogger('lovely.remotetask')

CHANNEL = 'lovely_remotetask'

_senders = weakref.WeakKeyDictionary()      # database -> psycopg2 connection
_listeners = weakref.WeakKeyDictionary()    # database -> Listener
_lock = threading.Lock()


def dsn(db):
    """The PostgreSQL DSN of a RelStorage database, or None."""
    adapter = getattr(getattr(db, 'storage', None), '_adapter', None)
    if type(adapter).__name__ != 'PostgreSQLAdapter':
        return None
    return getattr(adapter, '_dsn', None)


def _connect(dsn):
    import psycopg2
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    return conn


def notify(db):
    """Tell the listening processes that a job was committed."""
    where = dsn(db)
    if where is None:
        return
    with _lock:
        conn = _senders.pop(db, None)
    try:
        if conn is None or conn.closed:
            conn = _connect(where)
        with conn.cursor() as cursor:
            cursor.execute(f'NOTIFY {CHANNEL}')
    except Exception as error:
        log.debug('NOTIFY failed (%s); processors will poll', error)
        return
    with _lock:
        if db in _senders:
            conn.close()     # another thread kept one meanwhile
        else:
            _senders[db] = conn


class Listener:
    """A thread that LISTENs and wakes the processors of one database."""

    def __init__(self, dsn):
        self.dsn = dsn
        self.processors = weakref.WeakSet()
        self.ended = False       # set under _lock, when the thread ends
        self.thread = threading.Thread(
            target=self.run, name='remotetasks-listen', daemon=True)

    def _end(self):
        """End if nobody watches (decided under the lock ``watch`` takes,
        so that a processor that watches meanwhile gets a new thread)."""
        with _lock:
            self.ended = not self.processors
            return self.ended

    def run(self):
        conn = None
        while not self._end():
            try:
                if conn is None:
                    conn = _connect(self.dsn)
                    with conn.cursor() as cursor:
                        cursor.execute(f'LISTEN {CHANNEL}')
                    # What was committed before we listened: look once.
                    for proc in list(self.processors):
                        proc.wake()
                if select.select([conn], [], [], 5.0)[0]:
                    conn.poll()
                    if conn.notifies:
                        del conn.notifies[:]
                        for proc in list(self.processors):
                            proc.wake()
            except Exception as error:
                log.debug('LISTEN failed (%s); processors will poll',
                          error)
                if conn is not None:
                    conn.close()
                conn = None
                threading.Event().wait(5.0)
        if conn is not None:
            conn.close()


def watch(db, proc):
    """Wake ``proc`` on every NOTIFY of the database; False if the
    database is not RelStorage over PostgreSQL."""
    where = dsn(db)
    if where is None:
        return False
    with _lock:
        listener = _listeners.get(db)
        start = listener is None or listener.ended
        if start:
            listener = _listeners[db] = Listener(where)
        listener.processors.add(proc)
    if start:
        listener.thread.start()
    return True


def unwatch(db, proc):
    listener = _listeners.get(db)
    if listener is not None:
        listener.processors.discard(proc)
