"""On-device screening: bundle loading, preprocessing, OCR, backends, ``Guard``. Imports no torch."""
