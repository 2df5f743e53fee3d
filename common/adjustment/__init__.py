"""Adjustment of a lifter's predictions with bone lengths, and its evaluation tables."""
