"""``fogwire validate``: check documents without applying anything.

Each file may hold several YAML (or JSON) documents. A mapping with
``profiles``/``currentProfile`` is an agent config; a document an installed
:class:`~fogwire.validation.DocumentValidator` claims is checked by it (the router
wrapper's skrouterd config, with ``fogwire-router``); anything else is an ioFog
document. ioFog documents in one file are checked together as one desired state
(references must resolve). Exit 0 when valid; exit 2 with one line per problem otherwise.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fogwire.cli.common import print_json
from fogwire.errors import ConfigError, Problem, SourceError

if TYPE_CHECKING:
    from fogwire.model.agent_config import Profile


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    """``-f FILE`` (repeatable) and ``--json``."""
    parser.add_argument("-f", "--file", dest="files", action="append", required=True, metavar="FILE")
    parser.add_argument("--json", action="store_true", help="print {valid, problems[]} as JSON")


def validate_file(
    path: Path, notices: list[str] | None = None, *, catalog_family: str = "iofog", agent_name: str | None = None
) -> list[Problem]:
    """Every problem in the file at ``path`` (empty when it is valid); what was skipped goes to ``notices``."""
    from fogwire.builtin.file_source import load_documents
    from fogwire.config import parse_agent_config
    from fogwire.model.desired import assemble
    from fogwire.plugins import PluginHost

    origin = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        return [Problem(origin, 0, "", f"cannot read: {error.strerror or error}")]
    try:
        documents = load_documents(text, origin)
    except SourceError as error:
        mark = getattr(error.__cause__, "problem_mark", None)
        if mark is None:
            return [Problem(origin, 0, "", str(error).removeprefix(origin + ": "))]
        problem = getattr(error.__cause__, "problem", None) or error.__cause__
        return [Problem(origin, 0, f"line {mark.line + 1}", f"not valid YAML: {problem}")]
    if not documents:
        return [Problem(origin, 0, "", "no documents in file")]
    host = PluginHost()
    validators = host.all_validators()
    converter = host.make_converter()
    problems: list[Problem] = []
    iofog: list[Any] = []
    for index, document in enumerate(documents, start=1):
        try:
            owner = next((v for v in validators if v.claims(document)), None)
            if owner is not None:
                problems.extend(owner.problems(document, origin, index, converter))
            elif (
                isinstance(document, dict)
                and "kind" not in document
                and ("profiles" in document or "currentProfile" in document)
            ):
                parse_agent_config(document, origin, converter)
            else:
                iofog.append((index, document))
        except ConfigError as error:
            problems.extend(error.problems)
    if iofog:
        try:
            desired = assemble(
                converter,
                [doc for _, doc in iofog],
                origin,
                indices=[i for i, _ in iofog],
                catalog_family=catalog_family,
                agent_name=agent_name,
            )
        except ConfigError as error:
            problems.extend(error.problems)
        else:
            if notices is not None:
                notices.extend(desired.notices)
            from fogwire.resolve import unsupported_fields

            for microservice in desired.microservices.values():
                problems.extend(unsupported_fields(microservice))
    return problems


def run(args: argparse.Namespace) -> int:
    """Validate each file; print problems; exit 2 if any."""
    problems: list[Problem] = []
    notices: list[str] = []
    profile = _profile(args)
    for name in args.files:
        problems.extend(
            validate_file(Path(name), notices, catalog_family=profile.catalog_family, agent_name=profile.agent_name)
        )
    if args.json:
        print_json(
            {
                "valid": not problems,
                "notices": notices,
                "problems": [
                    {"document": p.document, "index": p.index, "path": p.path, "message": p.message} for p in problems
                ],
            }
        )
    else:
        import sys

        for notice in notices:
            print(f"notice: {notice}", file=sys.stderr)
        for problem in problems:
            print(problem, file=sys.stderr)
        if not problems:
            print(f"valid: {', '.join(args.files)}")
    return 2 if problems else 0


def _profile(args: argparse.Namespace) -> Profile:
    """The agent config's current profile (its catalogFamily and agentName apply), or the defaults."""
    from fogwire.cli.common import paths_from
    from fogwire.config import load_agent_config
    from fogwire.errors import FogwireError
    from fogwire.model.agent_config import Profile

    try:
        return load_agent_config(paths_from(args).config_file).profile
    except (FogwireError, OSError):
        return Profile()
