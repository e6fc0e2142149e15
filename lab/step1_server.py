#!/usr/bin/python3
# Lab step 1, server: print the received message and who sent it.
# As on the slide, plus: optional PORT argument (0 = any free port), and a
# "listening on" line on stderr once bound, so that a test knows when to send.
import sys
from socket import *

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 12345

sock = socket(AF_INET, SOCK_DGRAM)
sock.bind(('', PORT))
print('listening on', sock.getsockname()[1], file=sys.stderr, flush=True)
msg, client = sock.recvfrom(1024)
print(msg.decode(), client, flush=True)
sock.close()
