"""BuildKit's progress (``--progress rawjson``) read into steps, counts, timings and a plain log.

The data are real: ``data/buildx-rawjson-two-platforms.txt`` is buildx
0.13.1's stderr for ``data/buildx-rawjson-two-platforms.Dockerfile`` built
``--no-cache --provenance=false --network none`` for linux/amd64 and
linux/arm64 (arm64 under QEMU) to an OCI archive;
``data/buildx-rawjson-failed.txt`` is a one-platform build whose RUN step
fails (its Python raises ConnectionRefusedError). The build itself runs a
stand-in ``docker`` (:mod:`fakeprogram`) that replays the real capture,
because unit tests run without an engine.
"""

from __future__ import annotations

import io
import tempfile
import unittest
from pathlib import Path

from airlock import progress
from airlock.errors import ToolError
from airlock.ext import buildx
from airlock.tests.unit import fakeprogram

DATA = Path(__file__).parent / "data"
OK = DATA / "buildx-rawjson-two-platforms.txt"
FAILED = DATA / "buildx-rawjson-failed.txt"


class TestParse(unittest.TestCase):

    def setUp(self):
        self.ok = buildx.parse_progress(OK.read_text())

    def test_every_step_of_both_platforms_with_its_seconds(self):
        rows = {row.name: row for row in self.ok.timings()}
        run = {row.platform: row for row in rows.values()
               if row.command == "RUN echo building; seq 1 3"}
        self.assertEqual(sorted(run), ["linux/amd64", "linux/arm64"])
        self.assertEqual({row.stage for row in run.values()}, {"build"})
        for row in run.values():
            self.assertGreater(row.seconds, 0.0)
            self.assertLess(row.seconds, 5.0)
            self.assertFalse(row.cached)
        base = [row for row in rows.values() if row.command.startswith("FROM ")]
        self.assertEqual(len(base), 2)
        self.assertTrue(all(row.cached for row in base))

    def test_the_export_and_its_parts(self):
        export = [row for row in self.ok.timings() if row.name == "exporting to oci image format"]
        self.assertEqual(len(export), 1)
        parts = dict(export[0].parts)
        self.assertIn("exporting layers", parts)
        self.assertIn("sending tarball", parts)
        self.assertGreaterEqual(export[0].seconds, parts["exporting layers"])

    def test_counts_grow_as_the_events_arrive_in_any_pieces(self):
        state = buildx.BuildProgress()
        text = OK.read_text()
        seen = []
        for start in range(0, len(text), 997):  # pieces cut mid-line and mid-object
            state.feed(text[start:start + 997])
            seen.append(state.counts())
        state.finish()
        self.assertEqual(seen[-1], self.ok.counts())
        done = [d for d, _ in seen]
        self.assertEqual(done, sorted(done))
        self.assertEqual([row.name for row in state.timings()],
                         [row.name for row in self.ok.timings()])

    def test_the_running_step_is_named_while_it_runs(self):
        state = buildx.BuildProgress()
        names = set()
        for line in OK.read_text().splitlines(keepends=True):
            if state.feed(line):
                names.add(state.current())
        self.assertTrue(any("RUN echo building" in name for name in names))
        self.assertTrue(any(name.startswith("exporting to oci image format: ")
                            for name in names))
        self.assertEqual(state.current(), "")  # all ended

    def test_plain_log_reads_like_buildx_plain(self):
        log = self.ok.plain_log()
        number = next(v.number for v in self.ok.vertices.values()
                      if v.name == "[linux/arm64 build 2/2] RUN echo building; seq 1 3")
        self.assertRegex(log, rf"#{number} \d+\.\d{{3}} building\n")
        self.assertRegex(log, rf"#{number} DONE \d+\.\ds\n")
        self.assertIn(" CACHED\n", log)

    def test_a_failed_build_is_its_failing_step_and_its_last_output(self):
        state = buildx.parse_progress(FAILED.read_text())
        line = buildx.failure_line(state.plain_log())
        self.assertTrue(line.startswith("failed to solve: process \"/bin/sh -c echo about"))
        self.assertTrue(line.endswith("(last output: ConnectionRefusedError: no network)"))
        failed = [row for row in state.timings() if row.error]
        self.assertEqual(len(failed), 1)
        self.assertIn("exit code: 1", failed[0].error)

    def test_text_that_is_no_event_is_kept_not_fatal(self):
        state = buildx.parse_progress("$ docker buildx build x\n{\nnot json\n}\n"
                                      + OK.read_text() + "\nERROR: tail\n{\n\"cut")
        self.assertEqual(state.head, ["$ docker buildx build x", "{", "not json", "}"])
        self.assertEqual(state.tail[-3:], ["ERROR: tail", "{", "\"cut"])
        self.assertEqual(state.counts(), self.ok.counts())

    def test_vertex_names(self):
        self.assertEqual(buildx.split_vertex_name("[linux/arm64 stage-1 2/3] RUN a b"),
                         ("linux/arm64", "stage-1", "RUN a b"))
        self.assertEqual(buildx.split_vertex_name("[2/2] RUN x"), ("", "", "RUN x"))
        self.assertEqual(buildx.split_vertex_name("[linux/arm64/v8 internal] load x"),
                         ("linux/arm64/v8", "internal", "load x"))
        # keystone's venv stage for arm64, run on amd64 (FROM --platform=$BUILDPLATFORM)
        self.assertEqual(buildx.split_vertex_name("[linux/amd64->arm64 build 2/2] RUN i"),
                         ("linux/arm64", "build", "RUN i"))
        self.assertEqual(buildx.split_vertex_name("exporting to oci image format"),
                         ("", "", "exporting to oci image format"))

    def test_a_status_run_once_per_platform_counts_each_run(self):
        # The export rewrites each platform's layers under one status id
        # (seen in a real keystone build: "rewriting layers with
        # source-date-epoch ..." from 0.1 s to 22.2 s, then 22.2 s to 36.6 s).
        state = buildx.BuildProgress()
        vertex = '"vertex": "sha256:e", "id": "rewriting layers with source-date-epoch 1"'
        state.feed('{\n"vertexes": [{"digest": "sha256:e", "name": "exporting to oci image '
                   'format", "started": "2026-12-01T10:00:00Z"}]\n}\n')
        for began, ended in (("00.1", "22.2"), ("22.2", "36.6")):
            state.feed(f'{{\n"statuses": [{{{vertex}, '
                       f'"started": "2026-12-01T10:00:{began}Z"}}]\n}}\n')
            self.assertTrue(state.current().endswith(": rewriting layers with source-date-epoch 1"))
            state.feed(f'{{\n"statuses": [{{{vertex}, "started": "2026-12-01T10:00:{began}Z", '
                       f'"completed": "2026-12-01T10:00:{ended}Z"}}]\n}}\n')
        state.feed('{\n"vertexes": [{"digest": "sha256:e", "name": "exporting to oci image '
                   'format", "started": "2026-12-01T10:00:00Z", '
                   '"completed": "2026-12-01T10:00:40Z"}]\n}\n')
        (export,) = state.timings()
        self.assertEqual(export.seconds, 40.0)
        self.assertEqual(export.parts, (("rewriting layers with source-date-epoch 1", 36.5),))

    def test_a_step_run_twice_counts_its_time_once(self):
        self.assertEqual(buildx._busy_seconds({0.0: 2.0, 1.0: 3.0, 10.0: 11.0}), 4.0)
        self.assertEqual(buildx._busy_seconds({0.0: None, 5.0: 6.0}), 1.0)
        self.assertEqual(buildx._busy_seconds({0.0: None}, end=2.5), 2.5)


class TestBuildShowsProgress(unittest.TestCase):
    """buildx.build drives one progress step from the events and writes a plain log."""

    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.root = Path(tmp.name)
        self.out = io.StringIO()
        old = progress.use(progress.Renderer(self.out, "plain", ticker=False))
        self.addCleanup(progress.use, old)

    def spec(self, **changes) -> buildx.BuildSpec:
        base = dict(dockerfile=self.root / "keystone" / "Dockerfile", context=self.root,
                    output=self.root / "out" / "x.oci.tar",
                    platforms=("linux/amd64", "linux/arm64"))
        return buildx.BuildSpec(**{**base, **changes})

    def replay(self, capture: Path, code: int) -> None:
        """A stand-in docker: the real capture on stderr, an archive where --output says."""
        fakeprogram.install(self, "docker", f"""
dest=$(printf '%s\\n' "$@" | sed -n 's/^type=oci,dest=\\([^,]*\\),.*/\\1/p')
cat '{capture}' >&2
[ {code} -ne 0 ] && exit {code}
mkdir -p "$(dirname "$dest")"
printf '{{"manifests":[{{"digest":"sha256:%064d"}}]}}' 0 > "$dest.json"
tar -cf "$dest" -C "$(dirname "$dest")" --transform "s|.*|index.json|" \\
    "$(basename "$dest").json"
""")

    def test_a_build_reports_its_steps_and_keeps_both_logs(self):
        self.replay(OK, 0)
        result = buildx.build(self.spec())
        lines = self.out.getvalue().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertRegex(lines[0], r"^keystone: build linux/amd64, linux/arm64: done in "
                                   r"\d+\.\d s \(\d+ steps, 2 cached\)$")
        self.assertEqual([row.name for row in result.steps],
                         [row.name for row in buildx.parse_progress(OK.read_text()).timings()])
        plain = result.log.read_text()
        self.assertTrue(plain.startswith("$ docker buildx build --progress=rawjson "))
        self.assertIn("#1 [internal] load build definition from Dockerfile\n", plain)
        self.assertNotIn('"vertexes"', plain)
        self.assertIn('"vertexes"', buildx.raw_log_of(result.log).read_text())

    def test_a_failed_build_says_which_step_in_its_one_error_line(self):
        self.replay(FAILED, 1)
        with self.assertRaises(ToolError) as caught:
            buildx.build(self.spec(title="keystone image"))
        self.assertIn("(last output: ConnectionRefusedError: no network)", str(caught.exception))
        # No progress line beside the error (the CLI prints the error).
        self.assertEqual(self.out.getvalue(), "")
        self.assertFalse((self.root / "out" / "x.oci.tar").exists())

    def test_the_live_line_names_the_running_step_and_n_of_m(self):
        self.replay(OK, 0)
        tty = io.StringIO()
        progress.use(progress.Renderer(tty, "tty", ticker=False, width=lambda: 200))
        buildx.build(self.spec())
        drawn = tty.getvalue().split("\r")
        self.assertTrue(any(" of " in piece and " steps" in piece for piece in drawn))
        self.assertRegex(tty.getvalue(), r"keystone: build linux/amd64, linux/arm64: done in")
        self.assertNotIn("\n", "".join(drawn[:-1]).replace("\x1b[K", ""))


if __name__ == "__main__":
    unittest.main()
