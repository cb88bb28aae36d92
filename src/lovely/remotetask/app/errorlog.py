"""The error log of the server: a page that does not exist is no error.

On the first start zope.app.appsetup gives the root folder its error log
(``RootErrorReportingUtility``), which ignores ``Unauthorized`` only:
every request for a page that does not exist (a crawler, a typing
mistake) would be logged as an ERROR, with its traceback.  The server's
site definition (``site.zcml``) subscribes ``ignoreNotFound`` to the
opening of the database: an error log that ignores just what
zope.app.appsetup made it ignore ignores ``NotFound`` too.  An error log
configured otherwise (in the ZMI: the error log of ``++etc++site``) is
left as it is.
"""
import transaction
from zope.app.appsetup.bootstrap import getInformationFromEvent
from zope.error.interfaces import IErrorReportingUtility


#: What zope.app.appsetup's error log ignores.
DEFAULT = ('Unauthorized',)
#: What the server's error log ignores.
IGNORED = ('Unauthorized', 'NotFound')


def ignoreNotFound(event):
    """Subscriber of ``IDatabaseOpenedWithRoot``: see the module."""
    db, connection, root, root_folder = getInformationFromEvent(event)
    try:
        utility = None
        if root_folder is not None:
            utility = root_folder.getSiteManager().queryUtility(
                IErrorReportingUtility)
        if utility is not None:
            properties = utility.getProperties()
            if tuple(properties['ignored_exceptions']) == DEFAULT:
                utility.setProperties(properties['keep_entries'],
                                      properties['copy_to_zlog'], IGNORED)
                transaction.commit()
    finally:
        transaction.abort()
        connection.close()
