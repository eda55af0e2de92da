"""``airlock zuul jobs --per-platform``: a job per platform on its nodeset, one assembling.

The committed file (the default output) is another's test
(test_zuul_jobs); here the split: what each job runs, on which nodeset,
after which job, and that the build refuses a per-platform option
combination before any work.
"""

from __future__ import annotations

import unittest
from pathlib import Path

import yaml

from airlock.data.release import load_release, release_names
from airlock.errors import AirlockError
from airlock.image import build
from airlock.tests.unit.treefixture import real_layout, run_cli
from airlock.zuul import jobs


class PerPlatformJobsTest(unittest.TestCase):

    def setUp(self) -> None:
        code, out, err = run_cli(["zuul", "jobs", "--per-platform"])
        self.assertEqual(code, 0, err)
        self.docs = yaml.safe_load(out)
        self.jobs = {d["job"]["name"]: d["job"] for d in self.docs if "job" in d}
        self.releases = [load_release(real_layout(), n) for n in release_names(real_layout())]

    def test_each_service_has_a_job_per_platform_and_an_assembling_one(self) -> None:
        for release in self.releases:
            for service in release.services:
                final = self.jobs[jobs.service_job(release.name, service)]
                parts = [jobs.platform_job(release.name, service, p) for p in release.platforms]
                self.assertEqual(final["dependencies"], parts)
                self.assertTrue(final["vars"]["airlock_assemble"])
                self.assertIn("playbooks/site/publish.yaml", final["post-run"])
                self.assertNotIn("nodeset", final)
                for platform, name in zip(release.platforms, parts, strict=True):
                    job = self.jobs[name]
                    self.assertEqual(job["nodeset"], f"airlock-{platform.split('/')[1]}")
                    self.assertEqual(job["dependencies"], [jobs.base_job(release.name)])
                    self.assertEqual(job["vars"]["airlock_platforms"], [platform])
                    self.assertTrue(job["vars"]["airlock_per_platform"])
                    # Pushes its part by digest, never a moving tag.
                    self.assertEqual(job["post-run"], "playbooks/site/publish.yaml")
                    self.assertEqual(job["files"], final["files"])
        manual = next(d["project"] for d in self.docs if "project" in d)["manual"]["jobs"]
        self.assertEqual(sorted(manual), sorted(self.jobs))

    def test_the_default_output_is_not_split(self) -> None:
        code, out, err = run_cli(["zuul", "jobs"])
        self.assertEqual(code, 0, err)
        self.assertNotIn("nodeset", out)
        self.assertNotIn("airlock_assemble", out)
        self.assertEqual(out, jobs.generate(real_layout()))
        self.assertNotEqual(out, jobs.generate(real_layout(), per_platform=True))


class PerPlatformOptionsTest(unittest.TestCase):
    """Refused before the engine, the registry or a lock is asked anything."""

    def options(self, **changes) -> build.BuildOptions:
        layout = real_layout()
        release = load_release(layout, "2025.2")
        return build.BuildOptions(release=release, layout=layout, registry="127.0.0.1:1/x",
                                  work_dir=Path("/nonexistent"), cache_dir=Path("/nonexistent"),
                                  services=("keystone",), **changes)

    def test_per_platform_needs_one_platform_and_assemble_none(self) -> None:
        for changes, expected in (
                ({"per_platform": True}, "pass exactly one --platform"),
                ({"per_platform": True, "platforms": ("linux/amd64", "linux/arm64")},
                 "pass exactly one --platform"),
                ({"per_platform": True, "platforms": ("linux/arm64",), "assemble": True},
                 "without --assemble"),
                ({"assemble": True, "platforms": ("linux/arm64",)}, "leave out --platform")):
            with self.subTest(changes), self.assertRaises(AirlockError) as caught:
                build.run(self.options(**changes))
            self.assertIn(expected, str(caught.exception))

    def test_all_with_per_platform_is_refused(self) -> None:
        code, _, err = run_cli(["build", "--all", "--per-platform", "--platform", "linux/arm64"])
        self.assertEqual((code, len(err.splitlines())), (1, 1), err)
        self.assertIn("--per-platform: builds one release's images", err)


if __name__ == "__main__":
    unittest.main()
