"""Issue 10's proof: one enqueue on the real Zuul builds a release from a site's stores.

The sandbox Zuul (airlock/sandbox/zuul.py) with two static nodes and, in the
site's base job, ``airlock_site`` naming tools/site-up's stores (free
ports; PyPI and the registry read anonymously, pushed to with the password:
``--pypi-reads open --registry-reads open``). A bundle of 2025.2 keystone
and placement (bundle create, cached in the work cache) is imported into
the stores. Then what a site's operator does, on the sandbox's own clone of
the repository (never this checkout):

* the manual pipeline trimmed to the base job and the keystone and
  placement jobs of 2025.2 (a test commit, as a smaller site would list
  them), and ``zuul.d/secrets.yaml`` replaced by the real registry
  credentials, encrypted with the project's key by ``zuul-client encrypt``;
* ``zuul-client enqueue-ref --pipeline manual --newrev SHA`` (no oldrev,
  no variables).

The buildset must end SUCCESS: the base job, then the two service jobs on
the two nodes at once (their run times overlap); the images are in the
registry with the digests the jobs returned as artifacts; a second enqueue
of the same newrev skips every image; ``airlock audit`` names the buildset,
the build and the newrev; the password is in no job log, artifact or build
record.

Long (a real build of two services for both platforms) and root only:
needs ``tools/setup-host zuul site build-host`` and ``tools/zuul-sandbox
install``. Run alone:
``stestr --test-path ./tools/airlock/tests/functional run --concurrency 1 test_zuul_site``.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.parse
from pathlib import Path

import yaml

from airlock.ext import registry
from airlock.sandbox import zuul as zuul_sandbox
from airlock.site import config
from airlock.tests.functional import pipeline
from airlock.tests.functional.engine import base_image, require_engine
from airlock.tests.functional.registries import free_port
from airlock.tests.functional.test_site_up import SITE_UP, STORES, clean_env
from airlock.tests.unit import bundlefixture
from airlock.zuul import jobs as zuul_jobs
from airlock.zuul import site as zuul_site

RELEASE = "2025.2"
SERVICES = ("keystone", "placement")
BASE_JOB = zuul_jobs.base_job(RELEASE)
SERVICE_JOBS = tuple(zuul_jobs.service_job(RELEASE, s) for s in SERVICES)
PIPELINE = "manual"
SECRET = zuul_jobs.SECRET
BUILDSET_TIMEOUT = float(os.environ.get("AIRLOCK_ZUUL_SITE_TIMEOUT", "10800"))


def trimmed_releases(text: str) -> str:
    """zuul.d/releases.yaml with only RELEASE's base job and SERVICES, manual listing them.

    What a site building fewer services would commit; the semaphore of the
    release stays (the service jobs' tags playbook holds it).
    """
    keep = {BASE_JOB, *SERVICE_JOBS}
    out = []
    for item in yaml.safe_load(text):
        if "job" in item and item["job"]["name"] not in keep:
            continue
        if "semaphore" in item and item["semaphore"]["name"] != zuul_jobs.semaphore(RELEASE):
            continue
        if "project" in item:
            jobs = item["project"][PIPELINE]["jobs"]
            item["project"][PIPELINE]["jobs"] = [j for j in jobs if j in keep]
        out.append(item)
    return ("# zuul.d/releases.yaml trimmed by test_zuul_site: 2025.2 keystone and "
            "placement only.\n" + yaml.safe_dump(out, sort_keys=False))


def when(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text)


class ZuulSiteTest(unittest.TestCase):
    sandbox: zuul_sandbox.Sandbox
    tmp: Path

    @classmethod
    def site_up(cls, *args: str) -> None:
        done = subprocess.run([str(SITE_UP), *args, "--dir", str(cls.dir)],
                              capture_output=True, text=True, timeout=900, check=False,
                              env=clean_env())
        if done.returncode != 0:
            raise AssertionError(f"site-up {' '.join(args)}: {done.stdout}{done.stderr}")

    @classmethod
    def setUpClass(cls) -> None:
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root (the Zuul sandbox starts sshd, PostgreSQL)")
        require_engine()
        base_image()
        pipeline.WORK.mkdir(parents=True, exist_ok=True)
        cls.tmp = Path(tempfile.mkdtemp(prefix="zuul-site-", dir=pipeline.WORK))
        cls.tmp.chmod(0o755)  # nginx's workers (www-data) read DIR below it
        for parent in cls.tmp.parents:
            if parent.stat().st_mode & 0o001 == 0:
                parent.chmod(parent.stat().st_mode | 0o001)
        cls.dir = cls.tmp / "site"
        ports: dict[str, int] = {}
        while len(set(ports.values())) < len(STORES):
            ports = {store: free_port() for store in STORES}
        cls.sandbox = zuul_sandbox.Sandbox()
        try:
            cls._set_up(ports)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _set_up(cls, ports: dict[str, int]) -> None:
        cls.site_up("start", "--registry-reads", "open", "--pypi-reads", "open",
                    *[arg for store, port in ports.items()
                      for arg in (f"--{store}-port", str(port))])
        site = config.load(cls.dir / "site.yaml")
        cls.prefix = site.registry.urls["prefix"]
        cls.registry_host = cls.prefix.split("/", 1)[0]
        cls.user, cls.password = site.stores["registry"].credentials()

        # The bundle (bundle create caches what it gathers) into the stores.
        key = bundlefixture.make_key(cls.tmp, "factory")
        signers = bundlefixture.allowed_signers(cls.tmp / "signers", {"factory": key})
        bundle = cls.tmp / "bundle"
        pipeline.airlock("bundle", "create", "--release", RELEASE,
                         *[arg for s in SERVICES for arg in ("--service", s)],
                         "--out", str(bundle), "--key", str(key), "--registry",
                         pipeline.seeded_prefix("zuul-site-bundle", RELEASE), "--git-base",
                         pipeline.git_base(*SERVICES))
        pipeline.airlock("bundle", "import", str(bundle), "--site", str(cls.dir / "site.yaml"),
                         "--allowed-signers", str(signers))

        # The site's base job names the stores once (URLs only).
        urls = {store: dict(getattr(site, store).urls) for store in STORES}
        cls.sandbox = zuul_sandbox.Sandbox(airlock_site=urls, build_nodes=True)
        cls.sandbox.start()

        # The operator's commit: fewer jobs, the real secret (one commit,
        # so that one reconfiguration loads both).
        clone = cls.sandbox.base / "work" / zuul_sandbox.PROJECT
        secret = cls.sandbox.encrypt_secret(SECRET, {
            "registry": cls.registry_host, "username": cls.user, "password": cls.password})
        before = cls.sandbox.last_reconfigured()
        cls.newrev = cls.sandbox.commit({
            "zuul.d/releases.yaml": trimmed_releases(
                (clone / "zuul.d" / "releases.yaml").read_text()),
            "zuul.d/secrets.yaml": "# The sandbox site's registry credentials.\n" + secret},
            "zuul-sandbox: only 2025.2 keystone and placement, the site's secret")
        cls.sandbox.wait_for_reconfiguration(before)
        deadline = time.monotonic() + 120
        while cls.manual_jobs() != {BASE_JOB, *SERVICE_JOBS} and time.monotonic() < deadline:
            time.sleep(2)
        cls.config_errors = cls.sandbox.api(
            f"/api/tenant/{zuul_sandbox.TENANT}/config-errors")
        cls.buildset = cls.run_buildset()

    @classmethod
    def manual_jobs(cls) -> set[str]:
        """The jobs the tenant's layout lists in manual for airlock."""
        project = cls.sandbox.api(
            f"/api/tenant/{zuul_sandbox.TENANT}/project/{zuul_sandbox.PROJECT}")
        assert isinstance(project, dict)
        return {job["name"] for config_ in project["configs"]
                for pipeline_ in config_["pipelines"] if pipeline_["name"] == PIPELINE
                for jobs in pipeline_["jobs"] for job in jobs}

    @classmethod
    def tearDownClass(cls) -> None:
        cls.sandbox.stop(quiet=True)
        subprocess.run([str(SITE_UP), "stop", "--dir", str(cls.dir)], capture_output=True,
                       timeout=120, check=False, env=clean_env())
        if not os.environ.get("AIRLOCK_KEEP_ZUUL_SITE"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def buildsets(cls, pipeline_: str = PIPELINE, newrev: str | None = None) -> list[dict]:
        newrev = newrev or cls.newrev
        query = urllib.parse.urlencode({"project": zuul_sandbox.PROJECT,
                                        "pipeline": pipeline_, "limit": 20})
        found = cls.sandbox.api(f"/api/tenant/{zuul_sandbox.TENANT}/buildsets?{query}")
        assert isinstance(found, list)
        return [b for b in found if (b.get("refs") or [{}])[0].get("newrev", newrev)
                == newrev]

    @classmethod
    def run_buildset(cls, pipeline_: str = PIPELINE, newrev: str | None = None) -> dict:
        """Enqueue newrev on manual (what the operator types); the finished buildset."""
        newrev = newrev or cls.newrev
        known = {b["uuid"] for b in cls.buildsets(pipeline_, newrev)}
        cls.sandbox.enqueue_ref(pipeline_, None, newrev)
        deadline = time.monotonic() + BUILDSET_TIMEOUT
        while time.monotonic() < deadline:
            for found in cls.buildsets(pipeline_, newrev):
                if found["uuid"] not in known and found.get("result"):
                    buildset = cls.sandbox.api(
                        f"/api/tenant/{zuul_sandbox.TENANT}/buildset/{found['uuid']}")
                    assert isinstance(buildset, dict)
                    return buildset
            time.sleep(10)
        raise AssertionError(f"no finished buildset of {newrev} in {pipeline_} within "
                             f"{BUILDSET_TIMEOUT:.0f} s; see {cls.sandbox.logs}/executor.log")

    def builds(self, buildset: dict | None = None) -> dict[str, dict]:
        return {b["job_name"]: b for b in (buildset or self.buildset)["builds"]}

    def job_output(self, build: dict) -> str:
        path = self.sandbox.joblogs / build["uuid"] / "job-output.txt"
        return path.read_text(errors="replace") if path.is_file() else ""

    def records(self, build: dict) -> list[dict]:
        """The build records the job kept with its logs (playbooks/build/post.yaml)."""
        folder = self.sandbox.joblogs / build["uuid"] / "airlock"
        return [json.loads(p.read_text()) for p in sorted(folder.rglob("build-record.json"))]

    def test_1_the_tenant_loads_the_secret_and_the_trimmed_jobs(self) -> None:
        self.assertEqual(self.config_errors, [], self.config_errors)
        self.assertEqual(self.manual_jobs(), {BASE_JOB, *SERVICE_JOBS})
        # The committed secret is the encrypted one (no placeholder, no password).
        text = (self.sandbox.base / "work" / zuul_sandbox.PROJECT / "zuul.d" /
                "secrets.yaml").read_text()
        self.assertIn("!encrypted/pkcs1-oaep", text)
        self.assertNotIn(self.password, text)

    def test_2_the_buildset_succeeds_with_the_service_jobs_side_by_side(self) -> None:
        builds = self.builds()
        details = {name: (b["result"], self.job_output(b)[-3000:]) for name, b in builds.items()
                   if b["result"] != "SUCCESS"}
        self.assertEqual(self.buildset["result"], "SUCCESS", details)
        self.assertEqual(set(builds), {BASE_JOB, *SERVICE_JOBS})
        for build in builds.values():
            self.assertEqual(build["ref"]["newrev"], self.newrev)
        base_end = when(builds[BASE_JOB]["end_time"])
        first, second = (builds[name] for name in SERVICE_JOBS)
        for build in (first, second):
            self.assertLessEqual(base_end, when(build["start_time"]))
        # Both service jobs ran at once, each on its own node.
        self.assertLess(when(first["start_time"]), when(second["end_time"]))
        self.assertLess(when(second["start_time"]), when(first["end_time"]))

    def test_3_the_registry_holds_what_the_jobs_returned(self) -> None:
        returned = {}
        for build in self.builds().values():
            for artifact in build.get("artifacts") or []:
                meta = artifact.get("metadata") or {}
                if meta.get("type") == "container_image":
                    returned[artifact["name"]] = (artifact["url"], meta["digest"])
                    # An absolute URL: Zuul shows it as it is, never joined
                    # to the build's log URL.
                    self.assertEqual(artifact["url"], f"docker://{meta['ref']}")
        self.assertLessEqual({"python-base", "venv-builder", *SERVICES}, set(returned),
                             returned)
        for name, (url, digest) in returned.items():
            self.assertTrue(url.startswith(f"docker://{self.prefix}/"), url)
            ref = url.removeprefix("docker://")
            # Read anonymously, as a site's service jobs read.
            self.assertEqual(registry.digest(ref), digest, name)
        for service in SERVICES:
            self.assertEqual(registry.digest(f"{self.prefix}/{service}:{RELEASE}"),
                             returned[service][1], service)

    def test_4_a_second_enqueue_of_the_same_newrev_skips_every_image(self) -> None:
        again = self.run_buildset()
        self.assertNotEqual(again["uuid"], self.buildset["uuid"])
        self.assertEqual(again["result"], "SUCCESS")
        statuses = {}
        for name, build in self.builds(again).items():
            for record in self.records(build):
                for row in record["images"]:
                    statuses[(name, row["image"])] = row["status"]
        self.assertTrue(statuses)
        self.assertEqual({k: v for k, v in statuses.items() if v != "skipped"}, {})

    def test_5_audit_names_the_buildset_the_build_and_the_newrev(self) -> None:
        builds = self.builds()
        for service, job in zip(SERVICES, SERVICE_JOBS, strict=True):
            done = pipeline.airlock("audit", f"{self.prefix}/{service}:{RELEASE}", "--json")
            doc = json.loads(done.stdout)
            zuul = doc["record"]["zuul"]
            self.assertEqual(zuul["buildset"], self.buildset["uuid"])
            self.assertEqual(zuul["build"], builds[job]["uuid"])
            self.assertEqual(zuul["newrev"], self.newrev)
            text = pipeline.airlock("audit", f"{self.prefix}/{service}:{RELEASE}").stdout
            for value in (self.buildset["uuid"], builds[job]["uuid"], self.newrev):
                self.assertIn(value, text)

    def test_6_the_password_is_nowhere(self) -> None:
        texts = []
        for path in self.sandbox.joblogs.rglob("*"):
            if path.is_file():
                texts.append((str(path), path.read_bytes().decode(errors="replace")))
        self.assertTrue(any(p.endswith("job-output.txt") for p, _ in texts))
        texts.append(("buildset API", json.dumps(self.buildset)))
        for service in SERVICES:
            audit = pipeline.airlock("audit", f"{self.prefix}/{service}:{RELEASE}", "--json")
            texts.append((f"{service} build record", audit.stdout + audit.stderr))
        for where, text in texts:
            self.assertNotIn(self.password, text, where)
        # The pushing playbooks removed the credentials file they wrote.
        for node in self.sandbox.nodes:
            home = self.sandbox.base / node.home
            self.assertTrue((home / "airlock-site" / "site-push.yaml").is_file(), home)
            self.assertEqual(list(home.rglob(zuul_site.PUSH_CREDENTIALS)), [], home)

    def test_7_check_never_gets_the_secret(self) -> None:
        """A change that puts a pushing job (the base job), and a job of its own holding the
        secret, in check: Zuul runs neither (a job holding an untrusted
        project's secret is post-review; check is not).

        The sandbox's git driver has no proposed changes, so the attempt is
        committed and enqueued on check: stronger than a proposal, which would
        run with the same rule on a speculative layout.
        """
        steal = "airlock-steal-the-secret"
        before = self.sandbox.last_reconfigured()
        rev = self.sandbox.commit({
            "zuul.d/steal.yaml": yaml.safe_dump([
                {"job": {"name": steal, "run": "playbooks/steal.yaml",
                         "secrets": [{"name": "stolen", "secret": SECRET}]}},
                {"project": {"check": {"jobs": [steal, BASE_JOB]}}}]),
            "playbooks/steal.yaml": yaml.safe_dump([
                {"hosts": "all", "tasks": [
                    {"name": "Print the secret",
                     "ansible.builtin.debug": {"msg": "{{ stolen.password }}"}}]}])},
            "a change that tries to use the Images Nexus secret in check")
        self.sandbox.wait_for_reconfiguration(before)
        errors = self.sandbox.api(f"/api/tenant/{zuul_sandbox.TENANT}/config-errors")
        self.assertEqual(errors, [], errors)
        buildset = self.run_buildset("check", rev)
        self.assertNotEqual(buildset["result"], "SUCCESS", buildset)
        self.assertIn("does not allow post-review job", json.dumps(buildset))
        # Refused when the job graph froze: no build of either job exists.
        for build in buildset.get("builds") or []:
            self.assertIsNone(build.get("start_time"), build)
            self.assertFalse((self.sandbox.joblogs / build["uuid"]).exists(), build)
        for path in self.sandbox.joblogs.rglob("*"):
            if path.is_file():
                self.assertNotIn(self.password, path.read_bytes().decode(errors="replace"),
                                 str(path))


if __name__ == "__main__":
    unittest.main()
