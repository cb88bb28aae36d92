"""What the views of the ZMI share: dates, status classes, form values,
the nodes of the jobs table's cells, and the same-origin check of the
forms that change the queue.

Nodes
=====

A cell of the jobs table is a list of nodes, so that the page (markup,
``renderNodes``) and its live refresh (``jobs.json``, which jobs.js
turns into DOM nodes with ``textContent``, never ``innerHTML``) show the
same.  A node is text, or an element of one of ``TAGS`` with attributes
and text (``element``), or the markup of an application's detail view
(``{'markup': ...}``), which the page shows as it is and ``jobs.json``
as its text (``jsonNodes``):

    >>> nodes = [element('span', 'a <b>', {'class': 'x', 'title': '"'}),
    ...          ' & co', {'markup': '<em>my</em> view'}]
    >>> print(renderNodes(nodes))
    <span class="x" title="&quot;">a &lt;b&gt;</span> &amp; co<em>my</em> view
    >>> jsonNodes(nodes)[1:]
    [' & co', 'my view']
    >>> print(renderNodes([element('input', attrs={'type': 'checkbox',
    ...                                            'value': 42})]))
    <input type="checkbox" value="42">

Job data may hold lone surrogates (``"\\ud800"`` in JSON, or Python
code's strings), which cannot be encoded as UTF-8: a page with one would
fail (500).  The markup shows them escaped (``encodable``), as do the
job pages as a whole:

    >>> print(renderNodes([element('span', 'a\\ud800',
    ...                             {'title': '\\udfff'})]))
    <span title="\\udfff">a\\ud800</span>

Same origin
===========

A browser sends the credentials of HTTP basic authentication with every
request to the server, whichever site made the browser send it.  A page
on another site could therefore make a logged-in administrator's browser
post the forms of the ZMI (cross-site request forgery).  The forms refuse
a POST that comes from elsewhere, with 403 Forbidden, before they change
anything.  What "from elsewhere" means (``refusal``):

1. The browser's word first: ``Sec-Fetch-Site`` (sent by current
   browsers with every request) ``same-origin`` or ``none`` (typed,
   bookmarked) is accepted; ``same-site`` or ``cross-site`` is refused,
   except for a plain link (a GET or HEAD navigation without a query).

2. Without it: the ``Origin`` header (sent by browsers with every
   cross-origin POST), else the ``Referer``, must name the origin of the
   request's own URL (scheme, host and port; the URL the application
   sees, ``getApplicationURL()``, which virtual hosting sets).  A link
   from elsewhere (GET or HEAD without a query) is accepted.

3. A request with none of these headers is accepted here: it does not
   come from a current browser (scripts, XML-RPC clients, tests).  The
   server of ``lovely.remotetask.app`` fails closed instead: there such
   a request needs a form token when it may change something (see
   ``lovely.remotetask.app.csrf``).

    >>> refusal(('http', 'localhost', 80), 'POST', origin='http://localhost')
    >>> refusal(('http', 'localhost', 80), 'POST',
    ...         origin='http://evil.example')
    'Origin: another site'
    >>> refusal(('http', 'localhost', 80), 'POST',
    ...         referer='http://localhost:80/tasks?x=1')
    >>> refusal(('http', 'localhost', 80), 'POST', fetchSite='cross-site')
    'Sec-Fetch-Site: cross-site'
    >>> refusal(('http', 'localhost', 80), 'GET', fetchSite='cross-site',
    ...         fetchMode='navigate')
    >>> refusal(('http', 'localhost', 80), 'GET', fetchSite='cross-site',
    ...         fetchMode='navigate', query='ids:list=x&delete=1')
    'Sec-Fetch-Site: cross-site'
    >>> refusal(('http', 'localhost', 80), 'POST')
"""
import datetime
import html
from html.parser import HTMLParser
from urllib.parse import urlsplit


UTC = datetime.timezone.utc
NOT_SET = '[not set]'

DEFAULT_PORTS = {'http': 80, 'https': 443}
#: Methods that do not change anything (HTTP's "safe" methods).
SAFE_METHODS = ('GET', 'HEAD')
FORBIDDEN = 'Forbidden: a cross-origin request ({}) is refused.\n'


def formatDate(value):
    """An aware datetime as UTC text, or ``[not set]``."""
    if value is None:
        return NOT_SET
    return value.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S UTC')


def statusClass(status):
    """The CSS class of a status: ``status-queued``, ``status-start-later``.
    """
    return 'status-' + status.replace(' ', '-')


def encodable(text):
    """``text`` that can be encoded as UTF-8: what cannot (lone
    surrogates) is escaped as in Python.

    >>> print(encodable('key \\ud800!'), encodable('caf\xe9 \u2603'))
    key \\ud800! caf\xe9 \u2603
    """
    return text.encode('utf-8', 'backslashreplace').decode('utf-8')


def formText(form, name, default=''):
    """The text a form field was submitted with; None if it is not text.

    A name given twice (``minute=1&minute=2``) is a list and a converted
    one (``minute:int=1``, ``x.a:record=1``) something else: the form's
    controls never send that.
    """
    value = form.get(name, default)
    return value if isinstance(value, str) else None


# -- nodes of a cell (see the module doc) ----------------------------------

#: The elements a cell may have (jobs.js builds these and no others).
TAGS = ('a', 'span', 'input')
#: The attributes they may have.
ATTRIBUTES = ('class', 'title', 'href', 'type', 'name', 'value')
#: Elements without content (and end tag).
VOID = ('input',)


def element(tag, text='', attrs=None):
    """An element node: ``tag`` (one of ``TAGS``) with ``text`` and
    ``attrs`` (of ``ATTRIBUTES``; None values are left out).  Others are
    refused (``ValueError``, whatever ``python -O`` does to asserts):

    >>> element('script', 'alert(1)')
    Traceback (most recent call last):
    ValueError: element: the tag 'script' is not one of a, span, input
    >>> element('a', 'x', {'onclick': 'alert(1)', 'href': '/'})
    Traceback (most recent call last):
    ValueError: element: the attribute 'onclick' is not allowed
    """
    if tag not in TAGS:
        raise ValueError(f'element: the tag {tag!r} is not one of '
                         f'{", ".join(TAGS)}')
    attrs = {name: encodable(str(value))
             for name, value in (attrs or {}).items() if value is not None}
    for name in attrs:
        if name not in ATTRIBUTES:
            raise ValueError(f'element: the attribute {name!r} is not '
                             f'allowed')
    return {'tag': tag, 'attrs': attrs, 'text': encodable(str(text))}


def renderNodes(nodes):
    """The markup of nodes: text and attributes escaped."""
    parts = []
    for node in nodes:
        if isinstance(node, str):
            parts.append(html.escape(node, quote=False))
        elif 'markup' in node:
            parts.append(node['markup'])
        else:
            tag = node['tag']
            attrs = ''.join(f' {name}="{html.escape(value)}"'
                            for name, value in node['attrs'].items())
            if tag in VOID:
                parts.append(f'<{tag}{attrs}>')
            else:
                text = html.escape(node['text'], quote=False)
                parts.append(f'<{tag}{attrs}>{text}</{tag}>')
    return encodable(''.join(parts))


class _TextOf(HTMLParser):
    """The text of markup (what a browser shows of it, roughly)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts = []

    def handle_data(self, data):
        self.parts.append(data)


def markupText(markup):
    """The text of markup in one line.

    >>> markupText('<span class="s">0 * * * *</span> (next &amp; last)')
    '0 * * * * (next & last)'
    """
    parser = _TextOf()
    parser.feed(markup)
    parser.close()
    return ' '.join(''.join(parser.parts).split())


def jsonNodes(nodes):
    """Nodes for ``jobs.json``: markup becomes its text."""
    return [markupText(node['markup'])
            if isinstance(node, dict) and 'markup' in node
            else encodable(node) if isinstance(node, str) else node
            for node in nodes]


# -- same origin ------------------------------------------------------------

def originOf(url):
    """``(scheme, host, port)`` of an http(s) URL or Origin header value.

    None for anything else (``null``, another scheme, garbage).

    >>> originOf('https://Example.COM/path?q')
    ('https', 'example.com', 443)
    >>> originOf('http://localhost:8080'), originOf('null'), originOf('x:80')
    (('http', 'localhost', 8080), None, None)
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname, port or DEFAULT_PORTS[scheme]


def refusal(own, method, origin=None, referer=None, fetchSite=None,
            fetchMode=None, query=''):
    """Why a request to the site ``own`` (``originOf()`` of its URL) must
    be refused as cross-origin; None if it may go on.  The other arguments
    are the request's method, query string and headers (None if absent).
    See the module's documentation."""
    link = method in SAFE_METHODS and not query
    if fetchSite is not None:
        if fetchSite in ('same-origin', 'none'):
            return None
        if link and fetchMode in (None, 'navigate'):
            return None
        return f'Sec-Fetch-Site: {fetchSite}'
    for header, value in (('Origin', origin), ('Referer', referer)):
        if value is None:
            continue
        if originOf(value) == own or link:
            return None
        return f'{header}: another site'
    return None


def crossOrigin(request):
    """Why the browser request must be refused as cross-origin, or None.
    """
    return refusal(
        originOf(request.getApplicationURL()), request.method,
        origin=request.getHeader('Origin'),
        referer=request.getHeader('Referer'),
        fetchSite=request.getHeader('Sec-Fetch-Site'),
        fetchMode=request.getHeader('Sec-Fetch-Mode'),
        query=request.get('QUERY_STRING', ''))


def refuseCrossOrigin(request):
    """For a state-changing view: the 403 text to return for a POST from
    another site, or None to go on."""
    if request.method == 'POST':
        refused = crossOrigin(request)
        if refused:
            return forbidden(request, refused)
    return None


def forbidden(request, reason):
    """Answer 403 Forbidden; the text to return from the view."""
    response = request.response
    response.setStatus(403)
    response.setHeader('Content-Type', 'text/plain; charset=utf-8')
    return FORBIDDEN.format(reason)
