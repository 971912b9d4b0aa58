"""Trained models on disk: the model folder and its metadata (`folder`), the CARE network
(`network`), weight files (`weights`) and bioimage.io packages read as models
(`package_import`)."""
