#!/usr/bin/python3
# Lab step 2, server: print the message, reply "hi" (the slide's solution).
# Plus: optional PORT argument (0 = any free port) and a "listening on" line on stderr.
import sys
from socket import *

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 12345

sock = socket(AF_INET, SOCK_DGRAM)
sock.bind(('', PORT))
print('listening on', sock.getsockname()[1], file=sys.stderr, flush=True)
msg, client = sock.recvfrom(1024)
print(msg.decode(), 'from', client, flush=True)
sock.sendto('hi'.encode(), client)
sock.close()
