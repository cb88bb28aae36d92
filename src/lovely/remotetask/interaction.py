"""Jobs run in a security interaction, as the principal who added them.

The service records on every job the principal of the interaction it was
added in (``job.addedBy``, ``currentPrincipalId``); jobs added outside an
interaction (scripts, startup code) have None.  A processor, and
``processNext``, run the job's task inside ``runningAs(service, job)``: a
new interaction whose one participation carries that principal, looked up
in the authentication utility of the service's site.  A task can then ask
``zope.security.checkPermission`` what the person who asked for the job
may do, or read the interaction (see interaction.rst).

A job with no adder runs as the unauthenticated principal, as every job
did in 0.5.2 (its processor published a request without credentials); so
does a job whose adder the site no longer knows, and the log says so.
Jobs added by the system user (``zope.security.management.system_user``,
which trusted code uses to bypass security) run as the system user.
"""
import contextlib
import logging

import zope.component
from zope.authentication.interfaces import IAuthentication
from zope.authentication.interfaces import IUnauthenticatedPrincipal
from zope.authentication.interfaces import PrincipalLookupError
from zope.interface import implementer
from zope.security import management
from zope.security._definitions import thread_local
from zope.security.interfaces import IParticipation


log = logging.getLogger('lovely.remotetask')


def currentPrincipalId():
    """The id of the principal of the current interaction, or None.

    The first participation with a principal counts (a request has one).
    """
    interaction = management.queryInteraction()
    if interaction is None:
        return None
    for participation in getattr(interaction, 'participations', ()):
        principal = getattr(participation, 'principal', None)
        if principal is not None:
            return principal.id
    return None


@implementer(IUnauthenticatedPrincipal)
class Nobody:
    """The principal of jobs where the site has no unauthenticated one
    (no authentication utility at all, as in bare unit tests)."""

    id = 'lovely.remotetask.nobody'
    title = 'Nobody'
    description = 'Runs jobs where the site knows no unauthenticated user'

    def __repr__(self):
        return '<Nobody>'


nobody = Nobody()


def _authentication(service):
    try:
        return zope.component.queryUtility(IAuthentication, context=service)
    except zope.component.ComponentLookupError:
        return zope.component.queryUtility(IAuthentication)


def unauthenticated(service):
    """The unauthenticated principal of the service's site."""
    auth = _authentication(service)
    principal = auth.unauthenticatedPrincipal() if auth is not None else None
    if principal is None:
        principal = zope.component.queryUtility(IUnauthenticatedPrincipal)
    return principal if principal is not None else nobody


def lookup(service, principalId):
    """The principal with ``principalId`` in the service's site, or None.
    """
    if principalId == management.system_user.id:
        return management.system_user
    auth = _authentication(service)
    if auth is None:
        return None
    try:
        return auth.getPrincipal(principalId)
    except PrincipalLookupError:
        return None


def principalFor(service, job):
    """The principal the job runs as (see the module doc)."""
    if job.addedBy is None:
        return unauthenticated(service)
    principal = lookup(service, job.addedBy)
    if principal is None:
        principal = unauthenticated(service)
        log.warning('Job %s (%r): its adder %r is unknown here; running it '
                    'as the unauthenticated principal %r', job.id, job.task,
                    job.addedBy, principal.id)
    return principal


@implementer(IParticipation)
class JobParticipation:
    """The participation of a job's run: its principal and its job."""

    interaction = None
    task = None

    def __init__(self, principal, service, jobid):
        self.principal = principal
        self.service = service
        self.jobid = jobid


@contextlib.contextmanager
def runningAs(service, job):
    """Run the block in an interaction as the job's principal.

    An interaction already under way (``processNext`` called in a web
    request) is set aside and restored afterwards: the job runs as its
    adder whoever processes it.
    """
    previous = management.queryInteraction()
    if previous is not None:
        management.endInteraction()
    participation = JobParticipation(principalFor(service, job), service,
                                     job.id)
    participation.task = job.task   # for the log (app/logformat.py)
    management.newInteraction(participation)
    try:
        yield participation
    finally:
        management.endInteraction()
        if previous is not None:
            # zope.security offers no public way to put back an
            # interaction that another has replaced.
            thread_local.interaction = previous
