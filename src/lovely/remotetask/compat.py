"""The names of lovely.remotetask 0.5.2 that have new spellings.

Applications written for 0.5.2 keep working: the old names are aliases
that warn (``DeprecationWarning``) and say what to write instead.  Every
difference to 0.5.2 is listed in CHANGES.txt, "Upgrading from 0.5".
"""
import importlib
import warnings


def deprecated(old, new, stacklevel=3):
    """Warn that ``old`` (a 0.5.2 spelling) is now ``new``."""
    warnings.warn(f'{old} is the lovely.remotetask 0.5.2 spelling: use '
                  f'{new}', DeprecationWarning, stacklevel=stacklevel)


#: module -> {old name: (module of the new name, new name)}
MOVED = {
    'lovely.remotetask.service': {
        'getAutostartServiceNames': ('lovely.remotetask.startup',
                                     'getAutostartServiceNames'),
        'bootStrapSubscriber': ('lovely.remotetask.startup',
                                'databaseOpened'),
    },
    'lovely.remotetask.processor': {
        # 0.5.2 slept this long after starting a job's thread; nothing
        # waits for it now.
        'THREAD_STARTUP_WAIT': (None, 0.05),
    },
}


def moduleAttribute(module, name):
    """A module's ``__getattr__``: the 0.5.2 names it no longer defines."""
    try:
        where, new = MOVED[module][name]
    except KeyError:
        raise AttributeError(
            f'module {module!r} has no attribute {name!r}') from None
    if where is None:
        deprecated(f'{module}.{name}', 'nothing: it has no effect any more')
        return new
    deprecated(f'{module}.{name}', f'{where}.{new}')
    return getattr(importlib.import_module(where), new)
