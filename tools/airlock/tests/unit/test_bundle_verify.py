"""bundle verify: the tamper table, with real ssh-keygen keys and real tar files.

Every case is refused with its own line, and with ``extract`` nothing is
extracted: the destination does not exist afterwards and no staging folder
is left beside it. Hostile tars are written by Python's tarfile (pax), with
a real signed head (SHA256SUMS, SHA256SUMS.sig, manifest.json) so that each
case reaches the member it is about.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import unittest
from pathlib import Path

from airlock.bundle import sums, tarstream, verify
from airlock.errors import AirlockError
from airlock.tests.unit import bundlefixture as bf

WHEEL = bf.WHEEL
AGAIN = "the bundle was changed or damaged in transit; get it again"
NOT_OURS = verify.NOT_OURS


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """A pax tar of ``members`` as Python's tarfile writes it (for hostile members)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def member(name: str, data: bytes | None = None, type: bytes = tarfile.REGTYPE,
           linkname: str = "") -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = type
    info.linkname = linkname
    info.mode = 0o644
    return info, data


class BundleCase(unittest.TestCase):
    """Keys and one good bundle, made once; each test works on copies."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.keys = Path(tempfile.mkdtemp(prefix="airlock-keys-"))
        cls.key = bf.make_key(cls.keys, "signer")
        cls.stranger = bf.make_key(cls.keys, "stranger")
        cls.allowed = bf.allowed_signers(cls.keys / "allowed_signers", {"release": cls.key})
        cls.good = bf.make_bundle(cls.keys / "good", key=cls.key)

    @classmethod
    def tearDownClass(cls) -> None:
        shutil.rmtree(cls.keys, ignore_errors=True)

    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="airlock-bv-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def copy(self, name: str = "b") -> Path:
        dest = self.tmp / name
        shutil.copytree(self.good, dest)
        return dest

    def tar_of(self, folder: Path, name: str = "b.tar") -> Path:
        return tarstream.write(folder, self.tmp / name)[0]

    def head(self, folder: Path | None = None) -> list[tuple[tarfile.TarInfo, bytes | None]]:
        folder = folder or self.good
        return [member(name, (folder / name).read_bytes())
                for name in (sums.SUMS, sums.SIGNATURE, sums.MANIFEST)]

    def refused_dir(self, folder: Path) -> str:
        with self.assertRaises(AirlockError) as caught:
            verify.verify_dir(folder, self.allowed)
        self.assertEqual(caught.exception.exit_code, 1)
        self.assertNotIn("\n", str(caught.exception))
        return str(caught.exception)

    def refused_tar(self, tar: Path) -> str:
        dest = self.tmp / "dest"
        before = sorted(os.listdir(self.tmp))
        with self.assertRaises(AirlockError) as caught:
            verify.verify_tar(tar, self.allowed, extract=dest)
        self.assertEqual(caught.exception.exit_code, 1)
        self.assertNotIn("\n", str(caught.exception))
        self.assertFalse(os.path.lexists(dest), "nothing may be extracted")
        self.assertEqual(sorted(os.listdir(self.tmp)), before, "no staging folder left")
        return str(caught.exception)


class TamperTableTest(BundleCase):
    """Each tampering is refused, naming what and where, with its own line."""

    def flip(self, path: Path, at: int) -> None:
        data = bytearray(path.read_bytes())
        data[at] ^= 0x01
        path.write_bytes(bytes(data))

    def flip_in_tar(self, tar: Path, needle: bytes) -> None:
        data = tar.read_bytes()
        self.flip(tar, data.index(needle) + 3)

    def test_the_table(self) -> None:
        seen: dict[str, str] = {}

        def case(name: str, message: str, expected: str) -> None:
            with self.subTest(case=name):
                self.assertEqual(message, expected)
                self.assertNotIn(message, seen.values(), f"same line as {seen}")
                seen[name] = message

        sha = hashlib.sha256

        # A flipped byte in a wheel: the folder, then the tar.
        b = self.copy("wheel")
        self.flip(b / WHEEL, 3)
        got = sha((b / WHEEL).read_bytes()).hexdigest()
        want = sha((self.good / WHEEL).read_bytes()).hexdigest()
        case("wheel (dir)", self.refused_dir(b),
             f"{b}/{WHEEL}: sha256 {got[:12]}… but SHA256SUMS says {want[:12]}…; {AGAIN}")
        tar = self.tar_of(self.good, "wheel.tar")
        self.flip_in_tar(tar, b"PK\x03\x04 a wheel")
        case("wheel (tar)", self.refused_tar(tar),
             f"{tar}: {WHEEL}: sha256 {got[:12]}… but SHA256SUMS says {want[:12]}…; {AGAIN}")

        # A flipped byte in the manifest.
        b = self.copy("manifest")
        self.flip(b / "manifest.json", 3)
        got = sha((b / "manifest.json").read_bytes()).hexdigest()
        want = sha((self.good / "manifest.json").read_bytes()).hexdigest()
        case("manifest (dir)", self.refused_dir(b),
             f"{b}/manifest.json: sha256 {got[:12]}… but SHA256SUMS says {want[:12]}…; {AGAIN}")
        tar = self.tar_of(self.good, "manifest.tar")
        self.flip_in_tar(tar, (self.good / "manifest.json").read_bytes()[:20])
        case("manifest (tar)", self.refused_tar(tar),
             f"{tar}: manifest.json: sha256 {got[:12]}… but SHA256SUMS says {want[:12]}…; "
             f"{AGAIN}")

        # A flipped byte in SHA256SUMS: the signature no longer matches.
        b = self.copy("sums")
        self.flip(b / "SHA256SUMS", 5)
        case("SHA256SUMS (dir)", self.refused_dir(b),
             f"{b}/SHA256SUMS.sig: does not match SHA256SUMS: it was changed after signing; "
             f"{AGAIN}")
        tar = self.tar_of(self.good, "sums.tar")
        self.flip_in_tar(tar, (self.good / "SHA256SUMS").read_bytes()[:20])
        case("SHA256SUMS (tar)", self.refused_tar(tar),
             f"{tar}: SHA256SUMS.sig: does not match SHA256SUMS: it was changed after signing; "
             f"{AGAIN}")

        # A missing file.
        b = self.copy("missing")
        (b / WHEEL).unlink()
        case("missing (dir)", self.refused_dir(b),
             f"{b}/{WHEEL}: is missing (SHA256SUMS lists it); {AGAIN}")
        tar = self.tmp / "missing.tar"
        tar.write_bytes(tar_bytes(self.head() + [
            member(p, (self.good / p).read_bytes())
            for p in sums.parse((self.good / "SHA256SUMS").read_bytes())
            if p not in (WHEEL, "manifest.json")]))
        case("missing (tar)", self.refused_tar(tar),
             f"{tar}: {WHEEL}: is missing from the tar (SHA256SUMS lists it); {AGAIN}")

        # An extra file.
        b = self.copy("extra")
        (b / "python/wheels/evil-1.0-py3-none-any.whl").write_bytes(b"evil")
        case("extra (dir)", self.refused_dir(b),
             f"{b}/python/wheels/evil-1.0-py3-none-any.whl: is not listed in SHA256SUMS (a "
             "file the signer did not put there); remove it, or get the bundle again")
        tar = self.tmp / "extra.tar"
        tar.write_bytes(tar_bytes(self.head() + [member("python/evil.whl", b"evil")]))
        case("extra (tar)", self.refused_tar(tar),
             f"{tar}: python/evil.whl: is not listed in SHA256SUMS (a member the signer did "
             f"not put there); {AGAIN}")

        # A signature by a key that allowed_signers does not hold.
        b = self.copy("stranger")
        bf.sign(b, self.stranger)
        fingerprint = subprocess.run(
            ["ssh-keygen", "-l", "-f", f"{self.stranger}.pub"], capture_output=True, text=True,
            check=True).stdout.split()[1]
        trust = ("get the bundle from a signer you trust, or add the signer's public key to "
                 "allowed_signers if you trust it")
        case("stranger (dir)", self.refused_dir(b),
             f"{b}/SHA256SUMS.sig: signed by a key not in {self.allowed} ({fingerprint}); "
             f"{trust}")
        tar = self.tar_of(b, "stranger.tar")
        case("stranger (tar)", self.refused_tar(tar),
             f"{tar}: SHA256SUMS.sig: signed by a key not in {self.allowed} ({fingerprint}); "
             f"{trust}")

        # A bad signature: the armored signature was cut short.
        b = self.copy("badsig")
        sig = (b / "SHA256SUMS.sig").read_bytes()
        (b / "SHA256SUMS.sig").write_bytes(sig[:120] + b"\n-----END SSH SIGNATURE-----\n")
        case("bad signature (dir)", self.refused_dir(b),
             f"{b}/SHA256SUMS.sig: is not a valid SSH signature (sig_find_principals: "
             "sshsig_armor: invalid format); get the bundle again")
        tar = self.tar_of(b, "badsig.tar")
        case("bad signature (tar)", self.refused_tar(tar),
             f"{tar}: SHA256SUMS.sig: is not a valid SSH signature (sig_find_principals: "
             "sshsig_armor: invalid format); get the bundle again")

        # A truncated tarball, a missing last part, a missing middle part.
        tar = self.tar_of(self.good, "cut.tar")
        data = tar.read_bytes()
        tar.write_bytes(data[:data.index(b"PK\x03\x04 a wheel") + 1000])
        case("truncated tar", self.refused_tar(tar),
             f"{tar}: truncated at member {WHEEL}; get the missing bytes or part (copy every "
             "part of the bundle, whole)")
        parts = tarstream.write(self.good, self.tmp / "parts.tar", 10240)
        self.assertGreater(len(parts), 3)
        parts[-1].unlink()
        last = "sources/keystone.bundle"  # the member parts.tar.005 ends in
        case("missing last part", self.refused_tar(parts[0]),
             f"{parts[0]}: truncated at member {last} (in {parts[-2].name}, the last part); "
             "get the missing bytes or part (copy every part of the bundle, whole)")
        parts[1].unlink()
        case("missing part", self.refused_tar(parts[0]),
             f"{parts[1]}: is missing ({parts[2].name} exists); copy every part of the "
             "bundle; get the missing part")

        # Hostile members after a good signed head.
        hostile = {
            "dotdot": (member("../evil", b"x"),
                       "../evil: member name has a '..' component (it would leave the bundle)"),
            "absolute": (member("/etc/evil", b"x"),
                         "/etc/evil: member name is an absolute path"),
            "symlink": (member("python/link", None, tarfile.SYMTYPE, "/etc/passwd"),
                        "python/link: is a symbolic link to /etc/passwd"),
            "hardlink": (member("python/hard", None, tarfile.LNKTYPE, "../../etc/passwd"),
                         "python/hard: is a hard link to ../../etc/passwd, which leaves the "
                         "bundle"),
            "device": (member("python/sda", None, tarfile.BLKTYPE),
                       "python/sda: is a block device"),
            "chardev": (member("python/null", None, tarfile.CHRTYPE),
                        "python/null: is a character device"),
            "fifo": (member("python/fifo", None, tarfile.FIFOTYPE), "python/fifo: is a FIFO"),
        }
        for name, (bad, expected) in hostile.items():
            tar = self.tmp / f"{name}.tar"
            tar.write_bytes(tar_bytes(self.head() + [member("sources/locks/2025.2.yaml",
                                                            b"keystone: 28.1.0\n"), bad]))
            case(name, self.refused_tar(tar), f"{tar}: {expected}; {NOT_OURS}")

        # A duplicate member whose second copy differs (and one whose copy does not).
        for differs, data in ((True, b"keystone: 666\n"), (False, b"keystone: 28.1.0\n")):
            tar = self.tmp / f"dup-{differs}.tar"
            lock = "sources/locks/2025.2.yaml"
            tar.write_bytes(tar_bytes(self.head() + [member(lock, b"keystone: 28.1.0\n"),
                                                     member(lock, data)]))
            how = "and the second copy differs" if differs else "(the copies are identical)"
            case(f"duplicate {differs}", self.refused_tar(tar),
                 f"{tar}: {lock}: appears twice in the tar {how}; {NOT_OURS}")

        # An unsigned bundle.
        b = self.copy("unsigned")
        (b / "SHA256SUMS.sig").unlink()
        case("unsigned (dir)", self.refused_dir(b),
             f"{b}/SHA256SUMS.sig: no signature: the bundle is unsigned; verify refuses an "
             "unsigned bundle; create it with --key")
        tar = self.tar_of(b, "unsigned.tar")
        case("unsigned (tar)", self.refused_tar(tar),
             f"{tar}: SHA256SUMS.sig: no signature: the bundle is unsigned; verify refuses an "
             "unsigned bundle; create it with --key")

    def test_links_and_special_files_in_a_folder(self) -> None:
        b = self.copy()
        os.symlink("/etc/passwd", b / "python/link")
        self.assertEqual(self.refused_dir(b), f"{b}/python/link: is a symbolic link; a bundle "
                         "holds regular files only; remove it, or get the bundle again")
        (b / "python/link").unlink()
        os.mkfifo(b / "debs/fifo")
        self.assertEqual(self.refused_dir(b), f"{b}/debs/fifo: is a FIFO; a bundle holds "
                         "regular files only; remove it, or get the bundle again")
        (b / "debs/fifo").unlink()
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(b / "images/sock"))
            self.assertIn("images/sock: is a socket", self.refused_dir(b))
        (b / "images/sock").unlink()
        # A symbolic link in place of a listed file is refused, not followed.
        (b / WHEEL).rename(self.tmp / "wheel")
        os.symlink(self.tmp / "wheel", b / WHEEL)
        self.assertEqual(self.refused_dir(b), f"{b}/{WHEEL}: is a symbolic link; a bundle "
                         "holds regular files only; remove it, or get the bundle again")

    def test_a_hard_link_within_the_bundle_is_refused_too(self) -> None:
        tar = self.tmp / "hl.tar"
        tar.write_bytes(tar_bytes(self.head() + [
            member("python/hard", None, tarfile.LNKTYPE, "sources/locks/2025.2.yaml")]))
        self.assertEqual(self.refused_tar(tar), f"{tar}: python/hard: is a hard link to "
                         f"sources/locks/2025.2.yaml, within the bundle; {NOT_OURS}")

    def test_a_tar_in_the_wrong_order_or_not_a_tar(self) -> None:
        tar = self.tmp / "order.tar"
        tar.write_bytes(tar_bytes([member(sums.MANIFEST, b"{}")] + self.head()))
        self.assertEqual(self.refused_tar(tar), f"{tar}: member 1 is manifest.json, not "
                         f"SHA256SUMS; {NOT_OURS}")
        junk = self.tmp / "junk.tar"
        junk.write_bytes(b"\x01" * 4096)
        self.assertIn(f"{junk}: not a tar, or damaged at byte 0", self.refused_tar(junk))
        empty = self.tmp / "empty.tar"
        empty.write_bytes(b"")
        self.assertEqual(self.refused_tar(empty), f"{empty}: truncated before its first "
                         "member; get the missing bytes or part (copy every part of the "
                         "bundle, whole)")

    def test_data_after_the_end_is_refused(self) -> None:
        tar = self.tar_of(self.good)
        with open(tar, "ab") as out:
            out.write(b"more")
        self.assertEqual(self.refused_tar(tar), f"{tar}: holds data after the end of the tar; "
                         "the parts were joined with something else; get it again")

    def test_a_wrong_namespace_is_named(self) -> None:
        b = self.copy()
        proc = subprocess.run(["ssh-keygen", "-Y", "sign", "-n", "other", "-f", str(self.key)],
                              input=(b / "SHA256SUMS").read_bytes(), capture_output=True,
                              check=True)
        (b / "SHA256SUMS.sig").write_bytes(proc.stdout)
        self.assertIn(f"{b}/SHA256SUMS.sig: is not a signature for namespace airlock-bundle",
                      self.refused_dir(b))


class ManifestTest(BundleCase):
    """A correctly signed bundle whose manifest disagrees with SHA256SUMS is refused."""

    def bundle(self, manifest: dict, files: dict[str, bytes] | None = None) -> Path:
        return bf.make_bundle(self.tmp / "m", files or bf.default_files(), self.key,
                              manifest=manifest)

    def test_disagreements(self) -> None:
        files = bf.default_files()
        base = bf.manifest_for(files)
        wrong_sha = {**base, "artifacts": [dict(a, sha256="0" * 64) if a["path"] == WHEEL
                                           else a for a in base["artifacts"]]}
        missing = {**base, "artifacts": [a for a in base["artifacts"] if a["path"] != WHEEL]}
        foreign = {**base, "artifacts": [dict(a, bundle="older") if a["path"] == WHEEL else a
                                         for a in base["artifacts"]]}
        wrong_size = {**base, "artifacts": [dict(a, size=1) if a["path"] == WHEEL else a
                                            for a in base["artifacts"]]}
        m = "m/manifest.json"
        cases = {
            "sha": (wrong_sha, f"{m}:{WHEEL}: the manifest says sha256 000000000000… but "
                    f"SHA256SUMS says {hashlib.sha256(files[WHEEL]).hexdigest()[:12]}…"),
            "unlisted": (missing, f"{m}:{WHEEL}: is in SHA256SUMS but not among the "
                         "manifest's artifacts"),
            "foreign": (foreign, f"{m}:{WHEEL}: is in SHA256SUMS but the manifest says it "
                        "arrives in bundle older"),
            "size": (wrong_size, f"m/{WHEEL}: is {len(files[WHEEL])} bytes but the manifest "
                     "says 1"),
            "schema": ({**base, "schema": 2}, f"{m}:schema: is 2; this airlock reads schema 1; "
                       "verify with the airlock release that made it"),
        }
        for name, (manifest, expected) in cases.items():
            with self.subTest(case=name):
                shutil.rmtree(self.tmp / "m", ignore_errors=True)
                b = self.bundle(manifest)
                message = self.refused_dir(b).replace(f"{self.tmp}/", "")
                self.assertTrue(message.startswith(expected), message)
                shutil.rmtree(self.tmp / "t.tar", ignore_errors=True)
                tar = self.tar_of(b, f"{name}.tar")
                self.assertIn(expected.split(": ", 1)[1].split(":")[0], self.refused_tar(tar))

    def test_a_delta_names_the_bundles_it_needs(self) -> None:
        files = bf.default_files()
        manifest = bf.manifest_for(files, requires=["airlock-test-0"],
                                   elsewhere={"python/wheels/old-1.0-py3-none-any.whl":
                                              "airlock-test-0"})
        b = self.bundle(manifest)
        result = verify.verify_dir(b, self.allowed)
        self.assertEqual(result.requires, ["airlock-test-0"])
        self.assertEqual(result.principal, "release")
        tar = self.tar_of(b)
        self.assertEqual(verify.verify_tar(tar, self.allowed).requires, ["airlock-test-0"])
        manifest["requires"] = []
        shutil.rmtree(b)
        b = self.bundle(manifest)
        self.assertIn("python/wheels/old-1.0-py3-none-any.whl: arrives in bundle "
                      "airlock-test-0, which \"requires\" does not name", self.refused_dir(b))


class RoundTripTest(BundleCase):
    """folder -> tar (one file, or parts) -> verify and extract -> a folder both tools accept."""

    def test_single_and_parts(self) -> None:
        first = verify.verify_dir(self.good, self.allowed)
        self.assertEqual((first.id, first.version, first.principal, first.files),
                         ("airlock-test-1", "2025.2-1", "release", 7))
        single = tarstream.write(self.good, self.tmp / "one.tar")
        self.assertEqual(single, [self.tmp / "one.tar"])
        parts = tarstream.write(self.good, self.tmp / "split.tar", 10 * 1024)
        self.assertEqual(parts, [self.tmp / f"split.tar.{i:03d}" for i in range(len(parts))])
        self.assertTrue(all(p.stat().st_size == 10240 for p in parts[:-1]))
        self.assertEqual(b"".join(p.read_bytes() for p in parts), single[0].read_bytes())
        for name, path in (("one", single[0]), ("split", parts[0]),
                           ("split-base", self.tmp / "split.tar")):
            with self.subTest(tar=name):
                dest = self.tmp / f"x-{name}"
                progress: list[tuple[int, int, int, int]] = []
                got = verify.verify_tar(path, self.allowed, extract=dest,
                                        progress=lambda *a, seen=progress: seen.append(a))
                self.assertEqual((got.id, got.files, got.bytes), (first.id, 7, first.bytes))
                self.assertEqual(progress[-1][2], progress[-1][3])
                again = verify.verify_dir(dest, self.allowed)
                self.assertEqual(again.manifest, first.manifest)
                proc = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=dest,
                                      capture_output=True, text=True)
                self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
                self.assertEqual(proc.stdout.count(": OK"), 7)
                self.assertEqual(oct(dest.stat().st_mode & 0o777), "0o755")

    def test_the_tar_is_normalised_in_contract_order(self) -> None:
        tar = self.tar_of(self.good)
        with tarfile.open(tar) as opened:
            members = opened.getmembers()
        files = [m.name for m in members if m.isfile()]
        listed = list(sums.parse((self.good / "SHA256SUMS").read_bytes()))
        self.assertEqual(files, ["SHA256SUMS", "SHA256SUMS.sig", "manifest.json"]
                         + [p for p in listed if p != "manifest.json"])
        for m in members:
            self.assertEqual((m.uid, m.gid, m.mtime, m.uname, m.gname), (0, 0, 0, "", ""))
            self.assertEqual(m.mode, 0o755 if m.isdir() else 0o644)
            self.assertFalse(m.name.startswith("./"))
        # The same folder gives the same bytes.
        self.assertEqual(self.tar_of(self.good, "again.tar").read_bytes(), tar.read_bytes())

    def test_extract_into_an_empty_folder_and_not_into_a_full_one(self) -> None:
        tar = self.tar_of(self.good)
        (self.tmp / "empty").mkdir()
        verify.verify_tar(tar, self.allowed, extract=self.tmp / "empty")
        self.assertTrue((self.tmp / "empty" / WHEEL).is_file())
        with self.assertRaises(AirlockError) as caught:
            verify.verify_tar(tar, self.allowed, extract=self.tmp / "empty")
        self.assertEqual(str(caught.exception), f"{self.tmp}/empty: exists and is not empty; "
                         "choose a new or empty folder to extract into")

    def test_an_interrupted_verify_extracts_nothing(self) -> None:
        tar = self.tar_of(self.good)
        dest = self.tmp / "dest"

        def interrupt(*_args: int) -> None:
            raise KeyboardInterrupt

        # The interrupt comes from the progress callback: a real Ctrl-C at a chosen point.
        with self.assertRaises(KeyboardInterrupt):
            verify.verify_tar(tar, self.allowed, extract=dest, progress=interrupt)
        self.assertEqual(sorted(os.listdir(self.tmp)), ["b.tar"])


if __name__ == "__main__":
    unittest.main()
