"""Extra motion for the wild lifter: reading a Debian package without dpkg, the cache and its licence note,
one-line errors offline, and (when the package is cached) the clips' skeletons."""
import io
import lzma
import subprocess
import tarfile

import numpy as np
import pytest

from common.datasets import extra_motion
from common.core.bones import bone_lengths
from common.utils.errors import UserError
from helpers import standing_motion


def _ar_member(name: str, body: bytes) -> bytes:
    header = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(body):<10}`\n".encode()
    return header + body + (b"\n" if len(body) % 2 else b"")


def _fake_deb(path, files: dict[str, bytes]) -> None:
    """A minimal Debian package: ar archive with debian-binary and data.tar.xz holding ``files``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo("./" + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(b"!<arch>\n" + _ar_member("debian-binary", b"2.0\n")
                     + _ar_member("data.tar.xz", lzma.compress(buffer.getvalue())))


def test_clips_are_extracted_once_into_the_cache_with_their_licence(tmp_path, monkeypatch):
    monkeypatch.setenv("BLAPOSE_CACHE", str(tmp_path))
    (tmp_path / "dists").mkdir()
    contents = {extra_motion.BVH_FOLDER + c.file: f"clip {c.key}".encode() for c in extra_motion.EXTRA_CLIPS}
    _fake_deb(tmp_path / "dists" / "assimp-testmodels_9.9_all.deb", contents)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("apt-get must not run: the .deb is cached"))
    paths = extra_motion.fetch_extra_clips()
    assert set(paths) == {"cmu_01_01", "cmu_01_03", "boxing"}
    assert paths["boxing"].read_bytes() == b"clip boxing"
    licence = (tmp_path / "extra_motion" / "LICENCE.md").read_text()
    assert "mocap.cs.cmu.edu" in licence and "BSD-3-Clause" in licence
    (tmp_path / "dists" / "assimp-testmodels_9.9_all.deb").unlink()
    assert extra_motion.fetch_extra_clips() == paths  # served from the cache, the package no longer needed


def test_offline_fetch_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("BLAPOSE_CACHE", str(tmp_path))

    def offline(*args, **kwargs):
        raise subprocess.CalledProcessError(100, args[0])

    monkeypatch.setattr(subprocess, "run", offline)
    with pytest.raises(UserError, match="could not fetch Debian's assimp-testmodels .*place its .deb in"):
        extra_motion.fetch_extra_clips()


def test_a_package_without_the_clip_is_an_error(tmp_path):
    _fake_deb(tmp_path / "x.deb", {"usr/share/other.txt": b"x"})
    with pytest.raises(UserError, match="has no usr/share/assimp"):
        extra_motion._deb_member(tmp_path / "x.deb", extra_motion.BVH_FOLDER + "01_01.bvh")
    (tmp_path / "y.deb").write_bytes(b"not an archive")
    with pytest.raises(UserError, match="not a Debian package"):
        extra_motion._deb_member(tmp_path / "y.deb", "a")


def test_cached_clips_give_upright_skeletons_with_the_subjects_lengths():
    folder = extra_motion.cache_dir() / "extra_motion"
    if not all((folder / c.file).is_file() for c in extra_motion.EXTRA_CLIPS):
        pytest.skip("assimp-testmodels clips not cached (needs apt-get download once)")
    from common.datasets.demo.config import DemoConfig
    from common.datasets.demo.subjects import sample_subject_bone_lengths

    motions = extra_motion.extra_motions(["S1", "S5"])
    assert [m[0] for m in motions] == ["S1", "S5", "S1"]
    for subject, _, world in motions:
        assert world.shape[1:] == (17, 3) and len(world) > 1000  # > 20 s at 50 fps
        np.testing.assert_allclose(bone_lengths(world), np.broadcast_to(
            sample_subject_bone_lengths(subject, DemoConfig().seed), (len(world), 16)), atol=1e-4)
        assert world[..., 2].min() == pytest.approx(0.07, abs=1e-5)
        assert (world[:, 10, 2] > world[:, 0, 2]).mean() > 0.95  # head above pelvis: upright, Z up
        facing = world[:, 9] - world[:, 8]
        facing[:, 2] = 0
        right = world[:, 1] - world[:, 4]
        # right hip on the right of the facing direction (no mirrored skeleton)
        assert (np.sum(right * np.cross(facing, [0.0, 0.0, 1.0]), axis=-1) > 0).mean() > 0.95


def test_motion_is_filmed_inside_every_image_of_the_dataset_cameras():
    """(issue 17) -t length --extra_motion through the dataset's cameras: every window placed in the subject's
    capture volume, filmed by each of its cameras (2D = the camera's projection of the 3D, inside the image), and
    a window that no placement keeps inside the images is skipped, not half-filmed."""
    from common.core.camera import load_cameras, normalize_screen_coordinates
    from common.datasets.demo.subjects import sample_subject_bone_lengths
    cameras = load_cameras()
    lengths = sample_subject_bone_lengths("S1", 2024)
    standing = standing_motion(lengths, 300)
    t = np.arange(300) / 50.0
    walking_away = standing + np.stack([np.zeros_like(t), 10.0 * t, np.zeros_like(t)], -1)[:, None]  # 60 m
    views, skipped = extra_motion.dataset_camera_views(
        [("S1", "Standing", standing), ("S5", "Walking away", walking_away)], cameras, 128, seed=3)
    assert skipped >= 1  # the 60 m walk leaves the capture volume
    standing_views = [v for v in views if v.action.startswith("Standing")]
    assert [v.action for v in standing_views[::4]] == ["Standing part 0", "Standing part 1", "Standing part 2"]
    assert [v.camera_index for v in standing_views[:4]] == [0, 1, 2, 3]
    for view in views:
        assert view.poses_2d.shape == (128, 17, 2) and view.poses_3d.shape == (128, 17, 3)
        absolute = view.poses_3d.copy()
        absolute[:, 1:] += absolute[:, :1]
        np.testing.assert_allclose(bone_lengths(absolute), np.broadcast_to(lengths, (128, 16)), atol=1e-4)
        assert absolute[..., 2].min() > 0.5  # in front of the camera
        pixels = view.camera.project(absolute.astype(np.float64))
        assert (pixels >= 0).all() and (pixels[..., 0] <= view.camera.res_w).all() \
            and (pixels[..., 1] <= view.camera.res_h).all()
        np.testing.assert_allclose(view.poses_2d, normalize_screen_coordinates(
            pixels.astype(np.float32), view.camera.res_w, view.camera.res_h), atol=1e-5)
