"""Load a YAML file so that every mistake in it can be pointed at by line.

PyYAML's plain ``safe_load`` silently keeps the last of two equal keys and
forgets where each key was written. Release data is edited by hand, so a
duplicated key must be an error (the first value would be lost without a
word) and every later schema error must name the line it is about. This
module is the only place that knows about PyYAML nodes; callers get plain
dicts and lists (subclasses that also carry line numbers) and ask
:func:`line_of`, :func:`where` and :func:`raw` about them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from airlock.errors import AirlockError


class YamlMap(dict):
    """A YAML mapping: a dict that remembers where it and its keys were written.

    ``line`` is the 1-based line of the mapping, ``key_lines`` the line of
    each key, ``raw_values`` the source text of each scalar value as written
    (so a message can quote ``3.10`` rather than the float ``3.1`` it
    became).
    """

    line: int = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_lines: dict[Any, int] = {}
        self.raw_values: dict[Any, str] = {}


class YamlList(list):
    """A YAML sequence: a list that remembers the line of each item."""

    line: int = 0

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.item_lines: list[int] = []


class _DuplicateKey(Exception):
    """Raised inside the loader; :func:`load` turns it into an AirlockError."""

    def __init__(self, key: Any, line: int) -> None:
        super().__init__(key, line)
        self.key = key
        self.line = line


_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """SafeLoader that builds YamlMap/YamlList and refuses duplicate keys."""


def _construct_map(loader: _Loader, node: MappingNode) -> Iterator[YamlMap]:
    data = YamlMap()
    data.line = node.start_mark.line + 1
    yield data  # PyYAML's two-step construction: allows recursive structures
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            continue  # "<<: *anchor" may legitimately be overridden by later keys
        key = loader.construct_object(key_node, deep=True)
        try:
            if key in seen:
                raise _DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key)
        except TypeError:
            pass  # unhashable key: construct_mapping below reports it as invalid YAML
    data.update(loader.construct_mapping(node, deep=True))
    # construct_mapping flattened merges into node.value, explicit keys last,
    # so a key written in this mapping wins over one merged in.
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        data.key_lines[key] = key_node.start_mark.line + 1
        if isinstance(value_node, ScalarNode):
            data.raw_values[key] = value_node.value


def _construct_seq(loader: _Loader, node: SequenceNode) -> Iterator[YamlList]:
    data = YamlList()
    data.line = node.start_mark.line + 1
    yield data
    data.extend(loader.construct_sequence(node, deep=True))
    data.item_lines = [item.start_mark.line + 1 for item in node.value]


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def load_text(text: str, path: Path | str) -> Any:
    """Parse ``text`` (read from ``path``, named in errors) into plain data."""
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader: no object tags
    except _DuplicateKey as dup:
        raise AirlockError(f"{path}:{dup.line}", f"duplicate key '{dup.key}'", "keep one") from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = error.problem or error.context or "cannot parse"
        context, start = error.context, error.context_mark
        if context and problem.startswith("but "):
            # "but found another document" only makes sense after its context
            problem = f"{context}, {problem}"
        elif context and start and mark and start.line != mark.line:
            # The parser notices a missing ']' lines later; point back at the opening.
            problem += f" ({context} started on line {start.line + 1})"
        raise AirlockError(where, f"invalid YAML: {problem}", "fix the syntax") from None
    except yaml.YAMLError as error:
        raise AirlockError(str(path), f"invalid YAML: {error}", "fix the syntax") from None


def load(path: Path) -> Any:
    """Read and parse the YAML file at ``path``.

    Returns None for an empty file, else YamlMap/YamlList/scalars. Raises
    AirlockError (one line, with the line number) for a file that cannot be
    read, malformed YAML or a duplicate key.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AirlockError(str(path), "no such file", "create it") from None
    except UnicodeDecodeError as error:
        raise AirlockError(str(path), f"not UTF-8 text ({error.reason})",
                           "save the file as UTF-8") from None
    except OSError as error:
        raise AirlockError(str(path), f"cannot read: {error.strerror}",
                           "check the path and its permissions") from None
    return load_text(text, path)


def line_of(data: Any, key: Any = None) -> int | None:
    """The line of ``key`` in mapping ``data`` (or of ``data`` itself); None if unknown.

    For a YamlList, ``key`` is an item index.
    """
    if key is None:
        return getattr(data, "line", None) or None
    if isinstance(data, YamlMap):
        return data.key_lines.get(key)
    if isinstance(data, YamlList) and isinstance(key, int) and 0 <= key < len(data.item_lines):
        return data.item_lines[key]
    return None


def where(path: Path | str, data: Any, key: Any = None) -> str:
    """``path:LINE`` for ``key`` of ``data`` when its line is known.

    Falls back to ``path:key`` (a key that is not in the file has no line,
    e.g. a missing one) and then to the bare path.
    """
    line = line_of(data, key)
    if line:
        return f"{path}:{line}"
    if key is not None and not isinstance(key, int):
        return f"{path}:{key}"
    return str(path)


def raw(data: Any, key: Any) -> str | None:
    """The source text of the scalar value of ``key`` in ``data`` as written."""
    if isinstance(data, YamlMap):
        return data.raw_values.get(key)
    return None
