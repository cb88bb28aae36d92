"""A task of the real-browser test (test_jobs_browser.py), registered in
the ``site.zcml`` of its server: it fails while a file exists."""
import os

from lovely.remotetask.interfaces import TaskError


def failWhile(service, jobid, input):
    """Fail while the file ``input['path']`` exists (at once: a
    ``TaskError`` is not repeated); else return 'ok'."""
    if os.path.exists(input['path']):
        raise TaskError(f'{input["path"]} is there')
    return 'ok'
