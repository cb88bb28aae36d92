"""Generation 8: progress reports move to a map of the service.

For every task service: add ``_progress`` (see progress.py).  Claims no
longer make a progress record (nor a cancel request) per job; the
records older claims made stay on their jobs, unused.
"""
from lovely.remotetask import progress
from lovely.remotetask.generations.utility import rootServices


def evolveService(service):
    """Bring one service to generation 8 (nothing to do if it is)."""
    service._p_activate()
    if '_progress' not in vars(service):
        service._progress = progress.newReports()


def evolve(context):
    """Evolve every task service in the database."""
    for service in rootServices(context):
        evolveService(service)
