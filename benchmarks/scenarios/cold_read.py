"""cold_read: the first check-existing after a deploy or a scale-out. A fresh interpreter imports
the read-only query handler and answers check-existing for the read scenario's 100-server plan;
the time from process start to the answer, for ``processes`` fresh processes, beside the bare
interpreter's own start (``python -c pass``), which is subtracted from the percentiles.

The child runs what ships: ``syncengine/`` and ``handlers/`` copied to a temporary folder and
compiled there as ``scripts/deploy.sh`` compiles the package (``compileall --invalidation-mode
unchecked-hash``), and the package's dependencies installed from ``requirements-lambda.lock`` with
deploy.sh's own pip command (hash-checked manylinux wheels, for this interpreter's Python and
machine) and compiled the same way (``lambda_dependencies``, kept under ``build/`` per lock and
interpreter). The child sees only those two folders and the standard library (``python -I -S``:
no virtualenv, none of its dev packages) and writes no bytecode (``-B``: Lambda's code directory
is read-only, each cold start uses what the package holds); the bare interpreter starts with the
same flags. Beside it, ``uncompiled_p50_ms``: the same copy without its bytecode (fewer
processes), what a package without bytecode costs in our own modules alone."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import harness as h
from benchmarks.events import check_existing_event
from benchmarks.scenarios.large import ScenarioBroken
from benchmarks.scenarios.read import PLAN_ID, PLAN_SERVERS, seeded_plan
from benchmarks.sizes import BenchContext
from syncengine.core.config import SyncSettings

# Every child starts here: only the package's folders on sys.path (argv[1], os.pathsep-separated),
# after checking that no site-packages directory is reachable.
PRELUDE = """
import sys
leaks = [p for p in sys.path if "site-packages" in p or "dist-packages" in p]
assert not leaks, f"host packages reachable: {leaks}"
sys.path[:0] = sys.argv.pop(1).split(__import__("os").pathsep)
"""
# What the child runs: import the handler, answer one API Gateway event, print when it answered.
CHILD = """
import json, sys, time
from handlers.query import lambda_handler
response = lambda_handler(json.loads(sys.argv[1]), None)
answered = time.time()
body = json.loads(response.get("body") or "{}")
print(json.dumps({"answered_at": answered, "status": response.get("statusCode"),
                  "instance_count": body.get("instanceCount"), "handler": sys.modules["handlers.query"].__file__}))
"""
BARE = "import time; print(time.time())"
CHILD_TIMEOUT_S = 60.0
# -I: no PYTHON* variables, no user site, no script folder on sys.path; -S: no site-packages;
# -B: no bytecode written.
CHILD_FLAGS = ("-I", "-S", "-B")
ROOT = Path(__file__).resolve().parents[2]
LAMBDA_LOCK = ROOT / "requirements-lambda.lock"
PIP_TIMEOUT_S = 900.0
# Our own packages as deploy.sh copies them (the simulator stays out of the package).
PACKAGES = ("syncengine", "handlers")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "simulator")


def deployed_copy(folder: Path, *, compiled: bool) -> Path:
    """``syncengine/`` and ``handlers/`` copied into ``folder``, with bytecode compiled the way
    deploy.sh compiles the package when ``compiled``; the folder the child starts in."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, folder / package, ignore=IGNORED)
    if compiled:
        _compile(folder)
    return folder


def lambda_dependencies(cache: Path = ROOT / "build" / "cold-read") -> Path:
    """The Lambda package's dependencies as deploy.sh installs them (``requirements-lambda.lock``,
    ``--require-hashes``, manylinux binary wheels), for this interpreter, compiled as deploy.sh
    compiles them; built once per lock and interpreter under ``cache``."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    machine = "aarch64" if platform.machine() in {"aarch64", "arm64"} else "x86_64"
    digest = hashlib.sha256(LAMBDA_LOCK.read_bytes() + f"{version}-{machine}".encode()).hexdigest()[:16]
    target = cache / f"deps-{digest}"
    if (target / ".complete").is_file():
        # Compiled again (a no-op when every module's bytecode is there): a cleanup that removed
        # __pycache__ folders would otherwise leave a package that compiles on every cold start.
        _compile(target)
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile"]
    install += ["--platform", f"manylinux2014_{machine}", "--platform", f"manylinux_2_28_{machine}"]
    install += ["--implementation", "cp", "--python-version", version, "--only-binary=:all:", "--require-hashes"]
    install += ["--target", str(target), "-r", str(LAMBDA_LOCK)]
    done = subprocess.run(install, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise ScenarioBroken(f"pip could not install requirements-lambda.lock: {done.stderr[-2000:]}")
    shutil.rmtree(target / "bin", ignore_errors=True)
    _compile(target)
    (target / ".complete").write_text(LAMBDA_LOCK.name + "\n", encoding="utf-8")
    return target


def _compile(folder: Path) -> None:
    command = [sys.executable, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash"]
    done = subprocess.run(
        [*command, str(folder)], env={**os.environ, "PYTHONHASHSEED": "0"}, capture_output=True, check=False
    )
    if done.returncode != 0:
        raise ScenarioBroken(f"compileall failed: {done.stdout[-2000:]!r}")


def child_environment(settings: SyncSettings) -> dict[str, str]:
    """A Lambda-like environment: the tables by name, DynamoDB's endpoint the way production
    overrides it (botocore's ``AWS_ENDPOINT_URL_DYNAMODB``), fake credentials (isolate_from_aws)."""
    env = dict(os.environ)
    env.update(settings.tables.env())
    env["AWS_ENDPOINT_URL_DYNAMODB"] = settings.endpoint_url("dynamodb") or ""
    env["AWS_LAMBDA_FUNCTION_NAME"] = "drs-orchestration-query-bench"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    return env


def seconds_to_answer(
    code: str, argv: list[str], env: Mapping[str, str], cwd: Path | None = None
) -> tuple[float, dict[str, Any]]:
    """Run ``python -I -S -B -c code *argv``; seconds from before the spawn to the time the child
    printed (its last stdout line, JSON or a bare number), and what it printed, with the child's
    CPU seconds (user + system, to its exit) under ``cpu_s``: on a shared machine CPU time moves
    less with the load than wall time."""
    cpu_before = _children_cpu_s()
    started = time.time()
    done = subprocess.run(
        [sys.executable, *CHILD_FLAGS, "-c", code, *argv],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise ScenarioBroken(f"cold child failed ({done.returncode}): {done.stderr[-2000:]}")
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    answered = printed["answered_at"] if isinstance(printed, dict) else float(printed)
    details = printed if isinstance(printed, dict) else {}
    return answered - started, {**details, "cpu_s": _children_cpu_s() - cpu_before}


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class ColdTimings:
    """Milliseconds per fresh process: to the answer, and the bare interpreter's, wall and CPU."""

    answers_ms: list[float] = field(default_factory=list)
    bare_ms: list[float] = field(default_factory=list)
    answers_cpu_ms: list[float] = field(default_factory=list)
    bare_cpu_ms: list[float] = field(default_factory=list)
    uncompiled_ms: list[float] = field(default_factory=list)


def cold_answer_s(env: Mapping[str, str], folder: Path, dependencies: Path) -> tuple[float, dict[str, Any]]:
    """One cold check-existing from ``folder``'s copy of our code and the package's dependencies
    (and proof it was that copy)."""
    path = os.pathsep.join([str(folder), str(dependencies)])
    event = json.dumps(check_existing_event(PLAN_ID))
    seconds, printed = seconds_to_answer(PRELUDE + CHILD, [path, event], env, cwd=folder)
    if printed.get("status") != 200 or printed.get("instance_count") != PLAN_SERVERS:
        raise ScenarioBroken(f"cold check-existing answered {printed}")
    if not str(printed.get("handler", "")).startswith(str(folder)):
        raise ScenarioBroken(f"the child loaded {printed.get('handler')}, not the copy in {folder}")
    return seconds, printed


def cold_timings(settings: SyncSettings, processes: int) -> ColdTimings:
    """``processes`` cold checks from the compiled copy and as many bare interpreters, interleaved
    so a change of machine load touches both alike, and a quarter as many from an uncompiled copy."""
    env = child_environment(settings)
    dependencies = lambda_dependencies()
    timings = ColdTimings()
    with tempfile.TemporaryDirectory(prefix="cold-read-") as work:
        compiled = deployed_copy(Path(work) / "compiled", compiled=True)
        uncompiled = deployed_copy(Path(work) / "uncompiled", compiled=False)
        for index in range(processes):
            if index % 4 == 0:
                timings.uncompiled_ms.append(cold_answer_s(env, uncompiled, dependencies)[0] * 1000)
            _time_one(timings, env, compiled, dependencies)
    return timings


def _time_one(timings: ColdTimings, env: Mapping[str, str], folder: Path, dependencies: Path) -> None:
    seconds, printed = cold_answer_s(env, folder, dependencies)
    timings.answers_ms.append(seconds * 1000)
    timings.answers_cpu_ms.append(printed["cpu_s"] * 1000)
    bare_seconds, bare = seconds_to_answer(BARE, [], env)
    timings.bare_ms.append(bare_seconds * 1000)
    timings.bare_cpu_ms.append(bare["cpu_s"] * 1000)


def summary(timings: ColdTimings) -> dict[str, Any]:
    """The ``cold_read`` section: percentiles above the bare interpreter's median start (wall),
    and the same for CPU time."""
    interpreter = h.percentile(timings.bare_ms, 0.50)
    interpreter_cpu = h.percentile(timings.bare_cpu_ms, 0.50)
    return {
        "processes": len(timings.answers_ms),
        "p50_ms": round(h.percentile(timings.answers_ms, 0.50) - interpreter, 1),
        "p99_ms": round(h.percentile(timings.answers_ms, 0.99) - interpreter, 1),
        "interpreter_p50_ms": round(interpreter, 1),
        "cpu_p50_ms": round(h.percentile(timings.answers_cpu_ms, 0.50) - interpreter_cpu, 1),
        "interpreter_cpu_p50_ms": round(interpreter_cpu, 1),
        "uncompiled_p50_ms": round(h.percentile(timings.uncompiled_ms, 0.50) - interpreter, 1)
        if timings.uncompiled_ms
        else None,
        "servers": PLAN_SERVERS,
    }


def run(ctx: BenchContext) -> dict[str, Any]:
    with h.SimulatorProcess(ctx.sizes.small) as sim:
        settings = seeded_plan(ctx, sim)
        ctx.log(f"cold_read: {ctx.sizes.cold_processes} fresh processes")
        timings = cold_timings(settings, ctx.sizes.cold_processes)
        h.run_async(h.drop_tables(ctx.dynamodb_url, settings.tables))
    section = {**summary(timings), "dynamodb": ctx.dynamodb_backend, "load_average": h.load_average()}
    ctx.log(
        f"cold_read: p50 {section['p50_ms']} ms, p99 {section['p99_ms']} ms above the interpreter's "
        f"{section['interpreter_p50_ms']} ms; CPU p50 {section['cpu_p50_ms']} ms above its "
        f"{section['interpreter_cpu_p50_ms']} ms; without bytecode p50 {section['uncompiled_p50_ms']} ms"
    )
    return {"cold_read": section}
