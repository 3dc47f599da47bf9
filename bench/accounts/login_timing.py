# How long login_failed takes for an unknown account and for a wrong password.
# usage: python3 login_timing.py CHAT_BINARY
import json, os, socket, subprocess, sys, time, statistics
srv = subprocess.Popen([sys.argv[1], "server", "--listen", "127.0.0.1:0", "--quiet", "--login-limit", "0"], stdout=subprocess.PIPE, env={**os.environ, "CHAT_DB": "none"})
port = int(srv.stdout.readline().decode().rsplit(":", 1)[1])
def conn():
    s = socket.create_connection(("127.0.0.1", port)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = s.makefile("rwb"); f.readline(); return f
def send(f, o): f.write((json.dumps(o) + "\n").encode()); f.flush()
v = conn(); send(v, {"type": "nick", "nick": "alice"}); v.readline(); send(v, {"type": "register", "password": "the right password"}); v.readline()
t = {"unknown": [], "wrong": []}; answers = set()
for i in range(400):
    if i % 4 == 0: f = conn()
    kind = "unknown" if i % 2 == 0 else "wrong"
    t0 = time.perf_counter(); send(f, {"type": "login", "account": "nobody" if kind == "unknown" else "alice", "password": "not it at all"})
    while True:
        line = f.readline()
        if json.loads(line)["type"] in ("error", "logged_in"): break
    t[kind].append(time.perf_counter() - t0); answers.add(line)
for k, v in t.items():
    v.sort(); print(f"{k}: n={len(v)} median={statistics.median(v)*1000:.2f} ms p10={v[len(v)//10]*1000:.2f} p90={v[len(v)*9//10]*1000:.2f}")
print("distinct answers:", answers)
srv.terminate()
