"""tarstream and sums: sizes, strict SHA256SUMS, parts read in order, no half-written tar."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import unittest
from pathlib import Path
from unittest import mock

from airlock.bundle import sums, tarstream
from airlock.errors import AirlockError
from airlock.tests.unit import bundlefixture as bf

A = "a" * 64


class ParseSizeTest(unittest.TestCase):
    def test_units(self) -> None:
        for text, size in (("4GiB", 4 << 30), ("4G", 4 << 30), ("4700MB", 4_700_000_000),
                           ("1000000", 1_000_000), ("10KiB", 10240), ("2 mib", 2 << 20)):
            with self.subTest(text=text):
                self.assertEqual(tarstream.parse_size(text), size)

    def test_errors_are_one_line(self) -> None:
        for text, what in (("4Gb2", "not a size"), ("-1", "not a size"), ("", "not a size"),
                           ("4XB", "not a size"), ("4", "is 4 bytes, below 4096")):
            with self.subTest(text=text), self.assertRaises(AirlockError) as caught:
                tarstream.parse_size(text)
            self.assertTrue(str(caught.exception).startswith(
                f"--max-part-size {text}: {what}; "), str(caught.exception))


class SumsTest(unittest.TestCase):
    def test_safe_path(self) -> None:
        for name, problem in (("python/x.whl", None), ("a/b+c@d=e-f_g.1", None),
                              ("/etc/passwd", "is an absolute path"),
                              ("a/../b", "has a '..' component (it would leave the bundle)"),
                              ("./a", "has a '.' component"), ("a//b", "has an empty component"
                                                               " ('//' or a trailing '/')"),
                              ("a/", "has an empty component ('//' or a trailing '/')"),
                              ("a/.hidden", "has a hidden component '.hidden'"),
                              ("a b", "has a character outside [A-Za-z0-9._+@=%~-] in 'a b'"),
                              ("", "is an empty path")):
            with self.subTest(name=name):
                self.assertEqual(sums.safe_path(name), problem)

    def test_render_then_parse(self) -> None:
        listed = {"b/x": A, "a": "b" * 64, "a-b": "c" * 64}
        data = sums.render(listed)
        self.assertEqual(data, f"{'b' * 64}  a\n{'c' * 64}  a-b\n{A}  b/x\n".encode())
        self.assertEqual(list(sums.parse(data)), ["a", "a-b", "b/x"])

    def test_strict_parse_names_the_line(self) -> None:
        again = sums.GET_AGAIN
        for text, expected in (
                (f"{A}  a\n{A} b\n", f"S:2: not a '<64 lowercase hex>  <path>' line; {again}"),
                (f"{A}  a\n{A}  a\n", f"S:2: lists a a second time; {again}"),
                (f"{A}  b\n{A}  a\n", f"S:2: a is out of order (SHA256SUMS is sorted by path); "
                 f"{again}"),
                (f"{A}  ../a\n", f"S:1: '../a' has a '..' component (it would leave the "
                 f"bundle); {again}"),
                (f"{A}  SHA256SUMS\n", f"S:1: lists SHA256SUMS, which SHA256SUMS cannot hold; "
                 f"{again}"),
                (f"{A.upper()}  a\n", f"S:1: not a '<64 lowercase hex>  <path>' line; {again}"),
                (f"{A}  a\n{A}  a/b\n", f"S: lists a as a file and as the folder of a/b; "
                 f"{again}"),
                (f"{A}  a", f"S: the last line has no newline (cut short?); {again}"),
                ("", f"S: lists no file; {again}")):
            with self.subTest(text=text), self.assertRaises(AirlockError) as caught:
                sums.parse(text.encode(), "S")
            self.assertEqual(str(caught.exception), expected)

    def test_hash_files_on_two_threads_with_progress(self) -> None:
        tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, tmp)
        data = {f"f{i}": os.urandom(i * 300_000 + 1) for i in range(6)}
        for name, content in data.items():
            (tmp / name).write_bytes(content)
        seen: list[tuple[int, int, int, int]] = []
        got = sums.hash_files(tmp, sorted(data), jobs=2, progress=lambda *a: seen.append(a),
                              sizes={k: len(v) for k, v in data.items()})
        self.assertEqual(got, {k: (hashlib.sha256(v).hexdigest(), len(v))
                               for k, v in sorted(data.items())})
        total = sum(len(v) for v in data.values())
        self.assertEqual(seen[-1], (6, 6, total, total))
        os.symlink(tmp / "f1", tmp / "link")
        with self.assertRaises(AirlockError) as caught:
            sums.hash_files(tmp, ["f0", "link"])
        self.assertEqual(str(caught.exception), f"{tmp}/link: is a symbolic link; a bundle "
                         f"holds regular files only; {sums.GET_AGAIN}")


class PartsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp_class = Path(tempfile.mkdtemp())
        cls.good = bf.make_bundle(cls.tmp_class / "good", key=None)

    @classmethod
    def tearDownClass(cls) -> None:
        shutil.rmtree(cls.tmp_class, ignore_errors=True)

    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp)

    def test_parts_read_back_in_order(self) -> None:
        parts = tarstream.write(self.good, self.tmp / "b.tar", 4096)
        whole = b"".join(p.read_bytes() for p in parts)
        for name in ("b.tar", "b.tar.000"):
            with self.subTest(name=name), tarstream.open_parts(self.tmp / name) as reader:
                self.assertEqual(reader.read(), whole)
                self.assertEqual(reader.total, len(whole))

    def test_a_gap_a_later_part_and_a_folder_are_refused(self) -> None:
        parts = tarstream.write(self.good, self.tmp / "b.tar", 4096)
        with self.assertRaises(AirlockError) as caught:
            tarstream.open_parts(parts[1])
        self.assertEqual(str(caught.exception), f"{parts[1]}: is not the first part; pass "
                         f"{parts[0]}")
        parts[-1].unlink()
        parts[-1].mkdir()
        with self.assertRaises(AirlockError) as caught:
            tarstream.open_parts(parts[0])
        self.assertEqual(str(caught.exception), f"{parts[-1]}: is not a regular file; pass "
                         "the bundle's tar")
        parts[2].unlink()
        with self.assertRaises(AirlockError) as caught:
            tarstream.open_parts(self.tmp / "b.tar")
        self.assertEqual(str(caught.exception), f"{parts[2]}: is missing ({parts[3].name} "
                         "exists); copy every part of the bundle; get the missing part")
        with self.assertRaises(AirlockError) as caught:
            tarstream.open_parts(self.tmp / "none.tar")
        self.assertEqual(str(caught.exception), f"{self.tmp}/none.tar: no such file (nor "
                         "none.tar.000); check the path")

    def test_an_existing_output_is_never_overwritten(self) -> None:
        (self.tmp / "b.tar.003").write_bytes(b"old")
        with self.assertRaises(AirlockError) as caught:
            tarstream.write(self.good, self.tmp / "b.tar", 4096)
        self.assertEqual(str(caught.exception), f"{self.tmp}/b.tar.003: already exists; remove "
                         "it (and its other parts) or choose another file")

    def test_an_interrupted_write_leaves_no_part(self) -> None:
        original = tarstream._copy_file
        calls = []

        def interrupted(*args, **kwargs):
            calls.append(args[1])
            if len(calls) == 4:
                # Ctrl-C cannot be timed for real inside one write; this raises it there.
                raise KeyboardInterrupt
            return original(*args, **kwargs)

        with mock.patch.object(tarstream, "_copy_file", interrupted), \
                self.assertRaises(KeyboardInterrupt):
            tarstream.write(self.good, self.tmp / "b.tar", 4096)
        self.assertEqual(os.listdir(self.tmp), [])

    def test_a_file_changed_since_sha256sums_never_reaches_the_tar(self) -> None:
        b = self.tmp / "b"
        shutil.copytree(self.good, b)
        (b / bf.WHEEL).write_bytes(b"changed")
        with self.assertRaises(AirlockError) as caught:
            tarstream.write(b, self.tmp / "b.tar", 4096)
        self.assertIn(f"{b}/{bf.WHEEL}: sha256 ", str(caught.exception))
        self.assertIn("the file changed since the bundle was made", str(caught.exception))
        self.assertEqual(sorted(os.listdir(self.tmp)), ["b"])


if __name__ == "__main__":
    unittest.main()
