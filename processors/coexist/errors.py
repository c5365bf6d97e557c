"""Errors of provider migration (coexistence), part of the processors tree.

    ProcessorError
    └── CoexistError
        ├── InvalidImport        a link or price import the caller got wrong; names the line (400)
        ├── InvalidChange        an authority change that makes no sense as asked, e.g. a planned
        │                        cut-over in the past, an unknown provider, a bad time (400)
        ├── LinkConflict         a link that contradicts an existing one (409)
        ├── AuthorityConflict    a change the cohort's current authority forbids, e.g. cutting
        │                        over twice, rolling back what was never cut over (409)
        └── MigrationNotFound    an unknown billing account, cohort, run or link (404)

Every error is raised before anything is written, or inside the transaction it rolls back: a
refused request changes nothing.
"""

from __future__ import annotations

from processors.errors import ProcessorError

__all__ = [
    "AuthorityConflict",
    "CoexistError",
    "InvalidChange",
    "InvalidImport",
    "LinkConflict",
    "MigrationNotFound",
]


class CoexistError(ProcessorError):
    pass


class InvalidImport(CoexistError):
    """``line`` is the CSV line (the header is line 1) or the JSON item (from 1)."""

    def __init__(self, message: str, *, line: int | None = None, unit: str = "line") -> None:
        self.line = line
        super().__init__(f"{unit} {line}: {message}" if line is not None else message)


class InvalidChange(CoexistError):
    pass


class LinkConflict(CoexistError):
    pass


class AuthorityConflict(CoexistError):
    pass


class MigrationNotFound(CoexistError):
    pass
