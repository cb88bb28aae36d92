"""The administrator of the server.

There is no well-known password.  The administrator's login and password
come from the environment variable ``REMOTETASK_ADMIN`` (``login:password``)
when it is set.  Otherwise they are read from the credentials file
(``var/admin-credentials``, named in ``zope.conf``), which is generated on
first start with a random password and is readable by its owner only.

The administrator is registered in the global principal registry once the
site's ZCML is loaded, and holds the ``zope.Manager`` role.
"""
import datetime
import logging
import os
import secrets
import stat
from typing import NamedTuple

import zope.app.appsetup.product


logger = logging.getLogger('lovely.remotetask.app')

ENVIRON = 'REMOTETASK_ADMIN'
PRINCIPAL_ID = 'lovely.remotetask.admin'
DEFAULT_LOGIN = 'admin'
ROLE = 'zope.Manager'
#: The product configuration of the server in zope.conf, and its key.
PRODUCT = 'lovely.remotetask.app'
KEY = 'admin-credentials'
FILENAME = 'admin-credentials'


class Credentials(NamedTuple):
    login: str
    password: str
    #: Where they came from: ``REMOTETASK_ADMIN`` or a file's path.
    source: str
    #: True if the password was generated just now.
    generated: bool = False


class InvalidCredentials(ValueError):
    """Credentials that are not ``login:password``."""


def parse(text, source):
    """Split ``login:password``; the login has no colon, both are needed.

    The error message names the source but never repeats the text: it
    may hold a password.
    """
    login, sep, password = text.strip().partition(':')
    login = login.strip()
    if not sep or not login or not password:
        raise InvalidCredentials(
            f'{source}: expected login:password with a non-empty login '
            f'and password')
    return login, password


def from_environment(environ=None):
    """The credentials of ``REMOTETASK_ADMIN``, or None if it is unset."""
    environ = os.environ if environ is None else environ
    value = environ.get(ENVIRON)
    if not value:
        return None
    return Credentials(*parse(value, ENVIRON), source=ENVIRON)


def read(path):
    """The credentials stored in ``path`` (the first line not a comment)."""
    mode = os.stat(path).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning(
            '%s can be read by others (mode %o); it holds the '
            "administrator's password: chmod 600 %s",
            path, stat.S_IMODE(mode), path)
    with open(path, encoding='utf-8') as f:
        for line in f:
            if line.strip() and not line.lstrip().startswith('#'):
                return Credentials(*parse(line, path), source=path)
    raise InvalidCredentials(f'{path}: no login:password line')


def generate(login=DEFAULT_LOGIN):
    """A new password (from the ``secrets`` module) for ``login``."""
    return login, secrets.token_urlsafe(18)


def write(path, login, password):
    """Store new credentials in ``path``, readable by its owner only.

    Never overwrites: an existing file raises ``FileExistsError``.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    now = datetime.datetime.now(datetime.timezone.utc)
    with os.fdopen(fd, 'w', encoding='utf-8') as f:
        f.write(
            f'# The administrator of this lovely.remotetask server,\n'
            f'# generated {now:%Y-%m-%d %H:%M:%S} UTC.  Used when\n'
            f'# {ENVIRON} is not set.  Delete this file to have a new\n'
            f'# password generated at the next start.\n'
            f'{login}:{password}\n')


def path_for(configfile):
    """The credentials file named in ``zope.conf``.

    It is the ``admin-credentials`` key of ``<product-config
    lovely.remotetask.app>``; without it, ``admin-credentials`` next to
    ``zope.conf``.  Call it once ``zope.conf`` is loaded.
    """
    config = zope.app.appsetup.product.getProductConfiguration(PRODUCT)
    if config and config.get(KEY):
        return config[KEY]
    return os.path.join(os.path.dirname(configfile), FILENAME)


def obtain(path, environ=None):
    """The administrator's credentials: environment, file, or new ones."""
    credentials = from_environment(environ)
    if credentials is not None:
        return credentials
    try:
        return read(path)
    except FileNotFoundError:
        pass
    login, password = generate()
    try:
        write(path, login, password)
    except FileExistsError:  # another process was quicker
        return read(path)
    logger.info('Generated the administrator credentials in %s', path)
    return Credentials(login, password, source=path, generated=True)


def register(credentials, principal_id=PRINCIPAL_ID):
    """Register the administrator and grant it ``zope.Manager``.

    Needs the site's ZCML loaded (the principal registry, the password
    managers, the role).  The password is kept salted and hashed (SSHA)
    and compared in constant time.
    """
    from zope.password.password import SSHAPasswordManager
    from zope.principalregistry.principalregistry import principalRegistry
    from zope.securitypolicy.principalrole import principalRoleManager

    encoded = SSHAPasswordManager().encodePassword(credentials.password)
    principal = principalRegistry.definePrincipal(
        principal_id, 'Administrator',
        'The administrator of this lovely.remotetask server',
        credentials.login, encoded, passwordManagerName='SSHA')
    principalRoleManager.assignRoleToPrincipal(ROLE, principal_id)
    return principal


def registerForJobs(configfile, environ=None):
    """For a worker: register the administrator, so that the jobs it
    added run as it there too (see interaction.py), not as the
    unauthenticated principal.

    A worker authenticates nobody: it takes the login from the
    environment or the credentials file if it has them, and never
    writes one; without them, the principal gets the principal's id as
    its login and a password nobody knows.
    """
    found = from_environment(environ)
    if found is None:
        try:
            found = read(path_for(configfile))
        except (FileNotFoundError, InvalidCredentials):
            found = Credentials(PRINCIPAL_ID, secrets.token_urlsafe(32),
                                source=None)
    return register(found)


def describe(credentials):
    """Lines telling the person starting the server how to log in.

    The password itself is never shown: the lines go to the same stream
    as the log, which journald or ``docker logs`` keep.  They tell where
    it is stored and how to read it.
    """
    if credentials.source == ENVIRON:
        return [f'Administrator: {credentials.login!r} (password from '
                f'{ENVIRON})']
    if credentials.generated:
        return [f'Administrator: {credentials.login!r}, password '
                f'generated now and stored in {credentials.source} (read '
                f'it with: cat {credentials.source}; set '
                f'{ENVIRON}=login:password to choose your own)']
    return [f'Administrator: {credentials.login!r} (password stored in '
            f'{credentials.source})']
