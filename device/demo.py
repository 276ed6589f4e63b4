"""`make demo`: the whole of rlsmon on one machine, from simulated ankle to clinic dashboard.

It starts a private mosquitto (TLS from a CA made here, passwords, the production ACL), the
collector and the dashboard, provisions two devices and assigns them to two pseudonymous patients,
simulates nights for each (a PLMD patient, whose strap comes off on the second night, and a
control), and runs the real daemon for each device on the register-level emulator, faster than
real time. On the first evening the PLMD patient takes the evening test (SIT, docs/sit.md): the
device offers it, the emulated patient presses the button, and its result reaches the dashboard
beside the nights. Everything lives under one directory
(`./demo-data` by default) and runs as subprocesses, each in its own process group, through the
same command lines an installer uses: `device/` never imports `server/`. Ctrl-C stops it all.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import sqlite3
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

STOP_TIMEOUT_S = 10.0
ARRIVAL_TIMEOUT_S = 60.0  # after every night is receipted by the collector


class DemoError(RuntimeError):
    """The demo cannot go on; the message says what failed and where its log is."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Supervisor:
    """The demo's child processes, each in its own session so a signal reaches all it spawned."""

    log_dir: Path
    children: list[tuple[str, subprocess.Popen]] = field(default_factory=list)
    finite: set[str] = field(default_factory=set)  # children that end by themselves, with 0

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None,
              finite: bool = False) -> subprocess.Popen:
        """Start `argv` with its output in `<log_dir>/<name>.log`; `finite` if it ends by itself."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if finite:
            self.finite.add(name)
        log = (self.log_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})}, start_new_session=True,
        )
        log.close()
        self.children.append((name, proc))
        return proc

    def log_tail(self, name: str, lines: int = 15) -> str:
        """The last lines a child wrote, for an error message."""
        path = self.log_dir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        """Raise DemoError when a child failed, or a long-running one exited at all."""
        for name, proc in self.children:
            code = proc.poll()
            if code is not None and not (name in self.finite and code == 0):
                raise DemoError(f"{name} exited with {code}; its log ({self.log_dir / name}.log) ends:\n"
                                + self.log_tail(name))

    def stop_all(self) -> None:
        """SIGTERM every process group, newest first, then SIGKILL what is left after a timeout."""
        for _name, proc in reversed(self.children):
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for _name, proc in reversed(self.children):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(proc, signal.SIGKILL)  # also reaps grandchildren left in the group
            proc.wait()
        self.children.clear()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str, supervisor: Supervisor) -> None:
    """Poll `predicate` until true; fail after `timeout_s`, or at once when a child dies."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        supervisor.check_alive()
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.1)


def run(argv: list[str], what: str) -> str:
    """Run a setup command to completion and return its stdout; DemoError with its stderr if it fails."""
    result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise DemoError(f"{what} failed ({' '.join(argv[:3])} …, exit {result.returncode}):\n"
                        + (result.stderr or result.stdout).strip())
    return result.stdout


# --- TLS and the broker ---------------------------------------------------------------------------
def make_tls(tls_dir: Path) -> None:
    """A throwaway CA and a server certificate for localhost/127.0.0.1, made with openssl.

    The key usages and basic constraints are explicit so that strict verifiers (Python 3.13's
    VERIFY_X509_STRICT) accept them too.
    """
    tls_dir.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run(["openssl", "req", "-x509", *ec, "-keyout", str(tls_dir / "ca.key"), "-out", str(tls_dir / "ca.crt"),
         "-days", "30", "-subj", "/CN=rlsmon demo CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"], "making the demo CA")
    run(["openssl", "req", *ec, "-keyout", str(tls_dir / "server.key"), "-out", str(tls_dir / "server.csr"),
         "-subj", "/CN=localhost"], "making the broker's key")
    (tls_dir / "server.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
        "keyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n")
    run(["openssl", "x509", "-req", "-in", str(tls_dir / "server.csr"), "-CA", str(tls_dir / "ca.crt"),
         "-CAkey", str(tls_dir / "ca.key"), "-CAcreateserial", "-days", "30", "-out", str(tls_dir / "server.crt"),
         "-extfile", str(tls_dir / "server.ext")], "signing the broker's certificate")
    for key in ("ca.key", "server.key"):
        (tls_dir / key).chmod(0o600)


def mosquitto_binary() -> str:
    """mosquitto's path; Debian installs it in /usr/sbin, often not on a user's PATH."""
    found = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None)
    if not found:
        raise DemoError("mosquitto is not installed: `make demo` installs it from apt (mosquitto)")
    return found


def accepts_tls(host: str, port: int, ca_file: Path) -> bool:
    """Whether a TLS server that `ca_file` trusts answers on host:port."""
    context = ssl.create_default_context(cafile=str(ca_file))
    try:
        with socket.create_connection((host, port), timeout=1) as raw, \
                context.wrap_socket(raw, server_hostname="localhost"):
            return True
    except OSError:
        return False


def broker_config(production: str, *, port: int, tls_dir: Path, mosquitto_dir: Path, user: str) -> str:
    """The production mosquitto.conf with the demo's paths and port: same auth, ACL and limits.

    Each file path and the listener are replaced; persistence, the log file and the user are set
    so an unprivileged mosquitto keeps its files under the demo directory.
    """
    replace = {
        "password_file": str(mosquitto_dir / "passwd"),
        "acl_file": str(mosquitto_dir / "acl"),
        "cafile": str(tls_dir / "ca.crt"),
        "certfile": str(tls_dir / "server.crt"),
        "keyfile": str(tls_dir / "server.key"),
        "listener": f"{port} 127.0.0.1",
        "persistence_location": f"{mosquitto_dir}/",
    }
    lines = []
    for line in production.splitlines():
        key = line.split(None, 1)[0] if line.strip() and not line.lstrip().startswith("#") else ""
        if key in replace:
            line = f"{key} {replace.pop(key)}"
        elif key in ("log_dest", "user"):
            continue
        lines.append(line)
    # The listener's own settings (cafile…) must follow `listener`, so additions go before it.
    extra = [f"{k} {v}" for k, v in replace.items() if k != "listener"] + [
        f"log_dest file {mosquitto_dir / 'mosquitto.log'}", f"user {user}"] + [
        f"log_type {t}" for t in ("error", "warning", "notice", "information", "subscribe")]
    at = next(i for i, line in enumerate(lines) if line.startswith("listener "))
    return "\n".join(lines[:at] + extra + lines[at:]) + "\n"


def collector_subscribed(log_file: Path, client_id: str) -> bool:
    """Whether mosquitto's log shows the collector's subscription to the summaries.

    Devices must not publish before the collector's first subscription exists, or the broker has no
    session to queue their nights in.
    """
    if not log_file.exists():
        return False
    return any(client_id in line and "rlsmon/v1/+/summary" in line
               for line in log_file.read_text(errors="replace").splitlines())


# --- the dashboard, as a browser sees it ------------------------------------------------------------
class Dashboard:
    """Logs in through the login form (CSRF token and cookies, as a browser does) and reads the
    JSON API, to tell when the nights are on the dashboard."""

    def __init__(self, url: str) -> None:
        import http.cookiejar
        import urllib.request

        self.url = url
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def _get(self, path: str) -> bytes:
        with self._opener.open(self.url + path, timeout=10) as response:
            return response.read()

    def up(self) -> bool:
        """Whether the login page answers."""
        try:
            self._get("/login")
        except OSError:
            return False
        return True

    def login(self, username: str, password: str) -> None:
        """Log in; DemoError if the dashboard refuses."""
        import re
        import urllib.parse

        page = self._get("/login").decode()
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        if token is None:
            raise DemoError("the login page has no CSRF token")
        form = urllib.parse.urlencode({"username": username, "password": password,
                                       "csrf_token": token.group(1), "next": "/"}).encode()
        try:
            self._opener.open(self.url + "/login", data=form, timeout=10).close()
        except OSError as exc:
            raise DemoError(f"the demo login was refused ({exc})") from exc

    def add_medication(self, pseudonym: str, drug: str, dose: str, drug_class: str,
                       started: str) -> None:
        """Record a medication through the patient page's form, as a clinician would."""
        import re
        import urllib.parse

        patient = next(p for p in json.loads(self._get("/api/patients")) if p["pseudonym"] == pseudonym)
        token = re.search(r'name="csrf_token" value="([^"]+)"', self._get(f"/patients/{patient['id']}").decode())
        if token is None:
            raise DemoError("the patient page has no CSRF token")
        form = urllib.parse.urlencode({"drug": drug, "dose": dose, "drug_class": drug_class,
                                       "started": started, "csrf_token": token.group(1)}).encode()
        self._opener.open(f"{self.url}/patients/{patient['id']}/medications", data=form, timeout=10).close()

    def sits(self, device_id: str) -> list[dict]:
        """The device's evening tests (rlsmon.sit/1), oldest first."""
        return json.loads(self._get(f"/api/devices/{device_id}/sits"))

    def nights(self) -> dict[str, list[dict]]:
        """Each patient pseudonym with the headline figures of their nights, oldest first."""
        return {p["pseudonym"]: json.loads(self._get(f"/api/patients/{p['id']}/nights"))
                for p in json.loads(self._get("/api/patients"))}


# --- the demo -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Patient:
    """One demo patient: a pseudonym, their device and the simulator's scenario (and the night,
    counted from 1, whose strap comes off for a while: the `strap_off` scenario)."""

    pseudonym: str
    device_id: str
    scenario: str
    first_seed: int
    strap_off_night: int | None = None
    takes_sit: bool = False  # takes the evening test on the first evening

    def scenario_of(self, night: int) -> str:
        """The scenario of night `night` (from 1)."""
        return "strap_off" if night == self.strap_off_night else self.scenario


PATIENTS = (
    Patient("P-0001 (PLMD)", "demo-plmd", "plmd", 101, strap_off_night=2, takes_sit=True),
    Patient("P-0002 (control)", "demo-control", "control", 201),
)
MARKER = ".rlsmon-demo"  # only a directory holding this file is ever wiped by the demo


def program(name: str) -> str:
    """A console script of this venv (rlsmon-device, rlsmon-server)."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise DemoError(f"{name} is not installed: run `make demo`, which installs the package")
    return found


def fresh_dir(path: Path) -> Path:
    """An empty demo directory; refuses to wipe a directory the demo did not make."""
    path = path.resolve()
    if path.exists():
        if not (path / MARKER).exists():
            raise DemoError(f"{path} exists and is not a demo directory; choose another --dir")
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / MARKER).write_text("made by `python -m device.demo`; deleted by the next run\n")
    return path


def receipted_nights(store_path: Path) -> int:
    """How many of a device's nights the collector has receipted, read from its night store."""
    if not store_path.exists():
        return 0
    conn = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute("select count(*) from nights where receipted_at is not null").fetchone()[0]
    except sqlite3.OperationalError:
        return 0  # its tables are not made yet
    finally:
        conn.close()


def window_start_at(nights: int, start: str) -> str:
    """ISO start time for the emulated clock: the first of the last `nights` evenings, at `start`,
    so the nights land on the dashboard dated up to yesterday."""
    import datetime as dt

    first = dt.date.today() - dt.timedelta(days=nights)
    hh, mm = (int(x) for x in start.split(":"))
    return dt.datetime(first.year, first.month, first.day, hh, mm, tzinfo=dt.timezone.utc).isoformat()


def night_window(hours: float, start: str = "22:00") -> tuple[str, str]:
    """The nightly window (HH:MM, HH:MM) that is exactly `hours` long from `start`."""
    hh, mm = (int(x) for x in start.split(":"))
    end_min = (hh * 60 + mm + round(hours * 60)) % (24 * 60)
    return start, f"{end_min // 60:02d}:{end_min % 60:02d}"


# The evening test: offered 5 min into the first window (the patient is in bed by then), for 5 min,
# the patient presses a minute in; as long as the window allows, in 10-min blocks, up to an hour.
SIT_START, SIT_PRESS, SIT_OFFER_MIN = "22:05", "22:06", 5


def sit_length_min(hours: float) -> int | None:
    """The demo SIT's length for a window of `hours`: whole 10-min blocks that fit after the offer
    (and 5 min to spare), at most 60; None when not even one fits."""
    minutes = (round(hours * 60) - 5 - SIT_OFFER_MIN - 5) // 10 * 10
    return min(60, minutes) if minutes >= 10 else None


def device_toml(p: Patient, work: Path, port: int, hours: float, first_evening: str = "") -> str:
    """The device config: the example's settings, the demo broker and a window as long as a night;
    for the patient who takes the evening test, a `[sit]` on `first_evening`."""
    start, end = night_window(hours)
    length = sit_length_min(hours)
    sit = (f'[sit]\nfirst_evening = "{first_evening}"\nevenings = 1\nstart = "{SIT_START}"\n'
           f'offer_min = {SIT_OFFER_MIN}\nlength_min = {length}\n\n') if p.takes_sit and length and first_evening else ""
    return (f'device_id = "{p.device_id}"\nrules = "WASM2016"\ndata_dir = "{work}/data"\n\n'
            f'[night]\nstart = "{start}"\nend = "{end}"\ntimezone = "UTC"\n\n{sit}'
            f'[broker]\nhost = "127.0.0.1"\nport = {port}\nca_file = "{work.parent.parent}/tls/ca.crt"\n'
            f'username = ""\npassword_file = "{work}/mqtt-password"\n')


def server_toml(work: Path, mqtt_port: int, web_port: int) -> str:
    """The server config: every path under the demo directory, both ports from the OS."""
    return (f'[database]\npath = "{work}/server/server.db"\n\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {mqtt_port}\nca_file = "{work}/tls/ca.crt"\n'
            f'username = "collector"\npassword_file = "{work}/server/collector-password"\n\n'
            f'[provision]\npassword_file = "{work}/mosquitto/passwd"\nacl_file = "{work}/mosquitto/acl"\n'
            f'device_broker_host = "127.0.0.1"\ndevice_broker_port = {mqtt_port}\n'
            f'device_ca_file = "{work}/tls/ca.crt"\n\n'
            f'[web]\nhost = "127.0.0.1"\nport = {web_port}\n')


def write_secret(path: Path, text: str) -> None:
    """A file only its owner can read, as the installers make them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(text + "\n")


def say(message: str) -> None:
    """One line of progress for the person watching."""
    print(message, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the demo until Ctrl-C (or, with --exit-when-done, until every night is on the dashboard)."""
    parser = argparse.ArgumentParser(prog="python -m device.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default="demo-data", help="working directory, wiped at start (default ./demo-data)")
    parser.add_argument("--nights", type=int, default=3, help="nights per patient (default 3)")
    parser.add_argument("--hours", type=float, default=2.0, help="length of each simulated night (default 2)")
    parser.add_argument("--speed", type=float, default=200.0,
                        help="how many times faster than real time the devices' clocks run (default 200)")
    parser.add_argument("--exit-when-done", action="store_true",
                        help="stop everything once every patient's nights are on the dashboard")
    args = parser.parse_args(argv)

    def stop_on_sigterm(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        work = fresh_dir(Path(args.dir))
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    supervisor = Supervisor(work / "logs")
    try:
        run_demo(args, work, supervisor)
        return 0
    except KeyboardInterrupt:
        say("\nstopping the devices, the collector, the dashboard and the broker…")
        return 0
    except DemoError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        # A second Ctrl-C must not cut the clean-up short and leave orphans behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        supervisor.stop_all()
        say(f"stopped; the demo's files and logs stay in {work}")


def run_demo(args: argparse.Namespace, work: Path, supervisor: Supervisor) -> None:
    """Set everything up, run the devices and report the nights as they reach the dashboard."""
    import getpass

    began = time.monotonic()
    device_cli, server_cli = program("rlsmon-device"), program("rlsmon-server")
    passwd_tool = shutil.which("mosquitto_passwd")
    if passwd_tool is None:
        raise DemoError("mosquitto_passwd is not installed: `make demo` installs mosquitto from apt")
    repo = Path(__file__).resolve().parents[1]
    say(f"rlsmon demo in {work} (logs in {work / 'logs'})")

    # Simulated nights first: they take the longest, and run while everything else starts.
    say(f"simulating {args.nights} nights of {args.hours:g} h for "
        + " and ".join(f"{p.pseudonym}" for p in PATIENTS) + "…")
    recordings: dict[str, list[Path]] = {}
    for p in PATIENTS:
        (work / "recordings").mkdir(exist_ok=True)
        recordings[p.device_id] = []
        for n in range(args.nights):
            out = work / "recordings" / f"{p.device_id}-{n + 1}.csv"
            recordings[p.device_id].append(out)
            supervisor.start(f"simulate-{p.device_id}-{n + 1}", [
                device_cli, "simulate", "--scenario", p.scenario_of(n + 1), "--seed", str(p.first_seed + n),
                "--hours", str(args.hours), "--out", str(out), "--truth", str(out.with_suffix(".truth.json"))],
                finite=True)

    # The clinic side: TLS, broker credentials, database, devices, patients and a login.
    make_tls(work / "tls")
    mqtt_port, web_port = free_port(), free_port()
    config = work / "server" / "server.toml"
    config.parent.mkdir()
    config.write_text(server_toml(work, mqtt_port, web_port))
    mosquitto_dir = work / "mosquitto"
    mosquitto_dir.mkdir()
    shutil.copy(repo / "firmware_config" / "mosquitto.acl", mosquitto_dir / "acl")
    collector_password = secrets.token_urlsafe(18)
    write_secret(work / "server" / "collector-password", collector_password)
    run([passwd_tool, "-c", "-b", str(mosquitto_dir / "passwd"), "collector", collector_password],
        "adding the collector to the broker")
    for p in PATIENTS:
        snippet = run([server_cli, "add-device", "--config", str(config), p.device_id], f"add-device {p.device_id}")
        device_dir = work / "devices" / p.device_id
        (device_dir / "data").mkdir(parents=True)
        write_secret(device_dir / "mqtt-password", snippet.strip().splitlines()[-1])
        (device_dir / "device.toml").write_text(device_toml(p, device_dir, mqtt_port, args.hours,
                                                            window_start_at(args.nights, SIT_START)[:10]))
        run([server_cli, "assign", "--config", str(config), p.device_id, p.pseudonym], f"assign {p.device_id}")
    login_password = secrets.token_urlsafe(9)
    write_secret(work / "server" / "demo-login", login_password)
    run([server_cli, "add-user", "--config", str(config), "demo", "--password-file",
         str(work / "server" / "demo-login")], "add-user demo")

    (mosquitto_dir / "mosquitto.conf").write_text(broker_config(
        (repo / "firmware_config" / "mosquitto.conf").read_text(), port=mqtt_port, tls_dir=work / "tls",
        mosquitto_dir=mosquitto_dir, user=getpass.getuser()))
    supervisor.start("mosquitto", [mosquitto_binary(), "-c", str(mosquitto_dir / "mosquitto.conf")])
    wait_until(lambda: accepts_tls("127.0.0.1", mqtt_port, work / "tls" / "ca.crt"), 20,
               f"mosquitto on port {mqtt_port}", supervisor)
    supervisor.start("collector", [server_cli, "collect", "--config", str(config)])
    wait_until(lambda: collector_subscribed(mosquitto_dir / "mosquitto.log", "collector"), 30,
               "the collector's subscription", supervisor)
    supervisor.start("web", [server_cli, "web", "--config", str(config)])
    dashboard = Dashboard(f"http://127.0.0.1:{web_port}")
    wait_until(dashboard.up, 30, f"the dashboard on port {web_port}", supervisor)
    dashboard.login("demo", login_password)
    # A medication change halfway through the PLMD patient's nights: the dashboard compares the
    # nights before and after it.
    import datetime as dt

    started = (dt.date.today() - dt.timedelta(days=max(1, args.nights // 2))).isoformat()
    dashboard.add_medication(PATIENTS[0].pseudonym, "ropinirole", "0.25 mg", "dopamine_agonist", started)
    say(f"broker (TLS) on 127.0.0.1:{mqtt_port}, collector subscribed, dashboard up\n")
    say(f"    Dashboard:  {dashboard.url}/")
    say(f"    Login:      demo / {login_password}\n")

    sims = [name for name, _ in supervisor.children if name.startswith("simulate-")]
    wait_until(lambda: all(proc.poll() is not None for name, proc in supervisor.children if name in sims),
               600, "the simulated nights", supervisor)
    for p in PATIENTS:
        device_dir = work / "devices" / p.device_id
        emulate = [arg for rec in recordings[p.device_id] for arg in ("--emulate", str(rec))]
        if p.takes_sit and sit_length_min(args.hours):
            emulate += ["--press", window_start_at(args.nights, SIT_PRESS)]  # the patient takes the test
        supervisor.start(f"device-{p.device_id}", [
            device_cli, "run", "--config", str(device_dir / "device.toml"), *emulate,
            "--speed", f"{args.speed:g}", "--nights", str(args.nights), "--stay",
            "--start-at", window_start_at(args.nights, night_window(args.hours)[0])])
    per_night_s = args.hours * 3600 / args.speed
    say(f"two devices replay their nights at {args.speed:g}x through the emulated IMU, the real daemon "
        f"and MQTT: a night every ~{per_night_s:.0f} s")

    seen: set[tuple[str, str]] = set()
    # The devices stay online after their nights, as bedside devices wait for the next evening;
    # their stores say when the collector has receipted every night.
    stores = [work / "devices" / p.device_id / "data" / "night.db" for p in PATIENTS]
    devices_done_at: float | None = None
    while len(seen) < args.nights * len(PATIENTS):
        supervisor.check_alive()
        if devices_done_at is None and all(receipted_nights(db) >= args.nights for db in stores):
            devices_done_at = time.monotonic()
        elif devices_done_at is not None and time.monotonic() - devices_done_at > ARRIVAL_TIMEOUT_S:
            raise DemoError(f"the devices sent every night, but only {len(seen)} reached the dashboard; "
                            f"see {supervisor.log_dir}/collector.log")
        try:
            patients = dashboard.nights()
        except OSError:
            patients = {}  # a slow answer: ask again (a dead dashboard is caught by check_alive)
        for pseudonym, nights in patients.items():
            for night in nights:
                if (pseudonym, night["night"]) not in seen:
                    seen.add((pseudonym, night["night"]))
                    say(f"  {pseudonym}: night {night['night']}: PLMI {night['plm_index']:.1f}/h "
                        f"({night['severity']}), {night['lm_count']} LMs, {night['plm_count']} PLMs")
        time.sleep(1.0)
    for p in PATIENTS:
        if p.takes_sit and sit_length_min(args.hours):
            wait_until(lambda: bool(dashboard.sits(p.device_id)), ARRIVAL_TIMEOUT_S,
                       f"{p.pseudonym}'s evening test on the dashboard", supervisor)
            for t in dashboard.sits(p.device_id):
                index = "no index" if t["plm_index"] is None else f"SIT PLM index {t['plm_index']:.1f}/h"
                above = {None: "", True: " (above 40/h)", False: " (not above 40/h)"}[t["above_threshold"]]
                say(f"  {p.pseudonym}: evening test {t['evening']}: {index}{above}, {t['lm_count']} LMs "
                    f"in {t['duration_s'] / 60:.0f} min")
    say(f"\nall {args.nights} nights of both patients are on the dashboard, "
        f"{time.monotonic() - began:.0f} s after the start: {dashboard.url}/")
    if args.exit_when_done:
        return
    say("Ctrl-C stops everything.")
    signal.pause() if hasattr(signal, "pause") else time.sleep(1e9)


if __name__ == "__main__":
    sys.exit(main())
