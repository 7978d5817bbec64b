"""Joins multicast group 239.1.2.3 on lo, bound to the group's port, and sends to it once a
second: a multicast receiver and sender in one. Run in a namespace whose lo has the MULTICAST
flag. Prints "joined"."""
import socket
import struct
import time

GROUP, PORT = "239.1.2.3", 5000
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((GROUP, PORT))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, struct.pack("4s4s", socket.inet_aton(GROUP), socket.inet_aton("127.0.0.1")))
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
print("joined", flush=True)
while True:
    s.sendto(b"tick", (GROUP, PORT))
    time.sleep(1)
