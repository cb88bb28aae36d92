"""Generation 1: the first schema of the Python 3 package; nothing to do."""


def evolve(context):
    """Nothing to evolve: generation 1 is where the Python 3 package began."""
