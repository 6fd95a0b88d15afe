"""Bad input through the real CLI: for each, the exit status, one clear line, no traceback, no hang,
and the database, config and input files byte for byte as they were."""

from __future__ import annotations

import csv
import hashlib
import itertools
import os
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from bulletin.app.csv_cells import escape_cell, unescape_cell
from bulletin.cli import cli
from bulletin.db import make_engine, reading
from bulletin.models import NewsItem, Subscriber
from bulletin.news.errors import SourceError
from bulletin.news.feeds import fetch_feed

LONG_NAME = "x" * 5000
# Names in the database (a name holding "@" is refused at input since the opt-in hardening, so
# the "@" formula is checked on the cell functions alone below).
FORMULAS = ['=HYPERLINK("http://evil.example/","click")', "+SUM(1;2)", "-2+3", "'=kept as typed"]
TIMEOUT = 60


# ---------------------------------------------------------------------------
# A project folder: config, a database with subscribers, a CSV to import


@dataclass
class Project:
    root: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.root / "bulletin.toml"

    @property
    def db(self) -> Path:
        return self.root / "subscribers.db"

    @property
    def people(self) -> Path:
        return self.root / "people.csv"

    def write_config(self, text: str) -> None:
        self.config.write_text(text, encoding="utf-8")

    def fifo(self, name: str) -> Path:
        path = self.root / name
        os.mkfifo(path)
        return path


def _base_config(extra: str = "") -> str:
    return f'[database]\nurl = "sqlite:///subscribers.db"\n{extra}'


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A set-up project, made once and copied for each case."""
    root = tmp_path_factory.mktemp("template")
    (root / "bulletin.toml").write_text(_base_config(), encoding="utf-8")
    env = {"BULLETIN_SECRET_KEY": "test-secret-key-0123456789abcdef"}
    runner = CliRunner()
    assert runner.invoke(cli, ["--config", str(root / "bulletin.toml"), "init"], env=env).exit_code == 0
    with (root / "people.csv").open("w", encoding="utf-8", newline="") as people:
        writer = csv.writer(people, lineterminator="\n")
        writer.writerow(["email", "name", "language", "interests"])
        writer.writerow(["ana@example.org", "Ana", "es", "youth"])
        writer.writerow(["marie@example.org", "Marie", "fr", ""])
        # Names a spreadsheet would run, written escaped as an export writes them.
        writer.writerows([f"p{i}@example.org", escape_cell(name), "en", ""] for i, name in enumerate(FORMULAS))
    result = runner.invoke(
        cli, ["--config", str(root / "bulletin.toml"), "subscribers", "import", str(root / "people.csv")], env=env
    )
    assert result.exit_code == 0, result.output
    # Every committed page in the database file itself, so that a copy is the whole database.
    with sqlite3.connect(root / "subscribers.db") as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    return root


@pytest.fixture
def project(template: Path, tmp_path: Path) -> Project:
    root = tmp_path / "project"
    shutil.copytree(template, root)
    return Project(root)


def _snapshot(root: Path) -> dict[str, str]:
    """sha256 of every regular file under ``root`` (an empty -wal or any -shm is SQLite's scratch)."""
    digests: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not stat.S_ISREG(path.stat().st_mode):
            continue
        if path.name.endswith("-shm") or (path.name.endswith("-wal") and path.stat().st_size == 0):
            continue
        digests[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


# ---------------------------------------------------------------------------
# Local HTTP servers that misbehave: a 100 KB header line, and one byte every 50 ms for ever


@dataclass
class BadServers:
    long_header_url: str
    drip_url: str


@pytest.fixture(scope="module")
def bad_servers() -> Iterator[BadServers]:
    stop = threading.Event()
    listeners: list[socket.socket] = []

    def serve(listener: socket.socket, answer: Callable[[socket.socket], None]) -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=answer, args=(connection,), daemon=True).start()

    def long_header(connection: socket.socket) -> None:
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nX-Filler: " + b"a" * 100_000 + b"\r\n\r\n<rss version='2.0'/>")
            stop.wait(1)

    def drip(connection: socket.socket) -> None:
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n\r\n<rss version='2.0'>")
            # The server's own pace, not the test waiting: it stops when the client hangs up.
            while not stop.wait(0.05):
                try:
                    connection.sendall(b" ")
                except OSError:
                    return

    urls = []
    for answer in (long_header, drip):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listeners.append(listener)
        threading.Thread(target=serve, args=(listener, answer), daemon=True).start()
        urls.append(f"http://127.0.0.1:{listener.getsockname()[1]}/feed.xml")
    yield BadServers(*urls)
    stop.set()
    for listener in listeners:
        listener.close()


# ---------------------------------------------------------------------------
# The table of bad inputs


@dataclass(frozen=True)
class Case:
    id: str
    # Prepares the scenario in the project and returns the arguments after ``--config FILE``.
    prepare: Callable[[Project], list[str]]
    status: int
    message: str
    # Through a real process (for inputs that could hang, or need a process of their own).
    subprocess: bool = False


def _config(text: str) -> Callable[[Project], list[str]]:
    """The project's config with ``text`` after its [database] table."""
    return _raw_config(_base_config(text))


def _raw_config(text: str) -> Callable[[Project], list[str]]:
    def prepare(project: Project) -> list[str]:
        project.write_config(text)
        return ["subscribers", "list"]

    return prepare


def _long_config_path(project: Project) -> list[str]:
    return ["--config", str(project.root / LONG_NAME), "subscribers", "list"]


def _args(*args: str) -> Callable[[Project], list[str]]:
    def prepare(project: Project) -> list[str]:
        return [arg.format(root=project.root) for arg in args]

    return prepare


def _damaged(kind: str, *command: str) -> Callable[[Project], list[str]]:
    def prepare(project: Project) -> list[str]:
        data = project.db.read_bytes()
        if kind == "truncated":
            # A copy cut short after its first two pages.
            project.db.write_bytes(data[:8192])
        elif kind == "not-sqlite":
            project.db.write_bytes(b"name,email\nthis is a CSV file saved over the database\n" * 50)
        return [arg.format(root=project.root) for arg in command]

    return prepare


def _secret(value: str) -> Callable[[Project], list[str]]:
    def prepare(project: Project) -> list[str]:
        project.extra_env["BULLETIN_SECRET_KEY"] = value
        return ["subscribers", "list"]

    return prepare


def _with_file(name: str, content: bytes, *args: str) -> Callable[[Project], list[str]]:
    def prepare(project: Project) -> list[str]:
        (project.root / name).write_bytes(content)
        return [arg.format(root=project.root) for arg in args]

    return prepare


def _with_link(*args: str) -> Callable[[Project], list[str]]:
    def prepare(project: Project) -> list[str]:
        (project.root / "link.csv").symlink_to(project.db)
        return [arg.format(root=project.root) for arg in args]

    return prepare


def _with_dir(name: str, *args: str) -> Callable[[Project], list[str]]:
    def prepare(project: Project) -> list[str]:
        (project.root / name).mkdir()
        return [arg.format(root=project.root) for arg in args]

    return prepare


def _with_fifo(name: str, *args: str) -> Callable[[Project], list[str]]:
    def prepare(project: Project) -> list[str]:
        project.fifo(name)
        return [arg.format(root=project.root) for arg in args]

    return prepare


def _config_is_fifo(project: Project) -> list[str]:
    project.config.unlink()
    project.fifo("bulletin.toml")
    return ["subscribers", "list"]


def _config_at(path: str) -> Callable[[Project], list[str]]:
    def prepare(project: Project) -> list[str]:
        return ["--config", path, "subscribers", "list"]

    return prepare


def _config_env_is_dir(project: Project) -> list[str]:
    folder = project.root / "conf.d"
    folder.mkdir()
    project.extra_env["BULLETIN_CONFIG"] = str(folder)
    return ["--config", "", "subscribers", "list"]


def _config_is_dir(project: Project) -> list[str]:
    project.config.unlink()
    project.config.mkdir()
    return ["subscribers", "list"]


def _db_is_dir(project: Project) -> list[str]:
    project.db.unlink()
    project.db.mkdir()
    return ["subscribers", "list"]


def _news_folder_with_outside_link(project: Project) -> list[str]:
    folder = project.root / "news"
    folder.mkdir()
    (folder / "passwd.txt").symlink_to("/etc/passwd")
    return ["news", "ingest", str(folder)]


def _markdown(text: str) -> Callable[[Project], list[str]]:
    def prepare(project: Project) -> list[str]:
        path = project.root / "item.md"
        path.write_text(text, encoding="utf-8")
        return ["news", "ingest", str(path)]

    return prepare


REFUSED_OUTPUT = "write the output to another file"
DAMAGED = "is not a bulletin database or is damaged"
COMMANDS_ON_THE_DATABASE = [
    ("subscribers", "list"),
    ("subscribers", "stats"),
    ("subscribers", "add", "new@example.org", "--lang", "fr"),
    ("subscribers", "export", "{root}/out.csv"),
    ("subscribers", "import", "{root}/people.csv"),
    ("news", "list"),
    ("init",),
    ("db", "upgrade"),
]

CASES: list[Case] = [
    # Outputs that would destroy something
    Case("export-over-database", _args("subscribers", "export", "{root}/subscribers.db"), 2, "is the database"),
    Case("export-over-config", _args("subscribers", "export", "{root}/bulletin.toml"), 2, "is the config file"),
    Case("export-over-wal", _args("subscribers", "export", "{root}/subscribers.db-wal"), 2, "-wal file"),
    Case("export-over-shm", _args("subscribers", "export", "{root}/subscribers.db-shm"), 2, "-shm file"),
    Case("export-over-link-to-db", _with_link("subscribers", "export", "{root}/link.csv"), 2, "is the database"),
    Case("export-to-dev-full", _args("subscribers", "export", "/dev/full"), 2, "not a regular file"),
    Case("export-to-dev-null", _args("subscribers", "export", "/dev/null"), 2, "not a regular file"),
    Case("export-to-folder", _with_dir("out", "subscribers", "export", "{root}/out"), 2, "not a regular file"),
    Case("export-to-fifo", _with_fifo("out.csv", "subscribers", "export", "{root}/out.csv"), 2, "not a regular file"),
    Case(
        "export-over-existing",
        _with_file("old.csv", b"keep me\n", "subscribers", "export", "{root}/old.csv"),
        2,
        "already exists: add --force",
    ),
    Case("export-missing-folder", _args("subscribers", "export", "{root}/no/such/out.csv"), 2, "does not exist"),
    Case(
        "export-under-a-file",
        _args("subscribers", "export", "{root}/people.csv/out.csv"),
        2,
        "is a file, not a folder",
    ),
    Case("export-5000-char-name", _args("subscribers", "export", "{root}/" + LONG_NAME), 2, "too long"),
    Case(
        "report-over-database",
        _args("subscribers", "import", "{root}/people.csv", "--report", "{root}/subscribers.db"),
        2,
        "is the database",
    ),
    Case(
        "report-over-config",
        _args("subscribers", "import", "{root}/people.csv", "--report", "{root}/bulletin.toml"),
        2,
        "is the config file",
    ),
    Case(
        "report-over-input",
        _args("subscribers", "import", "{root}/people.csv", "--report", "{root}/people.csv"),
        2,
        "is the file being imported",
    ),
    Case(
        "report-to-dev-full",
        _args("subscribers", "import", "{root}/people.csv", "--report", "/dev/full"),
        2,
        "not a regular file",
    ),
    Case(
        "report-over-existing",
        _with_file("r.csv", b"old report\n", "subscribers", "import", "{root}/people.csv", "--report", "{root}/r.csv"),
        2,
        "already exists: add --force",
    ),
    Case(
        "report-missing-folder",
        _args("subscribers", "import", "{root}/people.csv", "--report", "{root}/missing/r.csv"),
        2,
        "does not exist",
    ),
    Case(
        "report-5000-char-name",
        _args("subscribers", "import", "{root}/people.csv", "--report", "{root}/" + LONG_NAME),
        2,
        "too long",
    ),
    # Inputs that are not CSV files
    Case("import-dev-zero", _args("subscribers", "import", "/dev/zero"), 2, "not a regular file", subprocess=True),
    Case(
        "import-fifo",
        _with_fifo("pipe.csv", "subscribers", "import", "{root}/pipe.csv"),
        2,
        "not a regular file",
        subprocess=True,
    ),
    Case("import-folder", _with_dir("in", "subscribers", "import", "{root}/in"), 2, "not a regular file"),
    Case("import-missing", _args("subscribers", "import", "{root}/nobody.csv"), 2, "no such file"),
    Case("import-5000-char-name", _args("subscribers", "import", "{root}/" + LONG_NAME), 2, "too long"),
    Case(
        "import-binary",
        _with_file("bin.csv", bytes(range(256)) * 64, "subscribers", "import", "{root}/bin.csv"),
        1,
        "not UTF-8",
    ),
    Case("import-empty", _with_file("e.csv", b"", "subscribers", "import", "{root}/e.csv"), 1, "the file is empty"),
    Case(
        "import-no-email-column",
        _with_file("n.csv", b"name,language\nAna,es\n", "subscribers", "import", "{root}/n.csv"),
        1,
        "no 'email' column",
    ),
    # A damaged, truncated or foreign database, on every command
    *[
        Case(f"{kind}-db-{'-'.join(command[:2])}", _damaged(kind, *command), 1, DAMAGED)
        for kind in ("truncated", "not-sqlite")
        for command in COMMANDS_ON_THE_DATABASE
    ],
    Case("db-is-a-folder", _db_is_dir, 1, "cannot open the database"),
    # Config files that cannot be used
    Case("config-is-a-folder", _config_is_dir, 2, "is a folder, not a config file"),
    Case("config-is-a-fifo", _config_is_fifo, 2, "is not a regular file", subprocess=True),
    Case(
        "config-not-utf8",
        _with_file("bulletin.toml", "languages = ['fr']\n# é".encode("latin-1"), "subscribers", "list"),
        2,
        "not UTF-8",
    ),
    Case(
        "config-not-toml",
        _with_file("bulletin.toml", b"[database\nurl = 1\n", "subscribers", "list"),
        2,
        "not valid TOML",
    ),
    Case("config-5000-char-path", _long_config_path, 2, "too long"),
    Case(
        "url-not-a-url",
        _raw_config('[database]\nurl = "not a url at all"\n'),
        2,
        "database.url: 'not a url at all' is not a database URL",
    ),
    Case("url-unsupported", _raw_config('[database]\nurl = "mysql://u@h/db"\n'), 2, "'mysql' databases"),
    Case("smtp-timeout-0", _config("[smtp]\ntimeout = 0\n"), 2, "smtp.timeout: 0.0 is out of range"),
    Case("rate-inf", _config("[smtp]\nmessages_per_second = inf\n"), 2, "smtp.messages_per_second: inf"),
    Case("rate-nan", _config("[smtp]\nmessages_per_second = nan\n"), 2, "smtp.messages_per_second: nan"),
    Case("rate-1e-9", _config("[smtp]\nmessages_per_second = 1e-9\n"), 2, "smtp.messages_per_second: 1e-09"),
    Case("connections-100000", _config("[smtp]\nconnections = 100000\n"), 2, "smtp.connections: 100000"),
    Case("port-negative", _config("[smtp]\nport = -25\n"), 2, "smtp.port: -25"),
    Case("port-too-big", _config("[smtp]\nport = 70000\n"), 2, "smtp.port: 70000"),
    Case("retry-negative", _config("[delivery]\nretry_first = -300\n"), 2, "delivery.retry_first: -300.0"),
    Case("max-bytes-zero", _config("[ingest]\nmax_bytes = 0\n"), 2, "ingest.max_bytes: 0"),
    Case("ingest-timeout-inf", _config("[ingest]\ntimeout = inf\n"), 2, "ingest.timeout: inf"),
    Case("busy-timeout-negative", _config("busy_timeout_ms = -1\n"), 2, "database.busy_timeout_ms: -1"),
    Case(
        "from-address-crlf",
        _config('[sender]\nfrom_address = "a@example.org\\r\\nBcc: all@example.org"\n'),
        2,
        "sender.from_address",
    ),
    Case("from-name-lf", _config('[sender]\nfrom_name = "News\\nBcc: x@example.org"\n'), 2, "sender.from_name"),
    Case("list-id-crlf", _config('[sender]\nlist_id = "list.example.org\\r\\nX: y"\n'), 2, "sender.list_id"),
    Case("list-name-bell", _config('[organisation]\nlist_name = "News\\u0007"\n'), 2, "organisation.list_name"),
    Case("from-address-nobody", _config('[sender]\nfrom_address = "nobody"\n'), 2, "'nobody' is not an email"),
    Case("reply-to-bad", _config('[sender]\nreply_to = "x@"\n'), 2, "sender.reply_to"),
    Case("smtp-host-not-a-host", _config('[smtp]\nhost = "smtp server!"\n'), 2, "smtp.host: 'smtp server!'"),
    Case(
        "languages-twice",
        _raw_config('languages = ["fr", "en", "fr"]\n' + _base_config()),
        2,
        "languages: fr given more than once",
    ),
    Case("reviewer-not-address", _config('[workflow]\nreviewers = ["desk"]\n'), 2, "workflow.reviewers[0]"),
    Case("secret-16-spaces", _secret(" " * 16), 2, "too easy to guess"),
    Case("secret-16-same", _secret("a" * 16), 2, "too easy to guess"),
    Case("secret-short", _secret("short"), 2, "at least 16 characters"),
    # Numbers and dates past what the database or the calendar hold
    Case("news-show-huge-id", _args("news", "show", "99999999999999999999999"), 2, "a number is too large"),
    Case("edition-show-huge-id", _args("edition", "show", "99999999999999999999999"), 2, "a number is too large"),
    Case(
        "edition-create-widest-period",
        _args("edition", "create", "--since", "0001-01-01", "--until", "9999-12-31"),
        2,
        "a date is out of range",
    ),
    # News sources that are not news
    Case(
        "ingest-fifo",
        _with_fifo("pipe.txt", "news", "ingest", "{root}/pipe.txt"),
        1,
        "not a regular file",
        subprocess=True,
    ),
    Case("ingest-dev-zero", _args("news", "ingest", "/dev/zero"), 1, "not a regular file", subprocess=True),
    Case("ingest-link-out-of-folder", _news_folder_with_outside_link, 1, "outside the folder"),
    Case(
        "front-matter-topics-5",
        _markdown("---\ntitle: Rapport\ntopics: 5\n---\nTexte.\n"),
        1,
        "'topics' must be a list",
    ),
    Case(
        "front-matter-title-list",
        _markdown("---\ntitle: [a, b]\n---\nTexte.\n"),
        1,
        "'title' must be text",
    ),
    Case("front-matter-not-closed", _markdown("---\ntitle: Rapport\n\nTexte.\n"), 1, "is never closed"),
    Case("front-matter-list", _markdown("---\n- a\n- b\n---\nTexte.\n"), 1, "must be 'key: value' lines"),
    Case(
        "front-matter-impossible-date",
        _markdown("---\ntitle: Rapport\ndate: 2025-13-45\n---\nTexte.\n"),
        1,
        "impossible value: month must be in 1..12",
    ),
    Case(
        "front-matter-date-text",
        _markdown('---\ntitle: Rapport\ndate: "45 brumaire"\n---\nTexte.\n'),
        1,
        "is not a date",
    ),
    Case("ingest-5000-char-path", _args("news", "ingest", "{root}/" + LONG_NAME), 1, "File name too long"),
    Case("config-is-dev-null", _config_at("/dev/null"), 2, "is not a regular file"),
    Case("config-env-is-a-folder", _config_env_is_dir, 2, "is a folder, not a config file"),
    Case(
        "import-100-kb-header",
        _with_file("wide.csv", b"email," + b"x" * 100_000 + b"\n", "subscribers", "import", "{root}/wide.csv"),
        1,
        "the header line is too long",
    ),
    Case(
        "export-json-over-database",
        _args("subscribers", "export", "{root}/subscribers.db", "--format", "json"),
        2,
        "is the database",
    ),
    Case("ingest-broken-ipv6-url", _args("news", "ingest", "http://[::1"), 1, "not a valid URL"),
    Case("ingest-bad-port-url", _args("news", "ingest", "http://example.org:99999/feed"), 1, "not a valid URL"),
]


ALL_CASES = CASES


def run_cli(project: Project, args: list[str], *, in_process: bool = True) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``bulletin [--config FILE] ARGS`` in the project folder."""
    full = args if args[:1] == ["--config"] else ["--config", str(project.config), *args]
    env = {**os.environ, **project.extra_env}
    if in_process:
        result = CliRunner().invoke(cli, full, env=project.extra_env or None)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"{args}: {type(result.exception).__name__}: {result.exception}")
        return result.exit_code, result.stdout, result.stderr
    completed = subprocess.run(
        [sys.executable, "-m", "bulletin", *full],
        cwd=project.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    return completed.returncode, completed.stdout, completed.stderr


def assert_one_clear_line(stdout: str, stderr: str, message: str) -> str:
    assert "Traceback" not in stdout + stderr, stdout + stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert message in lines[0], lines[0]
    assert len(lines[0]) < 600, lines[0]
    return lines[0]


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("case", ALL_CASES, ids=[case.id for case in ALL_CASES])
def test_bad_input_gives_one_line_and_changes_nothing(project: Project, case: Case) -> None:
    args = case.prepare(project)
    before = _snapshot(project.root)
    status, stdout, stderr = run_cli(project, args, in_process=not case.subprocess)
    assert status == case.status, stdout + stderr
    assert_one_clear_line(stdout, stderr, case.message)
    assert _snapshot(project.root) == before


def test_there_are_at_least_sixty_cases() -> None:
    assert len(ALL_CASES) >= 60


# ---------------------------------------------------------------------------
# Cases that need a server, another user or a process of their own


@pytest.mark.timeout(TIMEOUT)
def test_a_feed_with_a_100_kb_header_line_fails_alone(project: Project, bad_servers: BadServers) -> None:
    before = _snapshot(project.root)
    status, stdout, stderr = run_cli(project, ["news", "ingest", bad_servers.long_header_url])
    assert status == 1
    assert_one_clear_line(stdout, stderr, "malformed HTTP answer")
    assert _snapshot(project.root) == before


@pytest.mark.timeout(TIMEOUT)
def test_a_feed_that_drips_bytes_stops_at_the_ingest_timeout(project: Project, bad_servers: BadServers) -> None:
    project.write_config(_base_config("[ingest]\ntimeout = 0.5\n"))
    before = _snapshot(project.root)
    status, stdout, stderr = run_cli(project, ["news", "ingest", bad_servers.drip_url], in_process=False)
    assert status == 1
    assert_one_clear_line(stdout, stderr, "no answer within 0.5 s (ingest.timeout)")
    assert _snapshot(project.root) == before


@pytest.mark.timeout(TIMEOUT)
def test_the_fetch_deadline_covers_the_whole_answer(bad_servers: BadServers) -> None:
    # Each read gets its byte within 50 ms, so a per-read timeout would never fire; the injected
    # clock moves 0.25 s per look, so the one-second deadline for the whole fetch passes quickly.
    ticks = itertools.count()

    def clock() -> float:
        return next(ticks) * 0.25

    with pytest.raises(SourceError, match=r"no answer within 1 s \(ingest.timeout\)"):
        fetch_feed(bad_servers.drip_url, etag=None, last_modified=None, timeout=1.0, max_bytes=1_000_000, clock=clock)
    assert next(ticks) < 20


@pytest.mark.timeout(TIMEOUT)
def test_a_missing_postgresql_driver_names_the_extra(project: Project) -> None:
    project.write_config('[database]\nurl = "postgresql://bulletin@127.0.0.1/bulletin"\n')
    before = _snapshot(project.root)
    hide_psycopg = (
        "import sys\n"
        "class Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'psycopg':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Hide())\n"
        "from bulletin.cli import main\n"
        f"sys.argv = ['bulletin', '--config', {str(project.config)!r}, 'subscribers', 'list']\n"
        "main()\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", hide_psycopg], capture_output=True, text=True, timeout=TIMEOUT, cwd=project.root
    )
    assert completed.returncode == 2
    assert_one_clear_line(completed.stdout, completed.stderr, "pip install 'bulletin[postgres]'")
    assert _snapshot(project.root) == before


@pytest.mark.timeout(TIMEOUT)
def test_init_in_a_deleted_folder_says_so(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    bulletin = Path(sys.executable).with_name("bulletin")
    script = f'cd "{gone}" && rmdir "{gone}" && exec "{bulletin}" init'
    completed = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=TIMEOUT)
    assert completed.returncode == 2
    assert_one_clear_line(completed.stdout, completed.stderr, "the current folder no longer exists")


def _as_unprivileged() -> list[str]:
    """A command prefix under which file permissions apply, or [] when not root.

    Root writes into read-only folders through its capabilities; setpriv drops them from the
    command (it stays root, so it still reads the checkout and the virtualenv as their owner).
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv (util-linux): a read-only folder would not stop root")
    prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]
    if subprocess.run([*prefix, "true"], capture_output=True, timeout=TIMEOUT).returncode != 0:
        pytest.skip("setpriv cannot drop capabilities here (no CAP_SETPCAP): a read-only folder would not stop root")
    return prefix


@pytest.fixture
def read_only_folder() -> Iterator[Path]:
    """A folder the command may read but not write (outside the root-only pytest temp folder)."""
    folder = Path(tempfile.mkdtemp(prefix="bulletin-ro-"))
    (folder / "bulletin.toml").write_text(_base_config(), encoding="utf-8")
    env = {"BULLETIN_SECRET_KEY": "test-secret-key-0123456789abcdef"}
    assert CliRunner().invoke(cli, ["--config", str(folder / "bulletin.toml"), "init"], env=env).exit_code == 0
    (folder / "people.csv").write_text("email\nro@example.org\n", encoding="utf-8")
    for path in folder.iterdir():
        path.chmod(0o644)
    folder.chmod(0o555)
    try:
        yield folder
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config", "{root}/new/bulletin.toml", "init"], "cannot write the config"),
        (["init"], "cannot write the config"),
        (["--config", "{root}/bulletin.toml", "subscribers", "export", "{root}/out.csv"], "is not writable"),
        (
            ["--config", "{root}/bulletin.toml", "subscribers", "import", "{root}/people.csv"],
            "is not writable",
        ),
    ],
    ids=["init-new-config-folder", "init-here", "export", "import-default-report"],
)
def test_a_read_only_folder_is_one_line(read_only_folder: Path, args: list[str], message: str) -> None:
    prefix = _as_unprivileged()
    # init writes a config only when none exists: use an empty read-only folder for it.
    cwd = read_only_folder
    if args == ["init"]:
        cwd = read_only_folder / "empty"
        read_only_folder.chmod(0o755)
        cwd.mkdir(mode=0o555)
        read_only_folder.chmod(0o555)
    before = _snapshot(read_only_folder)
    completed = subprocess.run(
        [*prefix, sys.executable, "-m", "bulletin", *(a.format(root=read_only_folder) for a in args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert completed.returncode in (1, 2), completed.stderr
    assert_one_clear_line(completed.stdout, completed.stderr, message)
    assert _snapshot(read_only_folder) == before


def test_a_news_folder_keeps_its_good_files_and_never_stores_the_linked_passwd(project: Project) -> None:
    folder = project.root / "news"
    folder.mkdir()
    (folder / "passwd.txt").symlink_to("/etc/passwd")
    (folder / "good.md").write_text("---\ntitle: Rapport annuel\nlang: fr\n---\nLe rapport est paru.\n")
    status, _stdout, stderr = run_cli(project, ["news", "ingest", str(folder)])
    assert status == 1 and "passwd.txt: a link to /etc/passwd, outside the folder" in stderr
    engine = make_engine(f"sqlite:///{project.db}")
    with reading(engine) as session:
        titles = list(session.scalars(select(NewsItem.title)))
        sources = list(session.scalars(select(NewsItem.source)))
    engine.dispose()
    assert titles == ["Rapport annuel"] and not any("passwd" in source for source in sources)


# ---------------------------------------------------------------------------
# Forced replacement, formula escaping and the round trip


def _count(project: Project) -> int:
    engine = make_engine(f"sqlite:///{project.db}")
    with reading(engine) as session:
        count = session.scalar(select(func.count()).select_from(Subscriber)) or 0
    engine.dispose()
    return count


def test_force_replaces_an_existing_export_and_nothing_else(project: Project) -> None:
    target = project.root / "old.csv"
    target.write_text("old\n")
    status, _stdout, stderr = run_cli(project, ["subscribers", "export", str(target), "--force"])
    assert status == 0, stderr
    assert target.read_text().startswith("email,name,language,interests\n")
    assert not list(project.root.glob(".*.tmp"))


def test_formula_cells_are_escaped_on_export_and_restored_on_import(project: Project, tmp_path: Path) -> None:
    exported = project.root / "export.csv"
    assert run_cli(project, ["subscribers", "export", str(exported)])[0] == 0
    text = exported.read_text(encoding="utf-8")
    assert "'=HYPERLINK(" in text and "'+SUM(1;2)" in text and "'-2+3" in text
    assert "''=kept as typed" in text
    for line in text.splitlines()[1:]:
        name = line.split(",", 2)[1].strip('"')
        assert not name or name[0] not in "=+-@\t\r", line

    other = Project(tmp_path / "other")
    other.root.mkdir()
    other.write_config(_base_config())
    assert run_cli(other, ["init"])[0] == 0
    assert run_cli(other, ["subscribers", "import", str(exported)])[0] == 0
    engine = make_engine(f"sqlite:///{other.db}")
    with reading(engine) as session:
        names = set(session.scalars(select(Subscriber.name)))
    engine.dispose()
    assert set(FORMULAS) <= names
    again = tmp_path / "again.csv"
    assert run_cli(other, ["subscribers", "export", str(again)])[0] == 0
    assert again.read_bytes() == exported.read_bytes()


def test_every_formula_lead_is_escaped_and_restored() -> None:
    for value in ("@SUM(A1)", "=1+1", "+1", "-1", "\tx", "\rx", "'quoted"):
        assert escape_cell(value).startswith("'")
        assert unescape_cell(escape_cell(value)) == value
    assert escape_cell("Ana") == "Ana"


def test_report_cells_are_escaped(project: Project) -> None:
    source = project.root / "bad.csv"
    source.write_text("email,name\n=cmd|' /C calc'!A0,X\n@SUM(1),Y\n", encoding="utf-8")
    report = project.root / "report.csv"
    status, _stdout, stderr = run_cli(project, ["subscribers", "import", str(source), "--report", str(report)])
    assert status == 0, stderr
    lines = report.read_text(encoding="utf-8").splitlines()[1:]
    assert len(lines) == 2
    for line in lines:
        email = line.split(",", 1)[1]
        assert email.startswith(("'", "\"'")), line


# ---------------------------------------------------------------------------
# Ctrl-C during an import


def test_ctrl_c_during_an_import_stops_at_a_batch_and_a_rerun_completes_it(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bulletin.cli.subscribers as cli_subscribers

    rows = ["email,name,language,interests"] + [f"bulk{i}@example.org,Bulk {i},fr," for i in range(3500)]
    big = project.root / "big.csv"
    big.write_text("\n".join(rows) + "\n", encoding="utf-8")
    real_import = cli_subscribers.import_csv

    def interrupted_after_two_batches(*args, progress, **kwargs):  # type: ignore[no-untyped-def]
        batches = 0

        def progress_then_ctrl_c(done: int) -> None:
            nonlocal batches
            progress(done)
            batches += 1
            if batches == 2:
                # A real SIGINT, handled by the command's own handler, while the import runs.
                os.kill(os.getpid(), signal.SIGINT)

        return real_import(*args, progress=progress_then_ctrl_c, **kwargs)

    monkeypatch.setattr(cli_subscribers, "import_csv", interrupted_after_two_batches)
    before = _count(project)
    status, _stdout, stderr = run_cli(project, ["subscribers", "import", str(big)])
    assert status == 130
    assert "interrupted: 2,000 row(s) committed (up to line 2,001)" in stderr
    assert "run the same import again to complete it" in stderr
    assert _count(project) == before + 2000

    monkeypatch.setattr(cli_subscribers, "import_csv", real_import)
    status, stdout, stderr = run_cli(project, ["subscribers", "import", str(big)])
    assert status == 0, stderr
    assert "1500 added" in stdout and "2000 unchanged" in stdout
    assert _count(project) == before + 3500


def test_a_keyboard_interrupt_between_batches_keeps_what_was_committed(project: Project) -> None:
    from bulletin.app.subscriber_files import import_csv
    from bulletin.config import load_settings

    rows = ["email"] + [f"kb{i}@example.org" for i in range(2500)]
    big = project.root / "kb.csv"
    big.write_text("\n".join(rows) + "\n", encoding="utf-8")
    settings = load_settings(project.config)
    engine = make_engine(settings.database_url)
    calls = 0

    def ctrl_c_on_second_batch(_done: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt

    before = _count(project)
    report = import_csv(engine, settings, big, progress=ctrl_c_on_second_batch)
    engine.dispose()
    assert report.interrupted and report.committed_rows == 2000
    assert _count(project) == before + 2000
