"""Child processes of the napari docks: TensorFlow never loads in napari's process."""
