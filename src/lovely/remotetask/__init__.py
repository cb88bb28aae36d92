"""lovely.remotetask: a ZODB-native job queue for Zope Toolkit applications."""
