"""yamlfile: safe loading with line numbers, duplicate keys refused."""

from __future__ import annotations

import os
import tempfile
import time
import unittest
from pathlib import Path
from unittest import mock

from airlock.data import yamlfile
from airlock.errors import AirlockError


class LoadTextTest(unittest.TestCase):
    def error(self, text: str) -> str:
        with self.assertRaises(AirlockError) as caught:
            yamlfile.load_text(text, "f.yaml")
        return str(caught.exception)

    def test_plain_data_with_lines(self) -> None:
        data = yamlfile.load_text("a: 1\nb:\n  - x\n  - y\nc:\n  d: e\n", "f.yaml")
        self.assertEqual(data, {"a": 1, "b": ["x", "y"], "c": {"d": "e"}})
        self.assertIsInstance(data, dict)
        self.assertEqual([yamlfile.line_of(data, k) for k in "abc"], [1, 2, 5])
        self.assertEqual(yamlfile.line_of(data["b"], 1), 4)
        self.assertEqual(yamlfile.line_of(data["c"], "d"), 6)
        self.assertEqual(yamlfile.line_of(data), 1)

    def test_where_falls_back_to_key_then_path(self) -> None:
        data = yamlfile.load_text("a: 1\n", "f.yaml")
        self.assertEqual(yamlfile.where("f.yaml", data, "a"), "f.yaml:1")
        self.assertEqual(yamlfile.where("f.yaml", data, "missing"), "f.yaml:missing")
        self.assertEqual(yamlfile.where("f.yaml", {}, None), "f.yaml")
        self.assertIsNone(yamlfile.line_of({"a": 1}, "a"))  # a plain dict has no lines

    def test_raw_keeps_the_text_as_written(self) -> None:
        # 3.10 is the float 3.1; a message must quote what the user wrote.
        data = yamlfile.load_text("python: 3.10\nref: 28.0\nname: x\nlist: [1]\n", "f.yaml")
        self.assertEqual(data["python"], 3.1)
        self.assertEqual(yamlfile.raw(data, "python"), "3.10")
        self.assertEqual(yamlfile.raw(data, "ref"), "28.0")
        self.assertIsNone(yamlfile.raw(data, "list"))

    def test_empty_document_is_none(self) -> None:
        self.assertIsNone(yamlfile.load_text("# only a comment\n", "f.yaml"))

    def test_duplicate_key(self) -> None:
        self.assertEqual(self.error("a: 1\nb: 2\na: 3\n"), "f.yaml:3: duplicate key 'a'; keep one")

    def test_duplicate_nested_key(self) -> None:
        self.assertEqual(self.error("x:\n  y: 1\n  y: 2\n"),
                         "f.yaml:3: duplicate key 'y'; keep one")

    def test_duplicate_in_flow_mapping(self) -> None:
        self.assertEqual(self.error("x: {a: 1, a: 2}\n"), "f.yaml:1: duplicate key 'a'; keep one")

    def test_merge_key_may_be_overridden(self) -> None:
        data = yamlfile.load_text("base: &b {p: 1, q: 2}\nm:\n  <<: *b\n  p: 3\n", "f.yaml")
        self.assertEqual(data["m"], {"p": 3, "q": 2})
        self.assertEqual(yamlfile.line_of(data["m"], "p"), 4)

    def test_malformed(self) -> None:
        self.assertEqual(self.error("a: b: c\n"),
                         "f.yaml:1: invalid YAML: mapping values are not allowed here; "
                         "fix the syntax")

    def test_malformed_points_back_at_the_opening(self) -> None:
        self.assertEqual(self.error("a: 1\nb: [x\nc: 2\n"),
                         "f.yaml:3: invalid YAML: expected ',' or ']', but got ':' "
                         "(while parsing a flow sequence started on line 2); fix the syntax")

    def test_two_documents(self) -> None:
        self.assertEqual(self.error("a: 1\n---\nb: 2\n"),
                         "f.yaml:2: invalid YAML: expected a single document in the stream, "
                         "but found another document; fix the syntax")

    def test_tab_indent(self) -> None:
        self.assertEqual(self.error("a:\n\tb: 1\n"),
                         "f.yaml:2: invalid YAML: found character '\\t' that cannot start any "
                         "token; fix the syntax")

    def test_unhashable_key(self) -> None:
        self.assertEqual(self.error("? [1]\n: 2\n"),
                         "f.yaml:1: invalid YAML: found unhashable key; fix the syntax")

    def test_deep_nesting_is_one_line(self) -> None:
        # 5000 levels made PyYAML's recursive composer raise RecursionError.
        deep = "a: " + "[" * 5000 + "]" * 5000 + "\n"
        block = "".join("  " * i + f"k{i}:\n" for i in range(5000))
        unclosed = "[" * 1_000_000  # never read to its end
        what = "nested more than 32 levels deep; airlock's files need a few levels at most; " \
            "flatten it"
        self.assertEqual(self.error(deep), f"f.yaml:1: {what}")
        self.assertEqual(self.error(block), f"f.yaml:33: {what}")
        self.assertEqual(self.error(unclosed), f"f.yaml:1: {what}")
        ok = "a: " + "[" * (yamlfile.MAX_DEPTH - 1) + "]" * (yamlfile.MAX_DEPTH - 1) + "\n"
        self.assertEqual(yamlfile.line_of(yamlfile.load_text(ok, "f.yaml"), "a"), 1)

    def test_same_result_and_message_without_libyaml(self) -> None:
        # libyaml parses when installed and words its errors differently;
        # the pure-Python parser is the reference, so every text must give
        # the same data or line with and without it (patched out: a machine
        # without libyaml cannot be made here).
        texts = ["a: 1\nb: [x\nc: 2\n", "a: b: c\n", "a: 1\n---\nb: 2\n", "a:\n\tb: 1\n",
                 "? [1]\n: 2\n", "a: 1\na: 2\n", "[" * 40, "a: *nope\n",
                 "base: &b {p: 1}\nm:\n  <<: *b\n  q: 2\n", "x: {a: 1, b: [2, 3]}\n"]
        self.assertIsNotNone(yamlfile._CLoader, "libyaml is part of PyYAML's wheels")
        for text in texts:
            with self.subTest(text=text):
                fast = self.outcome(text)
                with mock.patch.object(yamlfile, "_CLoader", None):
                    self.assertEqual(self.outcome(text), fast)

    def outcome(self, text: str) -> object:
        try:
            data = yamlfile.load_text(text, "f.yaml")
        except AirlockError as error:
            return str(error)
        return data, yamlfile.line_of(data, "x") if isinstance(data, dict) else None

    def test_unsafe_tags_refused(self) -> None:
        message = self.error("a: !!python/object/apply:os.system ['true']\n")
        self.assertTrue(message.startswith("f.yaml:1: invalid YAML: could not determine a "
                                           "constructor for the tag"), message)


class LoadFileTest(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = Path(tmp.name)

    def test_reads_a_file(self) -> None:
        path = self.dir / "x.yaml"
        path.write_text("k: v\n")
        self.assertEqual(yamlfile.load(path), {"k": "v"})

    def test_errors_name_the_file(self) -> None:
        path = self.dir / "x.yaml"
        path.write_text("k: v\nk: w\n")
        with self.assertRaises(AirlockError) as caught:
            yamlfile.load(path)
        self.assertEqual(str(caught.exception), f"{path}:2: duplicate key 'k'; keep one")

    def error(self, path: Path, **kwargs) -> str:
        with self.assertRaises(AirlockError) as caught:
            yamlfile.load(path, **kwargs)
        return str(caught.exception)

    def test_missing_file(self) -> None:
        self.assertEqual(self.error(self.dir / "nope.yaml", fix="create it"),
                         f"{self.dir}/nope.yaml: no such file; create it")

    def test_not_utf8(self) -> None:
        path = self.dir / "x.yaml"
        path.write_bytes(b"k: \xff\n")
        self.assertEqual(self.error(path), f"{path}: not UTF-8 text (invalid start byte at "
                         "byte 3); save the file as UTF-8")

    def test_fifo_is_refused_without_waiting_for_a_writer(self) -> None:
        path = self.dir / "x.yaml"
        os.mkfifo(path)
        self.assertEqual(self.error(path), f"{path}: is a FIFO, not a regular file; "
                         "check the path")

    def test_device_and_directory_are_not_files(self) -> None:
        (self.dir / "zero.yaml").symlink_to("/dev/zero")
        (self.dir / "dir.yaml").mkdir()
        self.assertEqual(self.error(self.dir / "zero.yaml"),
                         f"{self.dir}/zero.yaml: is a character device, not a regular file; "
                         "check the path")
        self.assertEqual(self.error(self.dir / "dir.yaml"),
                         f"{self.dir}/dir.yaml: is a directory, not a regular file; "
                         "check the path")

    def test_link_out_of_the_tree(self) -> None:
        inside = self.dir / "tree"
        inside.mkdir()
        (self.dir / "outside.yaml").write_text("k: v\n")
        (inside / "x.yaml").symlink_to("../outside.yaml")
        self.assertEqual(yamlfile.load(inside / "x.yaml"), {"k": "v"})  # no tree given
        self.assertEqual(self.error(inside / "x.yaml", within=inside),
                         f"{inside}/x.yaml: leads outside {inside} (a symbolic link?); "
                         "replace the link by the file itself")

    def test_larger_than_the_limit(self) -> None:
        path = self.dir / "x.yaml"
        path.write_text("k: v\n" * (yamlfile.LIMIT // 5 + 1))
        self.assertEqual(self.error(path), f"{path}: is larger than 1 MiB, the limit for this "
                         "file; check the path")

    def test_a_file_at_the_limit_loads_in_linear_time(self) -> None:
        # 46k keys: before the collector was paused and libyaml used, a file
        # like this took several seconds and 300k keys most of a minute.
        path = self.dir / "x.yaml"
        line = 'pkg000000: "1.0.0"\n'
        count = yamlfile.LIMIT // len(line)
        path.write_text("".join(f'pkg{i:06d}: "1.0.0"\n' for i in range(count)))
        started = time.monotonic()
        data = yamlfile.load(path)
        self.assertEqual(len(data), count)
        self.assertEqual(yamlfile.line_of(data, f"pkg{count - 1:06d}"), count)
        self.assertLess(time.monotonic() - started, 10)


if __name__ == "__main__":
    unittest.main()
