"""zuul.d/ in a real Zuul, loaded the way a site loads it.

The sandbox (airlock/sandbox/zuul.py, also ``tools/zuul-sandbox``) runs a real Zuul
on 127.0.0.1 whose tenant has the site's config project (base job, static
node, the pipelines example of ``zuul-config/``) and this checkout's HEAD as
an untrusted project. The tenant must load without a single configuration
error, list every job of zuul.d/, and run ``airlock-validate-releases``
(ensure-airlock, airlock-validate) on the static node to SUCCESS.

Needs root and ``tools/setup-host zuul`` + ``tools/zuul-sandbox install``
(``tools/run-tests`` does both, retried, before the tests).
"""

from __future__ import annotations

import time
import unittest
from pathlib import Path

import yaml

from airlock.sandbox import zuul as zuul_sandbox

JOB = "airlock-validate-releases"
PIPELINE = "sandbox"


def zuul_d_names(kind: str) -> set[str]:
    """The names of every KIND (job, semaphore...) defined in the checkout's zuul.d/."""
    names = set()
    for path in sorted((zuul_sandbox.REPO_ROOT / "zuul.d").glob("*.yaml")):
        for item in yaml.safe_load(path.read_text()) or []:
            if kind in item:
                names.add(item[kind]["name"])
    return names


class ZuulConfigTest(unittest.TestCase):
    sandbox: zuul_sandbox.Sandbox

    @classmethod
    def setUpClass(cls) -> None:
        cls.sandbox = zuul_sandbox.Sandbox()
        started = time.monotonic()
        try:
            cls.sandbox.start()
        except BaseException:
            cls.sandbox.stop(quiet=True)
            raise
        cls.load_seconds = time.monotonic() - started

    @classmethod
    def tearDownClass(cls) -> None:
        cls.sandbox.stop(quiet=True)

    def test_1_tenant_loads_without_errors(self) -> None:
        errors = self.sandbox.api(f"/api/tenant/{zuul_sandbox.TENANT}/config-errors")
        self.assertEqual(errors, [], "\n".join(
            f"{e.get('source_context')}: {e.get('error')}" for e in errors or []))

    def test_2_every_job_and_semaphore_of_zuul_d_is_known(self) -> None:
        jobs = {job["name"] for job in
                self.sandbox.api(f"/api/tenant/{zuul_sandbox.TENANT}/jobs")}
        expected = zuul_d_names("job")
        self.assertTrue({"airlock-tox-linters", "airlock-tox-py3", JOB, "airlock-build",
                         "airlock-build-local", "airlock-site-build", "airlock-2025.2-base",
                         "airlock-2025.2-keystone"} <= expected, expected)
        self.assertLessEqual(expected, jobs)
        semaphores = {s["name"] for s in
                      self.sandbox.api(f"/api/tenant/{zuul_sandbox.TENANT}/semaphores")}
        self.assertLessEqual(zuul_d_names("semaphore"), semaphores)

    def test_3_pipelines_come_from_the_site(self) -> None:
        # zuul.d/ defines no pipeline (an untrusted project may not); the
        # site's config project, from zuul-config/pipelines.yaml, does.
        self.assertEqual(zuul_d_names("pipeline"), set())
        pipelines = {p["name"] for p in
                     self.sandbox.api(f"/api/tenant/{zuul_sandbox.TENANT}/pipelines")}
        self.assertLessEqual({"check", "gate", "manual", "periodic"}, pipelines)
        project = self.sandbox.api(
            f"/api/tenant/{zuul_sandbox.TENANT}/project/{zuul_sandbox.PROJECT}")
        in_pipelines = {
            pipeline["name"]: {job["name"] for jobs in pipeline["jobs"] for job in jobs}
            for config in project["configs"] for pipeline in config["pipelines"]}
        # manual: every generated job (zuul.d/releases.yaml), merged by Zuul
        # with the stanza of project.yaml.
        generated = {name for name in zuul_d_names("job")
                     if name.startswith("airlock-") and name[8:9].isdigit()}
        self.assertEqual(in_pipelines.get("manual", set()), generated)
        self.assertIn("airlock-build-local", in_pipelines.get("periodic", set()))
        self.assertIn(JOB, in_pipelines.get("check", set()))

    def test_4_validate_job_runs_on_the_node(self) -> None:
        oldrev, newrev = self.sandbox.revisions()
        self.sandbox.enqueue_ref(PIPELINE, oldrev, newrev)
        build = self.sandbox.wait_for_build(PIPELINE, JOB)
        logs = self.sandbox.joblogs / build["uuid"]
        output = logs / "job-output.txt"
        text = output.read_text(errors="replace") if output.is_file() else ""
        self.assertEqual(build["result"], "SUCCESS", text[-6000:])
        # The ref that was enqueued: the checkout's HEAD plus the sandbox commit.
        self.assertEqual(build["ref"]["newrev"], newrev)
        # The role ran the real command on the node, over every release.
        self.assertIn("Validate the release data", text)
        self.assertRegex(text, r"\d+ release\(s\) valid")
        self.assertEqual(Path(build["log_url"].removeprefix("file://")), logs)


if __name__ == "__main__":
    unittest.main()
