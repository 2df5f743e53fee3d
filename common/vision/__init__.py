"""Video decoding/encoding, 2D keypoint detectors and the person tracker."""
