"""Runs moto's server (the same `moto.server.main` as `moto_server`) for envseal's tests.

It adds one thing: when standard input closes, the process exits. The test harness
holds the write end of that pipe, so the emulator dies with the test process, even
one killed with SIGKILL. Arguments are moto_server's; the harness always passes
`-H 127.0.0.1 -p 0` (loopback only, a free port, reported on stderr as
" * Running on http://127.0.0.1:PORT").
"""

import os
import sys
import threading

from moto.server import main


def _exit_on_stdin_eof() -> None:
    try:
        while sys.stdin.buffer.read(65536):
            pass
    finally:
        os._exit(0)


if __name__ == "__main__":
    threading.Thread(target=_exit_on_stdin_eof, name="stdin-eof", daemon=True).start()
    main(sys.argv[1:])
