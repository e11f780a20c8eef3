"""A/B test statistics as a library (importable without the command line): Welch's t, the delta method,
CUPED, sample-ratio mismatch, Holm's correction and the minimum detectable effect."""
