"""Schema evolution of lovely.remotetask's persistent data.

Generation 1 is the first schema of the Python 3 package; later changes
add an ``evolveN`` module and raise ``generation``.  Generation 2 moves
stored cron jobs to the due times of 0.5.2's schedule rule (evolve2.py);
generation 3 claims from the index of queued jobs and drops the old ready
queues (evolve3.py).
"""
from zope.generations.generations import SchemaManager


manager = SchemaManager(
    # Generation 3 changed where queued jobs wait: evolve before use.
    minimum_generation=3,
    generation=3,
    package_name='lovely.remotetask.generations')
