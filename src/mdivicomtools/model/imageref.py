"""Image references as the engines parse them: valid, fully qualified, or an image id.

A reference the engines cannot parse (a space, capitals in the repository)
used to pass discovery and fail only when the engine answered 400 at run
time. A short name (`tools:1.0`) is valid but means different images to the
two engines: Docker reads it as `docker.io/library/tools:1.0`, Podman asks
its registries.conf and, without a terminal, may refuse it. The grammar is
the one of distribution/reference, which both engines use.
"""

from __future__ import annotations

import re

#: an image id as Docker (`sha256:<hex>`) or Podman (`<hex>`) spells it; neither
#: engine accepts 64 hex digits as a repository name, so no reference looks like one
_IMAGE_ID = r"(sha256:)?[0-9a-f]{64}"

_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?)"
_PATH_PART = r"(?:[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)"
_TAG = r"(?:[\w][\w.-]{0,127})"
_DIGEST = r"(?:[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})"
#: (patterns are strings, compiled by `re` on first use and cached there: most commands
#: never parse a reference, and compiling this one took a millisecond of every start)
_REFERENCE = rf"(?:{_DOMAIN}/)?{_PATH_PART}(?:/{_PATH_PART})*(?::{_TAG})?(?:@{_DIGEST})?"


def is_image_id(image: str) -> bool:
    """Whether `image` is an image id rather than a reference (`registry/name:tag`).

    Older records of a rerun name the pinned id as `image`; an id split as a
    reference gave crates a name `sha256` and a tag of hex digits.
    """
    return re.fullmatch(_IMAGE_ID, image) is not None


def reference_problem(image: str) -> str | None:
    """Why the engines cannot parse `image` as a reference, or None."""
    if is_image_id(image) or re.fullmatch(_REFERENCE, image):
        return None
    if any(c.isspace() for c in image):
        return "it holds whitespace"
    if re.fullmatch(_REFERENCE, image.lower()):
        return "a repository name must be lowercase"
    return "it is not of the form [registry/]name[:tag][@sha256:digest]"


def named_registry(ref: str) -> str | None:
    """The registry `ref` names, as the engines decide it: the first path component
    when it names a host (a dot, a port or `localhost`); None when it names none."""
    first, slash, _ = ref.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


def registry_of(ref: str) -> str:
    """The registry an image reference is pulled from: the one it names, else Docker Hub."""
    return named_registry(ref) or "docker.io"


def is_pinned(ref: str) -> bool:
    """Whether `ref` names its image by digest (`name@sha256:...`)."""
    return "@sha256:" in ref


def missing_image_fix(ref: str, engine: str) -> str:
    """How to get `ref` onto `engine`, for the message that it is not there.

    An image pinned by digest (`name@sha256:...`) is found by a repository
    digest, which an engine records when it pulls the image from a registry: a
    tar loaded with `docker load` keeps none, and `podman load` gives it another
    one. Telling such a site to load the image sent it round in a circle.
    """
    if not is_pinned(ref):
        return f"`{engine} pull {ref}` (or `{engine} load` from a saved tar)"
    return (
        f"pull it from its registry (`{engine} pull {ref}`): an image pinned by digest is found by "
        f"the digest its registry gave it, which `{engine} load` and `mdivicom images load` "
        "do not keep, so a loaded copy is never taken for it (name the image by tag in the "
        "manifest to run a loaded copy)"
    )


def is_short_name(image: str) -> bool:
    """Whether a valid reference names no registry (`tools:1.0`, `lab/tools`)."""
    return (
        not is_image_id(image)
        and re.fullmatch(_REFERENCE, image) is not None
        and named_registry(image) is None
    )


def short_name_notes(image: str) -> list[str]:
    """The note for a manifest whose image names no registry (see the module)."""
    if not is_short_name(image):
        return []
    hub = f"docker.io/{image}" if "/" in image.split("@", 1)[0] else f"docker.io/library/{image}"
    return [
        f"container.image {image!r} names no registry: Docker reads it as {hub!r}, "
        "Podman may refuse a short name; write it fully qualified (that, or "
        f"'localhost/{image}' for an image built or loaded here)"
    ]
