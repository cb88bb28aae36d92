"""URL traversal of a task service: SERVICE/JOBID is the job."""
from zope.app.publication.traversers import SimpleComponentTraverser
from zope.publisher.interfaces import NotFound


class TaskServiceTraverser(SimpleComponentTraverser):
    """Traverses to a job by its decimal id, else to a view.

    >>> from zope.publisher.browser import TestRequest
    >>> class Service(dict):
    ...     pass
    >>> service = Service({'42': 'the job 42'})
    >>> traverser = TaskServiceTraverser(service, TestRequest())
    >>> traverser.publishTraverse(traverser.request, '42')
    'the job 42'
    >>> traverser.publishTraverse(traverser.request, '43')
    Traceback (most recent call last):
    ...
    zope.publisher.interfaces.NotFound: Object: {'42': 'the job 42'}, name: '43'
    """

    def publishTraverse(self, request, name):
        if name.isascii() and name.isdigit():
            job = self.context.get(name)
            if job is None:
                raise NotFound(self.context, name, request)
            return job
        return super().publishTraverse(request, name)
