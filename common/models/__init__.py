"""Networks: the VideoPose3D lifter, the bone-length model, the mix model, and the one checkpoint-to-model rule."""
