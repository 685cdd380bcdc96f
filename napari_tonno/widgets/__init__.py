"""Dock widgets (magicgui). Each module imports Qt-bound napari parts only when a widget runs."""
