"""yamlfile: safe loading with line numbers, duplicate keys refused."""

from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

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

    def test_missing_file(self) -> None:
        with self.assertRaises(AirlockError) as caught:
            yamlfile.load(self.dir / "nope.yaml")
        self.assertEqual(str(caught.exception), f"{self.dir}/nope.yaml: no such file; create it")

    def test_not_utf8(self) -> None:
        path = self.dir / "x.yaml"
        path.write_bytes(b"k: \xff\n")
        with self.assertRaises(AirlockError) as caught:
            yamlfile.load(path)
        self.assertEqual(str(caught.exception),
                         f"{path}: not UTF-8 text (invalid start byte); save the file as UTF-8")


if __name__ == "__main__":
    unittest.main()
