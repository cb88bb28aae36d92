"""Generation 9: new jobs wait in an inbox, indexed in batches (inbox.py).

For every task service: add ``_inbox``.  Nothing else changes: the jobs
added before are indexed already.
"""
from lovely.remotetask import inbox
from lovely.remotetask.generations.utility import rootServices


def evolveService(service):
    """Bring one service to generation 9 (nothing to do if it is)."""
    service._p_activate()
    if '_inbox' not in vars(service):
        service._inbox = inbox.newInbox()


def evolve(context):
    """Evolve every task service in the database."""
    for service in rootServices(context):
        evolveService(service)
