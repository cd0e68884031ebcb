"""Layer 7, work outside the nightly path: the seed preset and the synthetic fleet for scale tests.

Imports any library layer below.
"""
