"""Schema evolution of lovely.remotetask's persistent data.

Generation 1 is the first schema of the Python 3 package; later changes
add an ``evolveN`` module and raise ``generation``.  Generation 2 moves
stored cron jobs to the due times of 0.5.2's schedule rule (evolve2.py);
generation 3 claims from the index of queued jobs and drops the old ready
queues (evolve3.py).  Generation 5 adds the ready queues of priorities
and the gates of task limits (evolve5.py).
"""
from zope.generations.generations import SchemaManager


manager = SchemaManager(
    # Generation 5 added structures every claim reads: evolve before use.
    minimum_generation=5,
    generation=5,
    package_name='lovely.remotetask.generations')
