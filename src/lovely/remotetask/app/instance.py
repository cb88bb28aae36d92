"""The instance directory: ``zope.conf`` and ``site.zcml``.

On first start ``remotetask serve`` creates ``var/`` in the current
directory and writes ``var/zope.conf`` and ``var/site.zcml`` from the
templates in ``skel/``.  From then on they belong to the user: nothing
overwrites them.  The database (``var/Data.fs``) and the generated
administrator credentials live beside them.
"""
import logging
import os
import stat
import string


logger = logging.getLogger('lovely.remotetask.app')

#: The instance directory, relative to the current directory.
DEFAULT_VAR = 'var'
#: The configuration file ``remotetask`` reads when not told otherwise.
DEFAULT_CONFIG = os.path.join(DEFAULT_VAR, 'zope.conf')

SKEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'skel')

#: The files of a new instance: template in ``skel/`` -> name in var/.
FILES = (
    ('zope.conf.in', 'zope.conf'),
    ('site.zcml.in', 'site.zcml'),
    # An example task module to copy (see zope.conf: path).
    ('mytasks.py.in', 'mytasks.py.example'),
)


class ConfigurationMissing(Exception):
    """The configuration file named on the command line does not exist."""

    def __init__(self, path):
        super().__init__(path)
        self.path = path

    def __str__(self):
        return (f'No configuration file {self.path!r}.  `remotetask serve`'
                f' without --config creates {DEFAULT_CONFIG} on first'
                f' start.')


def render(template, **values):
    """Fill in a template of ``skel/`` (``string.Template`` syntax)."""
    with open(os.path.join(SKEL, template), encoding='utf-8') as f:
        return string.Template(f.read()).substitute(values)


def make(var=DEFAULT_VAR):
    """Create the instance directory ``var`` and its files where missing.

    ``var`` is written into ``zope.conf`` as given, so a relative path
    stays relative (to the directory ``remotetask`` is started in).
    Existing files are never touched.  The directory is created private
    (0700) and the files too (0600): it holds the database and the
    administrator's password.
    Returns the paths of the files written.
    """
    os.makedirs(var, mode=0o700, exist_ok=True)
    written = []
    for template, name in FILES:
        path = os.path.join(var, name)
        text = render(template, var=var)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            f.write(text)
        logger.info('Wrote %s', path)
        written.append(path)
    return written


def check_private(var=DEFAULT_VAR):
    """Warn if others may enter the instance directory ``var``.

    ``make`` creates it private (0700); one created before, or changed
    since, may expose the database to the other users of the machine.
    Nothing is changed: the permissions of a directory are its owner's
    choice.  True if ``var`` is private.
    """
    try:
        mode = os.stat(var).st_mode
    except OSError:
        return True
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning(
            '%s can be read by others (mode %o); it holds the database '
            '(and the generated administrator credentials): chmod 700 %s',
            var, stat.S_IMODE(mode), var)
        return False
    return True


def resolve(config=None, create=True):
    """The configuration file to use, creating the default instance.

    Without ``config`` this is ``var/zope.conf``, created (with
    ``var/site.zcml``) when ``create`` is true and it is missing.  A file
    named explicitly must exist: a typing mistake must not quietly start a
    new, empty database.
    """
    if config is None:
        config = DEFAULT_CONFIG
        if create and not os.path.exists(config):
            make(DEFAULT_VAR)
    if not os.path.isfile(config):
        raise ConfigurationMissing(config)
    return config
