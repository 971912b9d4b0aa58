"""Restoring and scoring: CARE prediction (`predict`), classical baselines (`baselines`),
PSNR/SSIM (`metrics`), the restore-and-score engine (`engine`), restoring files on disk
(`files`), power spectra (`spectra`), score tables (`score_tables`), MicroSSIM
(`microssim`) and seed-aware verdicts of grouped models (`verdicts`, `verdict_text`)."""
