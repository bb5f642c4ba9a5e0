"""Facts about the repo's distributions for the shell scripts (stdlib only).

python3 scripts/_project.py dists              # core, plugins/* (not _template): "name<TAB>dir" lines
python3 scripts/_project.py test-dists         # tests/dists/* folders with a pyproject.toml
python3 scripts/_project.py spec DIR           # "DIR" or "DIR[testing]" if the extra exists
python3 scripts/_project.py requirements NAME  # every requirement on NAME in any pyproject
python3 scripts/_project.py stamp FILE...      # sha256 of the files' contents (missing ones count)
python3 scripts/_project.py local-deps DIR     # the repo's own distributions DIR depends on, transitively (their folders)
"""

from __future__ import annotations

import hashlib
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _load(path: Path) -> dict[str, object]:
    with path.open("rb") as f:
        return tomllib.load(f)


def dists() -> list[tuple[str, Path]]:
    """(short name, folder) of core and every plugin with a pyproject.toml."""
    out: list[tuple[str, Path]] = []
    if (ROOT / "core" / "pyproject.toml").is_file():
        out.append(("core", ROOT / "core"))
    for p in sorted((ROOT / "plugins").glob("*/pyproject.toml")):
        if p.parent.name.startswith("_"):  # plugins/_template and friends
            continue
        out.append((p.parent.name, p.parent))
    return out


def test_dists() -> list[Path]:
    return [p.parent for p in sorted((ROOT / "tests" / "dists").glob("*/pyproject.toml"))]


def _project(folder: Path) -> dict[str, object]:
    project = _load(folder / "pyproject.toml").get("project", {})
    return project if isinstance(project, dict) else {}


def spec(folder: Path) -> str:
    extras = _project(folder).get("optional-dependencies") or {}
    return f"{folder}[testing]" if isinstance(extras, dict) and "testing" in extras else str(folder)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(name: str) -> list[str]:
    found: set[str] = set()
    files = [ROOT / "core" / "pyproject.toml", *(ROOT / "plugins").glob("*/pyproject.toml")]
    files += list((ROOT / "tests" / "dists").glob("*/pyproject.toml"))
    for f in files:
        if not f.is_file():
            continue
        project = _project(f.parent)
        reqs = list(project.get("dependencies") or [])  # type: ignore[call-overload]
        for extra in (project.get("optional-dependencies") or {}).values():  # type: ignore[union-attr]
            reqs += list(extra)
        for r in reqs:
            m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", r)
            if m and _norm(m.group(1)) == _norm(name):
                found.add(r.split(";")[0].strip())
    return sorted(found)


def local_deps(folder: Path) -> list[Path]:
    """Folders of the repo's own distributions (not core) that ``folder``'s distribution needs, transitively."""
    by_name = {_norm(str(_project(f).get("name", ""))): f for _, f in dists() if f.name != "core"}
    found: list[Path] = []
    todo = [folder]
    while todo:
        for r in _project(todo.pop()).get("dependencies") or []:  # type: ignore[attr-defined]
            m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", r)
            dep = by_name.get(_norm(m.group(1))) if m else None
            if dep is not None and dep not in found:
                found.append(dep)
                todo.append(dep)
    return found


def stamp(files: list[str]) -> str:
    h = hashlib.sha256()
    for name in files:
        p = Path(name)
        h.update(name.encode() + b"\0")
        h.update(p.read_bytes() if p.is_file() else b"<missing>")
        h.update(b"\0")
    return h.hexdigest()


def main(argv: list[str]) -> int:
    cmd, args = argv[0], argv[1:]
    if cmd == "dists":
        for name, folder in dists():
            print(f"{name}\t{folder}")
    elif cmd == "test-dists":
        for folder in test_dists():
            print(folder)
    elif cmd == "spec":
        print(spec(Path(args[0])))
    elif cmd == "requirements":
        for r in requirements(args[0]):
            print(r)
    elif cmd == "name":
        for folder in args:
            print(_project(Path(folder)).get("name", ""))
    elif cmd == "local-deps":
        for dep in local_deps(Path(args[0]).resolve()):
            print(dep)
    elif cmd == "stamp":
        print(stamp(args))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
