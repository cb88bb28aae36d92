"""Schema evolution of lovely.remotetask's persistent data.

Generation 1 is the first schema of the Python 3 package; later changes
add an ``evolveN`` module and raise ``generation``.  Generation 2 moves
stored cron jobs to the due times of 0.5.2's schedule rule (evolve2.py);
generation 3 claims from the index of queued jobs and drops the old ready
queues (evolve3.py); generation 5 adds the ready queues of priorities
and the gates of task limits (evolve5.py); generation 6 adds the status ``waiting`` and the map
of unique keys (evolve6.py).

Generation numbers are given out to changes as they are planned, so a
release may lack the ``evolveN`` of a number: a generation without its
module has nothing to do.
"""
from zope.generations.generations import SchemaManager


class Manager(SchemaManager):
    """A schema manager that steps over generations without a module."""

    def _module(self, generation):
        name = f'{self.package_name}.evolve{generation}'
        try:
            return __import__(name, {}, {}, ['*'])
        except ModuleNotFoundError as error:
            if error.name != name:
                raise  # an import inside the module failed
            return None

    def evolve(self, context, generation):
        module = self._module(generation)
        if module is not None:
            module.evolve(context)

    def getInfo(self, generation):
        module = self._module(generation)
        return None if module is None else module.__doc__


manager = Manager(
    # Generation 6 added the index of waiting jobs: evolve before use.
    minimum_generation=6,
    generation=6,
    package_name='lovely.remotetask.generations')
