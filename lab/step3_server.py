#!/usr/bin/python3
# Lab step 3, server: a turn-based chat. Waits for the client, then answers
# each message with a line typed at the keyboard; "bye" from either side ends it.
# Plus: optional PORT argument (0 = any free port) and a "listening on" line on stderr.
import sys
from socket import *

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 12345

sock = socket(AF_INET, SOCK_DGRAM)
sock.bind(('', PORT))
print('listening on', sock.getsockname()[1], file=sys.stderr, flush=True)
while True:
    msg, client = sock.recvfrom(1024)
    print(msg.decode(), flush=True)
    if msg.decode() == 'bye':
        break
    reply = input()
    sock.sendto(reply.encode(), client)
    if reply == 'bye':
        break
sock.close()
