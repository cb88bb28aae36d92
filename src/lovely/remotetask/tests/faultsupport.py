"""Support for the multi-process fault tests (``test_faults.py``).

The tests start real processes -- a ZEO server, worker processes, an
enqueuer -- on 127.0.0.1 and kill them.  This module holds what both
sides need:

* the tasks the workers run (``record``, ``block``, ``tick``), which
  write their effects into the database in the job's own transaction
  and, for the at-least-once side of things, note every execution in a
  file outside the database;
* the database configuration the processes open (the same ZConfig
  ``<zodb>`` sections as a ``zope.conf``; see ``docs/scaleout.rst``);
* ``Processes``: start processes with ``sys.executable``, signal them by
  process id, always reap them.

The scripts the tests run are ``faultworker``, ``faultenqueue`` and
``zeoserver`` in this package (run with ``python -m``).
"""
import datetime
import json
import os
import signal
import subprocess
import sys
import threading
import time

import transaction
import zope.component
from BTrees.IIBTree import IIBTree
from BTrees.IIBTree import IITreeSet
from BTrees.IOBTree import IOBTree
from zope.interface import implementer

from lovely.remotetask import interfaces


RECORD = 'record'
BLOCK = 'block'
TICK = 'tick'

HERE = os.path.dirname(os.path.abspath(__file__))
#: The ``src`` directory, so that child processes import this checkout.
SRC = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))


# -- the tasks ------------------------------------------------------------

class SideEffects:
    """An append-only file outside the database: one line per execution.

    What the ZODB undoes (a conflict, a killed worker) is still written
    here: it shows how often a job's code ran, as opposed to how often it
    completed.  ``os.write`` on an ``O_APPEND`` descriptor is one system
    call, so a SIGKILL never leaves half a line.
    """

    def __init__(self, path):
        self.path = path
        self.fd = None if path is None else os.open(
            path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def note(self, jobid):
        if self.fd is not None:
            os.write(self.fd, b'%d\n' % jobid)


def readSideEffects(directory):
    """jobid -> how often a job's code ran, over all ``side-*`` files."""
    counts = {}
    for name in os.listdir(directory):
        if name.startswith('side-'):
            with open(os.path.join(directory, name), 'rb') as f:
                for line in f:
                    if line.endswith(b'\n'):
                        jobid = int(line)
                        counts[jobid] = counts.get(jobid, 0) + 1
    return counts


def _record(root, jobid):
    """The job's ZODB effect: its id in a set and a counter per id."""
    root['done'].add(jobid)
    counts = root['counts']
    counts[jobid] = counts.get(jobid, 0) + 1


@implementer(interfaces.ITask)
class Record:
    """Record the job in the database (in the job's own transaction).

    The input may ask the task to take some time (``sleep``) and to check
    that the data the enqueuer committed with the job is there
    (``payload``): a job never runs before its transaction committed.
    """

    inputSchema = outputSchema = None

    def __init__(self, side):
        self.side = side

    def __call__(self, service, jobid, input):
        input = input or {}
        self.side.note(jobid)
        root = service._p_jar.root()
        if input.get('payload') and root['payload'].get(jobid) != jobid:
            raise interfaces.TaskError(f'payload of job {jobid} missing')
        if input.get('sleep'):
            time.sleep(input['sleep'])
        _record(root, jobid)
        return jobid


@implementer(interfaces.ITask)
class Block:
    """Announce the run in a file, then wait for a release file.

    ``DIR/started-NAME-ATTEMPT`` (JSON: pid, worker, attempts, error) tells
    the test who runs the job; the task then waits (bounded) for
    ``DIR/release-NAME``.  It returns what it saw of its job, so the
    output tells which attempt completed it and why the earlier one
    failed.
    """

    inputSchema = outputSchema = None
    timeout = 120.0

    def __init__(self, side, directory):
        self.side = side
        self.directory = directory

    def __call__(self, service, jobid, input):
        self.side.note(jobid)
        job = service.jobs[jobid]
        seen = dict(pid=os.getpid(), worker=job.worker,
                    attempts=job.attempts, error=job.error)
        name = input['name']
        started = os.path.join(self.directory,
                               f'started-{name}-{job.attempts}')
        with open(started + '.tmp', 'w') as f:
            json.dump(seen, f)
        os.rename(started + '.tmp', started)
        release = os.path.join(self.directory, f'release-{name}')
        deadline = time.monotonic() + self.timeout
        while not os.path.exists(release):
            if time.monotonic() > deadline:
                raise RuntimeError(f'{release} did not appear')
            time.sleep(0.02)
        _record(service._p_jar.root(), jobid)
        return seen


@implementer(interfaces.ITask)
class Tick:
    """A cron task: count the runs per minute of the run's start time."""

    inputSchema = outputSchema = None

    def __init__(self, side):
        self.side = side

    def __call__(self, service, jobid, input):
        self.side.note(jobid)
        job = service.jobs[jobid]
        minute = int(job.started.timestamp() // 60)
        ticks = service._p_jar.root()['ticks']
        ticks[minute] = ticks.get(minute, 0) + 1
        return minute


def registerTasks(directory=None, label='test'):
    """Register the tasks globally; executions go to ``DIR/side-*``."""
    side = SideEffects(None if directory is None else os.path.join(
        directory, f'side-{label}-{os.getpid()}.log'))
    gsm = zope.component.getGlobalSiteManager()
    gsm.registerUtility(Record(side), interfaces.ITask, RECORD)
    gsm.registerUtility(Block(side, directory), interfaces.ITask, BLOCK)
    gsm.registerUtility(Tick(side), interfaces.ITask, TICK)


# -- the database ---------------------------------------------------------

ZEO_CONFIG = """\
%import ZEO
<zodb>
  <clientstorage>
    server {host}:{port}
    server-sync on
    wait-timeout 30
  </clientstorage>
</zodb>
"""

# ``cache-local-mb 0``: RelStorage 4.3's local cache, shared by the
# threads of a process, can hand a connection an older state of an object
# while it vacuums its change index (docs/scaleout.rst).  The payload
# check of the kill test found it once in many runs (a job ran and did not
# see the payload its own add committed); the queue's own objects are
# written, so checked at commit, and stayed exact.
RELSTORAGE_CONFIG = """\
%import relstorage
<zodb>
  <relstorage>
    keep-history false
    cache-local-mb 0
    <postgresql>
      dsn {dsn}
    </postgresql>
  </relstorage>
</zodb>
"""


def openDatabase(configfile):
    """The database of a file holding one ``<zodb>`` section."""
    import ZODB.config
    with open(configfile) as f:
        return ZODB.config.databaseFromFile(f)


def setUpDatabase(db, leaseTime=2.0, maxRetries=None):
    """A root folder with a task service ``tasks`` and the test's sets.

    Returns the service's oid.  The service sits in a root folder at
    ``root['Application']``, where ``runWorker`` looks for services (as
    ``remotetask worker --services @tasks`` does).
    """
    from zope.site.folder import rootFolder

    from lovely.remotetask.service import TaskService
    tm = transaction.TransactionManager()
    conn = db.open(transaction_manager=tm)
    try:
        root = conn.root()
        root['Application'] = app = rootFolder()
        app['tasks'] = service = TaskService()
        service.leaseTime = leaseTime
        if maxRetries is not None:
            service.maxRetries = maxRetries
        root['done'] = IITreeSet()
        root['counts'] = IIBTree()
        root['payload'] = IOBTree()
        root['ticks'] = IIBTree()
        tm.commit()
        return service._p_oid
    finally:
        tm.abort()
        conn.close()


def service(conn):
    return conn.root()['Application']['tasks']


# -- processes ------------------------------------------------------------

def childEnvironment():
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [SRC] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p])
    env['PYTHONUNBUFFERED'] = '1'
    return env


class Processes:
    """The processes a test started; each one ended by its process id.

    Output goes to files in ``directory`` (``NAME.out`` / ``NAME.err``),
    never to pipes that could fill up.  ``cleanUp`` kills (SIGKILL) and
    reaps whatever still runs: call it from ``tearDown``.
    """

    def __init__(self, directory):
        self.directory = directory
        self.running = {}   # pid -> (name, Popen)
        self.ended = []     # (name, Popen) of reaped processes
        self._serial = 0

    def start(self, name, module, *args):
        self._serial += 1
        name = f'{name}-{self._serial}'
        out = open(os.path.join(self.directory, name + '.out'), 'wb')
        err = open(os.path.join(self.directory, name + '.err'), 'wb')
        try:
            proc = subprocess.Popen(
                [sys.executable, '-m', module, *map(str, args)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                cwd=self.directory, env=childEnvironment())
        finally:
            out.close()
            err.close()
        proc.label = name
        self.running[proc.pid] = (name, proc)
        return proc

    def signal(self, proc, signum):
        """Send ``signum`` to one process (by its id) if it still runs."""
        if proc.poll() is None:
            os.kill(proc.pid, signum)

    def kill(self, proc, timeout=30.0):
        """SIGKILL one process and reap it."""
        self.signal(proc, signal.SIGKILL)
        return self.wait(proc, timeout)

    def wait(self, proc, timeout):
        """Wait (bounded) for one process to end; its exit code."""
        code = proc.wait(timeout)
        if self.running.pop(proc.pid, None) is not None:
            self.ended.append((proc.label, proc))
        return code

    def output(self, proc, which='err'):
        with open(os.path.join(self.directory,
                               f'{proc.label}.{which}')) as f:
            return f.read()

    def read(self, label, which='err'):
        path = os.path.join(self.directory, f'{label}.{which}')
        if not os.path.exists(path):
            return ''
        with open(path, errors='replace') as f:
            return f.read()

    def labels(self):
        return [name for name, _ in self.ended] + [
            name for name, _ in self.running.values()]

    def cleanUp(self):
        for pid, (name, proc) in list(self.running.items()):
            try:
                self.kill(proc, timeout=10.0)
            except Exception:  # never leave one behind for another
                pass


def exitWithParent(interval=0.5):
    """End this process as soon as the process that started it is gone.

    The tests end their processes by id in their clean-up; this covers a
    test runner that is killed itself: no worker or server is left behind.
    """
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os._exit(1)
    threading.Thread(target=watch, name='exit-with-parent',
                     daemon=True).start()


def waitFor(condition, timeout, interval=0.05, message='condition'):
    """Poll ``condition`` until it is true; AssertionError at the deadline.

    Returns the condition's (true) value.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out after {timeout} s waiting for '
                                 f'{message}')
        time.sleep(interval)


def waitForLine(path, prefix, timeout, proc=None):
    """The first line of a file starting with ``prefix`` (bounded wait)."""
    def find():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f'{proc.args} ended with {proc.returncode}')
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    if line.startswith(prefix):
                        return line[len(prefix):].strip()
        return None
    return waitFor(find, timeout, message=f'{prefix!r} in {path}')


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)
