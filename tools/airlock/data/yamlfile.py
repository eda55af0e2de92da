"""Load a YAML file so that every mistake in it can be pointed at by line.

PyYAML's plain ``safe_load`` silently keeps the last of two equal keys and
forgets where each key was written. Release data is edited by hand, so a
duplicated key must be an error (the first value would be lost without a
word) and every later schema error must name the line it is about. This
module is the only place that knows about PyYAML nodes; callers get plain
dicts and lists (subclasses that also carry line numbers) and ask
:func:`line_of`, :func:`where` and :func:`raw` about them.

Release data is proposed in public reviews, so a file may be hostile. Every
file is read through :func:`airlock.files.read_text` (a regular file of at
most :data:`LIMIT` bytes: a FIFO or a device is one line, never a hang);
nesting deeper than :data:`MAX_DEPTH` is one line, not a RecursionError;
and loading takes time linear in the size of the file: libyaml parses when
it is there, the cyclic garbage collector is paused while the nodes are
built (its repeated passes over the growing set of nodes were what made a
300k-key file take minutes), and pure-Python PyYAML is the fallback and the
reference for error messages, so a message does not depend on whether
libyaml is installed.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from airlock import files
from airlock.errors import AirlockError

# Real files are a few KiB (a lock of a hundred components ~15 KiB): this
# is far above any of them, and a file this size loads in about a second.
LIMIT = files.MiB
# Release data nests three levels (source-refs: component, ref/repo); a
# deeper file is a mistake or an attack on the recursive composer.
MAX_DEPTH = 32


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


class _TooDeep(Exception):
    """Raised by the composer at the node that nests deeper than MAX_DEPTH."""

    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


_MERGE_TAG = "tag:yaml.org,2002:merge"


class _DepthLimit:
    """Composer methods that count the nesting and stop at MAX_DEPTH.

    PyYAML composes (and constructs) recursively, a few Python frames per
    level; the parser underneath is not recursive. Counting here, before
    going one level deeper, keeps every later recursion bounded too.
    """

    _depth = 0

    def compose_sequence_node(self, anchor: Any) -> SequenceNode:
        return self._deeper(Composer.compose_sequence_node, anchor)

    def compose_mapping_node(self, anchor: Any) -> MappingNode:
        return self._deeper(Composer.compose_mapping_node, anchor)

    def _deeper(self, compose: Any, anchor: Any) -> Any:
        if self._depth >= MAX_DEPTH:
            raise _TooDeep(self.peek_event().start_mark.line + 1)  # type: ignore[attr-defined]
        self._depth += 1
        try:
            return compose(self, anchor)
        finally:
            self._depth -= 1


class _Loader(_DepthLimit, yaml.SafeLoader):
    """SafeLoader that builds YamlMap/YamlList, refuses duplicate keys and deep nesting."""


_CLoader: type | None = None
if getattr(yaml, "CSafeLoader", None) is not None:

    class _CLoaderImpl(_DepthLimit, yaml.CSafeLoader):  # type: ignore[misc,name-defined]
        """libyaml's parser under PyYAML's own composer (which counts the depth).

        libyaml's composer recurses in C with no limit; PyYAML's, fed
        libyaml's events, is the one above. Only the events come from C,
        which is where the time goes.
        """

        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            Composer.__init__(self)

        get_single_node = Composer.get_single_node
        compose_document = Composer.compose_document
        compose_node = Composer.compose_node
        compose_scalar_node = Composer.compose_scalar_node

    _CLoader = _CLoaderImpl


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


for _loader in (_Loader, _CLoader):
    if _loader is not None:
        _loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
        _loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (nodes and data hold no cycles to collect).

    With it running, composing N nodes took time growing faster than N:
    each collection walks every node built so far.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load_text(text: str, path: Path | str) -> Any:
    """Parse ``text`` (read from ``path``, named in errors) into plain data.

    libyaml parses when available; if it refuses the text, pure PyYAML
    parses again and has the last word, so an error line does not depend on
    whether libyaml is installed (a test holds the two paths to the same
    data and lines on the texts that matter).
    """
    with _collector_paused():
        if _CLoader is not None:
            try:
                return _parse(text, path, _CLoader)
            except yaml.YAMLError:
                pass
        return _parse(text, path, _Loader)


def _parse(text: str, path: Path | str, loader: type) -> Any:
    """One parse of ``text`` with ``loader``; our errors as AirlockError, libyaml's raised."""
    try:
        return yaml.load(text, Loader=loader)  # both are SafeLoaders: no object tags
    except _DuplicateKey as dup:
        raise AirlockError(f"{path}:{dup.line}", f"duplicate key '{dup.key}'", "keep one") from None
    except _TooDeep as deep:
        raise AirlockError(f"{path}:{deep.line}", f"nested more than {MAX_DEPTH} levels deep",
                           "airlock's files need a few levels at most; flatten it") from None
    except yaml.YAMLError as error:
        if loader is not _Loader:
            raise  # libyaml's words: parse again with PyYAML for the message
        raise _syntax_error(path, error) from None


def _syntax_error(path: Path | str, error: yaml.YAMLError) -> AirlockError:
    """PyYAML's error as one line pointing at the line it is about."""
    if not isinstance(error, yaml.MarkedYAMLError):
        return AirlockError(str(path), f"invalid YAML: {error}", "fix the syntax")
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
    return AirlockError(where, f"invalid YAML: {problem}", "fix the syntax")


def load(path: Path, *, within: Path | None = None, fix: str = "check the path",
         limit: int = LIMIT) -> Any:
    """Read and parse the YAML file at ``path``.

    Returns None for an empty file, else YamlMap/YamlList/scalars. Raises
    AirlockError (one line, with the line number) for a file that cannot be
    read (missing, not a regular file, larger than ``limit``, not UTF-8, a
    link out of ``within``; ``fix`` says what to do), malformed YAML, a
    duplicate key or nesting deeper than MAX_DEPTH.
    """
    return load_text(files.read_text(path, limit=limit, fix=fix, within=within), path)


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
