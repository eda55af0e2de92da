"""The one owner of ``ssh-keygen``: sign a bundle's SHA256SUMS, and verify that signature.

A bundle is signed offline with an OpenSSH key (``ssh-keygen -Y sign``) in
a namespace of airlock's own, and verified against an ``allowed_signers``
file: no network, no keyserver, a tool every site already has.

Neither call may hang or print a traceback. ``ssh-keygen`` asks for a
passphrase on the terminal; airlock runs it with no terminal to ask on
(stdin is /dev/null and ``SSH_ASKPASS_REQUIRE=force`` with an askpass that
fails), so a passphrase-protected key is one line saying what to do
instead. A key loaded in ssh-agent is used through ``SSH_AUTH_SOCK`` as
ssh-keygen does itself (pass the ``.pub``). Each failure of verification
is told apart: a signer not in allowed_signers, data changed after
signing, a signature that is no signature, an allowed_signers file that
is no such file.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

from airlock import files
from airlock.errors import AirlockError
from airlock.ext import exec as ext_exec

NAMESPACE = "airlock-bundle"
TIMEOUT = 60.0
# What is signed is SHA256SUMS: one line per artifact, far below this.
DATA_LIMIT = 256 * files.MiB
SIGNATURE_LIMIT = 64 * 1024
ALLOWED_LIMIT = files.DATA_LIMIT
ARMOR = b"-----BEGIN SSH SIGNATURE-----"
ALLOWED_FORMAT = f'one "principal namespaces="{NAMESPACE}" ssh-ed25519 AAAA..." a line'


def _env() -> dict[str, str]:
    """This environment, with no way for ssh-keygen to ask for a passphrase.

    ``SSH_ASKPASS_REQUIRE=force`` makes ssh-keygen ask the askpass program
    instead of the terminal, even when there is one; /bin/false answers
    nothing, so an encrypted key fails at once. ``SSH_AUTH_SOCK`` is kept:
    a key held by ssh-agent signs without a passphrase.
    """
    askpass = shutil.which("false") or "/bin/false"
    return ext_exec.environ(SSH_ASKPASS=askpass, SSH_ASKPASS_REQUIRE="force",
                            DISPLAY=os.environ.get("DISPLAY", ""))


def _check_key(key: Path) -> None:
    where = str(key)
    try:
        st = os.stat(key)
    except FileNotFoundError:
        raise AirlockError(where, "no such key file",
                           "pass an OpenSSH private key file (or its .pub with the key "
                           "loaded in ssh-agent)") from None
    except OSError as error:
        raise AirlockError(where, f"cannot read the key file: {error.strerror}",
                           "check the path and its permissions") from None
    if not stat.S_ISREG(st.st_mode):
        raise AirlockError(where, "is not a regular file",
                           "pass an OpenSSH private key file (or its .pub with the key "
                           "loaded in ssh-agent)")


def sign(key: Path, data: Path) -> bytes:
    """The armored SSH signature of the file ``data`` by ``key`` in :data:`NAMESPACE`.

    The data goes to ssh-keygen on stdin and the signature comes back on
    stdout: nothing is written beside ``data`` (ssh-keygen would write
    ``data.sig`` itself, over whatever is there).
    """
    key = Path(key)
    _check_key(key)
    content = files.read_bytes(data, limit=DATA_LIMIT)
    proc = ext_exec.run(["ssh-keygen", "-Y", "sign", "-n", NAMESPACE, "-f", str(key)],
                        where=f"{key}: signing {data}", timeout=TIMEOUT, env=_env(),
                        input=content, text=False, check=False)
    stderr = proc.stderr.decode("utf-8", "replace")
    if proc.returncode == 0 and proc.stdout.startswith(ARMOR):
        return proc.stdout
    if "are too open" in stderr:
        raise AirlockError(str(key), "is readable by others, so ssh-keygen ignores it",
                           f"chmod 600 {key}")
    if re.search(r"passphrase|Load key", stderr):
        raise AirlockError(str(key), "is protected by a passphrase (or unreadable)",
                           "use an unencrypted key file, or load it in ssh-agent and pass the "
                           ".pub")
    said = ext_exec.last_line(stderr, f"exit code {proc.returncode}")
    raise AirlockError(str(key), f"ssh-keygen cannot sign with it ({said})",
                       "pass an OpenSSH private key file (ssh-keygen -t ed25519 makes one)")


def check_key(key: Path) -> None:
    """Sign a few bytes with ``key`` now: a key that cannot sign fails before any work.

    ``bundle create`` signs at its very end; a passphrase, a key others can
    read or a .pub no ssh-agent holds must cost seconds, not a gathering of
    hours.
    """
    with tempfile.TemporaryDirectory(prefix="airlock-key-") as tmp:
        probe = Path(tmp) / "probe"
        probe.write_bytes(b"airlock bundle create: can this key sign?\n")
        sign(key, probe)


def _fingerprint(sigfile: Path, data: bytes) -> str:
    """The fingerprint of the key that made a signature (for "signed by SHA256:...")."""
    proc = ext_exec.run(["ssh-keygen", "-Y", "check-novalidate", "-n", NAMESPACE,
                         "-s", str(sigfile)], where="ssh-keygen -Y check-novalidate",
                        timeout=TIMEOUT, env=_env(), input=data, text=False, check=False)
    found = re.search(rb"(SHA256:[A-Za-z0-9+/=]+)", proc.stdout + proc.stderr)
    return found.group(1).decode() if found else "an unknown key"


def verify(allowed_signers: Path, signature: bytes, data: bytes, *,
           where: str = "signature", what: str = "the data") -> str:
    """Check ``signature`` over ``data`` against ``allowed_signers``; return the principal.

    ``where`` names the signature (``DIR/SHA256SUMS.sig``) and ``what``
    the signed file, in the one-line errors. The allowed_signers file is
    read once, bounded, as a regular file, and ssh-keygen is given that
    copy (a FIFO or a device would hang it).
    """
    allowed_text = files.read_bytes(allowed_signers, limit=ALLOWED_LIMIT,
                                    fix=f"pass an allowed_signers file ({ALLOWED_FORMAT})")
    if not signature.lstrip().startswith(ARMOR):
        raise AirlockError(where, "is not an SSH signature (no BEGIN SSH SIGNATURE line)",
                           "get the bundle again")
    if len(signature) > SIGNATURE_LIMIT:
        raise AirlockError(where, "is too large for an SSH signature", "get the bundle again")
    tmp = Path(tempfile.mkdtemp(prefix="airlock-sig-"))
    try:
        sigfile, allowed = tmp / "sig", tmp / "allowed_signers"
        sigfile.write_bytes(signature)
        allowed.write_bytes(allowed_text)
        found = ext_exec.run(["ssh-keygen", "-Y", "find-principals", "-f", str(allowed),
                              "-n", NAMESPACE, "-s", str(sigfile)],
                             where="ssh-keygen -Y find-principals", timeout=TIMEOUT,
                             env=_env(), text=False, check=False)
        stderr = _named(found.stderr, allowed, allowed_signers)
        if "parse signature" in stderr or "sshsig" in stderr:
            raise AirlockError(where, f"is not a valid SSH signature "
                               f"({ext_exec.last_line(stderr.split('No principal')[0])})",
                               "get the bundle again")
        bad_line = re.search(rf"{re.escape(str(allowed_signers))}:(\d+): ([^\n]*)", stderr)
        if bad_line:
            raise AirlockError(f"{allowed_signers}:{bad_line.group(1)}",
                               f"not an allowed_signers line ({bad_line.group(2)})",
                               f"fix the file: {ALLOWED_FORMAT}")
        principals = [line for line in found.stdout.decode("utf-8", "replace").splitlines()
                      if line.strip()]
        if found.returncode != 0 or not principals:
            raise AirlockError(where, f"signed by a key not in {allowed_signers} "
                               f"({_fingerprint(sigfile, data)})",
                               "get the bundle from a signer you trust, or add the signer's "
                               "public key to allowed_signers if you trust it")
        said = ""
        for principal in principals:
            checked = ext_exec.run(["ssh-keygen", "-Y", "verify", "-f", str(allowed),
                                    "-I", principal, "-n", NAMESPACE, "-s", str(sigfile)],
                                   where="ssh-keygen -Y verify", timeout=TIMEOUT, env=_env(),
                                   input=data, text=False, check=False)
            if checked.returncode == 0:
                return principal
            said = _named(checked.stderr, allowed, allowed_signers)
        if "namespace" in said:
            raise AirlockError(where, f"is not a signature for namespace {NAMESPACE} "
                               f"({ext_exec.last_line(said)})",
                               "sign with ssh-keygen -Y sign -n " + NAMESPACE)
        if "incorrect signature" in said:
            raise AirlockError(where, f"does not match {what}: it was changed after signing",
                               "the bundle was changed or damaged in transit; get it again")
        raise AirlockError(where, f"does not verify against {allowed_signers} "
                           f"({ext_exec.last_line(said, 'ssh-keygen -Y verify failed')})",
                           "check allowed_signers (namespaces, valid-before/after) or get the "
                           "bundle again")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _named(stderr: bytes, copy: Path, original: Path) -> str:
    """ssh-keygen's words, naming the user's allowed_signers instead of airlock's copy."""
    return stderr.decode("utf-8", "replace").replace(str(copy), str(original))
