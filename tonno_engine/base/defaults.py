"""Every default of the reconstruction, defined once (torch-free).

Engine signatures, CLI options and help texts, and the widgets' initial values all read these names
(a test compares them), so a default changes in one place.
"""

from __future__ import annotations

#: M: slices per direction (M + 2 offsets are cut; the second difference needs M ≥ 3), paper §4.2
SLICES = 100
#: L for ToNNO (paper §4.2)
TONNO_DIRECTIONS = 2000
#: L for the CAM variants (paper §4.3)
CAM_DIRECTIONS = 1000
#: slice side in pixels when the checkpoint does not say (the paper's)
SLICE_SIZE = 224
#: the encoder layer a CAM reads (outputs at stride 8)
CAM_LAYER = 2
#: the CAM of the methods that read CAM maps
CAM = "layercam"
#: "auto": CUDA when torch sees it, then MPS, else the CPU (the one device spelling with that meaning)
DEVICE = "auto"
#: slices per network call: on the CPU (latency, memory) and on accelerators
CPU_BATCH_SIZE = 64
ACCELERATOR_BATCH_SIZE = 1024
#: directions between two partial heatmaps of a live reconstruction
DIRECTIONS_PER_UPDATE = 32
#: bytes of backprojection temporaries per pass (a slab of the output)
MEMORY_BUDGET = 256 * 2**20
#: the sliced space: the paper's (every axis spans [-1, 1]), and its field of view
GEOMETRY = "paper"
FIELD_OF_VIEW = "full"
#: the reconstruction quality preset of the CLI, the benchmark and the Reconstruct widget
QUALITY = "paper"
WIDGET_QUALITY = "demo"
#: the iterative methods' solver: at most this many CGLS steps, stopping earlier when the normal
#: equations' residual falls below this share of its start
SOLVER_ITERATIONS = 20
SOLVER_TOLERANCE = 1e-3
#: the training objective of ``tonno pretrain`` (self-supervised: its checkpoints hold no classifier)
CONTRASTIVE = "contrastive"
#: the second-stage segmenter's training steps (48³ patches, 2 a step: 4–5 CPU-minutes; bench/RESULTS.md)
SEGMENTER_STEPS = 3000
#: the side of its training patches, in voxels (a multiple of the U-Net's downsampling, 8)
SEGMENTER_PATCH = 48
#: the second-stage U-Net's learning rate (AdamW, polynomial decay)
SEGMENTER_LR = 2e-3
#: the iterative methods' regulariser weight against the data when one is chosen without --strength
SOLVER_STRENGTH = 0.1

#: input geometry: the largest angle (degrees) by which a voxel axis may lean off the normal of the other two
#: and still count as orthogonal (tonno slices along orthogonal axes). One tolerance for a NIfTI or ITK affine,
#: DICOM's ImageOrientationPatient and its slice positions (gantry tilt); a rotation rounded to float32 (a
#: NIfTI sform) leans < 1e-4°
SHEAR_TOLERANCE_DEG = 0.05

#: evaluation: lesions are 3D connected components of this connectivity (6, 18 or 26; the paper's metrics)
CONNECTIVITY = 26
#: the benchmark: share of cases held out for testing, and bootstrap resamples of the test cases for
#: Table 2's 95 % intervals
TEST_FRACTION = 0.3
BOOTSTRAP_RESAMPLES = 2000
#: bootstrap resamples of the validation volumes for the volume AUC's interval
AUC_RESAMPLES = 1000
#: pseudo-labels: the ignore band (where the low level sits between the heatmap's median, 0, and the
#: level, 1) and the ignore shell around each lesion, in mm
PSEUDO_LABEL_BAND = 0.5
PSEUDO_LABEL_MARGIN_MM = 2.0

#: ``tonno demo`` (and the napari demo checkpoint): synthetic brain volumes (half with lesions), training
#: steps, and lesion semi-axes (voxels per 64: larger than the MS-like default so that a model trained from
#: scratch for a few hundred CPU steps learns them)
DEMO_CASES = 40
DEMO_STEPS = 400
DEMO_LESION_RADIUS = (3.5, 6.0)

#: the napari probe widgets (Direction slices, Logit profiles): the size L of their direction lattice
#: (the demo preset's L)
PROBE_DIRECTIONS = 192
#: seconds a DICOMweb request may take before it fails as a timeout (``$TONNO_DICOMWEB_TIMEOUT`` overrides it)
DICOMWEB_TIMEOUT = 60.0
#: a stage-2 probability at or above this is a lesion voxel in its DICOM SEG
SEG_PROBABILITY = 0.5
