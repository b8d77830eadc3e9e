"""Load compose files into a StackSpec.

A pipeline, one stage per module, as docker-compose's ``config`` package:

1. ``yaml_load``   each file into a located tree (every key keeps its file and line)
2. ``interpolate`` ``${VAR}`` in each file, from environ over the ``.env`` file
3. ``merge``       the files in order, as ``docker compose -f a -f b`` does
4. ``convert``     the services the enabled profiles make active into the frozen
                   models, checking types and references

Every problem of one load is gathered: one ComposeError, or a ComposeErrors of all.
Ignored-but-valid Compose options become ``StackSpec.warnings``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from swarmlite.errors import ComposeError
from swarmlite.spec.service import STACK_NAME, StackSpec

from .convert import convert
from .envfile import EnvFileError, read_env_file
from .interpolate import interpolate_tree
from .merge import merge_files
from .problems import Problems
from .profiles import enabled_profiles
from .tree import YMap
from .yaml_load import load_yaml

__all__ = ["load_stack", "normalize_stack_name"]


def load_stack(
    files: Sequence[Path],
    *,
    stack: str | None = None,
    environ: Mapping[str, str] | None = None,
    profiles: Sequence[str] | None = None,
) -> StackSpec:
    """Parse, interpolate, merge and convert ``files`` (``-f`` order) into a stack.

    The stack name is ``stack``, else the top-level ``name:``, else the first
    file's directory name, normalized as Compose does. ``profiles`` (``--profile``)
    are the enabled profiles, else ``COMPOSE_PROFILES``; services of other profiles
    are left out (``profiles.py``).
    """
    if not files:
        raise ComposeError("no compose file given")
    paths = [Path(f) for f in files]
    env = _environment(paths[0], os.environ if environ is None else environ)
    problems = Problems()
    trees = []
    for path in paths:
        tree = load_yaml(path)
        interpolate_tree(tree, env, problems)
        trees.append(tree)
    merged = merge_files(trees)
    name = _stack_name(stack, merged, paths[0], problems)
    # Convert even under a bad name, so every other problem is reported too.
    enabled = enabled_profiles(profiles, env)
    spec = convert(merged, name or "invalid", env, problems, enabled)
    problems.raise_if_any()
    assert spec is not None  # no errors recorded means convert built it
    return spec


def normalize_stack_name(text: str) -> str:
    """Lowercase, only ``[a-z0-9_-]``, starting with a letter or digit."""
    return re.sub(r"[^a-z0-9_-]", "", text.lower()).lstrip("_-")


def _environment(first: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """``.env`` beside the first file, overridden by the real environment."""
    env: dict[str, str] = {}
    dotenv = first.parent / ".env"
    if dotenv.is_file():
        try:
            entries = read_env_file(dotenv, environ)
        except EnvFileError as exc:
            raise ComposeError(str(exc), file=str(dotenv), line=exc.line) from None
        for key, value, _ in entries:
            if value is not None:
                env[key] = value
    env.update(environ)
    return env


def _stack_name(explicit: str | None, tree: YMap, first: Path, problems: Problems) -> str:
    if explicit is not None:
        if not STACK_NAME.fullmatch(explicit):
            problems.error(
                f"invalid stack name {explicit!r}: use lowercase letters, digits, '_' and '-'"
            )
            return ""
        return explicit
    top_name = tree.get("name")
    if isinstance(top_name, str) and top_name:
        if not STACK_NAME.fullmatch(top_name):
            problems.error(
                f"invalid project name {top_name!r}: use lowercase letters, digits, '_' and '-'",
                tree.where("name"),
                key="name",
            )
            return ""
        return top_name
    name = normalize_stack_name(first.absolute().parent.name)
    if not name:
        problems.error(
            f"cannot derive a stack name from the directory of {str(first)!r}",
            hint="pass a stack name or set name: in the compose file",
        )
    return name
