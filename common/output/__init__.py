"""What users take away: export formats (npz, JSON lines, CSV, BVH), rendered video and plots."""
