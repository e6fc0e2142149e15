#!/usr/bin/python3
# Lab step 4: full-duplex chat; either side sends at any time (the slide's hint:
# a receiving thread started with _thread). "bye" from either side ends it.
#   ./step4_peer.py listen [PORT]        wait for a peer (0 = any free port)
#   ./step4_peer.py connect HOST PORT    talk to a listening peer, speak first
import os
import sys
import _thread
import threading
from socket import *

USAGE = '''usage: step4_peer.py listen [PORT]        wait for a peer (0 = any free port)
       step4_peer.py connect HOST PORT    talk to a listening peer, speak first'''

args = sys.argv[1:]
if not ((args[:1] == ['listen'] and len(args) <= 2)
        or (args[:1] == ['connect'] and len(args) == 3)):
    print(USAGE, file=sys.stderr)
    sys.exit(2)

sock = socket(AF_INET, SOCK_DGRAM)
peer = None
peer_known = threading.Event()

if sys.argv[1] == 'listen':
    sock.bind(('', int(sys.argv[2]) if len(sys.argv) > 2 else 12345))
    print('listening on', sock.getsockname()[1], file=sys.stderr, flush=True)
else:
    peer = (sys.argv[2], int(sys.argv[3]))
    peer_known.set()


def receive(sock):
    global peer
    while True:
        msg, sender = sock.recvfrom(1024)
        if peer is None:
            peer = sender
            peer_known.set()
        print(msg.decode(), flush=True)
        if msg.decode() == 'bye':
            # The main thread is blocked in input(): leave the whole program.
            os._exit(0)


_thread.start_new_thread(receive, (sock,))
while True:
    try:
        msg = input()
    except EOFError:
        msg = 'bye'
    peer_known.wait()
    sock.sendto(msg.encode(), peer)
    if msg == 'bye':
        os._exit(0)
