"""Names of the heatmap methods and CAMs, importable without torch (the CLI's help lists them)."""

#: name -> one-line description (what ``tonno reconstruct --help`` lists)
METHODS = {
    "tonno": "ToNNO, filtered backprojection of slice logits at many angles (paper 3.4)",
    "averaged-cam": "Averaged CAM, raw CAM maps of the same slices averaged over directions (eq. 12)",
    "tomographic-cam": "Tomographic CAM, per-cell second difference then backprojection (eq. 13)",
    "gradcam": "slice-wise GradCAM",
    "layercam": "slice-wise LayerCAM",
    "gradcam++": "slice-wise GradCAM++",
    "scorecam": "slice-wise ScoreCAM",
}
TOMOGRAPHIC = ("tonno", "averaged-cam", "tomographic-cam")
CAMS = ("gradcam", "layercam", "gradcam++", "scorecam")
LAYERS = (1, 2, 3, 4)
#: the paper's directions: 2000 for ToNNO, 1000 for the CAM variants (maps cost more)
DEFAULT_ANGLES = {"tonno": 2000, "averaged-cam": 1000, "tomographic-cam": 1000}

#: reconstruction settings by name: the paper's, and a CPU preview (a 128³ volume in under 30 s on
#: 2 cores with the demo model; its agreement with the paper setting: bench/bench_preview.py)
QUALITY_PRESETS = {
    "paper": {"slices": 100, "angles": None, "hemisphere": False},
    "preview": {"slices": 20, "angles": 448, "hemisphere": True},
}


def preset_help() -> str:
    """One line per preset for the CLI's help."""
    def text(p: dict) -> str:
        angles = p["angles"] or "2000 (1000 for CAM variants)"
        return f"M={p['slices']}, L={angles}, {'hemisphere' if p['hemisphere'] else 'full sphere'}"
    return "; ".join(f"{name}: {text(p)}" for name, p in QUALITY_PRESETS.items())
