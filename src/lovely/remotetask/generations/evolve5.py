"""Generation 5: priorities, limits per task, retention.

Every task service gets the ready queues of the priorities other than
the default (see priorities.py), the overrides of task limits and the
gates of limited tasks (tasklimits.py).  The queued jobs keep their
keys: they all have the default priority, whose jobs wait where every
queued job waited before (the index of ``queued``).  Retention needs no
structure (its settings default to keeping every job).
"""
from lovely.remotetask import priorities
from lovely.remotetask import tasklimits
from lovely.remotetask.generations.utility import rootServices


def evolveService(service):
    """Bring one service to generation 5 (nothing to do if it is)."""
    service._p_activate()
    state = vars(service)
    if '_priorityQueues' not in state:
        service._priorityQueues = priorities.newQueues()
    if '_gates' not in state:
        tasklimits.initGates(service)


def evolve(context):
    """Evolve every task service in the database."""
    for service in rootServices(context):
        evolveService(service)
