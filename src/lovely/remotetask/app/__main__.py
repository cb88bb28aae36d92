"""``python -m lovely.remotetask.app``: the ``remotetask`` command."""
import sys

from lovely.remotetask.app.main import main


sys.exit(main())
