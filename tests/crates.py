"""Validate an exported RO-Crate with roc-validator, offline.

The validator fetches the RO-Crate JSON-LD context over the network (through
rdflib's urlopen and through its own HTTP requester). The `rocrate` package
ships that context; these tests serve it for the context URL and refuse any
other network access, so a crate that needs more than the context fails.
"""

from __future__ import annotations

import email.message
import io
import urllib.response
from pathlib import Path

import pytest

CONTEXT_URL = "https://w3id.org/ro/crate/1.1/context"


def _context() -> bytes:
    import rocrate

    return (Path(rocrate.__file__).parent / "data" / "ro-crate.jsonld").read_bytes()


def serve_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """Serve the shipped RO-Crate context to rdflib and to roc-validator; nothing else."""
    import rdflib._networking
    import requests
    from rocrate_validator.utils.http import HttpRequester

    data = _context()

    def urlopen(request, *args, **kwargs):
        url = getattr(request, "full_url", request)
        if not str(url).startswith(CONTEXT_URL):
            raise OSError(f"the test is offline; refused {url}")
        headers = email.message.Message()
        headers["Content-Type"] = "application/ld+json"
        return urllib.response.addinfourl(io.BytesIO(data), headers, url, 200)

    def get(self, url, *args, **kwargs):
        if not str(url).startswith(CONTEXT_URL):
            raise OSError(f"the test is offline; refused {url}")
        response = requests.models.Response()
        response.status_code = 200
        response._content = data
        response.url = url
        response.headers["Content-Type"] = "application/ld+json"
        return response

    monkeypatch.setattr(rdflib._networking, "urlopen", urlopen)
    # HttpRequester delegates `get` to its session; the class has no attribute to replace
    monkeypatch.setattr(HttpRequester, "get", get, raising=False)


def validation_problems(crate_dir: Path) -> list[str]:
    """Problems at the required level of the Process Run Crate 0.5 profile (empty: valid)."""
    from rocrate_validator import models, services

    settings = services.ValidationSettings(
        rocrate_uri=str(crate_dir),
        profile_identifier="process-run-crate-0.5",
        requirement_severity=models.Severity.REQUIRED,
    )
    result = services.validate(settings)
    problems = [f"{issue.check.identifier}: {issue.message}" for issue in result.get_issues()]
    assert result.passed() == (not problems)
    return problems
