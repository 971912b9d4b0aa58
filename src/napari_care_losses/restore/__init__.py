"""Restoring and scoring: CARE prediction (`predict`), classical baselines (`baselines`),
PSNR/SSIM (`metrics`), the restore-and-score engine (`engine`), restoring files on disk
(`files`), power spectra (`spectra`) and score tables (`score_tables`)."""
