#!/usr/bin/python3
# Lab step 2, client: send "hello", print the server's reply.
#   ./step2_client.py [HOST] [PORT]      (defaults: localhost 12345)
import sys
from socket import *

HOST = sys.argv[1] if len(sys.argv) > 1 else 'localhost'
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 12345

sock = socket(AF_INET, SOCK_DGRAM)
sock.sendto('hello'.encode(), (HOST, PORT))
msg, server = sock.recvfrom(1024)
print(msg.decode(), flush=True)
sock.close()
