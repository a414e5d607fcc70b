"""The shape of the apachews package: no import cycles between its modules, no module over 600 lines, no
distribution named outside distros/ and packaging/, no hand-written serialisation.

The graph is read from the source with `ast`: every `import` and `from ... import` anywhere in a module (at
module level, inside functions, under `if TYPE_CHECKING:`), so an import moved into a function or hidden from
runtime by TYPE_CHECKING still counts. An edge goes to the module named (`from apachews.distros import debian`
is an edge to apachews.distros.debian when that is a module, else to the package apachews.distros). Importing a
module runs its packages' __init__ first, so `from apachews.distros.catalogue import x` in httpd.py is an edge
to apachews.distros too; a module's own packages are not (they are already being imported).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import apachews
from apachews import distros
from apachews.distros import catalogue

PACKAGE_DIR = Path(apachews.__file__).parent

# Cycles allowed, each a strongly connected component as a sorted tuple of module names: none.
KNOWN_CYCLES: set[tuple[str, ...]] = set()


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = ("apachews", *path.relative_to(PACKAGE_DIR).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name of a relative import (`from . import x`, `from ..y import z`)."""
    if level == 0:
        return target or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([target] if target else [])])


def import_graph() -> dict[str, set[str]]:
    """Each apachews module and the apachews modules it imports anywhere in its source."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node.level, node.module)
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    targets.append(submodule if submodule in modules else base)
            own_packages = {".".join(name.split(".")[:depth]) for depth in range(1, name.count(".") + 1)}
            for target in targets:
                # `import apachews.x.y` names apachews.x.y; keep the longest prefix that is one of ours.
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target not in (name, "apachews"):
                    graph[name].add(target)
                # ... and the packages Python runs first, less the importer's own.
                target = target.rpartition(".")[0]
                while target and target != "apachews" and target not in own_packages:
                    graph[name].add(target)
                    target = target.rpartition(".")[0]
    return graph


def cycles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[tuple[str, ...]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(tuple(sorted(component)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_the_graph_sees_every_kind_of_import():
    graph = import_graph()
    assert "apachews.config" in graph and "apachews.distros" in graph
    assert "apachews.errors" in graph["apachews.config"]  # a module-level import
    assert "apachews.distros" in graph["apachews.doctor"]  # the package `from apachews.distros.x import` runs


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [("a", "b", "c")]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    found = set(cycles(import_graph()))
    unexpected = sorted(found - KNOWN_CYCLES)
    assert not unexpected, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in unexpected)
    fixed = sorted(KNOWN_CYCLES - found)
    assert not fixed, "no longer cycles, take them off KNOWN_CYCLES:\n" + "\n".join(" <-> ".join(c) for c in fixed)


# Where distribution knowledge may live (the layouts, the packagers); everywhere else asks a layout.
DISTRIBUTION_HOMES = ("distros", "packaging")
# Releases' code names and the distributions' own tools, besides what the catalogue names.
DISTRIBUTION_WORDS = (
    "ubuntu", "fedora", "rocky", "almalinux", "suse", "buster", "stretch", "jessie", "wheezy", "trixie", "focal",
    "jammy", "bionic", "xenial", "trusty", "precise", "noble", "a2enmod", "a2dismod", "a2enconf", "a2ensite",
)  # fmt: skip
MAX_MODULE_LINES = 600


def distribution_words() -> set[str]:
    """Every word that names a distribution: the catalogue's keys, names, suites, layouts, yum image names."""
    words = {word.lower() for word in DISTRIBUTION_WORDS}
    for distribution in catalogue.distributions().values():
        words |= {re.sub(r"\d+$", "", distribution.key), distribution.name.split()[0].lower()}
        words |= {distribution.suite} if distribution.suite else set()
    words |= {name for name in distros.NAMES if name != "generic"}
    words |= set(catalogue.build_base().yum_images) - {"ubi"}  # "ubi" is inside too many words
    return words


def test_no_distribution_is_named_outside_distros():
    words = distribution_words()
    assert {"debian", "centos", "rhel", "gentoo", "bullseye"} <= words  # the catalogue was read
    pattern = re.compile(r"\b(" + "|".join(sorted(words)) + r")(\d+|el\d+)?\b", re.IGNORECASE)
    found = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        if path.relative_to(PACKAGE_DIR).parts[0] in DISTRIBUTION_HOMES:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                found.append(f"{path.relative_to(PACKAGE_DIR.parent)}:{number}: {line.strip()}")
    assert not found, "ask a layout (distros.get) instead of naming a distribution:\n" + "\n".join(found)


def test_the_name_check_sees_a_distribution_named():
    pattern = re.compile(r"\b(" + "|".join(sorted(distribution_words())) + r")\b", re.IGNORECASE)
    assert pattern.search('if layout == "rhel":') and pattern.search("# as a2enmod would")


def test_no_module_is_over_600_lines():
    long = {
        str(path.relative_to(PACKAGE_DIR.parent)): count
        for path in PACKAGE_DIR.rglob("*.py")
        if (count := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"split these modules (over {MAX_MODULE_LINES} lines): {long}"


# Hand-written `to_dict` methods, each with why it cannot be derived (apachews.serial): --json is derived from
# dataclass fields everywhere else.
HAND_WRITTEN_TO_DICT = {
    "apachews/serial.py": "Serialised itself",
    "apachews/errors.py": "ApachewsError is an exception, not a dataclass",
    "apachews/serverbuild.py": "spreads build.json's free-form facts over the derived dict",
}


def test_to_dict_is_derived_not_hand_written():
    found = {
        path.relative_to(PACKAGE_DIR.parent).as_posix()
        for path in PACKAGE_DIR.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.FunctionDef) and node.name == "to_dict"
    }
    unexpected = sorted(found - set(HAND_WRITTEN_TO_DICT))
    assert not unexpected, "mix in apachews.serial.Serialised instead of writing to_dict in: " + ", ".join(unexpected)
    gone = sorted(set(HAND_WRITTEN_TO_DICT) - found)
    assert not gone, "no longer hand-written, take them off HAND_WRITTEN_TO_DICT: " + ", ".join(gone)
