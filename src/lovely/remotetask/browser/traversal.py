"""URL traversal of a task service: SERVICE/JOBID is the job.

Traversal needs ``lovely.remotetask.View``: an anonymous user is asked to
log in (401) whatever name follows the service, instead of learning which
names exist (404).
"""
from zope.app.publication.traversers import SimpleComponentTraverser
from zope.publisher.interfaces import NotFound
from zope.security import checkPermission
from zope.security.interfaces import Unauthorized

from lovely.remotetask.interfaces import VIEW


class TaskServiceTraverser(SimpleComponentTraverser):
    """Traverses to a job by its decimal id, else to a view.

    >>> from zope.publisher.browser import TestRequest
    >>> from zope.security.management import endInteraction
    >>> from zope.security.management import newInteraction
    >>> class Service(dict):
    ...     pass
    >>> service = Service({'42': 'the job 42'})
    >>> traverser = TaskServiceTraverser(service, TestRequest())
    >>> newInteraction()  # the permissive default policy of the test
    >>> traverser.publishTraverse(traverser.request, '42')
    'the job 42'
    >>> traverser.publishTraverse(traverser.request, '43')
    Traceback (most recent call last):
    ...
    zope.publisher.interfaces.NotFound: Object: {'42': 'the job 42'}, name: '43'
    >>> endInteraction()
    """

    def publishTraverse(self, request, name):
        if not checkPermission(VIEW, self.context):
            raise Unauthorized(self.context, name, VIEW)
        if name.isascii() and name.isdigit():
            job = self.context.get(name)
            if job is None:
                raise NotFound(self.context, name, request)
            return job
        return super().publishTraverse(request, name)
