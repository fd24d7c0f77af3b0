"""Mutation testing of meterline's core modules with cosmic-ray (deploy/mutation.sh is the entry point).

For each module of tests/mutation/modules.toml: a working copy of the sources and tests in
``.mutation/<name>/`` (cosmic-ray writes each mutant into the file it mutates, so never the checkout itself), a
fork server that keeps pytest and the third-party libraries imported (tests/mutation/forkserver.py), a clean run
that must pass, then ``cosmic-ray init`` and ``cosmic-ray exec`` over that copy with the module's fast tests.

The score of a module is killed / (mutants - annotations not run - equivalent):

- cosmic-ray also mutates annotations (``int | None`` -> ``int - None``). Every core module postpones them
  (``from __future__ import annotations``), so they stay strings that nothing in meterline evaluates (dataclasses
  only look for ``ClassVar``/``InitVar``, which no operator can produce): their mutants are marked skipped and not
  run. The exception is a msgspec Struct, whose fields' annotations msgspec evaluates: those are run like code.
- Any other survivor is equivalent only if tests/mutation/equivalent.md names it (its line before and after the
  mutation) with the reason it cannot change behaviour; an entry that matches no survivor is reported as stale.

    deploy/mutation.sh                       every module, one at a time
    deploy/mutation.sh dedup rollup --jobs 2 two modules side by side
    deploy/mutation.sh rollup --again        re-test only the previous run's survivors (after adding tests)

Results: a table on stdout and in .mutation/summary.md; each module's survivors with their diffs in
.mutation/<name>/survivors.md.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
OUT = ROOT / ".mutation"
COPIED = ("pipeline", "agents", "schemas", "tests", "pyproject.toml")
COSMIC_RAY = str(Path(sys.executable).parent / "cosmic-ray")
PYTEST_PLUGINS = ("-p", "asyncio", "-p", "pytest_timeout", "-W", "ignore::pytest.PytestAssertRewriteWarning")


@dataclass(frozen=True)
class Module:
    name: str
    path: str
    tests: tuple[str, ...]
    timeout: float


@dataclass(frozen=True)
class Equivalent:
    path: str
    before: str
    after: str
    why: str


@dataclass
class Outcome:
    module: Module
    mutants: int = 0
    killed: int = 0
    timeouts: int = 0
    survivors: list[tuple[str, str, str]] = field(default_factory=list)  # (operator, diff, job id)
    equivalent: list[tuple[str, str, Equivalent]] = field(default_factory=list)
    annotations: int = 0  # mutants of postponed annotations outside msgspec Structs: never run (never evaluated)
    errors: int = 0  # incompetent or a worker exception: counted as survivors
    seconds: float = 0.0

    @property
    def score(self) -> float:
        judged = self.mutants - self.annotations - len(self.equivalent)
        return 100.0 * self.killed / judged if judged else 100.0


def load_modules() -> dict[str, Module]:
    table = tomllib.loads((HERE / "modules.toml").read_text(encoding="utf-8"))["modules"]
    return {name: Module(name, entry["path"], tuple(entry["tests"]), float(entry["timeout"]))
            for name, entry in table.items()}


_ENTRY = re.compile(r"^- `(?P<before>.*?)` → `(?P<after>.*?)`: (?P<why>.+)$")


def load_equivalents() -> list[Equivalent]:
    """The entries of equivalent.md: under a ``## path`` heading, one ``- `before` → `after`: why`` per mutant."""
    path, entries = None, []
    for line in (HERE / "equivalent.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            path = line[3:].strip().strip("`")
        elif (match := _ENTRY.match(line)) and path:
            entries.append(Equivalent(path, match["before"], match["after"], match["why"]))
    return entries


ANNOTATION = Equivalent("", "", "", "an annotation in a module with `from __future__ import annotations`: kept as a "
                        "string and never evaluated (meterline never reads annotations at run time)")


@dataclass(frozen=True)
class Annotations:
    """Where a module's annotations are, if they are postponed (``from __future__ import annotations``)."""

    signatures: tuple[tuple[tuple[int, int], tuple[int, int]], ...]  # parameters and returns: (start, end)
    variables: tuple[tuple[tuple[int, int], tuple[int, int]], ...]  # ``name: annotation`` in bodies

    @staticmethod
    def of(source: str) -> "Annotations":
        tree = ast.parse(source)
        postponed = any(isinstance(node, ast.ImportFrom) and node.module == "__future__"
                        and any(alias.name == "annotations" for alias in node.names) for node in tree.body)
        if not postponed:  # evaluated at definition time: mutate and test them like any code
            return Annotations((), ())
        signatures, variables = [], []
        # msgspec evaluates the annotations of a Struct's fields: those are code, not equivalent when they survive.
        evaluated = {id(statement) for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
                     and any("Struct" in ast.unparse(base) for base in node.bases) for statement in node.body}
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                arguments = node.args
                every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs, arguments.vararg,
                         arguments.kwarg]
                signatures += [_span(a.annotation) for a in every if a is not None and a.annotation is not None]
                if node.returns is not None:
                    signatures.append(_span(node.returns))
            elif isinstance(node, ast.AnnAssign) and id(node) not in evaluated:
                variables.append(_span(node.annotation))
        return Annotations(tuple(signatures), tuple(variables))

    def in_signature(self, start: tuple[int, int], end: tuple[int, int]) -> bool:
        return any(low <= start and end <= high for low, high in self.signatures)

    def never_evaluated(self, start: tuple[int, int], end: tuple[int, int]) -> bool:
        return self.in_signature(start, end) or self.in_variable(start, end)

    def in_variable(self, start: tuple[int, int], end: tuple[int, int]) -> bool:
        return any(low <= start and end <= high for low, high in self.variables)


def _span(node: ast.AST) -> tuple[tuple[int, int], tuple[int, int]]:
    return (node.lineno, node.col_offset), (node.end_lineno, node.end_col_offset)


def skip_annotations(session: Path, annotations: Annotations) -> int:
    """Marks the mutants of postponed annotations (parameters, returns, variables and fields outside msgspec
    Structs) as skipped: nothing in meterline evaluates them, so running their tests would only cost time.
    The fields of msgspec Structs are run: msgspec evaluates their annotations."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    with use_db(str(session), WorkDB.Mode.open) as db:
        skipped = [item.job_id for item in db.pending_work_items
                   if all(annotations.never_evaluated(tuple(m.start_pos), tuple(m.end_pos)) for m in item.mutations)]
        if skipped:
            db.set_multiple_results(skipped, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
    return len(skipped)


def changed_lines(diff: str) -> tuple[str, str]:
    """The first removed and the first added source line of a mutant's unified diff, stripped."""
    removed = [line[1:].strip() for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    added = [line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    return (removed[0] if removed else ""), (added[0] if added else "")


def prepare_copy(module: Module) -> Path:
    work = OUT / module.name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache")
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, work / name, ignore=ignore)
        else:
            shutil.copy2(source, work / name)
    # Byte-code for everything now, so a test run compiles only the mutated file (whose changed mtime makes its
    # cached byte-code stale); PYTHONDONTWRITEBYTECODE keeps a mutant's byte-code from ever being written.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(work / "pipeline"), str(work / "agents")],
                   check=True)
    return work


def refresh_tests(module: Module, work: Path) -> None:
    """For --again: today's tests into the existing copy, and the module's own source put back (a run that was
    stopped may have left a mutant in it)."""
    shutil.rmtree(work / "tests")
    shutil.copytree(ROOT / "tests", work / "tests", ignore=shutil.ignore_patterns("__pycache__", ".hypothesis"))
    shutil.copy(ROOT / module.path, work / module.path)


def source_digest(module: Module) -> str:
    return hashlib.sha256((ROOT / module.path).read_bytes()).hexdigest()


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONDONTWRITEBYTECODE="1", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    env.pop("PYTHONPATH", None)
    return env


def start_server(module: Module, work: Path) -> tuple[subprocess.Popen, str]:
    # A Unix socket's path is limited to ~100 bytes: a short one under the temp dir, whatever the checkout's path.
    socket_path = str(Path(tempfile.mkdtemp(prefix="meterline-mutation-")) / "forkserver.sock")
    log = open(work / "forkserver.log", "w", encoding="utf-8")
    server = subprocess.Popen(
        [sys.executable, str(HERE / "forkserver.py"), "serve", socket_path, str(work), *PYTEST_PLUGINS,
         *module.tests], stdout=log, stderr=subprocess.STDOUT, env=environment(), start_new_session=True)
    deadline = time.monotonic() + 600
    while not (work / "forkserver.log").read_text(encoding="utf-8").startswith("forkserver: ready"):
        if server.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"{module.name}: the fork server did not start:\n{(work / 'forkserver.log').read_text()}")
        time.sleep(0.2)
    return server, socket_path


def test_command(module: Module, socket_path: str) -> list[str]:
    return [sys.executable, str(HERE / "forkserver.py"), "run", socket_path, *PYTEST_PLUGINS, "-x", "-q",
            *module.tests]


def write_config(module: Module, work: Path, command: list[str], timeout: float) -> Path:
    config = work / "cosmic-ray.toml"
    config.write_text(
        "[cosmic-ray]\n"
        f'module-path = "{work / module.path}"\n'
        f"timeout = {timeout:.0f}\n"
        "excluded-modules = []\n"
        f"test-command = \"{' '.join(command)}\"\n"
        "[cosmic-ray.distributor]\n"
        'name = "local"\n', encoding="utf-8")
    return config


def forget_survivors(session: Path) -> int:
    """Drops the results of the survivors (and errors) of a session, so ``cosmic-ray exec`` runs them again."""
    with sqlite3.connect(session) as db:
        return db.execute("DELETE FROM work_results WHERE test_outcome IS NULL OR test_outcome != 'KILLED'").rowcount


def read_results(module: Module, session: Path, equivalents: list[Equivalent], annotations: Annotations) -> Outcome:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    outcome = Outcome(module)
    mine = [e for e in equivalents if e.path == module.path]
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            outcome.mutants += 1
            mutation = item.mutations[0]
            operator = mutation.operator_name
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                outcome.annotations += 1
                continue
            if result.test_outcome == TestOutcome.KILLED:
                outcome.killed += 1
                outcome.timeouts += result.output == "timeout"
                continue
            diff = result.diff or ""
            before, after = changed_lines(diff)
            match = next((e for e in mine if e.before == before and e.after == after), None)
            if match is None and annotations.in_variable(tuple(mutation.start_pos), tuple(mutation.end_pos)):
                match = ANNOTATION
            if match is not None and result.test_outcome == TestOutcome.SURVIVED:
                outcome.equivalent.append((operator, diff, match))
            else:
                outcome.errors += result.test_outcome != TestOutcome.SURVIVED
                outcome.survivors.append((operator, diff or (result.output or "")[-2000:], item.job_id))
        outcome.mutants += len(db.pending_work_items)
    return outcome


def run_module(module: Module, equivalents: list[Equivalent], again: bool) -> Outcome:
    started = time.monotonic()
    annotations = Annotations.of((ROOT / module.path).read_text(encoding="utf-8"))
    work = OUT / module.name
    session = work / "session.sqlite"
    digest = work / "source.sha256"
    if again and session.exists() and digest.exists() and digest.read_text() == source_digest(module):
        refresh_tests(module, work)
    else:  # a new session (also when the module changed since the last one: its mutants are other mutants)
        again = False
        work = prepare_copy(module)
        digest.write_text(source_digest(module))
    server, socket_path = start_server(module, work)
    try:
        command = test_command(module, socket_path)
        clean_started = time.monotonic()
        clean = subprocess.run(command, capture_output=True, text=True)
        if clean.returncode != 0:
            sys.exit(f"{module.name}: the tests fail without any mutant:\n{clean.stdout[-4000:]}{clean.stderr}")
        # A mutant that makes a loop endless costs the whole timeout: a few clean runs, at most the module's own.
        timeout = min(module.timeout, max(30.0, 5 * (time.monotonic() - clean_started)))
        config = write_config(module, work, command, timeout)
        if again:
            print(f"{module.name}: re-testing {forget_survivors(session)} survivors", flush=True)
        else:
            subprocess.run([COSMIC_RAY, "init", str(config), str(session)], check=True, cwd=work, env=environment())
        skip_annotations(session, annotations)
        subprocess.run([COSMIC_RAY, "exec", str(config), str(session)], check=True, cwd=work, env=environment())
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(Path(socket_path).parent, ignore_errors=True)
    outcome = read_results(module, session, equivalents, annotations)
    outcome.seconds = time.monotonic() - started
    write_survivors(outcome, work)
    print(f"{module.name}: {outcome.mutants} mutants ({outcome.annotations} in annotations, "
          f"not run), {outcome.killed} killed, {len(outcome.survivors)} survived, {len(outcome.equivalent)} "
          f"equivalent, score {outcome.score:.1f}% ({outcome.seconds:.0f} s)", flush=True)
    return outcome


def write_survivors(outcome: Outcome, work: Path) -> None:
    lines = [f"# Survivors of {outcome.module.path}", ""]
    for operator, diff, job in outcome.survivors:
        lines += [f"## {operator} ({job})", "", "```diff", diff.strip(), "```", ""]
    (work / "survivors.md").write_text("\n".join(lines), encoding="utf-8")


def summary(outcomes: list[Outcome], equivalents: list[Equivalent]) -> str:
    rows = ["| module | mutants | in annotations (not run) | killed (timeouts) | survived | equivalent "
            "(listed + annotations) | score | run time |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for o in outcomes:
        annotated = sum(e is ANNOTATION for _, _, e in o.equivalent)
        rows.append(f"| `{o.module.path}` | {o.mutants} | {o.annotations} | {o.killed} ({o.timeouts}) | "
                    f"{len(o.survivors)} | {len(o.equivalent) - annotated} + {annotated} | {o.score:.1f}% | "
                    f"{o.seconds / 60:.1f} min |")
    used = {id(e) for o in outcomes for _, _, e in o.equivalent}
    run_paths = {o.module.path for o in outcomes}
    stale = [e for e in equivalents if e.path in run_paths and id(e) not in used]
    if stale:
        rows += ["", "Entries of tests/mutation/equivalent.md that matched no survivor (stale):"]
        rows += [f"- {e.path}: `{e.before}` → `{e.after}`" for e in stale]
    return "\n".join(rows)


def main() -> None:
    modules = load_modules()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="MODULE", help=f"default: all of {', '.join(modules)}")
    parser.add_argument("--jobs", type=int, default=1, help="modules run side by side (default 1)")
    parser.add_argument("--again", action="store_true", help="re-test only the last run's survivors")
    parser.add_argument("--fail-under", type=float, default=None, help="exit 1 if a module scores below this")
    args = parser.parse_args()
    unknown = [name for name in args.names if name not in modules]
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; known: {', '.join(modules)}")
    chosen = [modules[name] for name in args.names or modules]
    equivalents = load_equivalents()
    OUT.mkdir(exist_ok=True)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        outcomes = list(pool.map(lambda m: run_module(m, equivalents, args.again), chosen))
    table = summary(outcomes, equivalents)
    (OUT / "summary.md").write_text(table + "\n", encoding="utf-8")
    print(table)
    if args.fail_under is not None and any(o.score < args.fail_under for o in outcomes):
        sys.exit(1)


if __name__ == "__main__":
    main()
