"""The web settings of the server, from ``zope.conf``.

They are keys of ``<product-config lovely.remotetask.app>``::

    <product-config lovely.remotetask.app>
      public-url https://tasks.example.com
      virtual-hosting on
      max-request-body 10MB
    </product-config>

``public-url``
    The address the users' browsers open (scheme, host, port; a path is
    allowed).  The cross-site guard compares a request's ``Origin`` or
    ``Referer`` with it.  Without it the guard compares with the ``Host``
    header of the request (and the scheme the WSGI server reports).

``virtual-hosting``
    ``on`` lets a trusted front proxy rewrite paths to Zope's virtual
    hosting (``/++vh++https:tasks.example.com:443/++/...``), which makes
    the URLs of the pages the public ones.  Off by default: then a request
    whose path holds ``++vh++`` is refused (400), since any client could
    otherwise choose the address the pages load their scripts from.  On
    needs ``public-url``, and only a ``++vh++`` naming its origin passes.

``max-request-body``
    The largest request body accepted (bytes; ``KB``, ``MB``, ``GB``
    suffixes); larger ones are answered 413.  Default 10MB.

``health-public``
    ``on`` (the default): ``/health``, ``/health/live`` and
    ``/health/ready`` answer without a login (they tell up or down and
    the version, nothing else; see ``lovely.remotetask.health``).
    ``off``: they ask for a login with the permission
    ``lovely.remotetask.Monitor``, as ``/metrics`` always does.
"""
import re
from typing import NamedTuple
from typing import Optional

import zope.app.appsetup.product

from lovely.remotetask.browser.util import originOf


PRODUCT = 'lovely.remotetask.app'
DEFAULT_MAX_REQUEST_BODY = 10 * 1024 * 1024
UNITS = {'': 1, 'B': 1, 'KB': 1024, 'MB': 1024 ** 2, 'GB': 1024 ** 3}
SWITCH = {'on': True, 'true': True, 'yes': True, '1': True,
          'off': False, 'false': False, 'no': False, '0': False}


class InvalidSetting(ValueError):
    """A setting of ``<product-config lovely.remotetask.app>`` is wrong."""


class Settings(NamedTuple):
    #: ``originOf(public-url)``, or None when not configured.
    public_origin: Optional[tuple] = None
    public_url: Optional[str] = None
    virtual_hosting: bool = False
    max_request_body: int = DEFAULT_MAX_REQUEST_BODY
    health_public: bool = True


def size(text):
    """``10MB`` -> 10485760.

    >>> size('10MB'), size('512 kb'), size('1000')
    (10485760, 524288, 1000)
    """
    match = re.fullmatch(r'\s*(\d+)\s*([KMG]?B?)\s*', text, re.I)
    if match is None:
        raise InvalidSetting(
            f'max-request-body: {text!r} is not a size (e.g. 10MB)')
    return int(match.group(1)) * UNITS[match.group(2).upper()]


def parse(config):
    """The settings of a product configuration (a dict of strings)."""
    config = config or {}
    url = (config.get('public-url') or '').strip() or None
    origin = None
    if url is not None:
        origin = originOf(url)
        if origin is None:
            raise InvalidSetting(
                f'public-url: {url!r} is not an http(s) URL')
    virtual_hosting = switch(config, 'virtual-hosting', 'off')
    health_public = switch(config, 'health-public', 'on')
    if virtual_hosting and origin is None:
        raise InvalidSetting(
            'virtual-hosting on needs public-url: the address the proxy '
            'serves the site at')
    limit = config.get('max-request-body')
    limit = DEFAULT_MAX_REQUEST_BODY if not limit else size(limit)
    return Settings(origin, url, virtual_hosting, limit, health_public)


def switch(config, key, default):
    """An on/off setting."""
    value = (config.get(key) or default).strip().lower()
    if value not in SWITCH:
        raise InvalidSetting(f'{key}: {value!r} is neither on nor off')
    return SWITCH[value]


def load():
    """The settings of the loaded ``zope.conf``."""
    return parse(
        zope.app.appsetup.product.getProductConfiguration(PRODUCT))
