"""zuul.d/releases.yaml is what ``airlock zuul jobs`` prints, and its jobs select what they should.

The committed file is compared with the generator's output (adding a release
is one command, and forgetting it fails here); its jobs are read back as
Zuul reads them (YAML) and their ``files:`` matchers are tried on the paths
a change touches, with Zuul's semantics: a job with matchers runs when any
changed file matches one of its regular expressions (``re.match``, anchored
at the start).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import unittest
from pathlib import Path

import yaml

from airlock.data.release import load_release, release_names
from airlock.tests.unit.treefixture import REPO_ROOT, real_layout, run_cli
from airlock.zuul import jobs

COMMITTED = REPO_ROOT / "zuul.d" / "releases.yaml"


def zuul_items(path: Path) -> list[dict]:
    return yaml.safe_load(path.read_text()) or []


def defined(kind: str) -> dict[str, dict]:
    """Every KIND of zuul.d/, by name."""
    found = {}
    for path in sorted((REPO_ROOT / "zuul.d").glob("*.yaml")):
        for item in zuul_items(path):
            if kind in item:
                found[item[kind]["name"]] = item[kind]
    return found


def runs(job: dict, changed: list[str]) -> bool:
    """Zuul's files matcher: no matchers, or any changed file matches any of them."""
    matchers = job.get("files")
    return not matchers or any(re.match(m, path) for m in matchers for path in changed)


class CommittedFileTest(unittest.TestCase):
    def test_committed_file_is_current(self) -> None:
        self.assertEqual(COMMITTED.read_text(), jobs.generate(real_layout()),
                         f"zuul.d/releases.yaml is out of date: run {jobs.COMMAND}")

    def test_check_says_so(self) -> None:
        self.assertEqual(run_cli(["zuul", "jobs", "--check", "--root", str(REPO_ROOT)]),
                         (0, "", ""))


class CheckFileTest(unittest.TestCase):
    """``--check --file F`` given something else than the committed file: one line, exit 1."""

    def check(self, path: str) -> tuple[int, str, str]:
        return run_cli(["zuul", "jobs", "--check", "--root", str(REPO_ROOT), "--file", path])

    def test_a_url_for_the_file_never_prints_its_secret(self) -> None:
        # pathlib folds "https://" into "https:/", which the redaction did not see.
        code, out, err = self.check("https://robot:S3CRET@git.site/zuul.d/releases.yaml")
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertNotIn("S3CRET", err)
        self.assertIn("https:/***@git.site/zuul.d/releases.yaml: no such file", err)

    def test_file_without_check_is_refused_not_ignored(self) -> None:
        # It printed the jobs and exit 0, the file named neither written nor compared.
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / "releases.yaml"
            code, out, err = run_cli(["zuul", "jobs", "--root", str(REPO_ROOT), "--file",
                                      str(target)])
            self.assertEqual((code, out), (1, ""))
            self.assertEqual(err, "--file: is used only with --check (jobs alone prints to "
                                  "stdout); add --check, or write with > FILE\n")
            self.assertFalse(target.exists())

    def test_a_fifo_a_folder_and_a_huge_file_are_one_line(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            fifo = Path(tmp) / "fifo"
            os.mkfifo(fifo)
            huge = Path(tmp) / "huge"
            huge.write_bytes(b"#" * (2 << 20))
            link = Path(tmp) / "link"
            link.symlink_to(COMMITTED)
            for path, line in ((fifo, "is a FIFO, not a regular file"),
                               (Path(tmp), "is a directory, not a regular file"),
                               (huge, "is larger than 1 MiB, the limit for this file")):
                with self.subTest(line=line):
                    code, out, err = self.check(str(path))
                    self.assertEqual((code, out), (1, ""))
                    self.assertEqual(err.splitlines(), [f"{path}: {line}; run {jobs.COMMAND}"])
            # A link to the current file is that file (a comparison reads nothing else).
            self.assertEqual(self.check(str(link)), (0, "", ""))


class JobsTest(unittest.TestCase):
    """The jobs of the shipped releases, read back from the committed file."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.jobs = defined("job")
        cls.releases = [load_release(real_layout(), n) for n in release_names(real_layout())]

    def test_every_release_and_service_has_its_job(self) -> None:
        self.assertEqual(len(self.releases), 4)
        for release in self.releases:
            base = self.jobs[f"airlock-{release.name}-base"]
            self.assertEqual(base["vars"], {"airlock_release": release.name})
            self.assertEqual(base["run"], "playbooks/site/bases.yaml")
            self.assertEqual(base["parent"], "airlock-site-build")
            for service in release.services:
                job = self.jobs[f"airlock-{release.name}-{service}"]
                self.assertEqual(job["parent"], "airlock-site-build")
                self.assertEqual(job["dependencies"], [f"airlock-{release.name}-base"])
                self.assertEqual(job["vars"], {"airlock_release": release.name,
                                               "airlock_services": [service]})
                tags = job["post-run"][-1]
                self.assertEqual(tags, {"name": "playbooks/site/tags.yaml",
                                        "semaphores": f"airlock-publish-{release.name}"})

    def test_parents_playbooks_semaphores_and_secret_exist(self) -> None:
        semaphores = defined("semaphore")
        secrets = defined("secret")
        for name, job in self.jobs.items():
            with self.subTest(job=name):
                if "parent" in job:
                    self.assertIn(job["parent"], set(self.jobs))
                for key in ("pre-run", "run", "post-run"):
                    for playbook in job.get(key, []) if isinstance(job.get(key), list) \
                            else [job[key]] if key in job else []:
                        path = playbook["name"] if isinstance(playbook, dict) else playbook
                        self.assertTrue((REPO_ROOT / path).is_file(), path)
                        if isinstance(playbook, dict):
                            self.assertIn(playbook["semaphores"], semaphores)
                for secret in job.get("secrets", []):
                    self.assertIn(secret["secret"], secrets)
                for semaphore in [job["semaphores"]] if "semaphores" in job else []:
                    self.assertIn(semaphore, semaphores)
        # No tenant-wide semaphore on the builds: only one per release.
        self.assertEqual(set(semaphores), {f"airlock-publish-{r.name}" for r in self.releases})

    def test_manual_pipeline_lists_every_generated_job(self) -> None:
        project = [item["project"] for item in zuul_items(COMMITTED) if "project" in item]
        self.assertEqual(len(project), 1)
        listed = project[0]["manual"]["jobs"]
        generated = [name for name in self.jobs if re.fullmatch(r"airlock-\d.*", name)]
        self.assertEqual(sorted(listed), sorted(generated))
        self.assertEqual(len(listed), sum(1 + len(r.services) for r in self.releases))

    def selected(self, changed: list[str]) -> set[str]:
        return {name for name in defined("job") if re.fullmatch(r"airlock-\d.*", name)
                and runs(self.jobs[name], changed)}

    def test_a_release_change_runs_only_that_release(self) -> None:
        chosen = self.selected(["releases/2025.2/upper-constraints.txt"])
        release = next(r for r in self.releases if r.name == "2025.2")
        self.assertEqual(chosen, {"airlock-2025.2-base"} | {f"airlock-2025.2-{s}"
                                                           for s in release.services})

    def test_a_dot_in_the_release_name_is_literal(self) -> None:
        # 2025.2 must not match a release folder 2025x2.
        self.assertEqual(self.selected(["releases/2025x2/release.yaml"]), set())

    def test_a_patch_runs_its_release_and_every_service_of_it(self) -> None:
        chosen = self.selected(["patches/keystone/2025.2/0001-fix.patch"])
        self.assertIn("airlock-2025.2-keystone", chosen)
        self.assertNotIn("airlock-2025.1-keystone", chosen)
        self.assertTrue(all(name.startswith("airlock-2025.2-") for name in chosen), chosen)

    def test_an_image_folder_runs_that_service_in_every_release(self) -> None:
        chosen = self.selected(["images/keystone/Dockerfile"])
        self.assertEqual(chosen, {f"airlock-{r.name}-{s}" for r in self.releases
                                  for s in ("base", "keystone")})

    def test_a_base_image_or_the_tool_runs_everything(self) -> None:
        everything = {name for name in self.jobs if re.fullmatch(r"airlock-\d.*", name)}
        for path in ("images/python-base/Dockerfile", "images/venv-builder/Dockerfile",
                     "tools/airlock/cli.py", "setup.cfg", "roles/airlock-build/tasks/main.yaml",
                     "playbooks/build/run.yaml"):
            with self.subTest(path=path):
                self.assertEqual(self.selected([path]), everything)

    def test_documentation_runs_nothing(self) -> None:
        self.assertEqual(self.selected(["README.md", "releases/README.md",
                                        "zuul-config/README.rst"]), set())
        # images/README.md: the base jobs only (they match every image folder).
        self.assertEqual(self.selected(["images/README.md"]),
                         {f"airlock-{r.name}-base" for r in self.releases})

    def test_sdists_and_the_base_image_recipe_run_every_service(self) -> None:
        everything = {name for name in self.jobs if re.fullmatch(r"airlock-\d.*", name)}
        for path in ("images/sdists.txt", "images/debian-base/Dockerfile"):
            with self.subTest(path=path):
                self.assertEqual(self.selected([path]), everything)

    def test_a_service_job_never_runs_without_its_base_job(self) -> None:
        # The dependency is hard: Zuul reports an error instead of running
        # a buildset in which a job runs but the job it depends on does not.
        paths = ["releases/2026.1/x", "patches/nova/2024.1/p.patch", "images/cinder/x",
                 "images/python-base/x", "images/debian-base/x", "tools/x", "setup.cfg",
                 "images/sdists.txt"]
        for path in paths:
            for name in self.selected([path]):
                for base in self.jobs[name].get("dependencies", []):
                    self.assertTrue(runs(self.jobs[base], [path]), (path, name, base))


class NewReleaseTest(unittest.TestCase):
    """Adding a release folder is one command away from its jobs."""

    def test_a_new_release_gets_its_jobs_and_check_fails_until_regenerated(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            shutil.copytree(REPO_ROOT / "releases", root / "releases")
            (root / "images").symlink_to(REPO_ROOT / "images")
            (root / "patches").mkdir()
            (root / "zuul.d").mkdir()
            code, out, err = run_cli(["zuul", "jobs", "--root", str(root)])
            self.assertEqual((code, err), (0, ""))
            (root / "zuul.d" / "releases.yaml").write_text(out)
            self.assertEqual(run_cli(["zuul", "jobs", "--check", "--root", str(root)]),
                             (0, "", ""))
            new = root / "releases" / "2027.1"
            shutil.copytree(root / "releases" / "2026.1", new)
            text = (new / "release.yaml").read_text()
            (new / "release.yaml").write_text(text.replace('name: "2026.1"', 'name: "2027.1"'))
            code, out2, err = run_cli(["zuul", "jobs", "--check", "--root", str(root)])
            self.assertEqual((code, out2), (1, ""))
            self.assertEqual(len(err.splitlines()), 1, err)
            self.assertIn("run airlock zuul jobs > zuul.d/releases.yaml", err)
            code, out3, err = run_cli(["zuul", "jobs", "--root", str(root)])
            self.assertEqual((code, err), (0, ""))
            names = {item["job"]["name"] for item in yaml.safe_load(out3) if "job" in item}
            self.assertIn("airlock-2027.1-base", names)
            self.assertIn("airlock-2027.1-cinder", names)
            self.assertEqual(out3.count("airlock-2026.1-keystone"), out.count(
                "airlock-2026.1-keystone"))

    def test_check_without_the_file_names_the_command(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            shutil.copytree(REPO_ROOT / "releases", root / "releases")
            code, out, err = run_cli(["zuul", "jobs", "--check", "--root", str(root)])
            self.assertEqual((code, out), (1, ""))
            self.assertIn("no such file; run airlock zuul jobs > zuul.d/releases.yaml", err)


class BasesOnlyTest(unittest.TestCase):
    """``build --bases-only`` (the base job's) selects no service: mixing it is one line."""

    def test_bases_only_with_a_service_or_all_is_refused_before_any_work(self) -> None:
        for extra in (["--service", "keystone"], ["--all"]):
            with self.subTest(extra=extra):
                code, out, err = run_cli(["build", "--release", "2025.2", "--bases-only",
                                          "--root", str(REPO_ROOT), *extra])
                self.assertEqual((code, out), (1, ""))
                self.assertEqual(err, "--bases-only: builds python-base and venv-builder "
                                 "only, for one release; leave out --all and --service\n")


if __name__ == "__main__":
    unittest.main()
