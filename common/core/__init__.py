"""The skeleton and its geometry: joints and bones, cameras and projection, metrics."""
