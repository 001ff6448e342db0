"""Directories of our own on disk (the store's, the budget's, the secret's): private whatever the umask."""

from __future__ import annotations

import os
from pathlib import Path


def private_directory(directory: Path) -> None:
    """Make `directory` and its missing parents, each 0700 whatever the umask; one that existed keeps its
    mode (it is not ours to change)."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for made in reversed(missing):
        try:
            made.mkdir(mode=0o700)
        except FileExistsError:  # made meanwhile by another process: not ours
            continue
        os.chmod(made, 0o700)  # mkdir's mode is masked by the umask
