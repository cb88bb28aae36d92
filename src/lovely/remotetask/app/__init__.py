"""The runnable lovely.remotetask server.

``remotetask serve`` publishes the Rotterdam ZMI with lovely.remotetask on
waitress; ``remotetask worker`` runs only processors.  Both read the same
``zope.conf`` (the schema of zope.app.appsetup) and load the same
``site.zcml``.  See ``docs/server.rst``.

- ``instance``: the instance directory (``var/``) with its ``zope.conf``
  and ``site.zcml``, written on first start from ``skel/``.
- ``credentials``: the administrator, from ``REMOTETASK_ADMIN`` or
  generated on first start.
- ``wsgi``: the WSGI application, for waitress or any other server.
- ``main``: the ``remotetask`` command.
"""
