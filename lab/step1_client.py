#!/usr/bin/python3
# Lab step 1, client: send "hello" to the server.
# As on the slide, plus optional arguments so the tests can use any port:
#   ./step1_client.py [HOST] [PORT]      (defaults: localhost 12345)
import sys
from socket import *

HOST = sys.argv[1] if len(sys.argv) > 1 else 'localhost'
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 12345

sock = socket(AF_INET, SOCK_DGRAM)
sock.sendto('hello'.encode(), (HOST, PORT))
sock.close()
