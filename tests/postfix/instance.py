"""A private Postfix instance for tests: its own config, queue and data directories in a
fresh temp folder, listening only on 127.0.0.1, run as a foreground `master` process whose
process group is ours to kill.

Postfix 3.7 facts this relies on (checked against Debian's 3.7 package):
- `master` and `postfix` refuse to run unless the real user is root ("the master command is
  reserved for the superuser"); the daemons then drop to `mail_owner` (the `postfix` user the
  package creates). There is no unprivileged mode, so `PostfixInstance.start` needs root.
- The daemons (as `mail_owner`) chdir into `queue_directory` and talk over UNIX sockets in
  its `private/` and `public/`: every directory above it must be searchable by that user and
  the socket paths must fit `sun_path` (108 bytes). pytest's temp dirs are 0700 and long, so
  the instance lives in a short `tempfile.mkdtemp()` folder opened to 0755.
- The queue layout is the one `postfix check` (post-install) would make: subdirectories
  owned by `mail_owner`, `maildrop`/`public` group `setgid_group` (postdrop); making it here
  takes milliseconds where `postfix check` takes seconds.
- Without syslog, `maillog_file` (written by the `postlog` service, allowed only under
  `maillog_file_prefixes`) is the log the tests read.
- `master` without `-w` stays in the foreground and makes itself a session leader; on
  SIGTERM it signals its whole process group, so stopping it stops every daemon.
- `postqueue -c DIR` is allowed for root without `alternate_config_directories`.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# The daemons a relay-plus-LMTP instance uses. Unchrooted (column 5 "n"), so no copy of
# /etc files into the queue directory is needed, except `lmtp`, chrooted as in Debian's
# master.cf: the documented `lmtp:inet:127.0.0.1:PORT` and `lmtp:unix:private/mda` work there.
MASTER_CF = """\
{smtpd_listen} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       y       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

# Queue subdirectories and their (owner, group, mode) as post-install makes them; None is
# root.
QUEUE_DIRS = {
    "active": ("mail_owner", None, 0o700), "bounce": ("mail_owner", None, 0o700),
    "corrupt": ("mail_owner", None, 0o700), "defer": ("mail_owner", None, 0o700),
    "deferred": ("mail_owner", None, 0o700), "flush": ("mail_owner", None, 0o700),
    "hold": ("mail_owner", None, 0o700), "incoming": ("mail_owner", None, 0o700),
    "private": ("mail_owner", None, 0o700), "saved": ("mail_owner", None, 0o700),
    "trace": ("mail_owner", None, 0o700), "pid": (None, None, 0o755),
    "maildrop": ("mail_owner", "setgid_group", 0o730),
    "public": ("mail_owner", "setgid_group", 0o710),
}

MAIL_OWNER = "postfix"
SETGID_GROUP = "postdrop"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postfix_unavailable() -> str | None:
    """Why a private Postfix cannot run here, or None when it can."""
    if shutil.which("postfix") is None and not Path("/usr/sbin/postfix").exists():
        return "postfix is not installed"
    if os.geteuid() != 0:
        return "Postfix's master runs only as root"
    try:
        pwd.getpwnam(MAIL_OWNER)
        grp.getgrnam(SETGID_GROUP)
    except KeyError:
        return f"the {MAIL_OWNER} user or {SETGID_GROUP} group is missing"
    return None


def _postfix_program(name: str) -> str:
    """The path of a Postfix command (`postconf`, `postmap`, ...); they live in sbin."""
    return shutil.which(name) or str(Path("/usr/sbin") / name)


@dataclass
class PostfixInstance:
    """One private Postfix.

    Attributes:
        base: the instance's folder (config in `etc/`, queue in `spool/`, `data/`, `maillog`).
        smtpd_port: the port smtpd listens on at 127.0.0.1 (inbound SMTP and mda's
            submission alike).
        main_cf: the `main.cf` text as written.
        proc: the `master` process once started.
    """

    base: Path
    smtpd_port: int
    main_cf: str = ""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def config_dir(self) -> Path:
        return self.base / "etc"

    @property
    def queue_dir(self) -> Path:
        return self.base / "spool"

    @property
    def maillog(self) -> Path:
        return self.base / "maillog"

    @property
    def _stderr(self) -> Path:
        return self.base / "master.stderr"

    @classmethod
    def create(cls, smtpd_port: int | None = None) -> PostfixInstance:
        """Make the instance's folder and lay out its queue; `configure` writes the config.

        Args:
            smtpd_port: the smtpd port; a free one when None.
        """
        base = Path(tempfile.mkdtemp(prefix="mda-pf-"))
        base.chmod(0o755)
        owner = pwd.getpwnam(MAIL_OWNER).pw_uid
        group = grp.getgrnam(SETGID_GROUP).gr_gid
        (base / "etc").mkdir(mode=0o755)
        (base / "data").mkdir(mode=0o700)
        os.chown(base / "data", owner, -1)
        spool = base / "spool"
        spool.mkdir(mode=0o755)
        for name, (user, grp_name, mode) in QUEUE_DIRS.items():
            path = spool / name
            path.mkdir()
            path.chmod(mode)
            os.chown(path, owner if user else 0, group if grp_name else 0)
        return cls(base, smtpd_port or free_port())

    def configure(self, settings: str) -> None:
        """Write `main.cf` (the harness lines, then `settings`) and `master.cf`.

        Args:
            settings: more `main.cf` lines (`name = value`); a later line for a name wins,
                as in Postfix.
        """
        self.main_cf = "\n".join([
            "compatibility_level = 3.6",
            f"queue_directory = {self.queue_dir}",
            f"data_directory = {self.base / 'data'}",
            f"mail_owner = {MAIL_OWNER}",
            f"setgid_group = {SETGID_GROUP}",
            "inet_interfaces = 127.0.0.1",
            "inet_protocols = ipv4",
            "myhostname = postfix.test",
            "mydomain = postfix.test",
            "mydestination =",
            "alias_maps =",
            "alias_database =",
            "biff = no",
            "smtpd_peername_lookup = no",
            f"maillog_file = {self.maillog}",
            f"maillog_file_prefixes = {self.base}",
            # Deferred mail is retried within seconds, not minutes.
            "queue_run_delay = 1s",
            "minimal_backoff_time = 1s",
            "maximal_backoff_time = 2s",
            settings,
            "",
        ])
        (self.config_dir / "main.cf").write_text(self.main_cf)
        (self.config_dir / "master.cf").write_text(
            MASTER_CF.format(smtpd_listen=f"127.0.0.1:{self.smtpd_port}"))
        # Postfix re-reads a configuration file modified within the last second until it
        # is older (0.3 s steps, almost 2 s per program start); date them in the past.
        past = time.time() - 60
        for name in ("main.cf", "master.cf"):
            os.utime(self.config_dir / name, (past, past))

    def start(self, timeout: float = 10) -> None:
        """Start `master` in the foreground and wait until smtpd answers.

        Raises:
            AssertionError: master exited or smtpd did not answer within `timeout` seconds
                (master's stderr and the mail log are in the message).
        """
        daemon_dir = self.postconf("daemon_directory")
        with self._stderr.open("wb") as err:
            self.proc = subprocess.Popen(
                [str(Path(daemon_dir) / "master"), "-c", str(self.config_dir)],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.smtpd_port), timeout=1) as s:
                    if s.recv(512).startswith(b"220"):
                        return
            except OSError:
                time.sleep(0.02)
        raise AssertionError(f"Postfix did not start:\n{self.diagnostics()}")

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM master (which stops its process group), wait for it, then SIGKILL any
        process of the group still there. The instance's folder is removed."""
        try:
            if self.proc is not None:
                pgid = self.proc.pid  # master is its own session and group leader
                if self.proc.poll() is None:
                    self.proc.send_signal(signal.SIGTERM)
                    try:
                        self.proc.wait(timeout)
                    except subprocess.TimeoutExpired:
                        self.proc.kill()
                        self.proc.wait(timeout)
                deadline = time.monotonic() + timeout
                while _group_alive(pgid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if _group_alive(pgid):
                    os.killpg(pgid, signal.SIGKILL)
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def postconf(self, name: str) -> str:
        """The value of one parameter as this instance sees it (`postconf -h`)."""
        out = subprocess.run([_postfix_program("postconf"), "-c", str(self.config_dir),
                              "-h", name], capture_output=True, check=True, timeout=30)
        return out.stdout.decode().strip()

    def reload(self) -> None:
        """`postfix -c DIR reload`: re-read the configuration and the lookup tables."""
        out = subprocess.run([_postfix_program("postfix"), "-c", str(self.config_dir),
                              "reload"], capture_output=True, timeout=60)
        assert out.returncode == 0, (out.stdout, out.stderr)

    def postqueue(self, *args: str) -> str:
        """Run `postqueue -c DIR ARGS` (root may name the config dir) and return stdout."""
        out = subprocess.run([_postfix_program("postqueue"), "-c", str(self.config_dir),
                              *args], capture_output=True, timeout=30)
        assert out.returncode == 0, (args, out.stdout, out.stderr)
        return out.stdout.decode()

    def queue(self) -> list[dict]:
        """The messages in the queue, one dict each as `postqueue -j` prints them
        (`queue_name`, `queue_id`, `sender`, `recipients` with `address`, `delay_reason`)."""
        return [json.loads(line) for line in self.postqueue("-j").splitlines() if line]

    def flush(self) -> None:
        """`postqueue -f`: try every deferred message now."""
        self.postqueue("-f")

    def log_text(self) -> str:
        """The mail log so far ("" before the first line)."""
        try:
            return self.maillog.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, pattern: str, timeout: float = 20, count: int = 1) -> list[str]:
        """Wait until `count` mail log lines match `pattern` (regex); return them.

        Raises:
            AssertionError: fewer matched within `timeout` seconds (the log is in the message).
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            lines = [line for line in self.log_text().splitlines() if regex.search(line)]
            if len(lines) >= count:
                return lines
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(lines)} of {count} mail log lines match "
                                     f"{pattern!r}:\n{self.diagnostics()}")
            time.sleep(0.05)

    def diagnostics(self) -> str:
        """master's stderr and the mail log, for failure messages."""
        stderr = self._stderr.read_text(errors="replace") if self._stderr.exists() else ""
        return f"master stderr:\n{stderr}\nmail log:\n{self.log_text()}"


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is in process group `pgid` (Linux /proc).

    master's children become zombies of init when master exits first; they are gone in
    every sense that matters here even before init reaps them."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False
