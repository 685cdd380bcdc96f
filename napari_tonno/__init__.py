"""napari plugin for tonno: NIfTI reader/writer, sample data and dock widgets (wiring only).

The manifest is the top-level ``napari.yaml``; ``napari_tonno/napari.yaml`` links to it so that
``napari_tonno:napari.yaml`` resolves in editable installs and in wheels alike.
"""
