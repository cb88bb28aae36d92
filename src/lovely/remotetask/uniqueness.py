"""Unique jobs: at most one job per key that has not ended.

``add(task, input, uniqueKey='invoice-42')`` adds a job only if no job
with that key is queued, delayed, waiting, start later or processing;
otherwise it returns the id of that job (or, with ``onDuplicate='raise'``,
raises ``DuplicateJob``).  The key is taken in the adding transaction and
is free again once the job ended (completed, error, cancelled).

``_uniqueKeys`` (OOBTree: key -> job id, or minus it), an attribute of
the service
    An entry names the job that took the key last; the key is held while
    that job has not ended.  The end of a job does not write the tree:
    a free key is an entry whose job ended (or was removed), so the run
    of a job with a key never conflicts with adds of other keys (a
    delete that emptied a bucket would).  ``clean`` deletes the entries
    of the jobs it removes, so the tree does not grow forever.  The
    tree always holds the key ``''`` (``SENTINEL``), which no job can
    have, so that its first bucket never empties: two adds of different
    keys into an empty tree would conflict.

    Concurrency: an add with a key reads the tree and, if the key is free,
    writes it (inserts it, or takes over the entry of an ended job).  Two
    transactions writing *different* keys merge (the bucket's conflict
    resolution), so unrelated adds never conflict here.  Two
    transactions writing the *same* key conflict: BTrees' bucket
    resolution refuses two inserts of one key, and two changes of one
    key's value (tests/test_jobcontrol.py checks it on FileStorage and
    DemoStorage, and on a tree small enough to keep its only bucket
    inline).  The one that retries reads the other's entry and returns
    its job: one job results.  An add that read the key just before its
    job ended returns the id of that job, as if the add had come first.

The retry of an ended job (``service.retry``) calls ``retake`` (in two
steps, ``checkRetake`` before anything changes and ``takeBack``) before
it queues the job again: the job takes its key
back, or, if another job took it meanwhile, ``DuplicateJob`` says which,
and nothing changes.  Taking it back writes the entry even when it still
names the job (it negates the id: a changed value), so a retry and an
add of the key racing each other conflict, like two adds.
"""
from BTrees.OOBTree import OOBTree

from lovely.remotetask import interfaces
from lovely.remotetask.interfaces import ENDED

#: The longest unique key (characters).
MAX_KEY_LENGTH = 200
#: What ``add`` may do with a duplicate.
ON_DUPLICATE = ('return', 'raise')


#: A key no job can have, always in the map: its first bucket never
#: empties (an emptied bucket merges with no concurrent change).
SENTINEL = ''


def newKeyMap():
    """The empty map of unique keys (a service's ``_uniqueKeys``)."""
    keys = OOBTree()
    keys[SENTINEL] = 0
    return keys


def checkKey(key):
    """``key`` if it is a valid unique key (a non-empty str of at most
    ``MAX_KEY_LENGTH`` characters, valid Unicode: no lone surrogate, which
    no page could show); else ``ValueError``."""
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise ValueError(f'uniqueKey must be a non-empty string of at most '
                         f'{MAX_KEY_LENGTH} characters, not {key!r}')
    try:
        key.encode('utf-8')
    except UnicodeEncodeError:
        raise ValueError(f'uniqueKey must be valid Unicode (no lone '
                         f'surrogate), not {key!r}') from None
    return key


def checkOnDuplicate(onDuplicate):
    if onDuplicate not in ON_DUPLICATE:
        raise ValueError(f'onDuplicate must be one of '
                         f'{", ".join(map(repr, ON_DUPLICATE))}, '
                         f'not {onDuplicate!r}')


def holder(service, key):
    """The id of the job that holds ``key`` (it has not ended), or None."""
    jobid = _entry(service, key)
    if jobid is None:
        return None
    job = service.jobs.get(jobid)
    if job is None or job.status in ENDED:
        return None  # a stale entry: the next add takes the key over
    return jobid


def existing(service, key, onDuplicate):
    """Before an add: the id of the job holding ``key``, or None if the
    key is free; ``DuplicateJob`` if it is held and ``onDuplicate`` is
    'raise'."""
    checkOnDuplicate(onDuplicate)
    jobid = holder(service, checkKey(key))
    if jobid is not None and onDuplicate == 'raise':
        raise interfaces.DuplicateJob(key, jobid)
    return jobid


def take(service, job):
    """Let a new job that has not ended hold its key (free: see
    ``existing``)."""
    if job.uniqueKey is not None and job.status not in ENDED:
        service._uniqueKeys[job.uniqueKey] = job.id


def _entry(service, key):
    """The id of the job the entry of ``key`` names, or None."""
    value = service._uniqueKeys.get(key)
    return None if value is None else abs(value)


def forget(service, job):
    """``job`` is being removed (``clean``): delete its entry, if the
    key names it still."""
    key = job.uniqueKey
    if key is not None and _entry(service, key) == job.id:
        del service._uniqueKeys[key]


def checkRetake(service, job):
    """``DuplicateJob`` if another job holds the key of ``job`` (ended,
    about to be retried); nothing is written."""
    key = job.uniqueKey
    if key is None:
        return
    jobid = holder(service, key)
    if jobid is not None and jobid != job.id:
        raise interfaces.DuplicateJob(key, jobid)


def retake(service, job):
    """Before an ended job is queued again (a retry): take its key back.

    Raises ``DuplicateJob`` if another job holds the key now, changing
    nothing; the caller should leave the job as it is.  A job without a
    key needs nothing.
    """
    checkRetake(service, job)
    takeBack(service, job)


def takeBack(service, job):
    """``retake`` once ``checkRetake`` let it: write the key's entry."""
    key = job.uniqueKey
    if key is None:
        return
    value = service._uniqueKeys.get(key)
    service._uniqueKeys[key] = -value if value is not None \
        and abs(value) == job.id else job.id
