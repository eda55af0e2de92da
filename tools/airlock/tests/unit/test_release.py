"""release: loading a release folder into the Release model, collecting every schema error."""

from __future__ import annotations

import subprocess
import unittest

from airlock.data.layout import Layout
from airlock.data.release import (
    SERVICES,
    Component,
    load_release,
    load_release_checked,
    ref_problem,
    release_names,
    repo_problem,
)
from airlock.errors import AirlockError
from airlock.tests.unit.treefixture import TreeTestCase, real_layout

SHA = "0e88245f" + "a" * 32
SR = "releases/2025.2/source-refs.yaml"
RY = "releases/2025.2/release.yaml"


class RealReleasesTest(unittest.TestCase):
    def test_every_shipped_release_loads(self) -> None:
        layout = real_layout()
        names = release_names(layout)
        self.assertEqual(names, ["2024.1", "2025.1", "2025.2", "2026.1"])
        for name in names:
            with self.subTest(name):
                release, errors = load_release_checked(layout, name)
                self.assertEqual([str(e) for e in errors], [])
                assert release is not None
                self.assertEqual(release.name, name)
                self.assertEqual(release.python, "3.11")
                self.assertEqual(release.platforms, ("linux/amd64", "linux/arm64"))
                self.assertEqual(release.services, tuple(SERVICES))
                self.assertIn("${", release.base_image)
                for service in release.services:
                    self.assertIs(release.components[service].component, SERVICES[service])

    def test_fields_of_2025_2(self) -> None:
        release = load_release(real_layout(), "2025.2")
        self.assertEqual(release.codename, "flamingo")
        self.assertEqual((release.distro.name, release.distro.codename, release.distro.version),
                         ("debian", "bookworm", "12"))
        self.assertEqual(release.components["placement"].component.package,
                         "openstack-placement")
        self.assertEqual(release.base_image_ref({"AIRLOCK_BASE_IMAGE": "reg:5000/deb:12"}),
                         "reg:5000/deb:12")
        self.assertEqual(release.base_image_ref({}), "127.0.0.1:5000/airlock/debian:bookworm")


class LoadTest(TreeTestCase):
    def load(self):
        return load_release_checked(self.tree.layout, "2025.2")

    def messages(self) -> list[str]:
        root = str(self.tree.root)
        return [str(e).replace(root, "{R}") for e in self.load()[1]]

    def test_library_component(self) -> None:
        release, errors = self.load()
        self.assertEqual(errors, [])
        assert release is not None
        ref = release.components["oslo.messaging"]
        self.assertEqual(ref.component, Component("oslo.messaging", project="oslo.messaging",
                                                  package="oslo.messaging", kind="library"))
        self.assertEqual(ref.ref, "17.1.0")
        self.assertEqual([r.name for r in release.libraries()], ["oslo.messaging"])
        self.assertEqual(list(release.components), ["keystone", "nova", "oslo.messaging"])

    def test_library_matched_by_canonical_name(self) -> None:
        self.tree.replace(SR, "oslo.messaging:", "Oslo_Messaging:")
        release, errors = self.load()
        self.assertEqual(errors, [])
        assert release is not None
        self.assertEqual(release.components["Oslo_Messaging"].component.package,
                         "Oslo_Messaging")

    def test_same_package_twice(self) -> None:
        self.tree.append(SR, 'oslo_messaging: "17.0.0"\n')
        self.assertEqual(self.messages(), [
            "{R}/releases/2025.2/source-refs.yaml:5: 'oslo_messaging' is the same package as "
            "'oslo.messaging'; keep one"])

    def test_accepted_refs(self) -> None:
        refs = [SHA, "stable/2025.2", "master", "abcdef", "32.2.1", "a" * 40]
        for ref in refs:
            with self.subTest(ref):
                self.tree.replace(SR, self.tree.read(SR).splitlines()[1], f'nova: "{ref}"')
                release, errors = self.load()
                self.assertEqual(errors, [])
                assert release is not None
                self.assertEqual(release.components["nova"].ref, ref)

    def test_refs_git_accepts_and_refuses(self) -> None:
        # The real git decides: every name git check-ref-format refuses is
        # refused here too, and every name it accepts is, unless shell text.
        names = ["28.1.0", "stable/2025.2", "refs/tags/28.1.0", SHA, "a" * 40, "x-y_z+1",
                 "-c", "a b", "a\tb", "a\x07b", "a..b", "a@{1}", "@", "a.lock", "a/b.lock",
                 ".a", "a/.b", "a/", "/a", "a//b", "a.", "a~1", "a^", "a:b", "a?", "a*", "a[1",
                 "a\\b", "a/./b", "a@b", "héllo", "$(id)", "a;b", "`id`", "a|b", "a>b", "HEAD"]
        shell = set("$;`|&<>()\"'")
        for name in names:
            with self.subTest(name=name):
                git = subprocess.run(["git", "check-ref-format", "--allow-onelevel", name],
                                     capture_output=True).returncode == 0
                ours = ref_problem(name) is None
                if not git:
                    self.assertFalse(ours)
                else:
                    refused = set(name) & shell or name.startswith("-") or name == "HEAD"
                    self.assertEqual(ours, not refused)

    def test_repositories_git_can_use(self) -> None:
        for repo in ("https://git.example/openstack/nova", "ssh://git@git.example:29418/nova",
                     "git@git.example:openstack/nova.git", "file:///srv/git/nova",
                     "/srv/git/nova", "../mirror/nova", "git://git.example/nova",
                     "http://[::1]:8080/nova"):
            with self.subTest(repo):
                self.assertIsNone(repo_problem(repo))

    def test_base_images_a_site_may_write(self) -> None:
        for value in ("${AIRLOCK_BASE_IMAGE}", "${REGISTRY:-127.0.0.1:5000}/airlock/debian:12",
                      "${AIRLOCK_BASE_IMAGE:-localhost/debian@sha256:" + "0" * 64 + "}",
                      "${AIRLOCK_BASE_IMAGE:-[::1]:5000/debian:bookworm}",
                      "${AIRLOCK_BASE_IMAGE:-registry.example/a/b-c/d_e:1.0-x}"):
            with self.subTest(value):
                self.new_tree().replace(RY, "${AIRLOCK_BASE_IMAGE:-127.0.0.1:5000/airlock/"
                                        "debian:bookworm}", value)
                self.assertEqual(self.messages(), [])

    def test_long_form_with_repo(self) -> None:
        self.tree.append(SR, "  repo: /srv/git/oslo.messaging\n")
        release = load_release(self.tree.layout, "2025.2")
        ref = release.components["oslo.messaging"]
        self.assertEqual(ref.repo, "/srv/git/oslo.messaging")
        self.assertEqual(ref.repo_url("/other"), "/srv/git/oslo.messaging")
        self.assertEqual(release.components["nova"].repo_url("file:///g/"),
                         "file:///g/openstack/nova")

    def test_empty_repo(self) -> None:
        self.tree.append(SR, '  repo: ""\n')
        self.assertEqual(self.messages(), [
            "{R}/releases/2025.2/source-refs.yaml:5: repo of 'oslo.messaging' must be a URL or "
            "path, not a string; write repo: <URL or path>, or drop it to use "
            "<git-base>/openstack/<project>"])

    def test_every_error_in_one_pass(self) -> None:
        self.tree.replace(RY, 'python: "3.11"', "python: 3.11")
        self.tree.replace(RY, "linux/arm64", "linux/arm")
        self.tree.append(RY, "extra: 1\n")
        self.tree.replace(SR, 'nova: "32.2.1"', 'nova: "abc1234"')
        self.tree.append(SR, 'glance: ""\n')
        self.assertEqual(self.messages(), [
            "{R}/releases/2025.2/release.yaml:4: python must be a string, not the number 3.11; "
            'quote it: python: "3.11"',
            "{R}/releases/2025.2/release.yaml:12: unknown platform 'linux/arm'; use one of: "
            "linux/amd64, linux/arm64",
            "{R}/releases/2025.2/release.yaml:16: unknown key 'extra'; remove it (allowed: "
            "name, codename, python, distro, base_image, platforms, services)",
            "{R}/releases/2025.2/source-refs.yaml:2: ref 'abc1234' of 'nova' looks like an "
            "abbreviated SHA; write the full 40-character SHA, a tag or a branch",
            "{R}/releases/2025.2/source-refs.yaml:5: empty ref for 'glance'; write a tag, a "
            "branch or a full 40-character SHA",
        ])
        release = self.load()[0]
        assert release is not None  # partial, for further checks
        self.assertEqual(release.platforms, ("linux/amd64",))
        self.assertNotIn("nova", release.components)

    def test_load_release_raises_the_first_error(self) -> None:
        self.tree.replace(RY, 'name: "2025.2"', 'name: "2025.1"')
        self.tree.append(SR, 'novaa: "1"\n')
        with self.assertRaises(AirlockError) as caught:
            load_release(self.tree.layout, "2025.2")
        self.assertEqual(str(caught.exception).replace(str(self.tree.root), "{R}"),
                         "{R}/releases/2025.2/release.yaml:2: name '2025.1' does not match the "
                         "folder name '2025.2'; write name: \"2025.2\" or rename the folder")

    def test_unusable_release_yaml_still_checks_source_refs(self) -> None:
        self.tree.write(RY, "name: [\n")
        self.tree.append(SR, 'novaa: "1"\n')
        release, errors = self.load()
        self.assertIsNone(release)
        self.assertEqual(len(errors), 2)
        self.assertIn("unknown component 'novaa'", str(errors[1]))

    def test_empty_source_refs_misses_every_service(self) -> None:
        self.tree.write(SR, "# nothing yet\n")
        self.assertEqual(self.messages(), [
            "{R}/releases/2025.2/source-refs.yaml: missing ref for service 'keystone'; "
            'add keystone: "<tag, branch or full SHA>"',
            "{R}/releases/2025.2/source-refs.yaml: missing ref for service 'nova'; "
            'add nova: "<tag, branch or full SHA>"'])

    def test_source_refs_not_a_mapping(self) -> None:
        self.tree.write(SR, "- nova\n")
        self.assertEqual(self.messages(), [
            "{R}/releases/2025.2/source-refs.yaml:1: expected a mapping of component: ref, not "
            'a list; write one line per component, e.g. nova: "<tag>"'])

    def test_service_outside_release_services_is_a_component(self) -> None:
        self.tree.append(SR, 'glance: "31.1.0"\n')
        release = load_release(self.tree.layout, "2025.2")
        self.assertEqual(release.components["glance"].component, SERVICES["glance"])
        self.assertEqual(release.services, ("keystone", "nova"))

    def test_wrong_types(self) -> None:
        self.tree.replace(RY, "  - linux/amd64\n", "  - 1\n")
        self.tree.replace(RY, "distro:\n  name: debian", "distro:\n  nme: debian\n  name: debian")
        self.tree.replace(RY, "codename: flamingo", "codename: true")
        self.assertEqual(self.messages(), [
            "{R}/releases/2025.2/release.yaml:3: codename must be a string, not the boolean "
            'true; quote it: codename: "true"',
            "{R}/releases/2025.2/release.yaml:6: unknown key 'nme' in 'distro'; "
            "did you mean 'name'?",
            "{R}/releases/2025.2/release.yaml:12: a platform must be a name, not the number 1; "
            "use one of: linux/amd64, linux/arm64",
        ])

    def test_distro_not_a_mapping(self) -> None:
        self.tree.replace(RY, 'distro:\n  name: debian\n  codename: bookworm\n  version: "12"',
                          "distro: debian")
        self.assertEqual(self.messages(), [
            "{R}/releases/2025.2/release.yaml:5: distro must be a mapping, not a string; "
            'write distro: {name: debian, codename: bookworm, version: "12"}'])


class ReleaseNamesTest(TreeTestCase):
    def test_only_folders(self) -> None:
        self.tree.write("releases/.hidden/x", "")
        self.tree.write("releases/notes.txt", "")
        self.assertEqual(release_names(self.tree.layout), ["2025.1", "2025.2"])

    def test_no_such_release(self) -> None:
        for name in ("2099.1", "..", "README.md"):
            with self.subTest(name):
                release, errors = load_release_checked(self.tree.layout, name)
                self.assertIsNone(release)
                self.assertEqual([str(e) for e in errors], [
                    f"{self.tree.root}/releases/{name}: no such release; known: 2025.1, 2025.2"])

    def test_missing_releases_folder(self) -> None:
        layout = Layout(self.tree.root / "nope", self.tree.root, self.tree.root)
        self.assertEqual(release_names(layout), [])
        self.assertEqual([str(e) for e in load_release_checked(layout, "2025.2")[1]],
                         [f"{self.tree.root}/nope/2025.2: no such release; known: none"])


if __name__ == "__main__":
    unittest.main()
