"""Start and stop the two brokers under test, each on 127.0.0.1 and free ports of its own.

* mosquitto: Debian's /usr/sbin/mosquitto with a generated configuration (one listener on
  127.0.0.1, anonymous clients allowed, no persistence), so it never touches port 1883 or a
  system service's files.
* clasp: `clasp relay --memory` with every listener on 127.0.0.1 (WebSocket, rendezvous API,
  LAN discovery responder and MQTT) on free ports, and mDNS off.
"""

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time


def _die_with_parent():
    """Runs in the child before exec: SIGTERM it if the runner dies without cleaning up."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Broker:
    """A server process listening for MQTT on 127.0.0.1:`port`."""

    def __init__(self, name, argv, port, workdir, env=None):
        self.name, self.port, self.host = name, port, "127.0.0.1"
        self.log_path = os.path.join(workdir, f"{name}.log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, cwd=workdir, preexec_fn=_die_with_parent,
        )

    def wait_ready(self, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            if _accepts(self.port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not accept on port {self.port}:\n{self.log()}")

    def alive(self):
        return self.proc.poll() is None

    def log(self):
        self._log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-4000:]

    def stop(self):
        """SIGTERM, then SIGKILL after 5 s; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def start_mosquitto(workdir, binary="/usr/sbin/mosquitto"):
    port = free_port()
    conf = os.path.join(workdir, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write(
            f"listener {port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "set_tcp_nodelay true\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            "connection_messages true\n"
        )
    return Broker("mosquitto", [binary, "-c", conf], port, workdir)


def start_clasp(workdir, binary):
    port = free_port()
    argv = [
        binary, "relay", "--bind", "127.0.0.1", "--memory",
        "--port", str(free_port()),
        "--rendezvous-port", str(free_port()),
        "--discovery-port", str(free_port(socket.SOCK_DGRAM)),
        "--no-mdns",
        "--mqtt-port", str(port),
    ]
    env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"))
    return Broker("clasp", argv, port, workdir, env=env)


class Brokers:
    """Both brokers, started together and always stopped (use as a context manager)."""

    def __init__(self, clasp_binary, keep_logs=False):
        self.clasp_binary = clasp_binary
        self.keep_logs = keep_logs
        self.workdir = tempfile.mkdtemp(prefix="mqtt-conformance-")
        self.all = []

    def __enter__(self):
        try:
            self.all.append(start_mosquitto(self.workdir))
            self.all.append(start_clasp(self.workdir, self.clasp_binary))
            for b in self.all:
                b.wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self.all

    def __exit__(self, *exc):
        for b in self.all:
            b.stop()
        if self.keep_logs or exc[0] is not None:
            print(f"broker logs kept in {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return False
