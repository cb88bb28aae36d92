"""Schema evolution of lovely.remotetask's persistent data.

Generation 1 is the first schema of the Python 3 package; later changes
add an ``evolveN`` module and raise ``generation``.
"""
from zope.generations.generations import SchemaManager


manager = SchemaManager(
    minimum_generation=1,
    generation=2,
    package_name='lovely.remotetask.generations')
