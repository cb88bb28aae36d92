"""``remotetask service create|set|list``: task services without the ZMI.

A new RelStorage or ZEO database gets its first service from the command
line; the settings of a service (``maxRetries``, ``retryDelay``,
``leaseTime``, ``maxConflictRetries``, ``maxDataSize``) are changed by
name, each value checked against the field of ``ITaskService`` before
anything is stored.
"""
import zope.schema
import zope.schema.interfaces
from zope.component.interfaces import ISite
from zope.container.interfaces import IContainer
from zope.site.folder import Folder
from zope.site.site import LocalSiteManager

from lovely.remotetask.app.cli.session import CommandError
from lovely.remotetask.app.logsafe import printable
from lovely.remotetask.interfaces import ITaskService
from lovely.remotetask.service import TaskService


#: The settings ``service set`` changes: the schema fields of the
#: service.
SETTINGS = {name: field for name, field
            in zope.schema.getFieldsInOrder(ITaskService)
            if not field.readonly and name != 'jobs'}


def folderFor(session, site):
    """The folder ``site`` (a path from the root folder), created and made
    a site where needed; the root folder without one."""
    folder = session.root
    for name in [n for n in (site or '').split('/') if n]:
        if name not in folder:
            folder[name] = Folder()
        folder = folder[name]
        if not IContainer.providedBy(folder):
            raise CommandError(f'{site!r}: {name!r} is not a folder')
    if not ISite.providedBy(folder):
        folder.setSiteManager(LocalSiteManager(folder))
    return folder


def create(session, args, out):
    folder = folderFor(session, args.site)
    if args.name in folder:
        raise CommandError(f'{args.name!r} exists already')
    folder[args.name] = TaskService()
    session.commit()
    path = '/'.join(n for n in ((args.site or '').strip('/'), args.name)
                    if n)
    print(f'Created the task service {path}', file=out)
    return 0


def parseSetting(text):
    """``name=value`` as ``(name, value)``, the value converted and
    checked by its field; ``none`` is None where the field allows it."""
    name, sep, value = text.partition('=')
    name, value = name.strip(), value.strip()
    if not sep or name not in SETTINGS:
        raise CommandError(f'{text!r}: expected NAME=VALUE, NAME one of '
                           f'{", ".join(SETTINGS)}')
    field = SETTINGS[name]
    if value.lower() in ('none', ''):
        if field.required:
            raise CommandError(f'{name} must have a value')
        return name, None
    try:
        converted = field.fromUnicode(value)
        field.validate(converted)
    except (zope.schema.ValidationError, ValueError) as error:
        doc = error.doc() if hasattr(error, 'doc') else str(error)
        raise CommandError(f'{name}={value}: {doc or type(error).__name__}'
                           f' ({describe(field, error)})') from None
    return name, converted


def describe(field, error=None):
    """What ``field`` takes: its type and the bound ``error`` broke."""
    kind = type(field).__name__.lower()
    high = getattr(field, 'max', None)
    if isinstance(error, zope.schema.interfaces.TooBig) and \
            high is not None:
        return f'{kind} <= {high}'
    low = getattr(field, 'min', None)
    return f'{kind}{"" if low is None else f" >= {low}"}'


def set_(session, args, out):
    changes = dict(parseSetting(text) for text in args.settings)
    service = session.service(args.service)
    for name, value in changes.items():
        setattr(service, name, value)
    session.commit()
    for name, value in changes.items():
        print(f'{name} = {printable(value)}', file=out)
    return 0


def list_(session, args, out):
    services = session.services()
    if not services:
        print('No task services.', file=out)
    for path, service in sorted(services.items()):
        settings = ', '.join(f'{name}={getattr(service, name)}'
                             for name in SETTINGS)
        print(f'{printable(path)}: {service.countJobs()} jobs; '
              f'{printable(settings)}', file=out)
    return 0
