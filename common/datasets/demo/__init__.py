"""The embedded demo dataset (``setup.py``; ``-d demo``), in the Human3.6M file format of VideoPose3D.

* :mod:`common.datasets.demo.motion` — motion sources: the clip catalogue, clips unrolled to a length;
* :mod:`common.datasets.demo.subjects` — per-subject bodies, steering, placement in front of the four cameras;
* :mod:`common.datasets.keypoint_noise` — the detector-like 2D noise of ``data_2d_demo_detections.npz``;
* :mod:`common.datasets.demo.config` — build parameters, fingerprint, which subject performs which clip;
* :mod:`common.datasets.demo.build` — :func:`~common.datasets.demo.build.build_demo_dataset`: the three npz files;
* :mod:`common.datasets.demo.manifest` — the build summary and ``demo_manifest.json`` (is a folder current?);
* :mod:`common.datasets.demo.report` — the ``DEMO_DATA.md`` note;
* :mod:`common.utils.downloads` — the cache and the PyPI downloads (MocapBank BVH, demo video).
"""
