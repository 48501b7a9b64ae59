"""Which finalisation hook changed what in the staged output.

A finalisation hook may write or remove files in `outcome.staging_dir` (a
site's checksum list, an archive stamp). The runner saw only that the output
had changed between the plugin's end and its promotion, and so every run of a
site with a checksum hook warned that "a finalisation hook or a process the
plugin left running wrote it". A look at the folder before and after each
installed module's implementation tells whose change it was: what a hook adds
is its documented right and goes to the run log; a hook that changes or
removes a file the plugin wrote is a warning naming the module; a change made
while no installed hook ran is still the warning about a process the plugin
left running. The built-in hooks only read the output, and are not watched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator
from pathlib import Path

from mdivicomtools.runner.fingerprint import Fingerprint, TreeChanges, compare, fingerprint


class HookWrites:
    """The changes each installed finalisation hook made to the staged output."""

    def __init__(self, staging_dir: Path, builtin: Collection[str]) -> None:
        self.staging_dir = staging_dir
        self.builtin = frozenset(builtin)
        #: (module, what changed while it ran), in the order the hooks ran
        self.by_module: list[tuple[str, TreeChanges]] = []

    @contextlib.contextmanager
    def watch(self, module: str) -> Iterator[None]:
        """Around one implementation of `module` (HookManager.call's `watch`)."""
        before = None if module in self.builtin else self._look()
        try:
            yield
        except KeyboardInterrupt:
            raise  # nothing is promoted: no look that would hold up the stop
        except BaseException:
            self._note(module, before)  # what it wrote before it raised is its doing too
            raise
        self._note(module, before)

    def _note(self, module: str, before: Fingerprint | None) -> None:
        after = self._look() if before is not None else None
        if before is not None and after is not None:
            changes = compare(before, after)
            if changes:
                self.by_module.append((module, changes))

    def _look(self) -> Fingerprint | None:
        try:
            return fingerprint(self.staging_dir)
        except OSError:  # the output cannot be listed: the inventory hook says so
            return None

    def unexplained(self, changes: TreeChanges) -> TreeChanges:
        """What of `changes` no watched hook made."""
        made = {
            path
            for _, change in self.by_module
            for path in (*change.changed, *change.added, *change.removed)
        }
        return TreeChanges(
            changed=[p for p in changes.changed if p not in made],
            added=[p for p in changes.added if p not in made],
            removed=[p for p in changes.removed if p not in made],
        )

    def reports(self, plugin_wrote: Collection[str]) -> tuple[list[str], list[str]]:
        """(warnings, log lines): a warning for each module that changed or removed a
        file of `plugin_wrote` (the output as the plugin left it), a log line for
        what else each module changed (the files it added)."""
        warnings, lines = [], []
        for module, change in self.by_module:
            touched = TreeChanges(
                changed=[p for p in change.changed if p in plugin_wrote],
                added=[],
                removed=[p for p in change.removed if p in plugin_wrote],
            )
            own = TreeChanges(
                changed=[p for p in change.changed if p not in plugin_wrote],
                added=change.added,
                removed=[p for p in change.removed if p not in plugin_wrote],
            )
            if touched:
                warnings.append(
                    f"finalisation hook {module!r} changed what the plugin wrote "
                    f"({touched.describe(limit=5)}); the output was listed again"
                )
            if own:
                lines.append(
                    f"finalisation hook {module!r} wrote into the output "
                    f"({own.describe(limit=5)}); the output was listed again"
                )
        return warnings, lines
