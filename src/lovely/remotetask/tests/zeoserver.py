"""A ZEO server on 127.0.0.1 for the fault tests.

``python -m lovely.remotetask.tests.zeoserver PATH [PORT]`` serves a
FileStorage at PATH on PORT (default: a free one) and prints ``ADDRESS
host:port`` once it listens.  Conflict resolution runs in this
process, so it must import what the resolving classes need
(``lovely.remotetask.timeset``, ``BTrees``): the test
starts it with the same interpreter and ``PYTHONPATH`` as the workers.
"""
import sys

from ZEO.runzeo import ZEOOptions
from ZEO.runzeo import ZEOServer

# Import the conflict-resolving classes now: a missing one fails here,
# loudly, rather than as a ConflictError in some client much later.
import lovely.remotetask.timeset  # noqa: F401
from lovely.remotetask.tests import faultsupport


class Server(ZEOServer):

    def create_server(self):
        super().create_server()
        host, port = self.server.acceptor.addr[:2]
        print(f'ADDRESS {host}:{port}', flush=True)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    faultsupport.exitWithParent()
    options = ZEOOptions()
    port = argv[1] if len(argv) > 1 else '0'
    options.realize(['-a', f'127.0.0.1:{port}', '-f', argv[0]])
    Server(options).main()


if __name__ == '__main__':
    main()
