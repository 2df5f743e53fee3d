"""Video to 3D: the offline pipeline, 2D keypoint tracks, lifters, length sources, live mode, multi-view scoring."""
