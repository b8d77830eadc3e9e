"""Stage 1: read a compose file into a located tree.

ruamel.yaml's round-trip loader keeps each key's line (``.lc``), which the later
stages need to say *where* a problem is, even after several files are merged.

Compose's ``!reset`` and ``!override`` tags on a mapping's value are kept in the
parent's ``tags`` for the merge; any other local tag (``!foo``) is refused.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from swarmlite.errors import ComposeError

from .tree import Pos, Value, YList, YMap


def load_yaml(path: Path) -> YMap:
    """Parse one compose file; its top level must be a mapping."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ComposeError("compose file not found", file=name) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ComposeError(f"cannot read compose file: {exc}", file=name) from None
    try:
        raw = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        raise ComposeError(f"YAML syntax error: {what}", file=name, line=line) from None
    except YAMLError as exc:
        raise ComposeError(f"YAML syntax error: {exc}", file=name) from None
    if raw is None:
        raise ComposeError("compose file is empty", file=name)
    tree = _convert(raw, name, 1)
    if not isinstance(tree, YMap):
        raise ComposeError("the top level of a compose file must be a mapping", file=name, line=1)
    return tree


_MERGE_TAGS = ("!reset", "!override")


def _local_tag(node: object, file: str, line: int) -> str | None:
    """``!reset``/``!override`` of a node, None for no tag or a standard ``!!`` one."""
    tag = getattr(getattr(node, "tag", None), "value", None)
    if not isinstance(tag, str) or not tag.startswith("!") or tag.startswith("!!"):
        return None
    if tag not in _MERGE_TAGS:
        raise ComposeError(
            f"unknown YAML tag {tag}: Compose files know only !reset and !override",
            file=file,
            line=line,
        )
    return tag


def _convert(node: object, file: str, line: int) -> Value:
    if isinstance(node, CommentedMap):
        own = Pos(file, node.lc.line + 1)
        out = YMap(own)
        # A tagged flow collection (`!override [a]`) has no per-item lines (data None).
        lines = node.lc.data or {}
        for key, value in node.items():
            # Keys pulled in by a `<<:` merge have no line of their own here.
            kline = lines[key][0] + 1 if key in lines else own.line
            tag = _local_tag(value, file, kline)
            if tag == "!reset":
                out.tags[str(key)] = tag
                out.put(str(key), None, Pos(file, kline))
                continue
            if tag is not None:
                out.tags[str(key)] = tag
            out.put(str(key), _convert(value, file, kline), Pos(file, kline))
        return out
    if isinstance(node, CommentedSeq):
        own = Pos(file, node.lc.line + 1)
        seq = YList(own)
        lines = node.lc.data or {}
        for i, value in enumerate(node):
            iline = lines[i][0] + 1 if i in lines else own.line
            if _local_tag(value, file, iline) is not None:
                raise ComposeError(
                    "!reset and !override tag a mapping's value, not a list item",
                    file=file,
                    line=iline,
                )
            seq.add(_convert(value, file, iline), Pos(file, iline))
        return seq
    if node is None or isinstance(node, bool):
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, datetime.date):
        return node.isoformat()
    return str(node)
