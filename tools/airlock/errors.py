"""The one error type a user sees.

A user's mistake (bad YAML, unknown ref, a patch that does not apply) must end
in a single line that names the file or item, says what is wrong and what to
do, and a non-zero exit code; never a traceback. Every module raises
:class:`AirlockError` for such cases and the CLI prints ``str(error)``.
"""

from __future__ import annotations

from airlock.urls import redact


class AirlockError(Exception):
    """A failure the user can act on, rendered as one line.

    ``where`` names the file (with ``:line`` or ``:key`` when known) or the
    item; ``what`` says what is wrong; ``fix`` says what to do about it.
    ``exit_code`` lets the CLI tell user errors (1) from failures of an
    external tool or service (2).
    """

    exit_code = 1

    def __init__(self, where: str, what: str, fix: str | None = None) -> None:
        self.where = where
        self.what = what
        self.fix = fix
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.where}: {self.what}" if self.where else self.what
        if self.fix:
            text += f"; {self.fix}"
        # One line, always: an embedded newline would break the contract;
        # and never a credential, whatever URL a tool's message quoted.
        return redact(" ".join(text.split("\n")))


class ToolError(AirlockError):
    """An external tool or service (git, docker, a registry) failed."""

    exit_code = 2


class ErrorList(AirlockError):
    """Several independent user errors found in one pass (validation).

    Printed as one line per error, each complete on its own.
    """

    def __init__(self, errors: list[AirlockError]) -> None:
        self.errors = list(errors)
        # The most serious member decides: all unreachable repositories is a
        # tool failure (2), any user mistake among them still at least 1.
        self.exit_code = max((e.exit_code for e in self.errors), default=1)
        Exception.__init__(self, "\n".join(str(e) for e in self.errors))
        self.where, self.what, self.fix = "", "", None

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class InternalError(AirlockError):
    """Something airlock did not expect: a bug, reported as one line, not a traceback."""

    exit_code = 3
