"""validate --sdists: a new sdist-only pin without a declared build fails on the connected side.

A real index (servers.PackageIndex: HTTP, Basic auth, on 127.0.0.1) serves
a folder of distribution files; the files are empty (the check reads names,
never contents). A throw-away data tree (treefixture) pins:

- ``purelib===1.0``: a pure wheel (every platform has one);
- ``cext===2.0``: an sdist only (both platforms build it);
- ``armless===3.0``: a manylinux wheel for x86_64 and an sdist (arm64 builds it).

Broken and hostile indexes are real servers too (``PackageIndex.pages``
answers a path its own way); the only stand-in is a shorter retry pause and
page limit, so that a test takes a second, not a minute.
"""

from __future__ import annotations

import contextlib
import socket
import tempfile
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from unittest import mock

from airlock.data import sdists
from airlock.data.release import load_release
from airlock.errors import AirlockError, ToolError
from airlock.ext import index, pypi
from airlock.inputs import sdistcheck
from airlock.tests.unit.servers import PackageIndex, send
from airlock.tests.unit.treefixture import TreeTestCase, run_cli

USER, SECRET = "bot", "s3cret-t0ken"
FILES = ("purelib-1.0-py3-none-any.whl", "cext-2.0.tar.gz",
         "armless-3.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
         "armless-3.0.tar.gz", "cext-1.0-cp311-cp311-manylinux_2_17_aarch64.whl")
PINS = "purelib===1.0\ncext===2.0\narmless===3.0\n"
SDISTS = "images/sdists.txt"


def closed_port() -> int:
    """A port of 127.0.0.1 nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_files(folder: Path, names=FILES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")
    return folder


class IndexTestCase(TreeTestCase):
    """A tree pinning PINS in 2025.1, and a running index holding FILES."""

    serve_json = True

    def setUp(self) -> None:
        super().setUp()
        tmp = tempfile.TemporaryDirectory(prefix="airlock-index-")
        self.addCleanup(tmp.cleanup)
        self.files = make_files(Path(tmp.name) / "files")
        self.index = PackageIndex(self.files, {USER: SECRET}, serve_json=self.serve_json)
        self.index.start()
        self.addCleanup(self.index.stop)
        self.url = self.index.url(USER, SECRET, "simple/")
        self.tree.write("releases/2025.1/upper-constraints.txt", PINS)
        self.tree.write(SDISTS, "# none yet\n")
        # A retry waits milliseconds here, not seconds.
        patcher = mock.patch.object(pypi, "BACKOFF", 0.01)
        patcher.start()
        self.addCleanup(patcher.stop)

    def validate(self, *extra: str, url: str | None = None) -> tuple[int, str, str]:
        root = str(self.tree.root)
        code, out, err = run_cli(["release", "validate", "2025.1", "--root", root, "--sdists",
                                  "--index-url", url or self.url, *extra])
        self.assertNotIn(SECRET, out + err)  # whatever happened
        self.assertNotIn("Traceback", err)
        return code, out.replace(root, "{R}"), err.replace(root, "{R}")


class CheckTest(IndexTestCase):
    def test_undeclared_sdist_only_pins_fail_naming_release_pin_and_platforms(self) -> None:
        code, out, err = self.validate()
        fix = ("add '{name}: <Debian packages>' to {R}/images/sdists.txt "
               "(nothing after the colon when building it needs no package beyond "
               "venv-builder's compiler)")
        self.assertEqual((code, out), (1, "1 release(s) valid: 2025.1\n"))
        self.assertEqual(err.splitlines(), [
            "{R}/releases/2025.1/upper-constraints.txt: armless==3.0 has no wheel for "
            "linux/arm64 (Python 3.11) and no line in {R}/images/sdists.txt; "
            + fix.format(name="armless", R="{R}"),
            "{R}/releases/2025.1/upper-constraints.txt: cext==2.0 has no wheel for "
            "linux/amd64 or linux/arm64 (Python 3.11) and no line in "
            "{R}/images/sdists.txt; " + fix.format(name="cext", R="{R}"),
        ])

    def test_declared_pins_pass_with_one_summary_line(self) -> None:
        self.tree.write(SDISTS, "cext: libfoo-dev\narmless:\n")
        code, out, err = self.validate()
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(out.splitlines(), [
            "1 release(s) valid: 2025.1",
            "sdist-only pins, all declared in {R}/images/sdists.txt: 2025.1 2 "
            f"(index: http://127.0.0.1:{self.index.port}/simple)"])

    def test_a_declaration_no_release_needs_is_named_on_a_full_run(self) -> None:
        self.tree.write(SDISTS, "cext:\narmless:\nold-thing:\n")
        self.tree.write("releases/2025.2/upper-constraints.txt",
                        "purelib===1.0\noslo.messaging===17.1.0\n")  # built from source
        root = str(self.tree.root)
        code, out, err = run_cli(["release", "validate", "--root", root, "--sdists",
                                  "--index-url", self.url])
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(out.replace(root, "{R}").splitlines()[1:], [
            "sdist-only pins, all declared in {R}/images/sdists.txt: "
            f"2025.1 2, 2025.2 0 (index: http://127.0.0.1:{self.index.port}/simple)",
            "{R}/images/sdists.txt: not sdist-only in any release, the lines of "
            "old-thing can go"])

    def test_a_pin_the_index_does_not_have_is_reported(self) -> None:
        self.tree.write(SDISTS, "cext:\narmless:\n")
        self.tree.append("releases/2025.1/upper-constraints.txt", "ghost===9.9\ncext-old===1\n")
        code, _, err = self.validate()
        self.assertEqual(code, 1)
        self.assertEqual(err.splitlines(), [
            f"{{R}}/releases/2025.1/upper-constraints.txt: {pin} has neither a wheel for "
            "linux/amd64 or linux/arm64 (Python 3.11) nor an sdist on the package index; "
            "check the pin (a version the index has), or the index (--index-url or "
            "$AIRLOCK_INDEX_URL)" for pin in ("cext-old==1", "ghost==9.9")])

    def test_markers_are_evaluated_for_the_release(self) -> None:
        self.tree.write(SDISTS, "cext:\narmless:\n")
        self.tree.append("releases/2025.1/upper-constraints.txt",
                         "ghost===9.9;python_version=='3.9'\n")
        self.assertEqual(self.validate()[0], 0)

    def test_without_sdists_nothing_is_asked(self) -> None:
        root = str(self.tree.root)
        with mock.patch.dict("os.environ", {"AIRLOCK_INDEX_URL": self.url}):
            code, out, err = run_cli(["release", "validate", "--root", root])
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(self.index.served + self.index.refused, 0)
        self.assertEqual(run_cli(["release", "validate", "--root", root, "--index-url",
                                  self.url]),
                         (1, "", "--index-url: is used only with --sdists (validate alone never "
                          "asks the index); add --sdists, or leave --index-url out\n"))

    def test_the_result_as_plain_data(self) -> None:
        layout = self.tree.layout
        release = load_release(layout, "2025.1")
        declared = sdists.load(layout.images_dir)
        [result] = sdistcheck.check([release], declared, index.locations(self.url))
        self.assertEqual(result.as_dict(), {
            "release": "2025.1", "python": "3.11",
            "constraints": str(release.upper_constraints_path),
            "platforms": {
                "linux/amd64": {"sdist_only": ["cext==2.0"], "undeclared": ["cext==2.0"],
                                "missing": []},
                "linux/arm64": {"sdist_only": ["armless==3.0", "cext==2.0"],
                                "undeclared": ["armless==3.0", "cext==2.0"], "missing": []}}})

    def test_a_local_folder_is_an_index_too(self) -> None:
        self.tree.write(SDISTS, "cext:\n")
        code, _, err = self.validate(url=str(self.files))
        self.assertEqual(code, 1)
        self.assertIn("armless==3.0 has no wheel for linux/arm64 (Python 3.11)", err)
        self.assertEqual(len(err.splitlines()), 1)


class HtmlIndexTest(IndexTestCase):
    """The same answers from an index that speaks only PEP 503 HTML."""

    serve_json = False

    def test_html_pages_give_the_same_answer(self) -> None:
        code, _, err = self.validate()
        self.assertEqual(code, 1)
        self.assertEqual([line.split(" has ")[0].rsplit(" ", 1)[1] for line in err.splitlines()],
                         ["armless==3.0", "cext==2.0"])


class BrokenIndexTest(IndexTestCase):
    """An index that cannot be read is exit 2 and one line, never a traceback or a secret."""

    def answer(self, path: str, status: int, body: bytes, headers: dict[str, str]) -> None:
        def handler(request: BaseHTTPRequestHandler) -> None:
            with contextlib.suppress(OSError):  # airlock hangs up on what it refuses
                send(request, status, body, headers)
        self.index.pages[path] = handler

    def test_unreachable_index(self) -> None:
        port = closed_port()
        code, out, err = self.validate(url=f"http://{USER}:{SECRET}@127.0.0.1:{port}/simple")
        self.assertEqual((code, out), (2, "1 release(s) valid: 2025.1\n"))
        self.assertEqual(len(err.splitlines()), 1)
        self.assertRegex(err, rf"^http://127\.0\.0\.1:{port}/simple: cannot read the page of "
                         r"\S+: cannot connect: Connection refused; check the index URL")

    def test_wrong_password(self) -> None:
        code, _, err = self.validate(url=self.index.url(USER, "not-it", "simple/"))
        self.assertEqual(code, 2)
        self.assertEqual(len(err.splitlines()), 1)
        self.assertIn(": HTTP 401 Unauthorized (credentials missing or refused); ", err)
        self.assertNotIn("not-it", err)

    def test_the_password_goes_to_the_index_as_basic_auth(self) -> None:
        self.tree.write(SDISTS, "cext:\narmless:\n")
        self.assertEqual(self.validate()[0], 0)
        self.assertEqual(self.index.refused, 0)
        self.assertGreaterEqual(self.index.served, 3)

    def test_a_huge_page_is_not_read(self) -> None:
        self.answer("/simple/cext/", 200, b"x" * (2 * 1024 * 1024), {"Content-Type": "text/html"})
        with mock.patch.object(pypi, "PAGE_LIMIT", 1024 * 1024):
            code, _, err = self.validate()
        self.assertEqual(code, 2)
        self.assertEqual(err, f"http://127.0.0.1:{self.index.port}/simple: cannot read the page "
                         "of cext: page of 2 MiB, over the limit of 1 MiB; check the index URL "
                         "(--index-url or $AIRLOCK_INDEX_URL), the network and pip's "
                         "configuration\n")

    def test_a_huge_page_that_hides_its_size_is_cut(self) -> None:
        def handler(request: BaseHTTPRequestHandler) -> None:
            request.send_response(200)
            request.send_header("Content-Type", "text/html")
            request.send_header("Connection", "close")
            request.end_headers()
            with contextlib.suppress(OSError):
                for _ in range(64):
                    request.wfile.write(b"<a href='x'>" * 4096)
            request.close_connection = True
        self.index.pages["/simple/cext/"] = handler
        with mock.patch.object(pypi, "PAGE_LIMIT", 1024 * 1024):
            code, _, err = self.validate()
        self.assertEqual(code, 2)
        self.assertEqual(len(err.splitlines()), 1)
        self.assertIn("cannot read the page of cext: page over the limit of 1 MiB;", err)

    def test_malformed_pages(self) -> None:
        json_type = {"Content-Type": PackageIndex.JSON_TYPE}
        rows = [
            (b"{not json", json_type, "malformed JSON page (Expecting property name enclosed "
             "in double quotes at line 1)"),
            (b'{"files": [{"name": 1}]}', json_type, "JSON page without a 'files' list of "
             "file names (not a PEP 691 project page)"),
            (b"\xff\xfe", {"Content-Type": "text/html"}, "page is not UTF-8 text"),
            (b"PK\x03\x04", {"Content-Type": "application/zip"},
             "answered 'application/zip', not a simple index page"),
        ]
        for body, headers, what in rows:
            with self.subTest(what=what):
                self.answer("/simple/cext/", 200, body, headers)
                code, _, err = self.validate()
                self.assertEqual(code, 2)
                self.assertEqual(err.splitlines(), [
                    f"http://127.0.0.1:{self.index.port}/simple: cannot read the page of cext: "
                    f"{what}; check the index URL (--index-url or $AIRLOCK_INDEX_URL), the "
                    "network and pip's configuration"])

    def test_a_redirect_to_another_scheme_is_refused(self) -> None:
        self.answer("/simple/cext/", 302, b"", {"Location": "file:///etc/passwd"})
        code, _, err = self.validate()
        self.assertEqual(code, 2)
        self.assertIn("cannot read the page of cext: redirected from http to file; refused",
                      err)

    def test_a_redirect_elsewhere_gets_no_password(self) -> None:
        other = PackageIndex(self.files, {USER: SECRET}, serve_json=True)
        with other:
            # Same scheme, another port: followed, but without the index's credentials.
            self.answer("/simple/cext/", 301, b"", {"Location": other.url(path="simple/cext/")})
            code, _, err = self.validate()
        self.assertEqual(code, 2)
        self.assertIn("cannot read the page of cext: HTTP 401 Unauthorized", err)
        self.assertEqual((other.served, other.refused), (0, 1))

    def test_a_rate_limit_is_asked_again(self) -> None:
        self.tree.write(SDISTS, "cext:\narmless:\n")
        answers = iter([429, 503])

        def handler(request: BaseHTTPRequestHandler) -> None:
            status = next(answers, None)
            if status is None:
                del self.index.pages["/simple/cext/"]
                self.index.handle(request)
                return
            send(request, status, b"slow down\n", {"Retry-After": "0"})
        self.index.pages["/simple/cext/"] = handler
        self.assertEqual(self.validate()[0], 0)
        self.assertEqual(next(answers, "used"), "used")


class FilesOfTest(IndexTestCase):
    """The API: every location of pip's configuration, one list per project."""

    def test_index_extra_index_and_find_links_together(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            links = make_files(Path(tmp) / "links", ["cext-2.0-cp311-cp311-linux_aarch64.whl",
                                                     "other-1.0.tar.gz", "README"])
            simple = Path(tmp) / "simple"
            (simple / "cext").mkdir(parents=True)
            (simple / "cext" / "index.html").write_text(
                '<a href="../../f/cext-2.1.tar.gz#sha256=00">cext-2.1.tar.gz</a>')
            where = index.Locations(index_url=self.url, extra_index_urls=(simple.as_uri(),),
                                    find_links=(str(links),))
            found = pypi.files_of_many(["Cext", "purelib", "nothing-here"], where)
        self.assertEqual(found, {
            "cext": ["cext-1.0-cp311-cp311-manylinux_2_17_aarch64.whl", "cext-2.0.tar.gz",
                     "cext-2.1.tar.gz", "cext-2.0-cp311-cp311-linux_aarch64.whl"],
            "purelib": ["purelib-1.0-py3-none-any.whl"],
            "nothing-here": []})

    def test_no_index_reads_find_links_only(self) -> None:
        where = index.Locations(index_url="http://127.0.0.1:9/never", no_index=True,
                                find_links=(str(self.files),))
        self.assertEqual(pypi.files_of("purelib", where), ["purelib-1.0-py3-none-any.whl"])

    def test_errors_are_tool_errors_without_credentials(self) -> None:
        where = index.Locations(index_url=self.index.url(USER, "wrong-one", "simple/"))
        with self.assertRaises(ToolError) as caught:
            pypi.files_of("cext", where)
        self.assertNotIn("wrong-one", str(caught.exception))
        self.assertTrue(str(caught.exception).startswith(
            f"http://127.0.0.1:{self.index.port}/simple: cannot read the page of cext: HTTP 401"))

    def test_a_scheme_airlock_does_not_read(self) -> None:
        with self.assertRaises(AirlockError) as caught:
            pypi.files_of("cext", index.Locations(index_url="ftp://u:pw@127.0.0.1/simple"))
        self.assertEqual(str(caught.exception).split(";")[0], "ftp://127.0.0.1/simple: cannot "
                         "read the page of cext: 'ftp:' is not an index scheme airlock reads "
                         "(http, https, file)")
