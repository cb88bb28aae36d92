"""Schema evolution of lovely.remotetask's persistent data.

Generation 1 is the first schema of the Python 3 package; later changes
add an ``evolveN`` module and raise ``generation``.  Generation 2 moves
stored cron jobs to the due times of 0.5.2's schedule rule (evolve2.py);
generation 3 claims from the index of queued jobs and drops the old ready
queues (evolve3.py); generation 4 adds the sort indexes of the Jobs tab
(evolve4.py); generation 5 the ready queues of priorities and the gates
of task limits (evolve5.py); generation 6 the status ``waiting`` and the
map of unique keys (evolve6.py); generation 7 the links of chains
(evolve7.py); generation 8 the map of progress reports (evolve8.py);
generation 9 the inbox of new jobs (evolve9.py); generation 10 marks
the packed job records, which older releases cannot read (evolve10.py);
generation 11 rebuilds the time sets with packed buckets (evolve11.py).
"""
from zope.generations.generations import SchemaManager


manager = SchemaManager(
    # Generations 4 to 9 added structures that adds, claims and
    # completions write, generation 10 marks the packed jobs that they
    # store, generation 11 the packed buckets of time sets: evolve
    # before use.
    minimum_generation=11,
    generation=11,
    package_name='lovely.remotetask.generations')
