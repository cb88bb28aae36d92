"""Generation 4: the sort indexes of the Jobs tab (sorting.py).

For every task service without them: index every job by when it was
created, and every finished job (completed, error) by when its last run
started and how long it took.  One pass over the jobs; each job is loaded
once (and a finished one written, for the keys it keeps).
"""
import datetime

from lovely.remotetask import sorting
from lovely.remotetask.generations.utility import rootServices
from lovely.remotetask.interfaces import COMPLETED
from lovely.remotetask.interfaces import ERROR
from lovely.remotetask.timeset import keyId
from lovely.remotetask.timeset import keySecond
from lovely.remotetask.timeset import timeKeys


def evolveService(service):
    """Bring one service to generation 4 (nothing to do if it is)."""
    service._p_activate()
    if '_created' in vars(service):
        return
    sorting.initIndexes(service)
    pending = getattr(service, '_inbox', ())   # see inbox.py
    for job in service.jobs.values():
        if job._statusKey not in pending:
            sorting.added(service, job)
    for status in (COMPLETED, ERROR):
        for key in list(timeKeys(service._index[status])):
            job = service.jobs[keyId(key)]
            sorting.statusChanged(service, job, None, status,
                                  _second(keySecond(key)))


def _second(second):
    return datetime.datetime.fromtimestamp(second, datetime.timezone.utc)


def evolve(context):
    """Evolve every task service in the database."""
    for service in rootServices(context):
        evolveService(service)
