"""Limits per task: concurrency caps, rate limits (and retention settings).

A task may limit its jobs across every worker of every process:

``maxConcurrent``
    At most this many jobs of the task run at once (say, for an API with
    a connection limit).
``rateLimit``
    ``(count, seconds)``: at most ``count`` jobs of the task start in any
    ``seconds`` long window.

Both are attributes of the task utility (``ITask``; None: no limit) and
can be overridden per service (``TaskService.setTaskLimits``, the
Limits tab of the ZMI).  The same settings carry the task's retention
(``keepCompleted``, ``keepFailed``, applied by retention.py).

They are enforced when a job is claimed, in the claiming transaction, so
they hold across processes and machines.  A job the limits hold back
stays ``queued``: it is moved from its ready queue into its task's gate
(``gate.held``), out of the way of the claims of other jobs, and taken
from there first once the gate has room again.  ``heldBack`` says why a
job waits (the job's page shows it).

Cron and delayed jobs start when they are due: the limits count and
hold back the jobs of ``add`` (and their repeats).  Jobs that were
running when a cap was set are not counted against it.

Structures, and how they behave under concurrent transactions
-------------------------------------------------------------

``_taskSettings`` (OOBTree: task name -> dict)
    The service's overrides, written by the ZMI's form (whole dicts
    replaced; two concurrent edits of one task conflict, as they should).

``_gates`` (OOBTree: task name -> ``TaskGate``)
    A gate for each task whose limits were ever met by a claim, made by
    that claim (two claims making the first gate of a task conflict; one
    claims again).  Never removed.

``TaskGate.claimed`` (an int of the gate: no conflict resolution)
    The jobs of the task claimed under its cap.  *Every* claim of a job of
    a capped task writes it, so two concurrent claims of the task both
    write the gate and one of them conflicts, is aborted and claims
    again, now seeing the other's claim.  That is what makes a cap hold:
    a ``BTrees.Length`` would merge two claims that both saw 0 of a cap
    of 1 and let both through.  The price: claims of one capped task
    serialize (claims of other tasks do not write its gate).

``TaskGate.released`` (BTrees.Length)
    The capped jobs that stopped running (completed, failed, taken back),
    written by the run's transaction.  A Length merges concurrent
    completions, and a completion never writes the gate itself, so it
    never conflicts with a claim; a claim that has not seen a completion
    yet counts one job too many running: it errs on the safe side.
    Running = ``claimed - released``.

``TaskGate.starts`` (a tuple of the gate)
    The start times of the last ``count`` jobs of a rate-limited task;
    written by every claim of the task (so, as ``claimed``, concurrent
    claims of the task conflict and a rate holds exactly).

``TaskGate.held`` (time set, keyed as the index of ``queued``)
    The task's jobs held back; part of the status index of ``queued``
    (see jobtable's ``_queuedSets``).  A claim moves a job here (writing
    the job and the two sets) at most once per time it is queued: held
    jobs cost the claims of other tasks nothing.
"""
import datetime
import itertools
import logging
import time

import persistent
from BTrees.Length import Length
from BTrees.OOBTree import OOBTree

from lovely.remotetask import timeset
from lovely.remotetask.interfaces import QUEUED
from lovely.remotetask.interfaces import checkCount
from lovely.remotetask.timeset import keyId
from lovely.remotetask.timeset import timeKeys


log = logging.getLogger('lovely.remotetask')

#: The settings of a task, and what they default to.
SETTINGS = ('maxConcurrent', 'rateLimit', 'keepCompleted', 'keepFailed')
#: A claim moves at most this many jobs into gates (besides its group).
HOLD_BATCH = 100
#: Seconds this process trusts what it read of the task utilities.
DEFAULTS_TTL = 1.0
#: The most starts a rate limit counts.
MAX_RATE_COUNT = 10000


class TaskGate(persistent.Persistent):
    """Where the claims of a limited task meet (see the module doc)."""

    def __init__(self):
        self.claimed = 0
        self.released = Length()
        self.starts = ()
        self.held = timeset.newTimeSet()

    def running(self):
        """How many jobs of the task run under its cap."""
        return max(0, self.claimed - self.released())

    def recentStarts(self, now, rate):
        """The starts within the rate's window before ``now`` (seconds)."""
        if rate is None:
            return ()
        count, seconds = rate
        return tuple(t for t in self.starts if t > now - seconds)

    def room(self, now, maxConcurrent, rate):
        """How many jobs of the task may start at ``now`` (seconds since
        the epoch); None: any number."""
        rooms = []
        if maxConcurrent is not None:
            rooms.append(maxConcurrent - self.running())
        if rate is not None:
            rooms.append(rate[0] - len(self.recentStarts(now, rate)))
        return max(0, min(rooms)) if rooms else None

    def take(self, now, count, maxConcurrent, rate):
        """Count ``count`` jobs started at ``now``."""
        if maxConcurrent is not None:
            self.claimed += count
        if rate is not None:
            self.starts = (self.recentStarts(now, rate)
                           + (now,) * count)[-rate[0]:]


# -- settings -----------------------------------------------------------------

def checkLimits(limits):
    """The limits as stored; ``ValueError`` for bad values.

    >>> checkLimits({'maxConcurrent': 2, 'rateLimit': [10, 60]})
    {'maxConcurrent': 2, 'rateLimit': (10, 60.0)}
    >>> checkLimits({'maxConcurrent': 0})
    Traceback (most recent call last):
    ...
    ValueError: maxConcurrent must be an int >= 1 or None, not 0
    """
    from lovely.remotetask import retention
    checked = {}
    for name, value in limits.items():
        if name not in SETTINGS:
            raise ValueError(f'Unknown limit: {name!r}')
        if value is None:
            pass
        elif name == 'maxConcurrent':
            if isinstance(value, bool) or not isinstance(value, int) \
                    or value < 1:
                raise ValueError(f'maxConcurrent must be an int >= 1 or '
                                 f'None, not {value!r}')
            checkCount(value, 'maxConcurrent', low=1)
        elif name == 'rateLimit':
            value = checkRate(value)
        else:
            value = retention.parseRetention(value, name)
        checked[name] = value
    return checked


def checkRate(value):
    """A rate limit as ``(count, seconds)``."""
    try:
        count, seconds = value
    except (TypeError, ValueError):
        raise ValueError(f'rateLimit must be (count, seconds), not '
                         f'{value!r}')
    if isinstance(count, bool) or not isinstance(count, int) \
            or not 1 <= count <= MAX_RATE_COUNT \
            or isinstance(seconds, bool) \
            or not isinstance(seconds, (int, float)) \
            or not 0 < seconds <= 366 * 24 * 3600:
        raise ValueError(f'rateLimit must be (count, seconds) with a count '
                         f'from 1 to {MAX_RATE_COUNT} and seconds from 0 to '
                         f'a year, not {value!r}')
    return count, float(seconds)


def initGates(service):
    service._taskSettings = OOBTree()
    service._gates = OOBTree()


def taskDefaults(service):
    """``{task: {setting: value}}`` of the task utilities that set one.

    Read from the component registry at most every ``DEFAULTS_TTL``
    seconds per connection (a volatile attribute of the service).  A task
    whose settings are bad is logged (an error) and left unlimited.
    """
    clock = time.monotonic()
    cached = getattr(service, '_v_taskDefaults', None)
    if cached is None or cached[0] < clock:
        defaults = {}
        for name, task in service.getAvailableTasks().items():
            given = {setting: getattr(task, setting, None)
                     for setting in SETTINGS}
            given = {setting: value for setting, value in given.items()
                     if value is not None}
            if not given:
                continue
            try:
                defaults[name] = checkLimits(given)
            except ValueError as error:
                # A task's bad setting must not stop every claim of the
                # service: its limits are ignored, and the log says so.
                log.error('Task %r: its limits are ignored: %s', name, error)
        cached = service._v_taskDefaults = (clock + DEFAULTS_TTL, defaults)
    return cached[1]


def limitsOf(service, task):
    """The settings in force for ``task``: ``{setting: value or None}``."""
    limits = dict.fromkeys(SETTINGS)
    limits.update(taskDefaults(service).get(task, {}))
    limits.update(service._taskSettings.get(task, {}))
    return limits


def limitedTasks(service):
    """``{task: (maxConcurrent, rateLimit)}`` of the tasks limited now."""
    names = set(taskDefaults(service)) | set(service._taskSettings.keys())
    limited = {}
    for task in names:
        limits = limitsOf(service, task)
        if limits['maxConcurrent'] is not None \
                or limits['rateLimit'] is not None:
            limited[task] = (limits['maxConcurrent'], limits['rateLimit'])
    return limited


def setLimits(service, task, limits):
    """Override the settings of ``task`` (see TaskService.setTaskLimits)."""
    checked = checkLimits(limits)
    current = dict(service._taskSettings.get(task, {}))
    current.update(checked)
    if current:
        service._taskSettings[task] = current
    return current


def clearLimits(service, task):
    """Drop the service's overrides of ``task``."""
    if task in service._taskSettings:
        del service._taskSettings[task]


# -- claims -------------------------------------------------------------------

def gateFor(service, task):
    gate = service._gates.get(task)
    if gate is None:
        gate = service._gates[task] = TaskGate()
    return gate


def heldSet(service, task):
    return service._gates[task].held


def heldSets(service):
    return [gate.held for gate in service._gates.values()]


def release(service, job):
    """A job that ran under its task's cap stopped running."""
    gate = service._gates.get(job._slot)
    if gate is not None:
        gate.released.change(1)
    job._slot = None


def unlimited(service):
    """No task has limits here, and no job is held back."""
    return not limitedTasks(service) and not _anyHeld(service)


def claimReady(service, now, size, partition=None):
    """Up to ``size`` queued jobs to claim at ``now``, within the limits.

    Jobs held back earlier come first where their gates have room again;
    then the ready queues (jobtable's ``_readyKeys``).  A job of a task
    without room is moved into its gate.  Counts the claims in the gates
    (and marks the jobs that take a slot of a cap).
    """
    if size <= 0:
        return []
    limited = limitedTasks(service)
    if not limited and not _anyHeld(service):
        return [service.jobs[keyId(key)]
                for key in service._readyKeys(now, size, partition)]
    seconds = now.timestamp()
    rooms, taken, jobs = {}, {}, []

    def room(task):
        if task not in rooms:
            cap, rate = limited[task]
            rooms[task] = gateFor(service, task).room(seconds, cap, rate)
        return rooms[task] - taken.get(task, 0)

    def take(job, task):
        jobs.append(job)
        if task in limited:
            taken[task] = taken.get(task, 0) + 1
            if limited[task][0] is not None:
                job._slot = task
    # The held jobs of gates with room, oldest first.
    for task, gate in list(service._gates.items()):
        for key in itertools.islice(timeKeys(gate.held), size - len(jobs)):
            if task in limited and room(task) <= 0:
                break
            take(service.jobs[keyId(key)], task)
    # Then the ready queues: a job whose task has no room is held back
    # (out of the ready queue: the next round reads the keys after it).
    limitedIds = {task: service._byTask.get(task) for task in limited}
    held = 0
    # Taken jobs leave the ready queue when they are started (after
    # this): a later round skips them.
    fromReady = set()
    while len(jobs) < size and held < HOLD_BATCH:
        heldBefore = held
        for key in service._readyKeys(
                now, size - len(jobs) + len(fromReady), partition):
            jobid = keyId(key)
            if jobid in fromReady:
                continue
            task = next((task for task, ids in limitedIds.items()
                         if ids is not None and jobid in ids), None)
            job = service.jobs[jobid]
            if task is None or room(task) > 0:
                take(job, task)
                fromReady.add(jobid)
            else:
                _hold(service, job, task)
                held += 1
                if held >= HOLD_BATCH:
                    break   # a claim writes at most so many into gates
        if held == heldBefore:
            break
    for task, count in taken.items():
        cap, rate = limited[task]
        gateFor(service, task).take(seconds, count, cap, rate)
    return jobs


def _anyHeld(service):
    return any(timeset.firstKey(gate.held) is not None
               for gate in service._gates.values())


def _hold(service, job, task):
    """Move a queued job into its task's gate."""
    gate = gateFor(service, task)
    service._statusSet(job.status, job).remove(job._statusKey)
    job._heldBy = task
    gate.held.add(job._statusKey)


def heldBack(service, job):
    """Why a queued job waits for its task's limits (text), or None."""
    task = job._heldBy
    if task is None or job.status != QUEUED:
        return None
    limits = limitsOf(service, task)
    gate = service._gates.get(task)
    why = []
    cap, rate = limits['maxConcurrent'], limits['rateLimit']
    if cap is not None and gate is not None and gate.running() >= cap:
        why.append(f'{gate.running()} of at most {cap} jobs of the task '
                   f'are running')
    if rate is not None and gate is not None:
        recent = gate.recentStarts(time.time(), rate)
        if len(recent) >= rate[0]:
            why.append(f'{len(recent)} jobs of the task started in the last '
                       f'{rate[1]:g} s (at most {rate[0]})')
    if not why:
        why.append('the task had no room when the job was due; it starts '
                   'with the next claim')
    return 'Held back by the limits of its task: ' + '; '.join(why) + '.'


def nextRoom(service):
    """When a rate-limited gate with held jobs has room again, or None."""
    times = []
    for task, gate in service._gates.items():
        if timeset.firstKey(gate.held) is None or not gate.starts:
            continue
        rate = limitsOf(service, task)['rateLimit']
        if rate is not None:
            times.append(min(gate.starts) + rate[1])
    if not times:
        return None
    return datetime.datetime.fromtimestamp(min(times), datetime.timezone.utc)
