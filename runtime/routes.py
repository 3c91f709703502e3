"""Which route a request takes, decided on one canonical path that is also the path the upstream receives.

A pre-filter that decides on the raw request target while the upstream routes on a decoded one can be walked
around (``/v1/chat/completion%73``, ``/v1/chat/completions/``, ``/V1/CHAT/COMPLETIONS``, ``//v1/./chat/completions``).
So the target is made canonical once: percent-decoded once (a ``%`` left after that, i.e. double encoding, is
refused), dot segments resolved, empty segments and the trailing slash dropped; backslashes, ``;`` and control
characters are refused. Routes are matched on the canonical path ignoring case, and the upstream is sent
exactly the canonical path (re-encoded), so both sides see one route.

Body-carrying methods reach the upstream only on a screened generation route (POST) or on a route the operator
lists (``--pass-route``; a few routes that generate nothing are listed by default): everything else is refused,
so a generation route this module does not know cannot carry unscreened text. GET, HEAD and OPTIONS are
forwarded, without a body.
"""
from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from .httpconn import RequestError

# generation routes, matched as the end of the canonical path at a segment boundary (so /v1/chat/completions,
# /chat/completions and Azure's /openai/deployments/NAME/chat/completions all match); longest first
GENERATION_ROUTES = (
    ("/chat/completions", "chat"),
    ("/completions", "completions"),
    ("/responses", "responses"),
    ("/api/chat", "ollama_chat"),
    ("/api/generate", "ollama_generate"),
)
# POST routes of the OpenAI, Ollama and llama.cpp APIs that generate nothing: forwarded without screening
DEFAULT_PASS_ROUTES = ("/v1/embeddings", "/embeddings", "/api/embed", "/api/embeddings", "/api/show",
                       "/tokenize", "/detokenize")
BODYLESS_METHODS = ("GET", "HEAD", "OPTIONS")
_REFUSED_CHARS = frozenset("\\;%") | frozenset(chr(c) for c in range(0x21)) | {"\x7f"}
# characters left as they are when the canonical path is encoded again for the upstream
_PATH_SAFE = "/:@!$&'()*+,=~-._"


@dataclass(frozen=True)
class Target:
    """A request target made canonical: ``path`` decides the route and is what the upstream receives."""

    path: str
    query: str = ""

    @property
    def key(self) -> str:
        """The path as routes are matched: case-insensitive."""
        return self.path.lower()

    @property
    def forward(self) -> str:
        """The target sent upstream: the canonical path, percent-encoded again, and the query unchanged."""
        encoded = urllib.parse.quote(self.path, safe=_PATH_SAFE)
        return encoded + ("?" + self.query if self.query else "")


def canonical_target(raw: str) -> Target:
    """Raw request target -> ``Target``; ``RequestError`` (400 ``bad_path``) when it has no single meaning."""
    if not raw.startswith("/"):
        raise RequestError(400, "bad_path", "the request target must be a path starting with '/' "
                                            "(this is not a forward proxy)")
    if "#" in raw:
        raise RequestError(400, "bad_path", "the request target must not contain a fragment ('#')")
    path, _, query = raw.partition("?")
    try:
        decoded = urllib.parse.unquote(path, errors="strict")
    except UnicodeDecodeError:
        raise RequestError(400, "bad_path", "the path's percent-encoding is not UTF-8") from None
    bad = sorted(set(decoded) & _REFUSED_CHARS)
    if bad:
        what = "percent-encoded twice" if bad == ["%"] else f"holds {''.join(bad)!r}"
        raise RequestError(400, "bad_path", f"the path {what}: refused, an upstream could read it otherwise")
    segments: list[str] = []
    for segment in decoded.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if not segments:
                raise RequestError(400, "bad_path", "the path climbs above the root ('..')")
            segments.pop()
        else:
            segments.append(segment)
    return Target("/" + "/".join(segments), query)


def generation_kind(target: Target) -> str | None:
    """The API a path generates with ("chat", "completions", "responses", "ollama_chat", "ollama_generate")."""
    key = target.key
    for suffix, kind in GENERATION_ROUTES:
        if key.endswith(suffix):  # suffixes start with '/': a segment boundary
            return kind
    return None


def pass_routes(extra: tuple[str, ...] | list[str] = ()) -> frozenset[str]:
    """The default pass routes plus the operator's (``--pass-route``), as canonical match keys."""
    return frozenset(canonical_target(r if r.startswith("/") else "/" + r).key
                     for r in (*DEFAULT_PASS_ROUTES, *extra))
