"""DICOMweb in and out (dicomweb-client over requests): QIDO-RS to find a series, WADO-RS to fetch it, STOW-RS to store.

A series is named by ``<base>/studies/<StudyInstanceUID>[/series/<SeriesInstanceUID>]`` where ``<base>`` is the
server's DICOMweb root (e.g. ``https://host/dicom-web``). It is fetched into a cache folder keyed by its UIDs,
``$TONNO_CACHE/dicomweb/<study>/<series>/`` (default ``~/.cache/tonno``), which :mod:`.dicom` then reads like any
series folder; a cached series whose instance count matches the server's is not fetched again. A study URL names
its one image series (several: a :class:`DataError` listing them).

Credentials come from the environment or a netrc file, never from the URL or the command line:
``TONNO_DICOMWEB_TOKEN`` (a bearer token), else ``TONNO_DICOMWEB_USER`` and ``TONNO_DICOMWEB_PASSWORD`` (HTTP
basic), else the netrc entry of the host (``~/.netrc`` or ``$NETRC``; requests reads it). TLS certificates are
verified (``REQUESTS_CA_BUNDLE`` names a private CA). Every failure is a :class:`DataError` naming the URL without
credentials and the cause, never the credentials nor a server's reply body.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ..base.atomic import make_part_folder
from ..base.defaults import DICOMWEB_TIMEOUT
from ..base.errors import DataError, MissingExtra

TOKEN_ENV, USER_ENV, PASSWORD_ENV = "TONNO_DICOMWEB_TOKEN", "TONNO_DICOMWEB_USER", "TONNO_DICOMWEB_PASSWORD"
TIMEOUT_ENV, CACHE_ENV = "TONNO_DICOMWEB_TIMEOUT", "TONNO_CACHE"
#: modalities of series that hold no image a heatmap can be made of
NON_IMAGE_MODALITIES = {"SR", "SEG", "RTSTRUCT", "RTPLAN", "RTRECORD", "PR", "KO", "DOC", "REG", "FID", "RWV",
                        "PLAN", "AU", "ECG", "HD", "SMR"}
_PATH = re.compile(r"^(?P<root>.*?)/studies/(?P<study>[0-9.]+)(?:/series/(?P<series>[0-9.]+))?/?$")
_CREDENTIALS_HINT = (f"set {TOKEN_ENV} (a bearer token), or {USER_ENV} and {PASSWORD_ENV}, or a netrc entry "
                     "for the host")


def is_dicomweb_url(text) -> bool:
    """Whether ``text`` is an ``http(s)://`` URL (a DICOMweb study, series or server root)."""
    return str(text).lower().startswith(("http://", "https://"))


def public_url(url: str) -> str:
    """``url`` without any ``user:password@`` part: how tonno names a server in messages and records."""
    parts = urlsplit(str(url))
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def _refuse_userinfo(url: str) -> None:
    if "@" in urlsplit(str(url)).netloc:
        raise DataError(public_url(url), f"credentials in a URL are refused (they would show in logs and records); "
                                         f"{_CREDENTIALS_HINT}")


@dataclass(frozen=True)
class SeriesURL:
    """A parsed DICOMweb study or series URL: the server's ``root``, the ``study`` and (``None``: the study's one
    image series) the ``series`` UID."""

    root: str
    study: str
    series: str | None = None

    @property
    def url(self) -> str:
        return f"{self.root}/studies/{self.study}" + (f"/series/{self.series}" if self.series else "")

    def __str__(self) -> str:
        return self.url


def parse_series_url(url: str) -> SeriesURL:
    """``<root>/studies/<UID>[/series/<UID>]`` → :class:`SeriesURL`; :class:`DataError` for anything else."""
    _refuse_userinfo(url)
    match = _PATH.match(public_url(url).rstrip("/"))
    if not match:
        raise DataError(public_url(url), "not a DICOMweb study or series URL (<root>/studies/<StudyInstanceUID>"
                                         "[/series/<SeriesInstanceUID>])")
    return SeriesURL(match["root"], match["study"], match["series"])


def _timeout() -> float:
    try:
        return float(os.environ.get(TIMEOUT_ENV, DICOMWEB_TIMEOUT))
    except ValueError:
        return DICOMWEB_TIMEOUT


@contextlib.contextmanager
def client_for(root: str) -> Iterator:
    """A ``DICOMwebClient`` for the server ``root`` with the credentials of the environment or netrc, TLS verified,
    every request bounded by ``$TONNO_DICOMWEB_TIMEOUT`` seconds (default :data:`DICOMWEB_TIMEOUT`) and not retried;
    its connections closed when the ``with`` block ends."""
    _refuse_userinfo(root)
    try:
        import requests
        from dicomweb_client.api import DICOMwebClient
    except ImportError as exc:
        raise MissingExtra("DICOMweb needs the dicom extra: pip install 'napari-tonno[dicom]'") from exc

    with requests.Session() as session:
        session.verify = True
        if os.environ.get(TOKEN_ENV):
            session.headers["Authorization"] = f"Bearer {os.environ[TOKEN_ENV]}"
        elif os.environ.get(USER_ENV):
            session.auth = (os.environ[USER_ENV], os.environ.get(PASSWORD_ENV, ""))
        # else requests reads the host's netrc entry, if any (Session.trust_env)
        client = DICOMwebClient(url=root, session=session, timeout=_timeout())
        client.set_http_retry_params(retry=False)
        yield client


def failure(url: str, exc: BaseException, what: str = "") -> DataError:
    """The :class:`DataError` for a failed request to ``url``: its cause in words (never the reply body, which may
    echo a header). ``what`` (e.g. ``"study"``) names what a 404 did not find."""
    import requests

    where = public_url(url)
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if status == 401:
        cause = f"401 Unauthorized: the server wants credentials ({_CREDENTIALS_HINT})"
    elif status == 403:
        cause = "403 Forbidden: these credentials may not do this here"
    elif status == 404:
        cause = f"404 Not Found: no such {what or 'resource'} on this server"
    elif status is not None:
        cause = f"HTTP {status} {getattr(response, 'reason', '') or ''}".rstrip()
    elif isinstance(exc, requests.exceptions.SSLError):
        cause = "TLS certificate not verified (point REQUESTS_CA_BUNDLE to the CA that signed it)"
    elif isinstance(exc, requests.exceptions.Timeout):
        cause = f"timeout: no answer within {_timeout():g} s (set {TIMEOUT_ENV} to wait longer)"
    elif isinstance(exc, requests.exceptions.ConnectionError):
        cause = "server unreachable (connection refused, or no route to the host)"
    else:
        cause = f"{type(exc).__name__}"
    return DataError(where, cause)


def _request(url: str, call, what: str = ""):
    """``call()``, its failures as :func:`failure`."""
    import requests

    try:
        return call()
    except (requests.exceptions.RequestException, OSError) as exc:
        raise failure(url, exc, what) from None


def _tag(record: dict, keyword: str, tag: str) -> str:
    """A value of a QIDO-RS result (DICOM JSON, keyed by tag)."""
    values = (record.get(tag) or {}).get("Value") or [""]
    return str(values[0])


def find_series(ref: SeriesURL) -> tuple[str, int]:
    """The series ``ref`` names and its instance count (0: the server does not say), found by QIDO-RS;
    :class:`DataError` for a study or series the server does not hold, a series that is not an image series, and a
    study URL whose study holds several image series or none."""
    filters = {"SeriesInstanceUID": ref.series} if ref.series else None
    with client_for(ref.root) as client:
        found = _request(ref.url, lambda: client.search_for_series(study_instance_uid=ref.study, search_filters=filters),
                         "series" if ref.series else "study") or []
    found = [r for r in found if not ref.series or _tag(r, "SeriesInstanceUID", "0020000E") == ref.series]
    if not found:
        raise DataError(ref.url, f"404 Not Found: no such {'series' if ref.series else 'study'} on this server")
    images = [r for r in found if _tag(r, "Modality", "00080060") not in NON_IMAGE_MODALITIES]
    if ref.series and not images:
        raise DataError(ref.url, f"not an image series (Modality {_tag(found[0], 'Modality', '00080060')}): tonno "
                                 "reads CT, MR, PT… image series")
    if len(images) != 1:
        listed = "; ".join(f"{_tag(r, 'SeriesInstanceUID', '0020000E')} ({_tag(r, 'Modality', '00080060')}, "
                           f"{_tag(r, 'SeriesDescription', '0008103E') or 'no description'})" for r in images)
        raise DataError(ref.url, f"{len(images)} image series in this study{': ' + listed if listed else ''}; "
                                 "name one as <study URL>/series/<SeriesInstanceUID>")
    count = _tag(images[0], "NumberOfSeriesRelatedInstances", "00201209")
    return _tag(images[0], "SeriesInstanceUID", "0020000E"), int(count) if count.isdigit() else 0


def cache_root() -> Path:
    """Where fetched series are kept: ``$TONNO_CACHE/dicomweb`` (default ``~/.cache/tonno/dicomweb``)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tonno") / "dicomweb"


@dataclass(frozen=True)
class FetchedSeries:
    """A series fetched from ``url`` (its public form) into ``folder``, with its ``study`` and ``series`` UIDs."""

    url: str
    study: str
    series: str
    folder: Path


def fetch_series(url: str) -> FetchedSeries:
    """Fetch the series a study or series ``url`` names into the cache (WADO-RS), or reuse the cached copy; the
    folder appears complete or not at all. :class:`DataError` as :func:`find_series`, for a failed request, and for
    a series whose instances hold no pixels."""
    ref = parse_series_url(url)
    series, count = find_series(ref)
    folder = cache_root() / ref.study / series
    if folder.is_dir() and (count == 0 or len(list(folder.glob("*.dcm"))) == count):
        return FetchedSeries(ref.url, ref.study, series, folder)
    where = f"{ref.root}/studies/{ref.study}/series/{series}"
    with client_for(ref.root) as client:
        datasets = _request(where, lambda: client.retrieve_series(ref.study, series), "series")
    if not datasets or not all("PixelData" in ds or "FloatPixelData" in ds for ds in datasets):
        raise DataError(where, "not an image series: its instances hold no pixel data")
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = make_part_folder(folder)
    try:
        for ds in datasets:
            _save(ds, work / f"{ds.SOPInstanceUID}.dcm")
        shutil.rmtree(folder, ignore_errors=True)
        work.rename(folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return FetchedSeries(ref.url, ref.study, series, folder)


def _save(ds, path: Path) -> None:
    """``ds`` as a DICOM file; WADO-RS instances may come without the file meta a Part 10 file needs."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None) or FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    if "TransferSyntaxUID" not in meta:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.save_as(str(path), enforce_file_format=True)


def check_store(root: str) -> None:
    """Check that the server ``root`` answers and accepts the credentials (a QIDO-RS query), before anything is made
    to store there; :class:`DataError` otherwise."""
    with client_for(root) as client:
        _request(root, lambda: client.search_for_studies(limit=1), "DICOMweb service")


def store(root: str, paths: list[Path]) -> int:
    """Send the DICOM files ``paths`` to ``root`` in one STOW-RS request; the number stored. :class:`DataError` when
    the server refuses the request or any instance in it (its FailedSOPSequence)."""
    import pydicom

    if not paths:
        return 0
    datasets = [pydicom.dcmread(str(p)) for p in paths]
    try:
        with client_for(root) as client:
            reply = _request(root, lambda: client.store_instances(datasets), "STOW-RS service")
    except DataError as exc:
        raise DataError(exc.where, f"STOW-RS rejected the {len(datasets)} object(s): {exc.cause}") from None
    failed = list(getattr(reply, "FailedSOPSequence", None) or [])
    if failed:
        reasons = sorted({f"0x{int(getattr(item, 'FailureReason', 0)):04X}" for item in failed})
        raise DataError(public_url(root), f"STOW-RS rejected {len(failed)} of {len(datasets)} object(s) (failure "
                                          f"reason {', '.join(reasons)})")
    return len(datasets)
