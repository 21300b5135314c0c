"""The production topology of docker-compose.yml, checked without a Docker engine.

The file is parsed as YAML (anchors and ``<<`` merges resolved, as Compose
does) and held to the contract: which services exist, what is published and
where, how each one is supervised, health-checked and stopped, that its
commands are the Procfile's, and that no secret is written in it. The shell
bits that matter (Redis's start script, its health check) and the worker
health check are run for real against local processes.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests import support

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
SERVICES = {"redis", "postgres", "migrate", "web", "bridge", "worker", "flower"}
PYTHON_SERVICES = {"migrate", "web", "bridge", "worker", "flower"}
LONG_RUNNING = SERVICES - {"migrate"}
# ${VAR}, ${VAR:-default}, ${VAR:?error}, $VAR; $$ is an escaped dollar.
_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_PURE_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?][^}]*)?\}$")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


# --- helpers -------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def procfile() -> dict[str, str]:
    entries = {}
    for line in (REPO / "Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            entries[name.strip()] = command.strip()
    return entries


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    values = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example line without '=': {line!r}"
            values[key.strip()] = value
    return values


def command_tokens(command) -> list[str]:
    """A service's command as Compose runs it (a string is shell-split, no shell)."""
    return shlex.split(command) if isinstance(command, str) else list(command)


def split_assignments(tokens: list[str]) -> tuple[dict[str, str], list[str]]:
    """``VAR=value cmd args`` -> ({VAR: value}, [cmd, args])."""
    assignments = {}
    while tokens and _ASSIGNMENT.match(tokens[0]):
        key, _, value = tokens[0].partition("=")
        assignments[key] = value
        tokens = tokens[1:]
    return assignments, tokens


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: ("" if v is None else str(v)) for k, v in env.items()}


def duration_seconds(value: str) -> float:
    """Compose durations: 75s, 1m30s, 500ms, 1h."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(value))
    assert parts and "".join(n + u for n, u in parts) == str(value), f"not a duration: {value!r}"
    return sum(float(n) * units[u] for n, u in parts)


def strings(node):
    """Every string value in a parsed YAML tree (keys excluded)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def referenced_variables(node) -> set[str]:
    found = set()
    for text in strings(node):
        for match in _REF.finditer(text):
            name = match.group(1) or match.group(2)
            if name:
                found.add(name)
    return found


def default_of(value: str) -> str:
    """'${NAME:-60}' -> '60'."""
    match = re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}", value)
    assert match, f"expected ${{NAME:-default}}, got {value!r}"
    return match.group(1)


def published_ports(service: dict) -> list[tuple[str | None, str, str]]:
    """(host_ip, published, target) for each entry of ``ports``."""
    result = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            result.append((entry.get("host_ip"), str(entry.get("published", "")), str(entry["target"])))
            continue
        spec = str(entry).split("/")[0]
        # host_ip:published:target, published:target or target; the published
        # part may be a ${VAR:-default} holding no colon of its own.
        parts = re.findall(r"\$\{[^}]*\}|[^:]+", spec)
        if len(parts) == 3:
            result.append((parts[0], parts[1], parts[2]))
        elif len(parts) == 2:
            result.append((None, parts[0], parts[1]))
        else:
            result.append((None, "", parts[0]))
    return result


def healthcheck_command(service: dict) -> list[str]:
    test = service["healthcheck"]["test"]
    if isinstance(test, str):
        return ["CMD-SHELL", test]
    return list(test)


def unescape(text: str) -> str:
    """What the container sees of a compose string holding no ${VAR} interpolation."""
    assert not [m for m in _REF.finditer(text) if m.group(0) != "$$"], f"interpolated at deploy time: {text!r}"
    return text.replace("$$", "$")


# --- topology ------------------------------------------------------------------

def test_services_are_the_contract(services):
    assert set(services) == SERVICES


def test_python_services_share_one_definition(compose, services):
    app = compose["x-app"]
    assert app["build"]["dockerfile"] == "Dockerfile" and app["build"]["context"] == "."
    for name in PYTHON_SERVICES:
        svc = services[name]
        assert svc["build"] == app["build"] and svc["image"] == app["image"], name
        assert svc["env_file"] == app["env_file"], name
        # Every shared variable reaches the service, even where it adds its own.
        assert environment(app).items() <= environment(svc).items(), name
    # Merged from the anchor, not copied five times.
    assert COMPOSE_FILE.read_text().count("<<: *app\n") == len(PYTHON_SERVICES)


def test_redis_is_never_published(services):
    assert services["redis"]["image"] == "redis:7"
    assert "ports" not in services["redis"]
    for name, svc in services.items():
        assert svc.get("network_mode") != "host", f"{name} would share the host's ports"
        for host_ip, published, target in published_ports(svc):
            assert "6379" not in (published, target), f"{name} publishes 6379"


def test_redis_requires_a_password_and_persists(compose, services):
    redis = services["redis"]
    script = " ".join(command_tokens(redis["command"]))
    assert "requirepass" in script
    assert re.search(r"--appendonly\s+yes", script)
    assert re.search(r"--maxmemory-policy\s+noeviction", script)
    # The password is the container's variable, which compose fills from .env.
    assert re.search(r"requirepass\s+\"?\$\$\{?REDIS_PASSWORD", script)
    assert _PURE_REF.match(environment(redis)["REDIS_PASSWORD"]).group(1) == "REDIS_PASSWORD"
    volume, _, target = redis["volumes"][0].partition(":")
    assert target == "/data" and volume in compose["volumes"]


def test_redis_healthcheck_authenticates(services):
    kind, *test = healthcheck_command(services["redis"])
    assert kind == "CMD-SHELL"
    shell = test[0]
    assert "redis-cli" in shell and "ping" in shell.lower() and "PONG" in shell
    # redis-cli exits 0 on a NOAUTH reply: only grepping for PONG tells.
    assert re.search(r"(REDISCLI_AUTH=|-a\s+)\"?\$\$\{?REDIS_PASSWORD", shell)


def test_postgres(compose, services):
    pg = services["postgres"]
    assert pg["image"] == "postgres:16"
    assert "pg_isready" in " ".join(healthcheck_command(pg))
    assert _PURE_REF.match(environment(pg)["POSTGRES_PASSWORD"]).group(1) == "POSTGRES_PASSWORD"
    volume, _, target = pg["volumes"][0].partition(":")
    assert target == "/var/lib/postgresql/data" and volume in compose["volumes"]
    # The apps log in as the user and database the image creates.
    user, db = environment(pg)["POSTGRES_USER"], environment(pg)["POSTGRES_DB"]
    url = environment(services["web"])["DATABASE_URL"]
    assert re.fullmatch(rf"postgresql://{user}:\$\{{POSTGRES_PASSWORD[^}}]*\}}@postgres:5432/{db}", url), url


def test_only_web_and_flower_publish_and_only_on_loopback(services):
    published = {name: published_ports(svc) for name, svc in services.items() if svc.get("ports")}
    assert set(published) == {"web", "flower"}
    for name, ports in published.items():
        for host_ip, _, _ in ports:
            assert host_ip == "127.0.0.1", f"{name} publishes on {host_ip or 'every interface'}"
    assert [p[2] for p in published["web"]] == ["8000"]
    assert [p[2] for p in published["flower"]] == ["5555"]


def test_long_running_services_are_supervised(services):
    for name in LONG_RUNNING:
        svc = services[name]
        assert svc.get("restart") == "unless-stopped", name
        assert svc.get("init") is True, f"{name}: without init, SIGTERM may not reach the process"
        assert duration_seconds(svc["stop_grace_period"]) > 0, name
        check = svc.get("healthcheck") or {}
        assert not check.get("disable") and healthcheck_command(svc)[0] in ("CMD", "CMD-SHELL"), name
        assert len(healthcheck_command(svc)) > 1, name
        for key in ("interval", "timeout"):
            assert duration_seconds(check[key]) > 0, f"{name}.healthcheck.{key}"
        assert duration_seconds(check["timeout"]) < duration_seconds(check["interval"]), name


def test_migrate_is_one_shot(services):
    migrate = services["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["init"] is True
    assert command_tokens(migrate["command"]) == ["python", "backend/manage.py", "migrate", "--no-input"]


def test_dependencies_wait_for_health(services):
    expected = {
        "migrate": {"postgres": "service_healthy"},
        "web": {"migrate": "service_completed_successfully", "postgres": "service_healthy",
                "redis": "service_healthy"},
        "bridge": {"migrate": "service_completed_successfully", "postgres": "service_healthy",
                   "redis": "service_healthy"},
        "worker": {"migrate": "service_completed_successfully", "postgres": "service_healthy",
                   "redis": "service_healthy"},
        "flower": {"redis": "service_healthy"},
    }
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: depends_on without conditions only waits for a start"
        assert {dep: spec["condition"] for dep, spec in deps.items()} == expected.get(name, {}), name
        for dep, spec in deps.items():
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep}, which has no health check"


# --- commands ------------------------------------------------------------------

@pytest.mark.parametrize("name", ["bridge", "worker"])
def test_commands_are_the_procfiles(services, procfile, name):
    assignments, tokens = split_assignments(shlex.split(procfile[name]))
    if name == "worker":
        # The Procfile names each copy (worker.1@host ...: several run on one
        # host); compose's replicas are containers, each its own celery@<hostname>.
        at = tokens.index("-n")
        assert tokens[at + 1] == "${HONCHO_PROCESS_NAME:-worker}@%h"
        del tokens[at:at + 2]
    assert command_tokens(services[name]["command"]) == tokens
    env = environment(services[name])
    for key, value in assignments.items():
        assert env.get(key) == value, f"Procfile sets {key}={value} for {name}; compose must too"


def test_worker_soft_shutdown(services, procfile, env_example):
    worker = services["worker"]
    env = environment(worker)
    assert env["REMAP_SIGTERM"] == "SIGQUIT"
    assert split_assignments(shlex.split(procfile["worker"]))[0] == {"REMAP_SIGTERM": "SIGQUIT"}
    grace = duration_seconds(worker["stop_grace_period"])
    # Docker's SIGKILL must come after the soft shutdown and a task at its time limit.
    for source in ("compose default", ".env.example"):
        if source == "compose default":
            limit = float(default_of(env["CELERY_TASK_TIME_LIMIT"]))
            soft = float(default_of(env["CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT"]))
        else:
            limit = float(env_example.get("CELERY_TASK_TIME_LIMIT", 60))
            soft = float(env_example.get("CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT", 10))
        assert grace > limit + soft, f"stop_grace_period {grace}s <= {limit}s + {soft}s ({source})"
    assert command_tokens(healthcheck_command(worker)[1:]) == ["python", "-m", "workers.healthcheck"]


def test_bridge_metrics_and_check(services):
    bridge = services["bridge"]
    env = environment(bridge)
    assert env["BRIDGE_METRICS_PORT"] == "9808" and env["BRIDGE_METRICS_ADDR"] == "0.0.0.0"
    assert "ports" not in bridge
    assert healthcheck_command(bridge)[1:] == ["python", "-m", "workers.bridge", "--check"]


def test_web_runs_the_asgi_app_as_the_procfile_does(services, procfile):
    from django.conf import settings

    web = services["web"]
    tokens = command_tokens(web["command"])
    assert tokens[0] == "daphne" and web["working_dir"] == "/app/backend"
    assert tokens[tokens.index("-b") + 1] == "0.0.0.0" and tokens[tokens.index("-p") + 1] == "8000"
    module, _, attr = tokens[-1].partition(":")
    assert f"{module}.{attr}" == settings.ASGI_APPLICATION
    # The Procfile runs the same server with the same limits (its bind/port
    # are local; compose adds --proxy-headers for the proxy in front).
    local = shlex.split(procfile["web"])
    assert local[:4] == ["cd", "backend", "&&", "exec"]
    local = local[4:]

    def options(tokens):
        out = {}
        for i, token in enumerate(tokens[:-1]):
            if token.startswith("--") and token != "--proxy-headers":
                out[token] = tokens[i + 1]
        return out

    assert local[0] == "daphne" and local[-1] == tokens[-1]
    assert options(local) == options(tokens)
    assert "--websocket-max-message-size" in tokens
    check = " ".join(healthcheck_command(web))
    assert "urllib" in check and "http://127.0.0.1:8000/healthz" in check
    # The health check's Host header must be allowed by Django.
    assert "127.0.0.1" in environment(web)["DJANGO_ALLOWED_HOSTS"].split(",")


def test_the_image_collects_static_files_and_serves_them_from_daphne():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "manage.py collectstatic --no-input" in dockerfile
    assert "exec daphne" in dockerfile
    # One WORKDIR for every service (bridge and worker import `workers` from
    # /app); only the web service changes directory, in compose.
    assert [line for line in dockerfile.splitlines() if line.startswith("WORKDIR")] == ["WORKDIR /app"]


def test_flower_runs_the_same_program_behind_basic_auth(services, procfile, env_example):
    flower = services["flower"]
    tokens = command_tokens(flower["command"])
    assert tokens[:4] == ["celery", "-A", "workers", "flower"] == shlex.split(procfile["flower"])[:4]
    assert "--address=0.0.0.0" in tokens and "--port=5555" in tokens
    assert _PURE_REF.match(environment(flower)["FLOWER_BASIC_AUTH"]).group(1) == "FLOWER_BASIC_AUTH"
    assert re.fullmatch(r"[^:,\s]+:\S+", env_example["FLOWER_BASIC_AUTH"])
    assert "http://127.0.0.1:5555/" in " ".join(healthcheck_command(flower))


# --- secrets and the env file -------------------------------------------------

def test_no_literal_secrets(compose):
    secret_key = re.compile(r"PASSWORD|SECRET|TOKEN|BASIC_AUTH|_KEY$", re.I)
    checked = 0
    for scope, node in [("x-app", compose["x-app"]), *compose["services"].items()]:
        for key, value in environment(node).items():
            if secret_key.search(key):
                assert _PURE_REF.match(value), f"{scope}.{key} holds a literal value"
                checked += 1
    assert checked >= 5  # REDIS_PASSWORD x2, POSTGRES_PASSWORD, DJANGO_SECRET_KEY, FLOWER_BASIC_AUTH
    for text in strings(compose):
        for user, password in re.findall(r"://([^:/@\s]*):(\$\{[^}]*\}|[^@\s/]+)@", text):
            assert _PURE_REF.match(password), f"credentials in a URL: {text!r}"


def test_env_example_lists_every_variable(compose, env_example):
    referenced = referenced_variables(compose)
    assert {"REDIS_PASSWORD", "POSTGRES_PASSWORD", "DJANGO_SECRET_KEY", "FLOWER_BASIC_AUTH"} <= referenced
    assert referenced <= set(env_example), f"missing from .env.example: {sorted(referenced - set(env_example))}"
    # Placeholders only, and the generator is documented.
    for key in ("REDIS_PASSWORD", "POSTGRES_PASSWORD", "DJANGO_SECRET_KEY"):
        assert env_example[key] == "change-me", key
    assert env_example["FLOWER_BASIC_AUTH"].endswith(":change-me")
    assert "secrets.token_urlsafe" in (REPO / ".env.example").read_text()
    assert compose["x-app"]["env_file"] == ".env"
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=REPO)
    assert ignored.returncode == 0, ".env must be git-ignored"


def test_dockerfile():
    lines = [line.strip() for line in (REPO / "Dockerfile").read_text().splitlines()
             if line.strip() and not line.strip().startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    install = next(i for i, line in enumerate(lines) if line.startswith("RUN") and "pip install" in line)
    assert re.search(r"pip install\b.*-r\s+requirements/base\.txt", lines[install])
    users = [i for i, line in enumerate(lines) if line.startswith("USER ")]
    assert users, "the image must not run as root"
    user = lines[users[-1]].split()[1].split(":")[0]
    assert user not in ("root", "0")
    assert users[-1] > install
    assert any(line.startswith("COPY . ") for line in lines)
    ignored = (REPO / ".dockerignore").read_text().split()
    for entry in (".env", ".git", ".venv/"):
        assert entry in ignored, f".dockerignore must exclude {entry}"


# --- the shell and Python bits, run for real -----------------------------------

@pytest.fixture
def redis_stub_path(tmp_path):
    """A PATH whose docker-entrypoint.sh runs this machine's redis-server on a
    free port instead of the image's, in tmp_path."""
    from devtools.redis_server import find_binary, free_port

    port = free_port()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "docker-entrypoint.sh"
    stub.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        [ "$1" = redis-server ] || exit 64
        shift
        exec {shlex.quote(find_binary())} "$@" --port {port} --bind 127.0.0.1 --dir {shlex.quote(str(tmp_path))}
        """))
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    return f"{bin_dir}:{os.environ['PATH']}", port


def _start_redis_script(services, path, password):
    script = unescape(command_tokens(services["redis"]["command"])[-1])
    env = {"PATH": path}
    if password is not None:
        env["REDIS_PASSWORD"] = password
    return subprocess.Popen(["sh", "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


@pytest.mark.parametrize("password", [None, "", "change-me"])
def test_redis_refuses_to_start_without_a_real_password(services, redis_stub_path, password):
    proc = _start_redis_script(services, redis_stub_path[0], password)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode != 0
    assert "REDIS_PASSWORD" in err


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is not installed")
def test_redis_script_and_healthcheck_run(services, redis_stub_path):
    import redis

    path, port = redis_stub_path
    password = "Zq-7_" + os.urandom(6).hex()
    proc = _start_redis_script(services, path, password)
    try:
        client = redis.Redis(port=port, password=password)
        support.wait_for(lambda: _pings(client), timeout=10, what="redis from the compose command")
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        # Not on the command line, where `ps` on the host would show it.
        assert password not in Path(f"/proc/{proc.pid}/cmdline").read_text()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port, password="wrong").ping()
        client.close()

        shell = unescape(healthcheck_command(services["redis"])[1]).replace("redis-cli", f"redis-cli -p {port}")
        good = subprocess.run(["sh", "-c", shell], env={"PATH": path, "REDIS_PASSWORD": password})
        bad = subprocess.run(["sh", "-c", shell], env={"PATH": path, "REDIS_PASSWORD": "wrong"},
                             capture_output=True)
        assert (good.returncode, bad.returncode != 0) == (0, True)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _pings(client) -> bool:
    import redis

    try:
        return client.ping()
    except redis.ConnectionError:
        return False


def _healthcheck(timeout: str = "2") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workers.healthcheck"], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "WORKER_HEALTHCHECK_TIMEOUT": timeout}, timeout=60)


def test_worker_healthcheck_fails_without_a_worker(redis_server):
    result = _healthcheck()
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("unhealthy: no worker *@" + socket.gethostname())


def test_worker_healthcheck_fails_when_the_broker_refuses(redis_server):
    parts = urlsplit(redis_server.url)
    env = {**os.environ, "REDIS_URL": f"redis://:not-the-password@{parts.hostname}:{parts.port}/0"}
    result = subprocess.run([sys.executable, "-m", "workers.healthcheck"], cwd=REPO, capture_output=True,
                            text=True, env=env, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("unhealthy: broker:"), result.stderr
    assert "not-the-password" not in result.stderr


@pytest.mark.slow
def test_worker_healthcheck_answers_for_the_local_worker_only(redis_server, tmp_path):
    remote = support.worker(tmp_path, name="hc-remote", concurrency=1, extra=("-n", "hc@elsewhere.invalid"))
    try:
        remote.wait_log(support.WORKER_READY)
        result = _healthcheck()
        assert result.returncode == 1 and "hc@elsewhere.invalid" in result.stderr
    finally:
        remote.stop()
    local = support.worker(tmp_path, name="hc-local", concurrency=1)
    try:
        local.wait_log(support.WORKER_READY)
        result = _healthcheck()
        assert result.returncode == 0, result.stderr
        assert f"hc-local@{socket.gethostname()}" in result.stdout
    finally:
        local.stop()


# --- Docker Compose's own validation ---------------------------------------------

def _compose_cli() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.fixture(scope="module")
def compose_cli():
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no Docker Compose CLI: neither the `docker compose` plugin nor docker-compose is installed")
    return cli


def _compose_config(cli, tmp_path, env_text):
    for name in ("docker-compose.yml", "Dockerfile"):
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / ".env").write_text(env_text)
    # Only what the CLI needs: a variable of this shell would win over .env.
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "DOCKER_CONFIG", "DOCKER_HOST")}
    return subprocess.run([*cli, "-f", "docker-compose.yml", "--env-file", ".env", "config"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)


def test_docker_compose_config_accepts_the_file(compose_cli, tmp_path):
    result = _compose_config(compose_cli, tmp_path, (REPO / ".env.example").read_text())
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert set(resolved["services"]) == SERVICES
    worker_env = resolved["services"]["worker"]["environment"]
    assert worker_env["REMAP_SIGTERM"] == "SIGQUIT"
    assert worker_env["DATABASE_URL"] == "postgresql://eclean:change-me@postgres:5432/eclean"


def test_docker_compose_config_refuses_a_missing_secret(compose_cli, tmp_path):
    text = (REPO / ".env.example").read_text()
    without = "\n".join(line for line in text.splitlines() if not line.startswith("REDIS_PASSWORD="))
    result = _compose_config(compose_cli, tmp_path, without)
    assert result.returncode != 0
    assert "REDIS_PASSWORD" in result.stderr


def test_compose_runs_as_many_workers_as_make_run(services):
    from devtools.procs import WORKER_PROCESSES

    assert services["worker"]["deploy"]["replicas"] == f"${{WORKER_PROCESSES:-{WORKER_PROCESSES}}}"
    assert "container_name" not in services["worker"] and "hostname" not in services["worker"]
