"""Add jobs from a script, as the workers see them.

    python docs/addjobs.py var/zope.conf echo 3

reads the zope.conf of the workers: its site.zcml registers the same
tasks (``service.add`` raises ``UnknownTask`` for a task this process
does not know) and its ``path`` makes your task modules importable.  It
opens the same database (with ZEO or RelStorage while the server and the
workers run; a FileStorage serves one process at a time), adds the jobs
to the service ``tasks`` of the root folder in one transaction and
closes the database.  Processing is left to the workers: ``autostart``
is not applied.
"""
import sys

import transaction
from zope.app.publication.zopepublication import ZopePublication

from lovely.remotetask.app.database import close_databases
from lovely.remotetask.app.database import open_database


def add_jobs(configfile, task, count, service='tasks'):
    """Add ``count`` jobs of ``task``; return their ids."""
    db = open_database(configfile, autostart=False)
    try:
        tm = transaction.TransactionManager()
        conn = db.open(transaction_manager=tm)
        try:
            for attempt in tm.attempts(5):   # retried on conflicts
                with attempt:
                    root = conn.root()[ZopePublication.root_name]
                    tasks = root[service]
                    ids = [tasks.add(task, {'n': n}) for n in range(count)]
            return ids
        finally:
            conn.close()
    finally:
        close_databases(db)


if __name__ == '__main__':
    configfile, task = sys.argv[1:3]
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    ids = add_jobs(configfile, task, count)
    print(f'Added {len(ids)} {task} job(s):', *ids)
