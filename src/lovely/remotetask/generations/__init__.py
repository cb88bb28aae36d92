"""Schema evolution of lovely.remotetask's persistent data.

Generation 1 is the first schema of the Python 3 package; later changes
add an ``evolveN`` module and raise ``generation``.  Generation 2 moves
stored cron jobs to the due times of 0.5.2's schedule rule (evolve2.py);
generation 3 claims from the index of queued jobs and drops the old ready
queues (evolve3.py); generation 4 adds the sort indexes of the Jobs tab
(evolve4.py).
"""
from zope.generations.generations import SchemaManager


manager = SchemaManager(
    # Generation 4 added indexes every add and completion writes: evolve
    # before use.
    minimum_generation=4,
    generation=4,
    package_name='lovely.remotetask.generations')
