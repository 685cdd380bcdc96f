"""What made an output, recorded in it and checked before it is reused.

A heatmap's provenance (in its NIfTI header, :func:`~tonno_engine.data.nifti.read_provenance`) holds
``parts``: the checkpoint's SHA-256, the method, the reconstruction settings that change the result
(not the batch size or ``compile``), the input's files (count, bytes, newest mtime) and tonno's version;
``fingerprint`` is the SHA-256 of ``parts``. ``--continue`` skips an output only when its fingerprint
equals the one this run would write; :func:`differences` says what differs when it does not. Beside ``parts``
(named, not compared: a heatmap made before they were recorded keeps its fingerprint) stand the paths of the
``checkpoint`` and of the input ``image``; :func:`input_change` uses the latter to tell a heatmap of another
image from one whose image changed since.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..base.versions import versions
from ..data.dicomweb import is_dicomweb_url, parse_series_url, public_url
from ..data.images import input_files
from ..data.nifti import read_provenance

#: settings that do not change a heatmap beyond float rounding, left out of its fingerprint
NEUTRAL_SETTINGS = ("batch_size", "compile")


@functools.cache
def tonno_version() -> str | None:
    return versions(("napari-tonno",))["napari-tonno"]


def input_signature(image) -> dict:
    """The files behind an input (every image of a case of several, given as a tuple): how many, their total bytes
    and the newest modification time (ns); a DICOMweb input by its URL (without credentials) and UIDs."""
    images = tuple(image) if isinstance(image, tuple | list) else (image,)
    if len(images) == 1 and is_dicomweb_url(images[0]):
        ref = parse_series_url(str(images[0]))
        return {"url": ref.url, "study": ref.study, "series": ref.series}
    files = [f for one in images for f in input_files(one)]
    stats = [f.stat() for f in files if f.exists()]
    return {"files": len(stats), "bytes": sum(s.st_size for s in stats),
            "mtime_ns": max((s.st_mtime_ns for s in stats), default=0)}


def heatmap_parts(*, checkpoint_sha256: str, spec, settings, image) -> dict:
    """The parts of a heatmap's fingerprint (see module doc); ``spec`` a ``MethodSpec``,
    ``settings`` the resolved ``ReconstructionSettings`` of the batch."""
    chosen = {k: v for k, v in settings.as_dict().items() if k not in NEUTRAL_SETTINGS}
    chosen["directions"] = settings.directions_for(spec.default_directions)
    return {"checkpoint_sha256": checkpoint_sha256, "method": spec.as_dict(), "settings": chosen,
            "input": input_signature(image), "tonno": tonno_version()}


def fingerprint(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Provenance:
    """What goes into an output's header: ``parts``, their ``fingerprint``, when the run that made it began and,
    where given, the path of the ``checkpoint`` it used and of the input ``image`` it was made from (to name them;
    their signatures, in ``parts``, are what is compared)."""

    parts: dict
    run_started: str
    checkpoint: str | None = None
    image: str | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.parts)

    def as_dict(self) -> dict:
        made = {"fingerprint": self.fingerprint, "run_started": self.run_started, "parts": self.parts}
        return made | {k: v for k, v in (("checkpoint", self.checkpoint), ("image", self.image)) if v}


def input_path(image: str | Path) -> str:
    """How a provenance names an input: its absolute path (symbolic links resolved), or its URL."""
    if is_dicomweb_url(image):
        return public_url(str(image))
    return str(Path(image).resolve())


def input_change(provenance: dict, image) -> str:
    """Why an output with ``provenance`` does not belong to the input ``image`` as it is now: ``""`` when the input's
    files are those it was made from; "made from another image: X (recorded: …) ≠ Y" when it records another input
    path; else (the same path, or an output that does not record its input's path) that ``image`` changed since.
    A case of several images is given as the tuple of them (its output records the first one's path)."""
    recorded = (provenance.get("parts") or {}).get("input")
    if not recorded:
        return ""
    now = input_signature(image)
    if recorded == now:
        return ""
    image = image[0] if isinstance(image, tuple | list) else image
    made_from = provenance.get("image")
    if made_from and made_from != input_path(image):
        return (f"made from another image: {made_from} (recorded: {recorded.get('files')} files, "
                f"{recorded.get('bytes')} bytes) ≠ {image} ({now['files']} files, {now['bytes']} bytes); reconstruct "
                "it from this image")
    return f"stale heatmap: the image {image} changed after it was made; reconstruct it again"


def differences(recorded: dict | None, expected: dict) -> str:
    """Why an output with provenance ``recorded`` is not the one ``expected`` parts would make:
    ``""`` when the fingerprints match, else e.g. ``"settings.directions 2000 → 500, checkpoint"``."""
    if recorded is None:
        return "no provenance (made by an older tonno or another tool)"
    if recorded.get("fingerprint") == fingerprint(expected):
        return ""
    old = recorded.get("parts", {})
    out = []
    for key, new in expected.items():
        before = old.get(key)
        if before == new:
            continue
        if isinstance(new, dict) and isinstance(before, dict):
            out += [f"{key}.{k} {before.get(k)!r} → {v!r}" for k, v in new.items() if before.get(k) != v]
        else:
            out.append("checkpoint" if key == "checkpoint_sha256" else f"{key} {before!r} → {new!r}")
    return ", ".join(out) or "fingerprint differs"


def short_sha(sha256: str) -> str:
    """The first 12 hex digits of a SHA-256, for messages."""
    return f"{sha256[:12]}…"


def heatmap_checkpoints(heatmaps: list[Path]) -> dict[str, list[Path]]:
    """The checkpoint SHA-256 each existing tonno heatmap records → those heatmaps (heatmaps without provenance,
    such as another tool's, are not counted)."""
    found: dict[str, list[Path]] = {}
    for path in heatmaps:
        sha = ((read_provenance(path) or {}).get("parts") or {}).get("checkpoint_sha256") if path.exists() else None
        if sha:
            found.setdefault(sha, []).append(Path(path))
    return found


def source_mismatches(heatmaps: list[Path], *, calibrated_on: str | None = None, calibration: str = "") -> list[str]:
    """Why ``heatmaps`` and a threshold calibrated on the heatmaps of checkpoint ``calibrated_on`` (a SHA-256 read
    from ``calibration``, e.g. a ``thresholds.json``) do not belong together: heatmaps of several checkpoints, or
    of another checkpoint than the calibration's. ``[]`` when they agree. The one check every command that pairs
    heatmaps with a calibration makes."""
    found = heatmap_checkpoints(heatmaps)
    problems = []
    if len(found) > 1:
        problems.append(f"the heatmaps come from {len(found)} checkpoints: " + "; ".join(
            f"{short_sha(sha)} ({len(paths)}, e.g. {paths[0].name})" for sha, paths in found.items()))
    others = [sha for sha in found if sha != calibrated_on]
    if calibrated_on and others:
        problems.append(f"{calibration} was calibrated on heatmaps of checkpoint {short_sha(calibrated_on)}, but "
                        f"{sum(len(found[s]) for s in others)} of these heatmaps were made by "
                        f"{', '.join(short_sha(s) for s in others)} (e.g. {found[others[0]][0].name})")
    return problems
