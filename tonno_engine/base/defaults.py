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
