"""The ``++item++`` and ``++attribute++`` namespaces, with 404 for what
is not there.

zope.traversing's namespaces let ``KeyError`` and ``AttributeError``
(``ForbiddenAttribute`` of a security proxy) through: a mistyped
``/tasks/++item++999999`` or a probe of ``/tasks/++attribute++_data``
was a 500 with a traceback in the log.  These ones raise
``TraversalError``, which the publication answers 404 Not Found (not
logged as an error).  Registered by ``overrides.zcml``.
"""
from zope.traversing import namespace
from zope.traversing.interfaces import TraversalError


class item(namespace.item):

    def traverse(self, name, ignored):
        try:
            return super().traverse(name, ignored)
        except (KeyError, IndexError, TypeError, ValueError):
            raise TraversalError(self.context, name)


class attr(namespace.attr):

    def traverse(self, name, ignored):
        try:
            return super().traverse(name, ignored)
        except AttributeError:  # ForbiddenAttribute too
            raise TraversalError(self.context, name)
