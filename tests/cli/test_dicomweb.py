"""DICOMweb in and out against a real Orthanc (and a loopback stand-in for what Orthanc will not do on request: hang,
refuse with 403, reject a STOW). ``pytest -k "orthanc or dicomweb"`` selects these tests."""

from __future__ import annotations

import http.server
import json
import threading

import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from tests.dicom_tools import dciodvfy, free_port, start_orthanc, stop_orthanc
from tonno_cli.app import app
from tonno_engine.data.dicom_write import write_dicom_series

pytest.importorskip("highdicom")
pytest.importorskip("dicomweb_client")
runner = CliRunner()
FAST = ["--slices", "4", "--directions", "6", "--device", "cpu", "-q"]


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    """Orthanc with DICOMweb on a free loopback port, one user, holding one synthetic CT series (12 slices)."""
    folder = tmp_path_factory.mktemp("orthanc")
    server = start_orthanc(folder)
    affine = np.diag([0.8, 0.8, 2.0, 1.0])
    affine[:3, 3] = (-10, 5, -20)
    rng = np.random.default_rng(0)
    files = write_dicom_series(folder / "ct", rng.normal(0, 200, (24, 20, 12)), affine)
    server.upload(files)
    server.study = pydicom.dcmread(files[0]).StudyInstanceUID
    server.series = pydicom.dcmread(files[0]).SeriesInstanceUID
    server.source = folder / "ct"
    yield server
    stop_orthanc(server)


@pytest.fixture
def credentials(orthanc, monkeypatch, tmp_path):
    monkeypatch.setenv("TONNO_DICOMWEB_USER", orthanc.user)
    monkeypatch.setenv("TONNO_DICOMWEB_PASSWORD", orthanc.password)
    monkeypatch.setenv("TONNO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))


def _series_url(server) -> str:
    return f"{server.root}/studies/{server.study}/series/{server.series}"


def _files_under(*folders):
    return [p for f in folders if f.exists() for p in f.rglob("*") if p.is_file()]


def test_orthanc_round_trip_reconstruct_from_dicomweb_and_store_the_parametric_map(orthanc, credentials, tiny_checkpoint,
                                                                                   tmp_path):
    import dicomweb_client

    out = tmp_path / "out"
    res = runner.invoke(app, ["reconstruct", "-i", _series_url(orthanc), "-o", str(out), "-c", str(tiny_checkpoint),
                              "--format", "dicom", "--store", orthanc.root, *FAST])
    assert res.exit_code == 0, res.output
    case = orthanc.series
    assert "stored 1 DICOM object(s)" in res.output
    assert (out / f"{case}_tonno.nii.gz").exists() and (out / f"{case}_tonno.dcm").exists()
    # the same heatmap from the series folder: the fetched copy reads identically
    local = tmp_path / "local"
    assert runner.invoke(app, ["reconstruct", "-i", str(orthanc.source), "-o", str(local), "-c", str(tiny_checkpoint),
                               *FAST]).exit_code == 0
    # read the Parametric Map back from Orthanc
    client = dicomweb_client.DICOMwebClient(orthanc.root)
    client._session.auth = (orthanc.user, orthanc.password)
    found = [s for s in client.search_for_series(orthanc.study) if s["00080060"]["Value"][0] != "CT"]
    assert len(found) == 1
    pm_series = found[0]["0020000E"]["Value"][0]
    (pm,) = client.retrieve_series(orthanc.study, pm_series)
    written = pydicom.dcmread(out / f"{case}_tonno.dcm")
    assert pm.SOPInstanceUID == written.SOPInstanceUID and pm.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30"
    assert np.array_equal(pm.pixel_array, written.pixel_array)
    assert pm.FrameOfReferenceUID == pydicom.dcmread(next(orthanc.source.iterdir())).FrameOfReferenceUID
    errors, _ = dciodvfy(out / f"{case}_tonno.dcm")
    assert errors == []
    # provenance by URL and UIDs, never a credential anywhere tonno wrote or printed
    run = json.loads((out / "run.json").read_text())
    assert run["source"] == _series_url(orthanc) and run["store"] == orthanc.root
    from tonno_engine.data.nifti import read_provenance

    made = read_provenance(out / f"{case}_tonno.nii.gz")
    assert made["image"] == _series_url(orthanc)
    assert made["parts"]["input"] == {"url": _series_url(orthanc), "study": orthanc.study, "series": orthanc.series}
    for path in _files_under(out, tmp_path / "cache"):
        assert orthanc.password.encode() not in path.read_bytes(), path
    assert orthanc.password not in res.output


def test_dicomweb_without_credentials_is_a_401_line(orthanc, credentials, monkeypatch, tiny_checkpoint, tmp_path):
    monkeypatch.delenv("TONNO_DICOMWEB_USER")
    monkeypatch.delenv("TONNO_DICOMWEB_PASSWORD")
    out = tmp_path / "out"
    res = runner.invoke(app, ["reconstruct", "-i", _series_url(orthanc), "-o", str(out), "-c", str(tiny_checkpoint),
                              *FAST])
    assert res.exit_code == 1
    assert f"error: {_series_url(orthanc)}: 401 Unauthorized" in res.output
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_dicomweb_credentials_from_netrc(orthanc, credentials, monkeypatch, tiny_checkpoint, tmp_path):
    monkeypatch.delenv("TONNO_DICOMWEB_USER")
    monkeypatch.delenv("TONNO_DICOMWEB_PASSWORD")
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login {orthanc.user} password {orthanc.password}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    res = runner.invoke(app, ["reconstruct", "-i", _series_url(orthanc), "-o", str(tmp_path / "out"), "-c",
                              str(tiny_checkpoint), *FAST])
    assert res.exit_code == 0, res.output


def test_dicomweb_credentials_in_the_url_are_refused_without_showing_them(orthanc, credentials, tiny_checkpoint, tmp_path):
    url = _series_url(orthanc).replace("http://", f"http://tonno:{orthanc.password}@")
    res = runner.invoke(app, ["reconstruct", "-i", url, "-o", str(tmp_path / "out"), "-c", str(tiny_checkpoint), *FAST])
    assert res.exit_code == 1 and "credentials in a URL are refused" in res.output
    assert orthanc.password not in res.output and not (tmp_path / "out").exists()


def test_dicomweb_unknown_study_is_a_404_line(orthanc, credentials, tiny_checkpoint, tmp_path):
    url = f"{orthanc.root}/studies/1.2.3.4.5.6"
    res = runner.invoke(app, ["reconstruct", "-i", url, "-o", str(tmp_path / "out"), "-c", str(tiny_checkpoint), *FAST])
    assert res.exit_code == 1 and f"error: {url}: 404 Not Found" in res.output, res.output
    assert not (tmp_path / "out").exists()


def test_dicomweb_a_series_without_images_is_refused(orthanc, credentials, tiny_checkpoint, tmp_path):
    """A SEG series stored in Orthanc is no image series."""
    from tonno_engine.data.dicom_out import Made, write_segmentation
    from tonno_engine.data.images import load_image

    volume = load_image(orthanc.source)
    seg = write_segmentation(tmp_path / "seg.dcm", volume.array > 0, volume.path, Made("tonno"))
    orthanc.upload([seg])
    url = f"{orthanc.root}/studies/{orthanc.study}/series/{pydicom.dcmread(seg).SeriesInstanceUID}"
    res = runner.invoke(app, ["reconstruct", "-i", url, "-o", str(tmp_path / "out"), "-c", str(tiny_checkpoint), *FAST])
    assert res.exit_code == 1 and f"error: {url}: not an image series (Modality SEG)" in res.output, res.output
    assert not (tmp_path / "out").exists()


def test_dicomweb_unreachable_server_is_one_line(credentials, tiny_checkpoint, tmp_path):
    url = f"http://127.0.0.1:{free_port()}/dicom-web/studies/1.2.3/series/4.5.6"
    res = runner.invoke(app, ["reconstruct", "-i", url, "-o", str(tmp_path / "out"), "-c", str(tiny_checkpoint), *FAST])
    assert res.exit_code == 1 and f"error: {url}: server unreachable" in res.output, res.output
    assert [x for x in res.output.splitlines() if x != "device: cpu"] == [x for x in res.output.splitlines()
                                                                           if x.startswith("error:")]
    assert not (tmp_path / "out").exists()


RELEASE = threading.Event()


class _StandIn(http.server.BaseHTTPRequestHandler):
    """Answers what a real archive does rarely: ``/slow`` never in time, ``/forbidden`` 403, ``/rejecting`` a QIDO
    query with an empty list and a STOW with 409 (the instances refused)."""

    def _answer(self):
        if self.path.startswith("/slow"):
            RELEASE.wait(3)
        status = 403 if self.path.startswith("/forbidden") else 409 if self.command == "POST" else 200
        self.send_response(status)
        self.send_header("Content-Type", "application/dicom+json")
        body = b"[]" if status == 200 else b""
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - http.server's name
        self._answer()

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer()

    def log_message(self, *args):
        pass


@pytest.fixture
def stand_in():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StandIn)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    RELEASE.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    RELEASE.set()
    server.shutdown()
    server.server_close()


def test_dicomweb_timeout_is_one_line(stand_in, credentials, monkeypatch, tiny_checkpoint, tmp_path):
    monkeypatch.setenv("TONNO_DICOMWEB_TIMEOUT", "0.5")
    url = f"{stand_in}/slow/studies/1.2.3"
    res = runner.invoke(app, ["reconstruct", "-i", url, "-o", str(tmp_path / "out"), "-c", str(tiny_checkpoint), *FAST])
    assert res.exit_code == 1 and f"error: {url}: timeout: no answer within 0.5 s" in res.output, res.output
    assert not (tmp_path / "out").exists()


def test_dicomweb_forbidden_is_a_403_line(stand_in, credentials, tiny_checkpoint, tmp_path):
    url = f"{stand_in}/forbidden/studies/1.2.3"
    res = runner.invoke(app, ["reconstruct", "-i", url, "-o", str(tmp_path / "out"), "-c", str(tiny_checkpoint), *FAST])
    assert res.exit_code == 1 and f"error: {url}: 403 Forbidden" in res.output, res.output


def test_dicomweb_store_refusals_before_and_after_the_run(orthanc, stand_in, credentials, tiny_checkpoint, tmp_path):
    source = str(orthanc.source)
    # a store server that refuses the credentials: refused before anything is written
    res = runner.invoke(app, ["reconstruct", "-i", source, "-o", str(tmp_path / "a"), "-c", str(tiny_checkpoint),
                              "--format", "dicom", "--store", f"{stand_in}/forbidden", *FAST])
    assert res.exit_code == 1 and f"error: {stand_in}/forbidden: 403 Forbidden" in res.output, res.output
    assert not (tmp_path / "a").exists()
    # a rejected STOW: one line, exit 1
    res = runner.invoke(app, ["reconstruct", "-i", source, "-o", str(tmp_path / "b"), "-c", str(tiny_checkpoint),
                              "--format", "dicom", "--store", f"{stand_in}/rejecting", *FAST])
    assert res.exit_code == 1, res.output
    assert f"error: {stand_in}/rejecting: STOW-RS rejected" in res.output and "409" in res.output, res.output


def test_dicomweb_format_dicom_refuses_a_nifti_input(tiny_cases, tiny_checkpoint, tmp_path):
    image = tiny_cases / "images" / "phantom_0001.nii.gz"
    res = runner.invoke(app, ["reconstruct", "-i", str(image), "-o", str(tmp_path / "out"), "-c", str(tiny_checkpoint),
                              "--format", "dicom", *FAST])
    assert res.exit_code == 1 and "--format dicom needs DICOM series as input" in res.output, res.output
    assert not (tmp_path / "out").exists()


def test_dicomweb_thresholded_heatmap_and_stage2_prediction_as_seg(orthanc, credentials, tiny_checkpoint, tmp_path):
    from tonno_engine.base.hashing import file_sha256
    from tonno_engine.evaluation.metrics import Threshold
    from tonno_engine.evaluation.thresholds_file import write_thresholds
    from tonno_engine.models.segmenter import build_unet, save_segmenter

    levels = write_thresholds(tmp_path / "thresholds.json", {"tonno": Threshold("calibrated", 0.0, 0.5)},
                              checkpoint=tiny_checkpoint, checkpoint_sha256=file_sha256(tiny_checkpoint))
    out = tmp_path / "heat"
    res = runner.invoke(app, ["reconstruct", "-i", _series_url(orthanc), "-o", str(out), "-c", str(tiny_checkpoint),
                              "--format", "dicom", "--thresholds", str(levels), "--store", orthanc.root, *FAST])
    assert res.exit_code == 0, res.output
    assert "stored 2 DICOM object(s)" in res.output
    seg = out / f"{orthanc.series}_tonno_seg.dcm"
    assert pydicom.dcmread(seg).Modality == "SEG" and dciodvfy(seg)[0] == []
    segmenter = save_segmenter(tmp_path / "segmenter.pt", build_unet(),
                               {"channels": [16, 32, 64, 128], "strides": [2, 2, 2], "res_units": 1, "patch": 16,
                                "preprocessing": {"intensity": "robust"}})
    pred = tmp_path / "pred"
    res = runner.invoke(app, ["segment", "predict", str(segmenter), _series_url(orthanc), "-o", str(pred), "--format",
                              "dicom", "--store", orthanc.root, "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    assert "stored 1 DICOM SEG object(s)" in res.output
    stage2 = pred / f"{orthanc.series}_stage2_seg.dcm"
    assert dciodvfy(stage2)[0] == []
    assert pydicom.dcmread(stage2).ReferencedSeriesSequence[0].SeriesInstanceUID == orthanc.series
