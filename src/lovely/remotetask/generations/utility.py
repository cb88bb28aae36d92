"""What the evolve steps share."""
from zope.app.publication.zopepublication import ZopePublication
from zope.component.interfaces import ISite
from zope.container.interfaces import IReadContainer

from lovely.remotetask.interfaces import ITaskService


def taskServices(obj):
    """The task services in and below ``obj``: in containers and in the
    site managers of sites (where local utilities live)."""
    if ITaskService.providedBy(obj):
        yield obj
        return
    children = list(obj.values()) if IReadContainer.providedBy(obj) else []
    if ISite.providedBy(obj):
        children.append(obj.getSiteManager())
    for child in children:
        yield from taskServices(child)


def rootServices(context):
    """The task services of the database of an evolve step's context."""
    root = context.connection.root().get(ZopePublication.root_name)
    return [] if root is None else list(taskServices(root))
