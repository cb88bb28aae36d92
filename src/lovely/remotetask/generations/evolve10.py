"""Generation 10: jobs store their own attributes packed (job.py).

Nothing to convert: a job stored before reads as it was, and is stored
packed at its next change.  The generation is raised so that an older
release, which cannot read a packed job, refuses the database
(``GenerationTooHigh``) instead of reading jobs without their status.
"""


def evolve(context):
    """Nothing to do (see the module doc)."""
