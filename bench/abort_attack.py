#!/usr/bin/env python3
"""The blame measurement (docs/security.md, Who is blamed): another client's success rate while three clients
abort chunked uploads, against a porter binary with default passive checks
(max_failures 3, cooldown 10 s). Usage: abort_attack.py PATH/TO/porter
Everything binds 127.0.0.1; the run takes about 8 s and stops itself."""
import http.server, os, socket, socketserver, subprocess, sys, tempfile, threading, time, urllib.request

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

class Backend(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "3"); self.end_headers(); self.wfile.write(b"ok\n")
    def do_POST(self):
        try:
            while self.rfile.readline():  # reads whatever arrives until the connection ends
                pass
        except OSError:
            pass
    def log_message(self, *a): pass

class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

def main():
    porter = sys.argv[1]
    backend_port, port = free_port(), free_port()
    threading.Thread(target=Server(("127.0.0.1", backend_port), Backend).serve_forever, daemon=True).start()
    folder = tempfile.mkdtemp()
    os.makedirs(f"{folder}/certs")
    with open(f"{folder}/porter.yaml", "w") as f:
        f.write(f'listen:\n  http: "127.0.0.1:{port}"\nhttp:\n  redirect: false\nupstreams:\n  web:\n    servers:\n'
                f'      - url: "http://127.0.0.1:{backend_port}"\nroutes:\n  - upstream: web\n')
    proc = subprocess.Popen([porter, "--config", f"{folder}/porter.yaml"], stderr=subprocess.DEVNULL, cwd=folder)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close(); break
            except OSError:
                time.sleep(0.05)
        attack = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        def abort():
            s = socket.create_connection(("127.0.0.1", port)); s.sendall(attack); time.sleep(0.2); s.close()
        def attacker():
            time.sleep(1)
            for _ in range(2):
                threads = [threading.Thread(target=abort) for _ in range(3)]
                [t.start() for t in threads]; [t.join() for t in threads]
                time.sleep(2)
        threading.Thread(target=attacker, daemon=True).start()
        ok = total = 0
        codes = {}
        end = time.time() + 7
        while time.time() < end:
            total += 1
            try:
                code = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).status
            except urllib.error.HTTPError as e:
                code = e.code
            except OSError:
                code = "error"
            codes[code] = codes.get(code, 0) + 1
            ok += code == 200
            time.sleep(0.025)
        print(f"legitimate requests: {total}, succeeded: {ok} ({100.0 * ok / total:.1f}%), answers: {codes}")
    finally:
        proc.terminate(); proc.wait()

main()
