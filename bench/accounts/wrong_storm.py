# 10,000 pipelined wrong-password logins on one connection; another user pings meanwhile.
# usage: python3 wrong_storm.py CHAT_BINARY [RATE]   (RATE: the server's --rate, 0 for none)
import json, os, socket, subprocess, sys, threading, time
srv = subprocess.Popen([sys.argv[1], "server", "--listen", "127.0.0.1:0", "--quiet", "--rate", sys.argv[2] if len(sys.argv) > 2 else "0"],
                       stdout=subprocess.PIPE, env={**os.environ, "CHAT_DB": "none"})
port = int(srv.stdout.readline().decode().rsplit(":", 1)[1])
def conn():
    s = socket.create_connection(("127.0.0.1", port)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = s.makefile("rwb"); f.readline(); return s, f
def send(f, o): f.write((json.dumps(o) + "\n").encode()); f.flush()
_, v = conn(); send(v, {"type": "nick", "nick": "victim"}); v.readline()
send(v, {"type": "register", "password": "the right password"}); print(v.readline().decode().strip())
_, c = conn()
a, af = conn()
N = 10000
blob = "".join(json.dumps({"type": "login", "account": "victim", "password": "guess %05d" % i}) + "\n" for i in range(N)).encode()
codes = {}
def reader():
    for _ in range(N):
        m = json.loads(af.readline()); codes[m.get("code")] = codes.get(m.get("code"), 0) + 1
t0 = time.time()
r = threading.Thread(target=reader); r.start()
w = threading.Thread(target=lambda: a.sendall(blob)); w.start()
rtts = []
while r.is_alive():
    t = time.perf_counter(); send(c, {"type": "ping"})
    while json.loads(c.readline())["type"] != "pong": pass
    rtts.append(time.perf_counter() - t); time.sleep(0.005)
took = time.time() - t0
rtts.sort(); q = lambda p: rtts[min(len(rtts) - 1, int(len(rtts) * p))] * 1000
print(f"{N} wrong logins answered in {took:.2f} s: {codes}")
print(f"pings meanwhile: n={len(rtts)} p50={q(.5):.2f} ms p99={q(.99):.2f} ms max={rtts[-1]*1000:.2f} ms")
print([l.strip() for l in open(f"/proc/{srv.pid}/status") if l.startswith(("VmRSS", "VmHWM"))])
srv.terminate(); srv.wait()
