"""Stage 2: substitute ``${VAR}`` in every string value of one file's tree.

Supports ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
``${VAR:?err}``, ``${VAR?err}``, ``${VAR:+alt}``, ``${VAR+alt}`` (defaults may
nest) and the ``$$`` escape. Keys are never interpolated, as in Compose.
A ``$`` not followed by a name or ``{`` is kept as is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .problems import Problems
from .tree import Pos, Value, YList, YMap

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")


class InterpolationError(ValueError):
    pass


def substitute(text: str, env: Mapping[str, str], unset: set[str]) -> str:
    """Interpolate one string; names used but unset are added to ``unset``."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        nxt = text[i + 1 : i + 2]
        if c != "$":
            out.append(c)
            i += 1
        elif nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            end = _closing_brace(text, i + 2)
            out.append(_braced(text[i + 2 : end], env, unset))
            i = end + 1
        elif m := _NAME.match(text, i + 1):
            value = env.get(m.group())
            if value is None:
                unset.add(m.group())
            out.append(value or "")
            i = m.end()
        else:
            out.append("$")
            i += 1
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    depth, i = 0, start
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    raise InterpolationError(f"invalid interpolation format in {text!r}: missing '}}'")


def _braced(body: str, env: Mapping[str, str], unset: set[str]) -> str:
    m = _NAME.match(body)
    if m is None:
        raise InterpolationError(f"invalid interpolation format '${{{body}}}'")
    name, rest = m.group(), body[m.end() :]
    value = env.get(name)
    if not rest:
        if value is None:
            unset.add(name)
        return value or ""
    op = next((o for o in _OPERATORS if rest.startswith(o)), None)
    if op is None:
        raise InterpolationError(f"invalid interpolation format '${{{body}}}'")
    arg = rest[len(op) :]
    # With a colon an empty value counts as missing, as in the shell.
    missing = value is None or (op.startswith(":") and value == "")
    kind = op[-1]
    if kind == "-":
        return substitute(arg, env, unset) if missing else str(value)
    if kind == "+":
        return "" if missing else substitute(arg, env, unset)
    if missing:
        detail = substitute(arg, env, unset)
        msg = f"required variable {name} is missing a value"
        raise InterpolationError(f"{msg}: {detail}" if detail else msg)
    return str(value)


def interpolate_tree(tree: YMap, env: Mapping[str, str], problems: Problems) -> None:
    """Replace, in place, every string value of ``tree`` by its interpolation."""
    unset: set[str] = set()
    _walk(tree, (), env, unset, problems)
    for name in sorted(unset):
        problems.warn(f'The "{name}" variable is not set. Defaulting to a blank string.')


def _walk(
    node: Value,
    path: tuple[str, ...],
    env: Mapping[str, str],
    unset: set[str],
    problems: Problems,
) -> None:
    if isinstance(node, YMap):
        for key, value in node.items():
            if isinstance(value, str):
                node[key] = _one(value, node.where(key), (*path, key), env, unset, problems)
            else:
                _walk(value, (*path, key), env, unset, problems)
    elif isinstance(node, YList):
        for i, value in enumerate(node):
            if isinstance(value, str):
                node[i] = _one(value, node.where(i), path, env, unset, problems)
            else:
                _walk(value, path, env, unset, problems)


def _one(
    text: str,
    pos: Pos,
    path: tuple[str, ...],
    env: Mapping[str, str],
    unset: set[str],
    problems: Problems,
) -> str:
    if "$" not in text:
        return text
    try:
        return substitute(text, env, unset)
    except InterpolationError as exc:
        service, key = split_path(path)
        problems.error(str(exc), pos, service=service, key=key)
        return text


def split_path(path: tuple[str, ...]) -> tuple[str | None, str]:
    """``("services", "web", "deploy", "replicas")`` -> ``("web", "deploy.replicas")``."""
    if len(path) >= 2 and path[0] == "services":
        return path[1], ".".join(path[2:]) or path[1]
    return None, ".".join(path)
