"""Schema evolution of lovely.remotetask's persistent data.

Generation 1 is the first schema of the Python 3 package; later changes
add an ``evolveN`` module and raise ``generation``.  Generation 2 moves
stored cron jobs to the due times of 0.5.2's schedule rule (evolve2.py).
"""
from zope.generations.generations import SchemaManager


manager = SchemaManager(
    minimum_generation=1,
    generation=2,
    package_name='lovely.remotetask.generations')
