"""Whether a built image runs what an operator runs from it: ``airlock check``.

One container per platform (arm64 under QEMU), no network, as the image's
own user. Inside, one Python process of the image's venv:

- loads every console script of the service's own distribution (the entry
  point's module imports and its function is there), so that each
  ``nova-*`` command would start;
- imports the module of every WSGI script airlock-venv wrote;
- starts every Python script in the venv's ``bin`` (the console scripts of
  every installed distribution, not only the service's, and the WSGI
  scripts), each in its own process with ``--help``, then ``--version``
  (under emulation: imports each one's module and function, unless asked
  to start them too);
  a script that accepts neither (``lockutils-wrapper`` runs its argument)
  passes when its module imports alone. This is what proves that
  images/venv-builder/slim.toml removed nothing a process needs. A script
  whose missing module no installed distribution provides (pecan's
  ``gunicorn_pecan`` without gunicorn) is reported as unavailable, not
  failed: slim removes parts of installed distributions, never a whole one;
- imports what ``images/<service>/service.yaml`` lists under
  ``checks: imports`` (``libvirt`` and ``nova.virt.libvirt.driver`` for
  nova) and runs its ``checks: commands`` (``qemu-img --version``), each
  of which must exit 0. Under QEMU user emulation (arm64 on an amd64
  host) a command must be there and start, but its exit is only reported:
  setuid (sudo) and some kernel interfaces (iptables' nft netlink) are the
  host's there, and the native platform's run judges them.

The container prints one JSON document; every failure is a line of it.
Loading modules is what an ``ImportError: libfoo.so.N`` shows in, so a
library the image lacks fails here, at build time, not at the site.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from airlock.data import platforms as platforms_mod
from airlock.data import services as services_mod
from airlock.data.services import Service
from airlock.errors import AirlockError, ToolError
from airlock.ext import containers, registry

VENV = "/var/lib/openstack"
# One container starts every script of the venv: neutron's forty under QEMU
# take minutes, not the seconds of a smoke test.
CHECK_TIMEOUT = 3600
# Runs in the image's venv; argv[1] is the JSON of what to check.
SCRIPT = r"""
import importlib, importlib.metadata as md, json, os, subprocess, sys
want = json.loads(sys.argv[1])
failures, checked = [], 0
# How a target ("module:attr.attr") loads, here and alone in a fresh
# interpreter (how the process really starts): one text, run by both.
# "from pkg import sub" (charset_normalizer's script) names a submodule
# the package itself never imports: an attribute missing from a module is
# imported as its submodule, as that statement does.
LOAD = ("import importlib, types\n"
        "def load(target):\n"
        "    mod, _, attr = target.partition(':')\n"
        "    obj = importlib.import_module(mod.strip())\n"
        "    for part in filter(None, attr.strip().split('.')):\n"
        "        if not hasattr(obj, part) and isinstance(obj, types.ModuleType):\n"
        "            importlib.import_module(obj.__name__ + '.' + part)\n"
        "        obj = getattr(obj, part)\n")
exec(LOAD)
ALONE = LOAD + "import sys\nload(sys.argv[1])\n"
def alone(target):
    # None when target loads in a fresh interpreter, else its last error line.
    done = subprocess.run([sys.executable, "-c", ALONE, target], stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
    if not done.returncode:
        return None
    return (done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""])[0]
def loads(target):
    # None when target loads here or, failing that, alone; else the error line.
    # Loaded together, entry points can clash (oslo.service lets one
    # process pick one backend): a failure here is judged alone.
    try:
        load(target)
        return None
    except BaseException:
        return alone(target)
def check(kind, name, target):
    global checked
    checked += 1
    last = loads(target)
    if last is not None:
        failures.append(f"{kind} {name}: {last}"[:400])
try:
    entry_points = md.distribution(want["distribution"]).entry_points
except md.PackageNotFoundError:
    failures.append(f"distribution {want['distribution']}: not installed in the venv")
    entry_points = []
for ep in entry_points:
    if ep.group == "console_scripts":
        check("console script", ep.name, ep.value)
bindir = os.path.join(want["venv"], "bin")
for name in sorted(os.listdir(bindir)):
    path = os.path.join(bindir, name)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read(4096)
    except (OSError, UnicodeDecodeError):
        continue
    if "written by airlock-venv" not in text:
        continue
    module = next((line.split()[1] for line in text.splitlines()
                   if line.startswith("from ") and " import " in line), None)
    if module:
        check("wsgi script", name, module)
for module in want["imports"]:
    check("import", module, module)
# Every script of the venv starts: --help, else --version, else its module
# imports alone. Two at a time: each is a whole interpreter (slow under QEMU).
def script_target(path):
    # "module:function" of a console script as uv writes it ("from m import f").
    with open(path, encoding="utf-8") as handle:
        line = next((l for l in handle.read(4096).splitlines()
                     if l.startswith("from ") and " import " in l), "")
    return f"{line.split()[1]}:{line.split(' import ', 1)[1].strip()}" if line else None
def missing(last):
    # "No module named 'x.y'" for a module no installed distribution provides:
    # the script's own optional dependency was never installed (pecan's
    # gunicorn_pecan wants gunicorn). Not what slim.toml could remove: slim
    # removes parts of installed distributions, never a whole one.
    if "No module named " not in last:
        return None
    name = last.split("No module named ", 1)[1].strip().strip("'\"")
    top = name.split(".")[0]
    return None if top in provided else name
def judged(name, last):
    needed = missing(last)
    if needed:
        return ("unavailable", f"script {name}: needs {needed}, which no installed "
                               f"distribution provides"[:400])
    return ("failure", f"script {name}: {last}"[:400])
def start(name):
    path = os.path.join(bindir, name)
    for flag in ("--help", "--version"):
        try:
            done = subprocess.run([path, flag], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  timeout=want.get("script_timeout", 300))
        except subprocess.TimeoutExpired:
            continue
        if done.returncode == 0:
            return None
        last = (done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""])[0]
        if "Error: No module named" in last or "ImportError" in last or \
                "ModuleNotFoundError" in last:
            return judged(name, last)
    target = script_target(path)
    if not target:
        return ("failure",
                f"script {name}: neither --help nor --version exits 0, and no module to import")
    last = alone(target.partition(":")[0])
    return None if last is None else judged(name, last)
provided = set(md.packages_distributions())
unavailable = []
scripts = []
for name in sorted(os.listdir(bindir)):
    path = os.path.join(bindir, name)
    if os.path.islink(path) or not os.path.isfile(path) or not os.access(path, os.X_OK):
        continue
    with open(path, "rb") as handle:
        first = handle.readline()
    if first.startswith(b"#!") and b"python" in first:
        scripts.append(name)
def imported(name):
    # Under emulation each start is a whole interpreter under QEMU (seconds
    # each, minutes for neutron's forty): the script's module and function
    # load in this one process instead (alone again if that fails).
    target = script_target(os.path.join(bindir, name))
    if not target:
        return start(name)
    last = loads(target)
    return None if last is None else judged(name, last)
from concurrent.futures import ThreadPoolExecutor
if want.get("start_scripts", True):
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(start, scripts))
else:
    results = [imported(name) for name in scripts]
for result in results:
    checked += 1
    if result:
        (unavailable if result[0] == "unavailable" else failures).append(result[1])
emulated = []
for command in want["commands"]:
    checked += 1
    try:
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              timeout=120)
        if done.returncode:
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
            line = f"command {' '.join(command)}: exit {done.returncode} {tail[0]}"[:400]
            # Under QEMU user emulation the kernel is the host's and setuid does
            # not hold: the tool is there and ran; what it asked of the kernel
            # is checked on a native platform.
            (emulated if want.get("emulated") else failures).append(line)
    except BaseException as error:
        failures.append(f"command {' '.join(command)}: {type(error).__name__}: {error}"[:400])
# Modules this process loaded from a source with no bytecode in the image
# (compiled again at every start): what slim.toml's closure missed.
uncompiled = sorted(name for name, module in list(sys.modules.items())
                    if str(getattr(module, "__file__", None) or "").endswith(".py")
                    and getattr(module, "__cached__", None)
                    and not os.path.exists(module.__cached__))
print(json.dumps({"checked": checked, "failures": failures, "emulated": emulated,
                  "scripts": scripts, "unavailable": unavailable, "uncompiled": uncompiled}))
"""


@dataclass(frozen=True)
class Outcome:
    """What one platform of one image showed."""

    platform: str
    checked: int
    failures: tuple[str, ...]
    # Commands that ran but failed under emulation: not failures, reported.
    emulated: tuple[str, ...] = ()
    # The scripts of the venv's bin that were started.
    scripts: tuple[str, ...] = ()
    # Scripts whose own optional dependency no installed distribution
    # provides (never installed, so not removed by slim.toml): reported.
    unavailable: tuple[str, ...] = ()
    # Modules the check's process loaded from a source the image holds no
    # bytecode of: they work, compiled at every start; reported.
    uncompiled: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failures and self.checked > 0


def command(spec: Service, distribution: str, emulated: bool = False,
            start_scripts: bool = True) -> list[str]:
    """The container's command line (pure, for the tests)."""
    want = {"distribution": distribution, "venv": VENV, "imports": list(spec.imports),
            "commands": [list(c) for c in spec.commands], "emulated": emulated,
            "start_scripts": start_scripts}
    return [f"{VENV}/bin/python", "-c", SCRIPT, json.dumps(want, sort_keys=True)]


def run(ref: str, platform: str, spec: Service, distribution: str,
        start_emulated: bool = False) -> Outcome:
    """Check image ``ref`` (by digest) on ``platform``; a broken check run is a ToolError.

    On the native platform every script of the venv is started; under
    emulation its module and function are imported instead (the bytes of a
    pure-Python module are the same on both platforms; what differs, the
    compiled modules, loads either way), unless ``start_emulated``.
    """
    native = platforms_mod.native()
    emulated = native is None or native.platform != platform
    argv = command(spec, distribution, emulated, start_scripts=not emulated or start_emulated)
    output = containers.run(ref, argv, platform=platform, timeout=CHECK_TIMEOUT)
    return parse(output, platform, ref)


def parse(output: str, platform: str, ref: str) -> Outcome:
    """The JSON line the check printed (the last line: imports may print before it)."""
    lines = [line for line in output.strip().splitlines() if line.startswith("{")]
    try:
        doc = json.loads(lines[-1])
        checked = int(doc["checked"])
        failures = tuple(str(f) for f in doc["failures"])
        emulated = tuple(str(f) for f in doc.get("emulated") or ())
        scripts = tuple(str(f) for f in doc.get("scripts") or ())
        unavailable = tuple(str(f) for f in doc.get("unavailable") or ())
        uncompiled = tuple(str(f) for f in doc.get("uncompiled") or ())
    except (IndexError, ValueError, KeyError, TypeError, AttributeError):
        raise ToolError(f"checking {ref} on {platform}", "the check printed no result",
                        "run the image by hand to see why") from None
    return Outcome(platform, checked, failures, emulated, scripts, unavailable, uncompiled)


def check_release(record: dict, release, images_dir, *, services=(), platforms=(),
                  progress=lambda _: None, where: str = "build record",
                  start_emulated: bool = False) -> list[dict]:
    """Check every service image of a build record on each of its platforms.

    ``record`` is one :func:`airlock.image.publish.load_record` checked.
    Rows are plain data: image, platform, status (ok, failed), checked, and
    the failures. An image that is not in the registry (built, not yet
    published) cannot be run: its rows say so. The selection is applied
    before the registry is asked, so ``--platform`` that selects nothing is
    a usage error, not a wait on the registry.
    """
    rows = []
    for number, image in enumerate(record.get("images", [])):
        if not image.get("service") or (services and image["image"] not in services):
            continue
        name = image["image"]
        if name not in release.services:
            # The name becomes a path (images/<name>/service.yaml): a record
            # edited to '../../x' must not read files outside the images.
            raise AirlockError(f"{where}:images[{number}].image",
                               f"{name[:80]!r} is not a service of release {release.name}",
                               "run airlock build again (the build record is its output)")
        selected = [p for p in image.get("platforms", []) if not platforms or p in platforms]
        if not selected:
            continue
        spec = services_mod.load(images_dir, name)
        component = release.components.get(name)
        distribution = component.component.package if component else name
        ref = f"{image['ref'].split('@')[0]}@{image['digest']}"
        present = registry.digest(ref) is not None
        for platform in selected:
            row = {"image": name, "platform": platform, "ref": ref, "checked": 0}
            if not present:
                row.update(status="failed", failures=["not in the registry: run airlock "
                                                      "publish first"])
            else:
                try:
                    outcome = run(ref, platform, spec, distribution, start_emulated)
                    row.update(status="ok" if outcome.ok else "failed",
                               checked=outcome.checked, failures=list(outcome.failures),
                               emulated=list(outcome.emulated),
                               unavailable=list(outcome.unavailable),
                               uncompiled=list(outcome.uncompiled))
                except ToolError as error:
                    row.update(status="failed", failures=[str(error)])
            progress(f"{name} {platform}: {row['status']} ({row['checked']} checks)"
                     + "".join(f"\n  {f}" for f in row["failures"])
                     + "".join(f"\n  under emulation, not judged: {f}"
                               for f in row.get("emulated", []))
                     + "".join(f"\n  not installed, not judged: {f}"
                               for f in row.get("unavailable", []))
                     + (f"\n  loaded without bytecode (compiled at every start): "
                        f"{len(row['uncompiled'])} modules: "
                        f"{', '.join(row['uncompiled'][:8])}"
                        + (", ..." if len(row["uncompiled"]) > 8 else "")
                        if row.get("uncompiled") else ""))
            rows.append(row)
    return rows
