# Login throughput and chat latency during a login storm.
# usage: python3 login_storm.py CHAT_BINARY [CONNS] [SECONDS] [MIX]
# (MIX 1: half the connections try unknown accounts, reconnecting every 4)
import json, os, socket, subprocess, sys, tempfile, threading, time
binary = sys.argv[1]; conns = int(sys.argv[2]) if len(sys.argv) > 2 else 16
secs = float(sys.argv[3]) if len(sys.argv) > 3 else 10
MIX = int(sys.argv[4]) if len(sys.argv) > 4 else 0  # 1: half the connections try unknown accounts
d = tempfile.mkdtemp()
srv = subprocess.Popen([binary, "server", "--listen", "127.0.0.1:0", "--quiet", "--db", d + "/chat.db",
                        "--login-limit", "0", "--rate", "0"], stdout=subprocess.PIPE, env={**os.environ, "CHAT_DB": ""})
port = int(srv.stdout.readline().decode().rsplit(":", 1)[1])
def conn():
    s = socket.create_connection(("127.0.0.1", port)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = s.makefile("rwb"); json.loads(f.readline()); return s, f
def send(f, o): f.write((json.dumps(o) + "\n").encode()); f.flush()
def until(f, *types):
    while True:
        m = json.loads(f.readline())
        if m["type"] in types or m["type"] == "error": return m
s, f = conn(); send(f, {"type": "nick", "nick": "owner"}); until(f, "nick")
send(f, {"type": "register", "password": "the right password"}); assert until(f, "registered")["type"] == "registered"
s2, chatter = conn()
stop = time.time() + secs; counts = {"ok": 0, "fail": 0}; lock = threading.Lock()
def storm(i):
    _, g = conn(); n = 0
    while time.time() < stop:
        good = MIX == 0 or (i % 2 == 0)
        send(g, {"type": "login", "account": "owner" if good else "nobody%d" % i, "password": "the right password"})
        m = until(g, "logged_in")
        kind = "ok" if m["type"] == "logged_in" else ("fail" if m.get("code") == "login_failed" else m.get("code"))
        with lock: counts[kind] = counts.get(kind, 0) + 1
        if not good:
            n += 1
            if n % 4 == 0: _, g = conn()  # five failures pause a connection
threads = [threading.Thread(target=storm, args=(i,)) for i in range(conns)]
for t in threads: t.start()
rtts = []
while time.time() < stop:
    t0 = time.perf_counter(); send(chatter, {"type": "ping", "token": 1}); until(chatter, "pong")
    rtts.append(time.perf_counter() - t0); time.sleep(0.01)
for t in threads: t.join()
rtts.sort()
q = lambda p: rtts[min(len(rtts) - 1, int(len(rtts) * p))] * 1000
total = counts.get("ok", 0) + counts.get("fail", 0)
print(f"{conns} connections, {secs:.0f} s: {total/secs:.1f} hashed logins/s; answers {counts}")
print(f"pings from another user during the storm: n={len(rtts)} p50={q(0.5):.2f} ms p99={q(0.99):.2f} ms max={rtts[-1]*1000:.2f} ms")
print("server RSS after:", [l for l in open(f"/proc/{srv.pid}/status") if l.startswith(("VmRSS", "VmHWM"))])
srv.terminate(); srv.wait()
