#!/usr/bin/python3
# Lab step 3, client: a turn-based chat. The client speaks first; "bye" from
# either side ends it. A student's solution following the slide's hints (input(), break).
#   ./step3_client.py [HOST] [PORT]      (defaults: localhost 12345)
import sys
from socket import *

HOST = sys.argv[1] if len(sys.argv) > 1 else 'localhost'
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 12345

sock = socket(AF_INET, SOCK_DGRAM)
while True:
    msg = input()
    sock.sendto(msg.encode(), (HOST, PORT))
    if msg == 'bye':
        break
    reply, server = sock.recvfrom(1024)
    print(reply.decode(), flush=True)
    if reply.decode() == 'bye':
        break
sock.close()
