"""How long a failed job waits before it is repeated.

The first repeat waits ``retryDelay`` seconds (the job's own, else its
service's: 10 s by default), each further one twice as long as the one
before, at most ``job.MAX_DELAY`` (a year).  Each delay is spread by up
to ``retryJitter`` (a fraction: 0.1 by default, plus or minus 10 %) at
random, so that the jobs that failed together (a database or a mail
server down) are not all repeated in the same second again.

A task that is unknown when its job runs (a worker deployed without the
task's registration) waits at least ``UNKNOWN_TASK_DELAY``: another
worker, deployed with the task, may run it.

A job taken back from a lost worker (``recover``) is repeated at once:
it waited for its worker's heartbeat or lease to time out already.

Nothing here is stored: the delay is computed by the failure's
transaction and becomes the repeated job's due time (see jobtable.py).
"""
import random

from lovely.remotetask import interfaces
from lovely.remotetask.job import MAX_DELAY


#: Seconds before repeating a job of an unknown task, at least.
UNKNOWN_TASK_DELAY = 10.0


def retryDelay(service, job, error):
    """Seconds before the next attempt of ``job``, which failed with
    ``error`` (an exception or a message) after ``job.attempts`` attempts.
    """
    base = service.retryDelay if job.retryDelay is None else job.retryDelay
    if isinstance(error, interfaces.UnknownTask):
        base = max(base, UNKNOWN_TASK_DELAY)
    delay = base * 2 ** (job.attempts - 1)
    jitter = getattr(service, 'retryJitter', 0) or 0
    if jitter and delay:
        delay *= 1 + random.uniform(-jitter, jitter)
    return min(delay, MAX_DELAY)
