"""validate: every error of the data tree in one run, and the shipped tree is clean."""

from __future__ import annotations

import unittest

from airlock.data import validate
from airlock.tests.unit.treefixture import REPO_ROOT, TreeTestCase, real_layout, run_cli


class ShippedTreeTest(unittest.TestCase):
    """The repository's own releases/, images/ and patches/ must always validate."""

    def test_every_shipped_release_validates(self) -> None:
        errors = validate.validate(real_layout(), None)
        self.assertEqual([str(e) for e in errors], [])

    def test_cli_on_the_shipped_tree(self) -> None:
        names = validate.release_names(real_layout())
        self.assertEqual(names, ["2024.1", "2025.1", "2025.2", "2026.1"])
        self.assertEqual(run_cli(["release", "validate", "--root", str(REPO_ROOT)]),
                         (0, f"4 release(s) valid: {', '.join(names)}\n", ""))


class ValidateTest(TreeTestCase):
    def messages(self, names: list[str] | None = None) -> list[str]:
        root = str(self.tree.root)
        return [str(e).replace(root, "{R}") for e in validate.validate(self.tree.layout, names)]

    def test_valid_tree(self) -> None:
        self.assertEqual(self.messages(), [])
        root = str(self.tree.root)
        self.assertEqual(run_cli(["release", "validate", "--root", root]),
                         (0, "2 release(s) valid: 2025.1, 2025.2\n", ""))
        self.assertEqual(run_cli(["release", "validate", "2025.1", "--root", root]),
                         (0, "1 release(s) valid: 2025.1\n", ""))

    def test_release_names_are_folders_only(self) -> None:
        self.tree.write("releases/notes.txt", "")
        self.assertEqual(validate.release_names(self.tree.layout), ["2025.1", "2025.2"])
        self.assertEqual(self.messages(), [])

    def test_every_error_in_a_stable_order(self) -> None:
        self.tree.append("releases/2025.2/constraint-overrides.txt", "-nothing\n")
        self.tree.append("releases/2025.2/upper-constraints.txt", "bad line\n")
        self.tree.replace("releases/2025.1/source-refs.yaml", '"27.1.0"', "27.1")
        self.tree.remove("images/keystone")
        self.tree.write("patches/nova/2025.2/series", "")
        expected = [
            "{R}/releases/2025.1/source-refs.yaml:1: ref of 'keystone' must be a string, not "
            'the number 27.1; quote it: keystone: "27.1"',
            "{R}/releases/2025.2/upper-constraints.txt:8: malformed pin 'bad line'; "
            "write name===version[;marker]",
            "{R}/releases/2025.2/constraint-overrides.txt:2: '-nothing' removes a pin that "
            "upper-constraints does not have; delete this line",
            "{R}/images/keystone: no image folder for service 'keystone' of releases "
            "2025.1, 2025.2; create it with Dockerfile, bindep.txt",
            "{R}/patches/nova/2025.2/series: not a .patch file; only *.patch files may be in "
            "a patch folder; rename or remove it",
        ]
        self.assertEqual(self.messages(), expected)
        self.assertEqual(self.messages(), expected)  # same run, same order
        code, out, err = run_cli(["release", "validate", "--root", str(self.tree.root)])
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(err.replace(str(self.tree.root), "{R}"), "\n".join(expected) + "\n")

    def test_named_release_reports_only_its_own_errors(self) -> None:
        self.tree.write("patches/horizon/2025.2/0001-x.patch", "")
        self.tree.write("patches/nova/2099.1/0001-x.patch", "")
        self.tree.write("patches/nova/2025.2/notes.txt", "")
        self.tree.replace("releases/2025.2/release.yaml", "  - nova\n", "  - nova\n  - glance\n")
        self.assertEqual(self.messages(["2025.1"]), [])
        self.assertEqual(self.messages(["2025.2", "2025.2"]), [
            "{R}/releases/2025.2/source-refs.yaml: missing ref for service 'glance'; "
            'add glance: "<tag, branch or full SHA>"',
            "{R}/images/glance: no image folder for service 'glance' of release 2025.2; "
            "create it with Dockerfile, bindep.txt",
            "{R}/patches/nova/2025.2/notes.txt: not a .patch file; only *.patch files may be "
            "in a patch folder; rename or remove it"])
        self.assertEqual(len(self.messages()), 5)  # a full run reports the strays too

    def test_unknown_names_are_reported_and_the_rest_checked(self) -> None:
        self.tree.replace("releases/2025.1/release.yaml", "codename: epoxy", "codename: 1")
        self.assertEqual(self.messages(["nope", "2025.1"]), [
            "{R}/releases/nope: no such release; known: 2025.1, 2025.2",
            "{R}/releases/2025.1/release.yaml:3: codename must be a string, not the number 1; "
            'quote it: codename: "1"'])

    def test_bad_ref_does_not_orphan_its_patches(self) -> None:
        self.tree.replace("releases/2025.2/source-refs.yaml", '"32.2.1"', '"abcdef0"')
        self.assertEqual(self.messages(), [
            "{R}/releases/2025.2/source-refs.yaml:2: ref 'abcdef0' of 'nova' looks like an "
            "abbreviated SHA; write the full 40-character SHA, a tag or a branch"])

    def test_unusable_release_yaml_skips_its_images(self) -> None:
        self.tree.write("releases/2025.2/release.yaml", "services: [\n")
        self.tree.remove("images/nova")
        self.assertEqual(self.messages(), [
            "{R}/releases/2025.2/release.yaml:2: invalid YAML: expected the node content, but "
            "found '<stream end>'; fix the syntax",
            "{R}/images/nova: no image folder for service 'nova' of release 2025.1; "
            "create it with Dockerfile, bindep.txt"])

    def test_documentation_beside_patches_is_allowed(self) -> None:
        self.tree.write("patches/README.md", "# Patches\n")
        self.assertEqual(self.messages(), [])

    def test_absent_patches_folder_is_fine(self) -> None:
        self.tree.remove("patches")
        self.assertEqual(self.messages(), [])

    def test_every_bad_patch_of_a_series_in_name_order(self) -> None:
        self.tree.write("patches/nova/2025.2/0003-empty.patch", "")
        self.tree.write("patches/nova/2025.2/0002-prose.patch", "Fix it.\n")
        self.tree.write("patches/nova/2025.2/0004-notes.txt", "")
        self.tree.write("patches/nova/2025.2/0005-fine.patch", self.tree.read(
            "patches/nova/2025.2/0001-fix-something.patch"))
        self.assertEqual(self.messages(), [
            "{R}/patches/nova/2025.2/0002-prose.patch: not a valid patch: No valid patches in "
            "input; regenerate it with git format-patch",
            "{R}/patches/nova/2025.2/0003-empty.patch: is empty; write the change into it "
            "(git format-patch), or remove it",
            "{R}/patches/nova/2025.2/0004-notes.txt: not a .patch file; only *.patch files may "
            "be in a patch folder; rename or remove it"])

    def test_every_required_image_file(self) -> None:
        for name in validate.IMAGE_FILES:
            with self.subTest(name):
                self.new_tree().remove(f"images/keystone/{name}")
                self.assertEqual(self.messages(), [
                    f"{{R}}/images/keystone/{name}: no such file; every image folder needs "
                    f"{', '.join(validate.IMAGE_FILES)}"])

    def test_no_releases_at_all(self) -> None:
        self.tree.remove("releases/2025.1")
        self.tree.remove("releases/2025.2")
        self.assertEqual(self.messages(), [
            "{R}/releases: no release folders; add releases/<release>/ with release.yaml, "
            "source-refs.yaml and upper-constraints.txt"])


if __name__ == "__main__":
    unittest.main()
