"""plan: the input digest that decides whether an image is skipped or built.

Real folders and files: what the digest must see (content, names, the exec
bit, a link's target, folders) and what it must not (times, owners, the
other permission bits, where the tree lives), and that every input of an
image changes its digest.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import unittest
from pathlib import Path

from airlock import files
from airlock.errors import AirlockError
from airlock.image import plan


def make_tree(root: Path) -> Path:
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pkg" / "setup.py").write_text("setup()\n")
    (root / "pkg" / "sub" / "data.txt").write_text("data\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / "link").symlink_to("pkg/setup.py")
    return root


class TreeDigestTest(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.tmp = Path(tmp.name)
        self.tree = make_tree(self.tmp / "a")
        self.before = plan.tree_digest(self.tree)

    def assertChanged(self) -> None:
        self.assertNotEqual(plan.tree_digest(self.tree), self.before)

    def assertSame(self) -> None:
        self.assertEqual(plan.tree_digest(self.tree), self.before)

    def test_the_same_tree_elsewhere_has_the_same_digest(self) -> None:
        self.assertEqual(plan.tree_digest(make_tree(self.tmp / "b")), self.before)
        copy = self.tmp / "c"
        shutil.copytree(self.tree, copy, symlinks=True)
        self.assertEqual(plan.tree_digest(copy), self.before)

    def test_times_owners_and_other_permission_bits_are_ignored(self) -> None:
        for path in (self.tree / "pkg" / "setup.py", self.tree / "run.sh", self.tree / "pkg"):
            os.utime(path, (1, 1))
        os.utime(self.tree / "link", (1, 1), follow_symlinks=False)
        (self.tree / "pkg" / "setup.py").chmod(0o600)
        (self.tree / "run.sh").chmod(0o700)
        if os.geteuid() == 0:
            os.chown(self.tree / "pkg" / "setup.py", 1234, 1234)
        self.assertSame()

    def test_the_exec_bit_counts(self) -> None:
        (self.tree / "pkg" / "setup.py").chmod(0o744)
        self.assertChanged()
        (self.tree / "pkg" / "setup.py").chmod(0o644)
        (self.tree / "run.sh").chmod(0o644)
        self.assertChanged()

    def test_content_counts_even_at_the_same_size_and_time(self) -> None:
        path = self.tree / "pkg" / "sub" / "data.txt"
        stat = path.stat()
        path.write_text("DATA\n")
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        self.assertChanged()

    def test_a_link_counts_by_its_target_and_is_never_followed(self) -> None:
        outside = self.tmp / "outside.txt"
        outside.write_text("one\n")
        (self.tree / "out").symlink_to(outside)
        with_link = plan.tree_digest(self.tree)
        outside.write_text("two, longer\n")
        self.assertEqual(plan.tree_digest(self.tree), with_link)
        (self.tree / "link").unlink()
        (self.tree / "link").symlink_to("pkg/sub/data.txt")
        self.assertNotEqual(plan.tree_digest(self.tree), with_link)

    def test_a_link_differs_from_a_copy_of_its_target(self) -> None:
        (self.tree / "link").unlink()
        shutil.copy(self.tree / "pkg" / "setup.py", self.tree / "link")
        self.assertChanged()

    def test_a_link_to_a_folder_is_not_walked(self) -> None:
        (self.tree / "dirlink").symlink_to("pkg")
        with_link = plan.tree_digest(self.tree)
        (self.tree / "pkg" / "new.txt").write_text("new\n")
        # The new file counts once (under pkg/), not again under dirlink/.
        copy = self.tmp / "d"
        shutil.copytree(self.tree, copy, symlinks=True)
        (copy / "pkg" / "new.txt").unlink()
        self.assertEqual(plan.tree_digest(copy), with_link)

    def test_names_new_files_and_empty_folders_count(self) -> None:
        (self.tree / "pkg" / "sub" / "data.txt").rename(self.tree / "pkg" / "sub" / "data2.txt")
        self.assertChanged()
        (self.tree / "pkg" / "sub" / "data2.txt").rename(self.tree / "pkg" / "sub" / "data.txt")
        self.assertSame()
        (self.tree / "empty").mkdir()
        self.assertChanged()
        (self.tree / "empty").rmdir()
        (self.tree / "new.txt").write_text("")
        self.assertChanged()

    def test_a_fifo_is_refused_at_once_not_read(self) -> None:
        fifo = self.tree / "pkg" / "pipe"
        os.mkfifo(fifo)
        result: list[BaseException | str] = []

        def digest() -> None:
            try:
                result.append(plan.tree_digest(self.tree))
            except BaseException as error:  # noqa: BLE001 - handed to the test thread
                result.append(error)

        worker = threading.Thread(target=digest, daemon=True)
        worker.start()
        worker.join(10)
        self.assertFalse(worker.is_alive(), "tree_digest hangs on a FIFO")
        self.assertIsInstance(result[0], AirlockError)
        self.assertEqual(str(result[0]), f"{fifo}: is not a file, folder or symbolic link; "
                         "remove it: a build context holds only those")

    def test_a_single_file_context_is_its_content(self) -> None:
        path = self.tree / "pkg" / "setup.py"
        first = plan.tree_digest(path)
        os.utime(path, (1, 1))
        self.assertEqual(plan.tree_digest(path), first)
        path.write_text("setup(name='x')\n")
        self.assertNotEqual(plan.tree_digest(path), first)

    def test_remembered_digests_give_the_same_answer(self) -> None:
        store = self.tmp / "file-digests.json"
        with files.remembered_digests(store):
            self.assertEqual(plan.tree_digest(self.tree), self.before)
            (self.tree / "pkg" / "setup.py").write_text("changed\n")
            changed = plan.tree_digest(self.tree)
        self.assertNotEqual(changed, self.before)
        with files.remembered_digests(store):
            self.assertEqual(plan.tree_digest(self.tree), changed)


class JobDigestTest(unittest.TestCase):
    """Every input of an image changes its input digest; their order does not."""

    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        root = Path(tmp.name)
        self.image_dir = make_tree(root / "image")
        self.wheels = make_tree(root / "wheels")
        self.debs = make_tree(root / "debs")
        self.job = plan.ImageJob(
            "keystone", self.image_dir, ("linux/amd64", "linux/arm64"),
            contexts={"wheels": self.wheels, "debs": self.debs},
            build_args={"A": "1", "B": "2"}, depends={"python-base": "PYTHON_BASE"},
            version="28.1.0", source_date_epoch=100, service=True)
        self.deps = {"python-base": "sha256:" + "1" * 64}
        self.base = "sha256:" + "2" * 64

    def digest(self, job: plan.ImageJob | None = None, deps: dict | None = None,
               base: str | None = None) -> str:
        return files.json_digest(plan.job_inputs(job or self.job, deps or self.deps,
                                                 base or self.base))

    def replaced(self, **changes) -> plan.ImageJob:
        fields = {k: getattr(self.job, k) for k in self.job.__dataclass_fields__}
        return plan.ImageJob(**{**fields, **changes})

    def test_the_engine_is_an_input(self) -> None:
        # A BuildKit upgrade may change the bytes: it must change the tag too.
        one = files.json_digest(plan.job_inputs(self.job, self.deps, self.base,
                                                {"buildx": "0.13.1", "buildkit": "v0.13.2"}))
        other = files.json_digest(plan.job_inputs(self.job, self.deps, self.base,
                                                  {"buildx": "0.13.1", "buildkit": "v0.14.0"}))
        self.assertNotEqual(one, other)
        self.assertEqual(one, files.json_digest(plan.job_inputs(
            self.job, self.deps, self.base, {"buildkit": "v0.13.2", "buildx": "0.13.1"})))

    def test_each_input_changes_the_digest(self) -> None:
        first = self.digest()
        self.assertEqual(self.digest(), first)
        variants = {
            "build argument": self.replaced(build_args={"A": "1", "B": "3"}),
            "platforms": self.replaced(platforms=("linux/amd64",)),
            "context name": self.replaced(contexts={"wheels": self.wheels,
                                                    "apt": self.debs}),
            "source date": self.replaced(source_date_epoch=101),
            "image name": self.replaced(name="glance"),
        }
        for what, job in variants.items():
            with self.subTest(input=what):
                self.assertNotEqual(self.digest(job), first)
        with self.subTest(input="the digest of an image below"):
            self.assertNotEqual(self.digest(deps={"python-base": "sha256:" + "3" * 64}), first)
        with self.subTest(input="the base image"):
            self.assertNotEqual(self.digest(base="sha256:" + "4" * 64), first)
        for what, tree in (("image folder", self.image_dir), ("a context", self.debs)):
            with self.subTest(input=what):
                (tree / "pkg" / "sub" / "data.txt").write_text(f"{what}\n")
                self.assertNotEqual(self.digest(), first)
                (tree / "pkg" / "sub" / "data.txt").write_text("data\n")
                self.assertEqual(self.digest(), first)

    def test_order_does_not_matter(self) -> None:
        shuffled = self.replaced(platforms=("linux/arm64", "linux/amd64"),
                                 build_args={"B": "2", "A": "1"},
                                 contexts={"debs": self.debs, "wheels": self.wheels})
        self.assertEqual(self.digest(shuffled), self.digest())


class TagTest(unittest.TestCase):
    def test_immutable_and_moving_tags(self) -> None:
        digest = "sha256:" + "ab" * 32
        service = plan.ImageJob("keystone", Path("."), ("linux/amd64",), version="28.1.0",
                                service=True)
        base = plan.ImageJob("python-base", Path("."), ("linux/amd64",))
        self.assertEqual(plan.immutable_tag(service, "2025.2", digest),
                         "28.1.0-2025.2-abababababab")
        self.assertEqual(plan.moving_tags(service, "2025.2"), ["2025.2", "28.1.0"])
        self.assertEqual(plan.moving_tags(base, "2025.2"), ["2025.2"])

    def test_a_base_image_tag_names_its_inputs_not_its_release(self) -> None:
        """python-base of two releases with the same inputs is one image: one tag."""
        digest = "sha256:" + "ab" * 32
        base = plan.ImageJob("python-base", Path("."), ("linux/amd64",))
        self.assertEqual(plan.immutable_tag(base, "2025.2", digest), "abababababab")
        self.assertEqual(plan.immutable_tag(base, "2024.1", digest),
                         plan.immutable_tag(base, "2025.2", digest))
        self.assertNotEqual(plan.immutable_tag(base, "2024.1", "sha256:" + "cd" * 32),
                            plan.immutable_tag(base, "2025.2", digest))


if __name__ == "__main__":
    unittest.main()
