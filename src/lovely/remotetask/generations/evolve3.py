"""Generation 3: the index of queued jobs is the ready queue.

Generation 1 kept queued job ids twice, in the status index and in
``_ready`` (zc.queue buckets), and put repeats waiting for their backoff
into the schedule.  Generation 3 claims from the status index, where a
waiting repeat is keyed by the time it may run (see jobtable.py).  For
every task service: drop ``_ready``, and move the queued jobs from the
schedule into the index at their due time.
"""
from lovely.remotetask.generations.utility import rootServices
from lovely.remotetask.interfaces import QUEUED
from lovely.remotetask.timeset import keyId
from lovely.remotetask.timeset import timeKeys


def evolveService(service):
    """Bring one service to generation 3 (nothing to do if it is)."""
    service._p_activate()
    if '_ready' not in vars(service):
        return
    for key in list(timeKeys(service._schedule)):
        job = service.jobs[keyId(key)]
        if job.status == QUEUED:
            service._schedule.remove(key)
            service._setStatus(job, QUEUED, job.due)
    del service._ready


def evolve(context):
    """Evolve every task service in the database."""
    for service in rootServices(context):
        evolveService(service)
