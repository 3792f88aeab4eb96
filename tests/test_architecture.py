"""The import rules of docs/architecture.md, checked by parsing every module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "labtrack"

TRAINING = ("labtrack._run", "labtrack._run_media", "labtrack._run_extras", "labtrack._run_progress",
            "labtrack._media", "labtrack._lifecycle", "labtrack._default",
            "labtrack._writer", "labtrack._records", "labtrack._checkpoints",
            "labtrack._console", "labtrack._capture", "labtrack._provenance", "labtrack._notebook",
            "labtrack._distributed", "labtrack._ranks",
            "labtrack._remote.shipper", "labtrack._remote.upload", "labtrack._remote.wire",
            "labtrack._remote.backoff", "labtrack._remote.sync",
            # object storage: the spool's shipper and what it stands on (not mirror, book)
            "labtrack._objstore.store", "labtrack._objstore.manifest", "labtrack._objstore.run",
            "labtrack._objstore.client", "labtrack._objstore.ship", "labtrack._objstore.spool",
            "labtrack.tensorboard", "labtrack._tb_convert",  # the SummaryWriter bridge writes runs
            "labtrack.wandb", "labtrack._bridges")
ANALYSIS = ("labtrack._book", "labtrack._index", "labtrack._index_rows", "labtrack._query",
            "labtrack._rerun", "labtrack.integrations")
WRITES = {"atomic_write_bytes", "atomic_write_json", "append_bytes"}
MAY_WRITE = ("labtrack._store", "labtrack._run", "labtrack._run_media", "labtrack._run_extras", "labtrack._run_progress",
             "labtrack._writer", "labtrack._checkpoints",
             "labtrack._book.manage", "labtrack._annotate", "labtrack._server.ingest",
             "labtrack._server.auth",
             "labtrack._server.shared",  # a shared server's local mirror of the bucket (checked paths)
             "labtrack._server.series_store",  # the server's derived series cache (deletable)
             "labtrack._index_rowfile",  # a run's derived row file, written at finish (deletable)
             "labtrack._remote.book",  # a server's runs downloaded into a local cache
             "labtrack._objstore.mirror",  # a bucket's runs downloaded into a local cache
             "labtrack.integrations.tensorboard")  # event files written outside the runs


class Import:
    """One imported name: the module it comes from, and whether it sits inside a function."""

    def __init__(self, module: str, names: list[str], lazy: bool, line: int) -> None:
        self.module, self.names, self.lazy, self.line = module, names, lazy, line

    def targets(self) -> list[str]:
        return [self.module] + [f"{self.module}.{n}" for n in self.names]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> list[Import]:
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[Import] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    module = ".".join(base + ([child.module] if child.module else []))
                else:
                    module = child.module or ""
                out.append(Import(module, [a.name for a in child.names], lazy, child.lineno))
            elif isinstance(child, ast.Import):
                for a in child.names:
                    out.append(Import(a.name, [], lazy, child.lineno))
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return out


MODULES = {module_name(p): imports_of(p) for p in sorted(SRC.rglob("*.py"))}


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def offending(prefixes: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for mod, imports in MODULES.items():
        if not under(mod, prefixes):
            continue
        for imp in imports:
            bad = [t for t in imp.targets() if under(t, forbidden)]
            if bad:
                found.append(f"{mod}:{imp.line} imports {bad[0]}")
    return found


def test_the_parser_sees_the_imports_it_checks() -> None:
    # A rule checked over nothing passes for nothing: the walk must find known imports.
    assert "labtrack._store.rundir" in MODULES and len(MODULES) > 40
    targets = {t for imp in MODULES["labtrack._book.view"] for t in imp.targets()}
    assert "labtrack._store.rundir.RunDir" in targets
    lazy = [imp for imp in MODULES["labtrack._run"] if "labtrack._index" in imp.module]
    assert lazy and all(imp.lazy for imp in lazy)


def test_the_store_is_the_bottom_layer() -> None:
    allowed = ("labtrack._store", "labtrack._names", "labtrack.errors", "labtrack._settings",
               "labtrack._hot")
    bad = []
    for mod, imports in MODULES.items():
        if under(mod, ("labtrack._store",)):
            bad += [f"{mod}:{i.line} imports {i.module}" for i in imports
                    if i.module.startswith("labtrack") and not under(i.module, allowed)]
    assert bad == []


def test_the_training_side_never_imports_the_analysis_side() -> None:
    bad = offending(TRAINING, ("labtrack._server", "labtrack._book", "labtrack._cli", "labtrack.cli",
                               "pandas", "labtrack._index_rows", "labtrack._query"))
    assert bad == []
    # The index side only once: Run.finish's row file (and opt-in note_run), inside the function.
    index = [(mod, imp) for mod, imports in MODULES.items() if under(mod, TRAINING)
             for imp in imports if imp.module.startswith("labtrack._index")]
    assert index and all(mod == "labtrack._run" and imp.lazy and imp.module == "labtrack._index_rowfile"
                         and imp.names == ["after_finish"] for mod, imp in index), [
        (mod, imp.line) for mod, imp in index]
    # and that module reaches the analysis side only inside its functions, at finish
    assert all(imp.lazy for imp in MODULES["labtrack._index_rowfile"]
               if under(imp.module, ("labtrack._index", "labtrack._index_rows", "labtrack._query")))


def test_the_analysis_side_never_imports_the_server_or_the_writer() -> None:
    assert offending(ANALYSIS, ("labtrack._server", "labtrack._run", "labtrack._writer",
                                "labtrack._cli", "labtrack.cli")) == []


def test_only_the_cli_imports_the_server() -> None:
    bad = [f"{mod}:{imp.line}" for mod, imports in MODULES.items()
           if not under(mod, ("labtrack._server", "labtrack._cli", "labtrack.cli"))
           for imp in imports if under(imp.module, ("labtrack._server",))]
    assert bad == []


def test_writes_go_through_the_store_and_only_from_the_writers() -> None:
    bad = []
    for mod, imports in MODULES.items():
        for imp in imports:
            if imp.module == "labtrack._store.files" and WRITES & set(imp.names) and not under(mod, MAY_WRITE):
                bad.append(f"{mod}:{imp.line} imports {sorted(WRITES & set(imp.names))}")
            if imp.module == "labtrack._store" and "files" in imp.names and not under(mod, MAY_WRITE):
                bad.append(f"{mod}:{imp.line} imports labtrack._store.files")
    assert bad == []


# File names as they are spelled, folders where they are used as paths (`/ "source"`,
# `"artifacts/..."`: "checkpoints" is also a key of run.json), and series-file suffix logic.
SPELLINGS = ['"run.json"', '"params.json"', '"summary.json"', '"media.jsonl"', '"console.log"',
             '"env.json"', '"options.json"', '"heartbeat"', '/ "source"', '"source/', '/ "artifacts"',
             '"artifacts/', '/ "checkpoints"', '"checkpoints/', '/ "scalars"', '"scalars/', '".csv")',
             '".jsonl")']


@pytest.mark.parametrize("spelled", SPELLINGS)
def test_the_analysis_side_spells_no_run_file_name(spelled: str) -> None:
    # Outside _store, the Book, CLI, rerun, annotate, index and TB export name no run file.
    owners = ANALYSIS + ("labtrack._annotate", "labtrack._cli.runs", "labtrack._remote.book")
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        if under(module_name(path), owners):
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                code = line.split("#", 1)[0]
                if spelled in code and not code.strip().startswith(('"', "'")):
                    bad.append(f"{module_name(path)}:{n}: {line.strip()}")
    assert bad == []
