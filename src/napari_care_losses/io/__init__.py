"""Reading and writing images: TIFF files (`tiff`), frame stacks and training patches
(`data`), folders of low/high pairs (`pair_folder`)."""
