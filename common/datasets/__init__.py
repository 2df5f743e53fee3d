"""Data: the Human3.6M-format datasets, motion capture, the demo set builder, synthetic bone-length batches, lifter batches, virtual cameras."""
