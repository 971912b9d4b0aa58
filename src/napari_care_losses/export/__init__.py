"""Sharing models: bioimage.io packages (`bioimageio`) and their documentation (`docs`)."""
