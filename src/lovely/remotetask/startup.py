"""Autostart: start processing task services when the database opens.

Configured in ``zope.conf``::

    <product-config lovely.remotetask>
      autostart site1@tasks, @rootservice, site2@*, *@tasks, *@*
    </product-config>

Each entry is ``site@service``.  An empty site is the root folder; ``*``
as site means the root folder and every site directly in it.  ``*`` as
service means every task service of that site: the task service
utilities it sees, less those the root folder sees too (which it sees
through its bases), and the task services contained in the site folder
itself.  A service named explicitly is looked up as
the site sees it, bases included.
"""
import logging

import transaction
from zope.app.appsetup.product import getProductConfiguration
from zope.app.publication.zopepublication import ZopePublication
from zope.component.interfaces import ISite
from zope.lifecycleevent.interfaces import IObjectAddedEvent
from zope.processlifetime import IDatabaseOpenedWithRoot
import zope.component

from lovely.remotetask.interfaces import ITaskService


log = logging.getLogger('lovely.remotetask')


def parseSpec(spec):
    """The ``(site, service)`` pairs of an autostart specification.

    Entries are separated by commas or white space; malformed entries are
    logged and skipped, never fatal.

    >>> parseSpec('site1@tasks, @root  *@*')
    [('site1', 'tasks'), ('', 'root'), ('*', '*')]
    >>> parseSpec('nonsense, a@b@c, @')
    []
    """
    pairs = []
    for entry in (spec or '').replace(',', ' ').split():
        site, sep, service = entry.partition('@')
        if not sep or not service or '@' in service:
            log.error('autostart: ignoring %r: expected site@service', entry)
            continue
        pairs.append((site, service))
    return pairs


def _utilities(site):
    if not ISite.providedBy(site):
        return []
    return list(site.getSiteManager().getUtilitiesFor(ITaskService))


def _services(site, root):
    """name -> task service of one site: the utilities it sees, less
    those the root folder sees too (its bases make them visible:
    ``site1@*`` starts site1's services only, as in 0.5.2), and the
    services contained in the site folder."""
    found = {}
    rootOnes = set() if site is root else {
        id(util) for name, util in _utilities(root)}
    for name, util in _utilities(site):
        if id(util) not in rootOnes:
            found[name] = util
    if hasattr(site, 'items'):
        for name, item in site.items():
            if ITaskService.providedBy(item):
                found.setdefault(name, item)
    return found


def _visible(site, name):
    """The task service utility ``name`` that ``site`` sees (its own or
    one of its bases'), or None: a service named explicitly is looked up
    as 0.5.2 did."""
    if not ISite.providedBy(site):
        return None
    return site.getSiteManager().queryUtility(ITaskService, name)


def _sites(root, siteName):
    """(name, site) pairs matching ``siteName`` ('' = root, '*' = all)."""
    if siteName == '':
        return [('', root)]
    if siteName == '*':
        return [('', root)] + [
            (name, item) for name, item in root.items()
            if ISite.providedBy(item)]
    site = root.get(siteName) if hasattr(root, 'get') else None
    return [(siteName, site)] if ISite.providedBy(site) else []


def findServices(root, spec, label='autostart', level=logging.WARNING):
    """The task services matching an autostart specification.

    Returns ``[('site@service', service), ...]`` without duplicates, and
    logs every entry that matches nothing (as ``label``, at ``level``).
    """
    found = {}
    for siteName, serviceName in parseSpec(spec):
        matched = False
        for name, site in _sites(root, siteName):
            services = _services(site, root)
            if serviceName != '*':
                service = services.get(serviceName) or _visible(
                    site, serviceName)
                services = {} if service is None else {serviceName: service}
            for sname, service in services.items():
                found.setdefault(f'{name}@{sname}', service)
                matched = True
        if not matched:
            # A wildcard that matches nothing yet is normal (a new
            # database); a name that matches nothing is a mistake.
            wildcard = '*' in (siteName, serviceName)
            log.log(min(level, logging.INFO) if wildcard else level,
                    '%s: %s@%s matches no task service', label, siteName,
                    serviceName)
    return list(found.items())


def autostartSpec():
    config = getProductConfiguration('lovely.remotetask') or {}
    return config.get('autostart', '')


def getAutostartServiceNames():
    """The entries of the autostart configuration, as ``site@service``.

    >>> from zope.app.appsetup.product import setProductConfiguration
    >>> setProductConfiguration('lovely.remotetask',
    ...                         {'autostart': 'site1@a, @b *@*'})
    >>> getAutostartServiceNames()
    ['site1@a', '@b', '*@*']
    >>> setProductConfiguration('lovely.remotetask', None)
    """
    return [f'{site}@{service}'
            for site, service in parseSpec(autostartSpec())]


def startServices(db, spec):
    """Start processing every service ``spec`` names; return their names."""
    started = []
    tm = transaction.TransactionManager()
    conn = db.open(transaction_manager=tm)
    try:
        root = conn.root().get(ZopePublication.root_name)
        if root is None:
            log.warning('autostart: the database has no root folder yet')
            return started
        for name, service in findServices(root, spec):
            if service.isProcessing():
                continue
            service._startProcessor()
            log.info('autostart: started processing %s', name)
            started.append(name)
    except Exception:
        log.exception('autostart: failed; processing was not started')
    finally:
        tm.abort()
        conn.close()
    return started


@zope.component.adapter(IDatabaseOpenedWithRoot)
def databaseOpened(event):
    """Start the services the autostart configuration names."""
    spec = autostartSpec()
    if spec:
        startServices(event.database, spec)


def _location(service):
    """``(site name, service name)`` of a service, as autostart names it.

    The site is None where autostart cannot name it: autostart knows the
    root folder and the sites directly in it (as ``findServices``).
    """
    site = service.__parent__
    while site is not None and not ISite.providedBy(site):
        site = getattr(site, '__parent__', None)
    parent = getattr(site, '__parent__', None)
    if site is None:
        return None, service.__name__
    if parent is None:
        return '', service.__name__
    if getattr(parent, '__parent__', None) is None:
        return site.__name__, service.__name__
    return None, service.__name__


@zope.component.adapter(ITaskService, IObjectAddedEvent)
def serviceAdded(service, event):
    """Autostart a service added while the application runs.

    It starts when the transaction that adds it commits (a service that
    was never committed has nothing to process).
    """
    siteName, serviceName = _location(service)
    pairs = parseSpec(autostartSpec())
    if siteName is None or not any(
            site in ('*', siteName) and name in ('*', serviceName)
            for site, name in pairs):
        return

    def start(committed):
        if committed and not service.isProcessing():
            # After the commit nothing can be written: not audited (the
            # log says it), unlike a start from the ZMI.
            service._startProcessor()
            log.info('autostart: started processing %s@%s', siteName,
                     serviceName)
    transaction.get().addAfterCommitHook(start)
