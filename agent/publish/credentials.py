"""Secrets for the broker and command keys, from files or systemd credentials; never logged.

systemd: ``LoadCredential=mqtt-password:/etc/lews-agent/credentials/mqtt-password`` in the unit makes the
file readable as ``$CREDENTIALS_DIRECTORY/mqtt-password`` by the service only; the unit's
``SetCredential=mqtt-password:\n`` fallback (file missing) reads as empty here, refused by name.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from agent.errors import PublishError


class Secret:
    """Bytes that never show in repr/str/logs."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = value

    def reveal(self) -> bytes:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", len(self._value)))


def credential_path(name: str) -> Path:
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        raise PublishError(
            f"systemd credential {name!r} requested but $CREDENTIALS_DIRECTORY is not set",
            fix=f"add LoadCredential={name}:/path/to/file to the unit, or configure a file instead",
        )
    if "/" in name or name in ("", ".", ".."):
        raise PublishError(f"credential name {name!r} is not a plain name", fix="use a name without '/'")
    return Path(directory) / name


def read_secret(
    *, file: Path | None = None, credential: str | None = None, what: str, secret: bool = True
) -> Secret:
    """Read a key/password. ``secret=True`` refuses files readable or writable by others (mode o+rw);
    ``secret=False`` (public keys) refuses only world-writable files."""
    if (file is None) == (credential is None):
        raise PublishError(
            f"{what}: exactly one of a file or a credential is needed", fix="configure one of them"
        )
    path = credential_path(credential) if credential is not None else Path(file)  # type: ignore[arg-type]
    try:
        st = path.stat()
        data = path.read_bytes()
    except OSError as exc:
        raise PublishError(
            f"{what} file {path} cannot be read: {exc.strerror}",
            fix="check the path and that the agent's user may read it",
        ) from exc
    bad_bits = (stat.S_IROTH | stat.S_IWOTH) if secret else stat.S_IWOTH
    if st.st_mode & bad_bits:
        raise PublishError(
            f"{what} file {path} is {'readable or writable' if secret else 'writable'} by every user "
            f"(mode {stat.S_IMODE(st.st_mode):o})",
            fix=f"chmod {'600' if secret else '644'} {path} (owned by the agent's user)",
        )
    value = data.rstrip(b"\r\n")
    if not value:
        if credential is not None:
            raise PublishError(
                f"{what}: systemd credential {credential!r} is empty (the unit's SetCredential= fallback: "
                "the file LoadCredential= names is missing)",
                fix="install the file the unit's LoadCredential= names (mode 0600), or drop the "
                "credential from the config if the broker needs no password",
            )
        raise PublishError(f"{what} file {path} is empty", fix="put the value on the first line of the file")
    return Secret(value)
