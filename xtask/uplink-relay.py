#!/usr/bin/env python3
"""One guest connection to the host, relayed: QEMU's user networking runs
this for each TCP connection a guest on the uplink opens to
abi::machine::UPLINK_HOST_SERVICE (`guestfwd=...-cmd:`), with the
connection as stdin/stdout. It connects to 127.0.0.1:PORT on the host and
copies both ways, passing each side's end of data (half-close) on.

Usage: uplink-relay.py PORT
"""

import os
import selectors
import socket
import sys


def main() -> int:
    port = int(sys.argv[1])
    guest = socket.socket(fileno=os.dup(0))
    try:
        host = socket.create_connection(("127.0.0.1", port), timeout=10)
    except OSError:
        # stderr is the guest's connection too: closing it is the answer.
        return 1
    host.settimeout(None)
    peers = {guest: host, host: guest}
    sel = selectors.DefaultSelector()
    for s in peers:
        sel.register(s, selectors.EVENT_READ)
    open_sides = 2
    while open_sides:
        for key, _ in sel.select():
            src = key.fileobj
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if data:
                peers[src].sendall(data)
                continue
            sel.unregister(src)
            open_sides -= 1
            try:
                peers[src].shutdown(socket.SHUT_WR)
            except OSError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
