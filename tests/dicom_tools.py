"""Test helpers for DICOM: dciodvfy (Debian dicom3tools) and a real Orthanc with its DICOMweb plugin.

Both come from Debian packages that ``make test`` installs (its ``dicom-tools`` target) and sets
``TONNO_REQUIRE_DICOM_TOOLS=1``: there a missing tool fails the test instead of skipping it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ORTHANC_PLUGINS = Path("/usr/share/orthanc/plugins")


def require(tool: str, where: str = "") -> str:
    """The path of ``tool`` (a program, or a file when ``where`` is a folder), else skip (fail under ``make test``)."""
    found = shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin")
    if found:
        return found
    message = f"{tool} is not installed (Debian: apt-get install orthanc orthanc-dicomweb dicom3tools; make test does)"
    if os.environ.get("TONNO_REQUIRE_DICOM_TOOLS") == "1":
        pytest.fail(message)
    pytest.skip(message)


def dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    """The error and warning lines ``dciodvfy`` prints for the DICOM file ``path``."""
    run = subprocess.run([require("dciodvfy"), str(path)], capture_output=True, text=True, errors="replace",
                         timeout=120)
    lines = (run.stdout + run.stderr).splitlines()
    return [x for x in lines if x.startswith("Error")], [x for x in lines if x.startswith("Warning")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Orthanc:
    """A running Orthanc: its DICOMweb ``root`` (http://127.0.0.1:PORT/dicom-web), REST ``url``, and the ``user`` and
    ``password`` it accepts."""

    url: str
    root: str
    user: str
    password: str
    process: subprocess.Popen

    def upload(self, files) -> None:
        import requests

        for path in files:
            reply = requests.post(f"{self.url}/instances", data=Path(path).read_bytes(), auth=(self.user, self.password),
                                  timeout=30)
            reply.raise_for_status()


def start_orthanc(folder: Path) -> Orthanc:
    """Start Orthanc (HTTP on a free loopback port, DICOM off, one user) with its storage in ``folder``; wait until
    it answers."""
    import requests

    binary = require("Orthanc")
    if not any(ORTHANC_PLUGINS.glob("libOrthancDicomWeb*")):
        require("libOrthancDicomWeb (orthanc-dicomweb)", "plugins")
    port, password = free_port(), "s3cret-" + os.urandom(6).hex()
    config = {"Name": "tonno-test", "StorageDirectory": str(folder / "storage"), "IndexDirectory": str(folder / "storage"),
              "HttpPort": port, "DicomServerEnabled": False, "DicomPort": free_port(), "RemoteAccessAllowed": False,
              "AuthenticationEnabled": True, "RegisteredUsers": {"tonno": password},
              "Plugins": [str(ORTHANC_PLUGINS)], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
              "StableAge": 1, "HttpTimeout": 30}
    (folder / "orthanc.json").write_text(json.dumps(config))
    with open(folder / "orthanc.log", "w") as log:  # the child keeps its own descriptor
        process = subprocess.Popen([binary, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Orthanc exited: {(folder / 'orthanc.log').read_text()[-2000:]}")
        try:
            if requests.get(f"{url}/system", auth=("tonno", password), timeout=2).ok:
                return Orthanc(url, f"{url}/dicom-web", "tonno", password, process)
        except requests.exceptions.ConnectionError:
            pass
        time.sleep(0.3)
    process.terminate()
    raise RuntimeError("Orthanc did not answer within 60 s")


def stop_orthanc(server: Orthanc) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
