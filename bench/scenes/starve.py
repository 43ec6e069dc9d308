#!/usr/bin/env python3
"""The starvation scene from outside: N clients connect with a 4 KiB receive buffer, push up to
8 MiB each and never read; then 20 fresh clients each send 1 KiB and time the echo.

Usage: bench/scenes/starve.py PORT N   (against ucoro-echo-server -q -v 127.0.0.1 PORT)
Prints how many of the 20 got their bytes back and the slowest echo. Loopback only."""
import os
import socket
import sys
import time

port=int(sys.argv[1]); n=int(sys.argv[2])
bad=[]
for i in range(n):
    s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1",port)); s.setblocking(False); bad.append(s)
chunk=b"x"*65536
deadline=time.time()+5
pushed=[0]*n
while time.time()<deadline:
    progress=False
    for i,s in enumerate(bad):
        if pushed[i]>=8<<20: continue
        try:
            k=s.send(chunk); pushed[i]+=k; progress=True
        except BlockingIOError: pass
    if not progress:
        time.sleep(0.05)
        if all(p>=8<<20 for p in pushed): break
print("pushed MiB", [p>>20 for p in pushed])
ok=0; worst=0
for j in range(20):
    c=socket.create_connection(("127.0.0.1",port)); c.settimeout(3)
    data=os.urandom(1024); t=time.time(); c.sendall(data); got=b""
    try:
        while len(got)<1024:
            r=c.recv(4096)
            if not r: break
            got+=r
    except socket.timeout: pass
    dt=time.time()-t; worst=max(worst,dt)
    if got==data: ok+=1
    c.close()
print(f"{ok}/20 answered, worst {worst*1000:.1f} ms")
