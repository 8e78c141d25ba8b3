"""Settings of ``brainmri serve``: one typed place, checked when made."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from brainmri.data.io import check_max_pixels
from brainmri.errors import ConfigError

#: Default pixel limit of one uploaded image: a 5000 x 5000 slice. Far below Pillow's own bomb guard
#: (89 million pixels), so that guard never fires first, and 100 MB as float32 once decoded.
SERVE_MAX_PIXELS = 25_000_000


@dataclass(frozen=True)
class ServeSettings:
    """How ``brainmri serve`` listens and what it accepts.

    Parameters
    ----------
    host : str
        Address to listen on; the loopback address by default.
    port : int
    token : str or None
        When set, every API call must send ``Authorization: Bearer <token>``.
    max_upload_mb : float
        Largest request body, all images together, in MiB.
    max_pixels : int
        Largest pixel count of one image (voxels of a NIfTI file, pixels
        times frames of a DICOM), checked before it is decoded.
    max_files : int
        Most images in one request.
    workers : int
        Threads that read, predict and explain side by side (heatmaps take
        turns); with one torch thread each (``brainmri serve --threads``),
        two workers use the two cores of a small machine.
    queue_size : int
        Requests that may wait for a worker; one more is answered 503.
    keep_uploads : str or None
        Folder where every predicted upload and its result are kept; None
        keeps nothing.
    max_pending_mb : float or None
        Request bodies held in memory at once, all requests together, in
        MiB; a request that does not fit is answered 503 before its body is
        read (:mod:`brainmri.serve.limits`). None: the larger of 100 MiB and
        twice ``max_upload_mb``.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    max_upload_mb: float = 20.0
    max_pixels: int = SERVE_MAX_PIXELS
    max_files: int = 16
    workers: int = 2
    queue_size: int = 32
    keep_uploads: str | None = None
    max_pending_mb: float | None = None

    def __post_init__(self):
        check_max_pixels(self.max_pixels)
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be between 0 and 65535, got {self.port}")
        if not self.max_upload_mb > 0:
            raise ConfigError(f"--max-upload-mb must be a positive number of MiB, got {self.max_upload_mb}")
        if self.max_pending_mb is not None and not self.max_pending_mb >= self.max_upload_mb:
            raise ConfigError(
                f"--max-pending-mb must be at least --max-upload-mb ({self.max_upload_mb:g}), so that one "
                f"request of the largest size fits; got {self.max_pending_mb}"
            )
        for option, value, low in (
            ("--max-files", self.max_files, 1),
            ("--workers", self.workers, 1),
            ("--queue-size", self.queue_size, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{option} must be an integer >= {low}, got {value!r}")
        if self.token is not None and (len(self.token) < 8 or not self.token.isprintable() or " " in self.token):
            raise ConfigError(
                "--token must be at least 8 printable characters without spaces; "
                "make one with: python -c 'import secrets; print(secrets.token_urlsafe())'"
            )

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def pending_mb(self) -> float:
        """``max_pending_mb``, or its default."""
        return max(100.0, 2 * self.max_upload_mb) if self.max_pending_mb is None else self.max_pending_mb

    @property
    def max_pending_bytes(self) -> int:
        return int(self.pending_mb * 1024 * 1024)

    @property
    def local(self) -> bool:
        """Whether ``host`` is reachable from this machine only (a loopback address or ``localhost``)."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False
